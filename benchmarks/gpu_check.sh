#!/usr/bin/env bash
# One prepared check for a GPU machine (CI never has one).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# 1. Records the devices and versions.
# 2. Trains each recipe for a short epoch under `--strategy auto` (which
#    must pick `one_device` on one GPU and `mirrored` on several; never
#    MirroredStrategy on one device) and `--mixed-precision auto` (which
#    must pick mixed_bfloat16 on compute capability 8.0+ and mixed_float16
#    on 7.x, see zoo/precision.py), gpt2_textgen under each policy forced,
#    and dcgan under `mirrored` on two logical GPUs of the first chip; then
#    prints each run's strategy, policy, XLA setting and reason (env.json).
# 3. Runs the benchmarks with `--quick`: the matmul peak in float32 and
#    bfloat16 (the bf16 MFU is measured against it), every model under
#    float32 and "auto" (precision_train), GPT-2 at GPT-2 small's width
#    (gpt2_small), and the training ratios against plain Keras. The PyTorch
#    contenders (benchmarks/torch_models.py) run on the CPU.
# Everything goes into $OUT (a temporary directory when unset); the
# script goes on after a failed step and exits non-zero at the end if any
# step failed. Expects the `.[gpu,bench]` extras installed beforehand.
#
# ZOO_GPU_CHECK_SMOKE=1 runs every step with tiny models, one forced
# policy and the `tiny` matmul peak as the only benchmark,
# so that the script
# itself is tested on a CPU (tests/test_benchmarks.py) before the one
# GPU run that counts.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d -t zoo-gpu-check-XXXX)}"
mkdir -p "$OUT/runs" "$OUT/results" "$OUT/logs"
export TF_CPP_MIN_LOG_LEVEL=2
failed=0
if [ "${ZOO_GPU_CHECK_SMOKE:-0}" = 1 ]; then
    MLP=(--epochs 1 --data-option num_train=256 --set hidden_units=[8])
    GAN=(--epochs 1 --set latent_dim=8 --set generator_filters=8 --set discriminator_filters=8)
    # 20,000 characters of the embedded corpus: a few dozen steps, not the whole corpus.
    python -c "from zoo.data import text; import sys; sys.stdout.write('\n\n'.join(text.embedded_corpus().values())[:20000])" \
        > "$OUT/corpus.txt"
    GPT=(--epochs 1 --data "$OUT/corpus.txt" --set vocabulary_size=300 --set num_layers=1 --set num_heads=2
         --set hidden_dim=16 --set intermediate_dim=32 --set max_sequence_length=64 --set sequence_length=16)
    GAN_PY='{"epochs": 1, "latent_dim": 8, "generator_filters": 8, "discriminator_filters": 8}'
    BENCH=(--size tiny matmul_peak)  # mlp_train tiny: tests/test_benchmarks.py
    # tests/test_precision.py trains every model under every policy; here one forced run
    # shows that the loop and the flag work.
    POLICIES=(mixed_float16)
else
    MLP=(--epochs 2 --data-option num_train=4096)
    GAN=(--epochs 2)
    GPT=(--epochs 1 --set num_layers=2 --set sequence_length=128)
    GAN_PY='{"epochs": 2}'
    BENCH=(--quick matmul_peak precision_train gpt2_small mlp_train dcgan_train gpt2_train)
    POLICIES=(float32 mixed_bfloat16 mixed_float16)
fi

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

step mlp_regressor python recipes/mlp_regressor.py --strategy auto --mixed-precision auto \
    "${MLP[@]}" --run-dir "$OUT/runs/mlp_regressor" --quiet
step dcgan python recipes/dcgan.py --strategy auto --mixed-precision auto "${GAN[@]}" \
    --run-dir "$OUT/runs/dcgan" --quiet
step gpt2_textgen python recipes/gpt2_textgen.py --strategy auto --mixed-precision auto \
    "${GPT[@]}" --run-dir "$OUT/runs/gpt2_textgen" --quiet
# Each policy forced, with the XLA setting zoo pairs with it.
for policy in "${POLICIES[@]}"; do
    step "gpt2_textgen_$policy" python recipes/gpt2_textgen.py --strategy auto \
        --mixed-precision "$policy" "${GPT[@]}" \
        --run-dir "$OUT/runs/gpt2_textgen_$policy" --quiet
done
# MirroredStrategy's two-replica path on one chip: two logical GPUs.
step dcgan_mirrored python - "$OUT/runs/dcgan_mirrored" "$GAN_PY" <<'EOF'
import ast, sys
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
if gpus:
    tf.config.set_logical_device_configuration(
        gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=8192)] * 2)
import zoo
run = zoo.train("dcgan", strategy="mirrored", run_dir=sys.argv[1], verbose=0,
                **ast.literal_eval(sys.argv[2]))
print(run.metrics)
EOF
python - "$OUT/runs" > "$OUT/strategies.txt" 2>&1 <<'EOF'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*", "env.json"))):
    with open(path) as f:
        env = json.load(f)
    strategy, chosen = env["strategy"], env.get("precision") or {}
    print(os.path.basename(os.path.dirname(path)), strategy["class"], strategy["num_replicas_in_sync"],
          chosen.get("policy"), "xla" if chosen.get("jit_compile") else "no-xla", chosen.get("reason"))
EOF
cat "$OUT/strategies.txt"
step benchmarks python benchmarks/run.py --no-rss --out "$OUT/results" "${BENCH[@]}"
cat "$OUT/logs/benchmarks.log" | tail -150
echo "Results in $OUT"
exit $failed
