#!/usr/bin/env bash
# One prepared check for a GPU machine (CI never has one).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# 1. Records the devices and versions.
# 2. Trains each recipe for one short epoch under `--strategy auto` (which
#    must pick `one_device` on one GPU and `mirrored` on several; never
#    MirroredStrategy on one device) and keeps each run's env.json.
# 3. Runs `python benchmarks/run.py --quick`: matmul peak in float32 and
#    bfloat16 (the H200's bf16 MFU is measured against it), the training
#    and generation ratios, input wait and start-up.
# Everything goes into $OUT (a temporary directory when unset); the
# script goes on after a failed step and exits non-zero at the end if any
# step failed. Expects the `.[gpu,bench]` extras installed beforehand.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d -t zoo-gpu-check-XXXX)}"
mkdir -p "$OUT/runs" "$OUT/results" "$OUT/logs"
export TF_CPP_MIN_LOG_LEVEL=2
failed=0

step() {  # step NAME COMMAND...: runs COMMAND, logs to $OUT/logs/NAME.log
    local name="$1"; shift
    echo "[$(date -u +%H:%M:%S)] $name"
    if ! "$@" > "$OUT/logs/$name.log" 2>&1; then
        echo "  FAILED (see $OUT/logs/$name.log)"; tail -5 "$OUT/logs/$name.log"; failed=1
    fi
}

{
    date -u; uname -a; nvidia-smi || true
    python -c "import tensorflow as tf; print('tensorflow', tf.__version__, tf.config.list_physical_devices())"
    python -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" || true
    python -c "import keras, keras_hub; print('keras', keras.__version__, 'keras_hub', keras_hub.__version__)"
} > "$OUT/devices.txt" 2>&1

step mlp_regressor python recipes/mlp_regressor.py --strategy auto --epochs 2 \
    --data-option num_train=4096 --run-dir "$OUT/runs/mlp_regressor" --quiet
step dcgan python recipes/dcgan.py --strategy auto --epochs 2 --run-dir "$OUT/runs/dcgan" --quiet
step gpt2_textgen python recipes/gpt2_textgen.py --strategy auto --epochs 1 \
    --set num_layers=2 --set sequence_length=128 --run-dir "$OUT/runs/gpt2_textgen" --quiet
step gpt2_textgen_bf16 python recipes/gpt2_textgen.py --strategy auto --epochs 1 \
    --mixed-precision mixed_bfloat16 --jit-compile true --set num_layers=2 \
    --set sequence_length=128 --run-dir "$OUT/runs/gpt2_textgen_bf16" --quiet
python - "$OUT/runs" > "$OUT/strategies.txt" 2>&1 <<'EOF'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*", "env.json"))):
    with open(path) as f:
        strategy = json.load(f)["strategy"]
    print(os.path.basename(os.path.dirname(path)), strategy["class"], strategy["num_replicas_in_sync"])
EOF
cat "$OUT/strategies.txt"
step benchmarks python benchmarks/run.py --quick --out "$OUT/results"
cat "$OUT/logs/benchmarks.log" | tail -150
echo "Results in $OUT"
exit $failed
