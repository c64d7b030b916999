"""`zoo compress`: quantization and pruning into a new run, and its report.

Tiny runs shared by the module (the same helper as tests/test_export.py).
The compressed runs are checked as a user meets them: `zoo generate` and
`zoo export` take them, the GPT-2 preset reloads in plain keras-hub in a
fresh process, and bad options fail before anything is written.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import zoo
from conftest import ZOO, zoo_env
from test_export import TINY, tiny_run
from zoo import compression

ROWS = {"weights_file_bytes", "weights_gzip_bytes", "param_bytes", "latency_ms_batch1", "latency_ms_batch32"}
QUALITY = {"mlp_regressor": "test_mse", "dcgan": "fid", "gpt2_textgen": "val_bits_per_byte",
           "image_classifier": "test_accuracy"}


@pytest.fixture(scope="module", autouse=True)
def _short_latency_timing():
    # The latency rows are timed for 1.5 s per batch size and model; a few
    # rounds are enough to test them (the numbers are for docs, not asserts).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compression, "LATENCY_SECONDS", 0.05)
        yield


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("compress")
    old = os.environ.get("ZOO_CACHE_DIR")
    os.environ["ZOO_CACHE_DIR"] = str(root / "cache")
    yield root
    if old is None:
        os.environ.pop("ZOO_CACHE_DIR", None)
    else:
        os.environ["ZOO_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def mlp(root):
    # Wider than the registry's tiny (8, 4), whose biases and container
    # overhead would outweigh its kernels in every size ratio.
    return tiny_run("mlp_regressor", root, epochs=6, hidden_units=(64, 64))


@pytest.fixture(scope="module")
def mlp_int8(mlp):
    return compression.compress(mlp.dir, quantize="int8")


def test_int8_mlp_report_and_run(mlp, mlp_int8):
    report = mlp_int8
    assert report["dir"] == os.path.abspath(mlp.dir + "-int8") and report["method"] == "int8"
    rows = report["rows"]
    assert ROWS | {"test_mse", "test_r2"} <= set(rows)
    assert rows["param_bytes"]["ratio"] < 0.6  # int8 kernels; the normalizations stay float32.
    assert rows["weights_gzip_bytes"]["compressed"] < rows["weights_gzip_bytes"]["original"]
    assert rows["test_mse"]["original"] == pytest.approx(mlp.metrics["test_mse"], rel=1e-5)
    assert abs(rows["test_mse"]["ratio"] - 1) < 0.05
    assert report["kept_in_float"]["float_params"] == {"Normalization": 2 * 10 + 1 + 2 * 1 + 1}
    assert set(report["kept_in_float"]["quantized_params"]) == {"Dense"}
    assert all(row["original"] > 0 for key, row in rows.items() if key.startswith("latency"))
    # The new run: what `zoo generate`, `zoo export` and `zoo.load_run` read.
    run = zoo.load_run(report["dir"])
    assert run.config["compression"]["quantize"] == "int8"
    assert run.metrics["test_mse"] == pytest.approx(rows["test_mse"]["compressed"])
    assert json.load(open(os.path.join(report["dir"], "compress.json")))["rows"] == json.loads(json.dumps(rows))
    model = zoo.load_model(os.path.join(report["dir"], "model.keras"))
    assert model.get_layer("hidden_0").dtype_policy.name == "int8_from_float32"
    x = np.random.default_rng(1).normal(size=(4, 10)).astype("float32")
    assert np.abs(model.predict(x, verbose=0) - mlp.model.predict(x, verbose=0)).max() < 0.5


def test_a_quantized_run_exports_evaluates_but_not_to_litert(mlp_int8, tmp_path):
    for fmt in ("saved_model", "onnx"):
        info = zoo.export(mlp_int8["dir"], fmt, out=str(tmp_path / fmt))
        assert info["max_abs_diff"] <= info["tolerance"] and info["compression"]["quantize"] == "int8"
    proc = subprocess.run([*ZOO, "export", mlp_int8["dir"], "--format", "litert", "--out", tmp_path / "tfl"],
                          capture_output=True, text=True, env=zoo_env(), timeout=600)
    assert proc.returncode == 2 and "error: LiteRT cannot hold this model" in proc.stderr
    assert "quantized by Keras (int8)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "tfl").exists()
    # `zoo evaluate` scores the compressed run as any run, with the same numbers.
    proc = subprocess.run([*ZOO, "evaluate", mlp_int8["dir"]], capture_output=True, text=True,
                          env=zoo_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{mlp_int8['rows']['test_mse']['compressed']:.6g}" in proc.stdout


def test_pruning_schedule_and_masks():
    ramp = [compression.sparsity_at(t, 100, 0.5) for t in range(101)]
    assert ramp[0] == 0 and ramp[75] == pytest.approx(0.5) and ramp[100] == pytest.approx(0.5)
    assert all(b >= a for a, b in zip(ramp, ramp[1:]))
    assert ramp[10] > 0.5 * 10 / 75  # Polynomial: fast first, slow near the end.
    values = np.array([[0.3, -0.1], [2.0, -0.05], [0.2, 1.0]], "float32")
    mask = compression.magnitude_mask(values, 0.5)
    np.testing.assert_array_equal(mask, [[1, 0], [1, 0], [0, 1]])


@pytest.mark.parametrize("shape", [(16, 32), (3, 3, 4, 8)])
def test_a_block_mask_zeroes_whole_blocks_of_the_smallest_norms(shape):
    values = np.random.default_rng(0).normal(size=shape).astype("float32")
    mask = compression.magnitude_mask(values, 0.5, block=4)
    assert mask.shape == values.shape and mask.dtype == values.dtype
    blocks = mask.reshape(-1, 4)  # 4 consecutive values along the last axis.
    assert np.all(blocks == blocks[:, :1]) and blocks[:, 0].mean() == 0.5
    norms = np.linalg.norm(values.reshape(-1, 4), axis=1)
    assert norms[blocks[:, 0] == 0].max() <= norms[blocks[:, 0] == 1].min()
    # Blocks run along the last axis, not across it.
    small = np.array([[0.1, 0.1, 5.0, 5.0], [5.0, 5.0, 0.1, 0.1]], "float32")
    np.testing.assert_array_equal(compression.magnitude_mask(small, 0.5, block=2), [[0, 0, 1, 1], [1, 1, 0, 0]])
    assert compression.magnitude_mask(values, 0.0, block=4).min() == 1


def test_pruning_with_fine_tuning_reaches_the_sparsity(mlp, tmp_path):
    # No prune_block: mlp_regressor's own default, blocks of 4 (Task.prune_block).
    report = compression.compress(mlp.dir, prune=0.5, fine_tune_epochs=2, out=str(tmp_path / "p50"), verbose=0)
    assert report["method"] == "pruned50-block4" and report["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert report["fine_tune_epochs"] == 2 and report["prune_block"] == 4
    # The output kernel (64, 1) has no block of 4 along its last axis: weight by weight.
    assert report["prune_block_fallback"] == ["scaled_prediction/kernel"]
    assert "blocks of 4 along the kernels' last axis (weight by weight in scaled_prediction/kernel)" in (
        compression.format_report(report).splitlines()[0])
    rows = report["rows"]
    assert rows["weights_gzip_bytes"]["ratio"] < 0.9 and rows["param_bytes"]["ratio"] == 1.0
    model = zoo.load_model(tmp_path / "p50" / "model.keras")
    kernels = [model.get_layer(n).kernel.numpy() for n in ("hidden_0", "hidden_1", "scaled_prediction")]
    for kernel in kernels:  # Every layer at the target, the masks gone.
        assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.5 / kernel.size + 1e-9)
    for kernel in kernels[:2]:  # Whole blocks of 4 consecutive weights.
        zeros = (kernel == 0).reshape(-1, 4)
        assert np.all(zeros == zeros[:, :1])
    assert [w.path for w in model.weights] == [w.path for w in mlp.model.weights]
    history = json.load(open(tmp_path / "p50" / "history.json"))
    assert len(history["loss"]) == 2
    config = json.load(open(tmp_path / "p50" / "config.json"))["compression"]
    assert config["prune_block"] == 4 and config["prune_block_fallback"] == ["scaled_prediction/kernel"]


def test_one_shot_pruning_weight_by_weight(mlp, tmp_path):
    report = compression.compress(mlp.dir, prune=0.5, prune_block=1, fine_tune_epochs=0, out=str(tmp_path / "p50"))
    assert report["method"] == "pruned50" and report["prune_block"] == 1 and report["prune_block_fallback"] is None
    assert report["sparsity"] == pytest.approx(0.5, abs=0.01) and report["fine_tune_epochs"] == 0
    assert "weight by weight, measured sparsity 0.5" in compression.format_report(report).splitlines()[0]
    kernel = zoo.load_model(tmp_path / "p50" / "model.keras").get_layer("hidden_1").kernel.numpy()
    original = mlp.model.get_layer("hidden_1").kernel.numpy()
    np.testing.assert_array_equal(kernel != 0, compression.magnitude_mask(original, 0.5) == 1)


def test_a_block_that_divides_no_kernel_fails_before_writing(mlp, tmp_path):
    with pytest.raises(ValueError, match=r"7 divides the last axis of none of the model's prunable kernels "
                                         r"\(their last axes: 1, 64\)"):
        compression.compress(mlp.dir, prune=0.5, prune_block=7, out=str(tmp_path / "p"))
    assert os.listdir(tmp_path) == []


def test_the_weights_file_leaves_out_a_nested_models_optimizer(tmp_path):
    import h5py
    import keras

    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(64)])
    inner.compile(optimizer="adam", loss="mse")
    inner.fit(np.ones((4, 3)), np.ones((4, 64)), verbose=0)  # Builds Adam's slots.
    x = keras.Input((3,))
    outer = keras.Model(x, inner(x))
    size, _ = compression.weights_file_sizes(outer, str(tmp_path))
    (path,) = tmp_path.iterdir()
    assert path.stat().st_size == size
    with h5py.File(path) as f:
        names = []
        f.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    assert names == ["layers/sequential/layers/dense/vars/0", "layers/sequential/layers/dense/vars/1"]
    assert inner.optimizer is not None and inner.optimizer.variables  # Put back.


@pytest.mark.parametrize("mode", ["int4", "float8"])
def test_other_modes(mlp, mode, tmp_path):
    report = compression.compress(mlp.dir, quantize=mode, out=str(tmp_path / mode))
    assert report["quantize"] == mode and np.isfinite(report["rows"]["test_mse"]["compressed"])
    if mode == "int4":
        assert report["rows"]["param_bytes"]["ratio"] < 0.5


def _cli(*args):
    return subprocess.run([*ZOO, *map(str, args)], capture_output=True, text=True, env=zoo_env(), timeout=600)


def test_bad_options_write_nothing(mlp, tmp_path):
    cases = [
        (["--quantize", "int9"], "Unknown quantization mode 'int9'. Did you mean 'int8'? Accepted: int8, int4, float8."),
        (["--prune", "1.0"], "the sparsity must be a number in [0, 1). Received: prune=1.0."),
        (["--prune", "-0.1"], "Received: prune=-0.1."),
        ([], "Nothing to compress"),
        (["--quantize", "int8", "--fine-tune-epochs", "-1"], "fine_tune_epochs"),
        (["--prune", "0.5", "--prune-block", "0"],
         "the block must be an int >= 1 (weights in a block along the kernel's last axis; "
         "1 prunes weight by weight). Received: prune_block=0."),
        (["--quantize", "int8", "--prune-block", "4"], "`prune_block` applies to pruning only"),
        (["--prune", "0.5", "--prune-block", "2.5"], "argument --prune-block: invalid int value: '2.5'"),
    ]
    for flags, message in cases:
        proc = _cli("compress", mlp.dir, *flags, "--out", tmp_path / "x")
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    proc = _cli("compress", mlp.dir, "--quantize", "int8", "--out", taken)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps(mlp.config))
    proc = _cli("compress", unfinished, "--quantize", "int8")
    assert proc.returncode == 2 and "has not finished" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["taken", "unfinished"] and os.listdir(taken) == []


def test_a_compressed_run_is_not_compressed_again(mlp_int8):
    with pytest.raises(ValueError, match="compressed already"):
        compression.compress(mlp_int8["dir"], quantize="int8", out=mlp_int8["dir"] + "-again")


PLAIN_KERAS_HUB = r"""
import json, sys
import numpy as np, keras_hub
lm = keras_hub.models.GPT2CausalLM.from_preset(sys.argv[1])
x = dict(np.load(sys.argv[2]))
logits = lm(x, training=False)
print(json.dumps({"int8_weights": sum(1 for w in lm.backbone.weights if str(w.dtype) == "int8"),
                  "logits": np.asarray(logits).tolist(),
                  "zoo": any(m.split(".")[0] == "zoo" for m in sys.modules)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n in TINY if n != "mlp_regressor"))
def test_int8_of_every_model_generates_and_exports(root, name, tmp_path):
    run = tiny_run(name, root)
    report = compression.compress(run.dir, quantize="int8", out=str(tmp_path / "int8"))
    quality = QUALITY.get(name)
    if quality:
        assert np.isfinite(report["rows"][quality]["compressed"])
    assert report["rows"]["param_bytes"]["ratio"] < 1.0
    assert report["kept_in_float"]["quantized_params"]
    # Pruning fine-tunes through the task's own fit (GPT-2's token windows, the GAN's step).
    pruned = compression.compress(run.dir, prune=0.3, fine_tune_epochs=1, out=str(tmp_path / "p30"), verbose=0)
    assert pruned["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert pruned["rows"]["weights_gzip_bytes"]["ratio"] < 1.0
    info = zoo.export(report["dir"], "saved_model", out=str(tmp_path / "sm"))
    assert info["max_abs_diff"] <= info["tolerance"]
    out = tmp_path / ("sample.png" if name == "dcgan" else "sample.txt")
    flags = ["--prompt", "The quick", "--max-length", "24"] if name == "gpt2_textgen" else ["--num-images", "4"]
    if name in ("dcgan", "gpt2_textgen"):
        proc = subprocess.run([*ZOO, "generate", report["dir"], *flags, "--out", out],
                              capture_output=True, text=True, env=zoo_env(), timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert out.stat().st_size > 0
    if name == "gpt2_textgen":
        # The quantized preset reloads in plain keras-hub, without zoo, same logits.
        model = zoo.load_model(os.path.join(report["dir"], "model.keras"))
        config = zoo.get_config(name, **run.config["model"])
        x = zoo.registry.get_entry(name).task.example_input(config, 2)
        np.savez(tmp_path / "x.npz", **x)
        env = {k: v for k, v in zoo_env().items() if k != "PYTHONPATH"}
        proc = subprocess.run([sys.executable, "-c", PLAIN_KERAS_HUB, os.path.join(report["dir"], "preset"),
                               tmp_path / "x.npz"], capture_output=True, text=True, env=env, cwd="/", timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        # Every kernel and the token embedding: 6 per layer, 1 embedding.
        assert got["int8_weights"] == 6 * config.num_layers + 1 and not got["zoo"]
        np.testing.assert_allclose(np.array(got["logits"]), np.asarray(model(x, training=False)), atol=1e-4)
