"""`zoo export`: every model to every format, each checked in a fresh process.

One tiny run per registered model is shared by the module. Every export
runs its own check (a fresh process without zoo, the Keras model's outputs
on real inputs); the tests also load the files the way a user's runtime
does, and check the failures: a bad format, an unfinished run, an existing
output directory, an export that does not reproduce its model.
LiteRT exports go through the CLI in a subprocess: TF 2.21's converter
leaks memory (tensorflow#122598).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import zoo
from conftest import ZOO, zoo_env
from zoo import exports

TINY = {name: zoo.registry.get_entry(name).tiny for name in zoo.list_models()}


def text_folder(root):
    """Three small documents (~5 KB) for a tiny GPT-2 run."""
    words = ("the quick brown fox jumps over a lazy dog while the list of items grows "
             "and python keeps every value in order so that code reads well").split()
    folder = root / "texts"
    folder.mkdir(exist_ok=True)
    for k in range(3):
        lines = [" ".join(words[(i * 7 + k * 3 + j) % len(words)] for j in range(9)).capitalize() + "."
                 for i in range(24)]
        (folder / f"doc{k}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def tiny_run(name, root, **extra):
    """A finished tiny run of `name` under `root`: a few steps on small data."""
    kwargs = dict(epochs=1, strategy="default", verbose=0, run_dir=str(root / name), **TINY[name])
    if name == "mlp_regressor":
        kwargs.pop("input_dim")  # friedman1 has 10 features.
        kwargs.update(epochs=3, data_options={"num_train": 400})
    elif name == "gpt2_textgen":
        kwargs.update(data=str(text_folder(root)), batch_size=8, max_sequence_length=32)
    elif name == "dcgan":
        kwargs.update(batch_size=128)
    kwargs.update(extra)
    return zoo.train(name, **kwargs)


class _Runs(dict):
    """Tiny runs by model name, each trained on first use."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, name):
        self[name] = tiny_run(name, self.root)
        return self[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    old = os.environ.get("ZOO_CACHE_DIR")
    os.environ["ZOO_CACHE_DIR"] = str(root / "cache")
    yield _Runs(root)
    if old is None:
        os.environ.pop("ZOO_CACHE_DIR", None)
    else:
        os.environ["ZOO_CACHE_DIR"] = old


def _export(run_dir, fmt, out):
    """Python for SavedModel and ONNX; the CLI in a subprocess for LiteRT."""
    if fmt != "litert":
        return zoo.export(run_dir, fmt, out=str(out))
    proc = subprocess.run([*ZOO, "export", run_dir, "--format", fmt, "--out", str(out)],
                          capture_output=True, text=True, env=zoo_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checked in a fresh process" in proc.stdout
    return json.loads((out / "export.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("fmt", exports.FORMATS)
@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_exports_to_every_format(runs, name, fmt, tmp_path):
    run = runs[name]
    out = tmp_path / "out"
    info = _export(run.dir, fmt, out)
    assert 0 <= info["max_abs_diff"] <= info["tolerance"]
    assert info["format"] == fmt and info["model_name"] == name
    assert info["num_examples"] == exports.NUM_EXAMPLES
    expected = {"saved_model": out / "1" / "saved_model.pb", "litert": out / "model.tflite",
                "onnx": out / "model.onnx"}[fmt]
    assert expected.exists()
    assert sorted(os.listdir(out)) == sorted(["export.json", expected.relative_to(out).parts[0]])
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def _fresh(code, *args):
    """Runs `code` in a fresh interpreter with no zoo on its path; its last line as JSON."""
    env = {k: v for k, v in zoo_env().items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, env=env, cwd="/", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


SERVE_RAW_FEATURES = r"""
import json, sys
import numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
x = np.load(sys.argv[2])
out = serve(features=tf.constant(x))
print(json.dumps({"keys": sorted(out), "y": out["output_0"].numpy().tolist(),
                  "zoo": any(m.split(".")[0] == "zoo" for m in sys.modules)}))
"""


def test_saved_model_serves_raw_features_in_raw_units(runs, tmp_path):
    """TF Serving's layout and signature: raw features in, the target's units out."""
    run = runs["mlp_regressor"]
    out = tmp_path / "serving" / "mlp"
    info = zoo.export(run.dir, "saved_model", out=str(out))
    assert info["signature"]["inputs"] == {"features": {"dtype": "float32", "shape": [None, 10]}}
    assert info["runtime"]["tensorflow"] and info["checked_on"].startswith("the first 8 rows of the test split")
    task = zoo.registry.get_entry("mlp_regressor").task
    data = exports.load_run_data(run.dir, *exports.open_run(run.dir)[1:])
    x, y = data.arrays["test"]
    np.save(tmp_path / "x.npy", x[:16])
    got = _fresh(SERVE_RAW_FEATURES, out / "1", tmp_path / "x.npy")
    assert got["keys"] == ["output_0"] and not got["zoo"]
    keras_prediction = run.model.predict(x[:16], verbose=0)
    np.testing.assert_allclose(np.array(got["y"]), keras_prediction, rtol=1e-4, atol=1e-4)
    # Raw units: the predictions are on the target's scale, not normalized.
    assert abs(np.mean(got["y"]) - np.mean(y)) < 3 * np.std(y)
    assert task.serving_model(run.model) is run.model


SERVE_NOISE_ONNX = r"""
import json, sys
import numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
noise = np.random.default_rng(0).standard_normal((5, int(sys.argv[2]))).astype("float32")
images = session.run(None, {session.get_inputs()[0].name: noise})[0]
print(json.dumps({"name": session.get_inputs()[0].name, "shape": list(images.shape),
                  "min": float(images.min()), "max": float(images.max()),
                  "zoo": any(m.split(".")[0] == "zoo" for m in sys.modules)}))
"""


def test_dcgan_onnx_turns_noise_into_unit_interval_images(runs, tmp_path):
    run = runs["dcgan"]
    config = zoo.get_config("dcgan", **run.config["model"])
    info = zoo.export(run.dir, "onnx", out=str(tmp_path / "onnx"))
    got = _fresh(SERVE_NOISE_ONNX, info["path"], config.latent_dim)
    assert got["name"] == "noise" and not got["zoo"]
    assert got["shape"] == [5, config.image_height, config.image_width, config.channels]
    assert 0.0 <= got["min"] <= got["max"] <= 1.0


def test_an_export_that_does_not_reproduce_the_model_is_an_error(runs, tmp_path, monkeypatch):
    run = runs["mlp_regressor"]
    real = exports.verify

    def off_by_one(format, path, inputs, expected):
        return real(format, path, inputs, expected + 1.0)

    monkeypatch.setattr(exports, "verify", off_by_one)
    with pytest.raises(exports.ExportMismatchError, match="does not reproduce the model: max abs difference 1"):
        zoo.export(run.dir, "onnx", out=str(tmp_path / "bad"))
    assert os.listdir(tmp_path) == []


def _cli(*args):
    return subprocess.run([*ZOO, *map(str, args)], capture_output=True, text=True, env=zoo_env(), timeout=600)


def test_bad_input_is_refused_before_anything_is_written(runs, tmp_path):
    run = runs["mlp_regressor"]
    proc = _cli("export", run.dir, "--format", "onxx")
    assert proc.returncode == 2
    assert "Unknown export format 'onxx'. Did you mean 'onnx'? Accepted: saved_model, litert, onnx." in proc.stderr
    assert "Traceback" not in proc.stderr
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps(run.config))
    proc = _cli("export", unfinished, "--format", "onnx")
    assert proc.returncode == 2 and "has not finished" in proc.stderr
    proc = _cli("export", tmp_path / "nowhere", "--format", "onnx")
    assert proc.returncode == 2 and "not found" in proc.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    proc = _cli("export", run.dir, "--format", "onnx", "--out", taken)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["taken", "unfinished"] and os.listdir(taken) == []
    assert not os.path.exists(os.path.join(run.dir, "export"))
