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
def test_every_model_exports_to_every_format(runs, name, fmt, tmp_path, request):
    run = runs[name]
    if (name, fmt) == ("gpt2_textgen", "saved_model"):
        _, out, info = request.getfixturevalue("gpt2_saved_model")  # The same export, made once.
    else:
        out = tmp_path / "out"
        info = _export(run.dir, fmt, out)
    assert 0 <= info["max_abs_diff"] <= info["tolerance"]
    assert info["format"] == fmt and info["model_name"] == name
    assert info["num_examples"] == exports.NUM_EXAMPLES
    expected = {"saved_model": out / "1" / "saved_model.pb", "litert": out / "model.tflite",
                "onnx": out / "model.onnx"}[fmt]
    assert expected.exists()
    assert sorted(os.listdir(out)) == sorted(["export.json", expected.relative_to(out).parts[0]])
    assert not [p for p in os.listdir(out.parent) if p.startswith(".tmp-")]


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

    def off_by_one(format, path, inputs, expected, **kwargs):
        return real(format, path, inputs, expected + 1.0, **kwargs)

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


# GPT-2's `generate` signature: text in, text out, against zoo's greedy generation.

@pytest.fixture(scope="module")
def gpt2_saved_model(runs, tmp_path_factory):
    """The tiny GPT-2 run and its SavedModel export (checked by `zoo export` itself)."""
    run = runs["gpt2_textgen"]
    out = tmp_path_factory.mktemp("gpt2") / "saved_model"
    return run, out, zoo.export(run.dir, "saved_model", out=str(out))


GENERATE = r"""
import json, sys
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
prompts, length = json.loads(sys.argv[2]), int(sys.argv[3])
def text(out):
    return [t.decode("utf-8") for t in out["text"].numpy()]
got = {"default": text(loaded.signatures["generate"](prompts=tf.constant(prompts))),
       "short": text(loaded.signatures["generate_max_length"](
           prompts=tf.constant(prompts), max_length=tf.constant(length))),
       "signatures": sorted(loaded.signatures)}
try:
    loaded.signatures["generate_max_length"](prompts=tf.constant(prompts), max_length=tf.constant(3))
except tf.errors.InvalidArgumentError as e:
    got["too_long"] = e.message
got["imported"] = sorted(m for m in sys.modules if m.split(".")[0] in ("zoo", "keras_hub", "tensorflow_text"))
print(json.dumps(got))
"""


def test_saved_model_generate_gives_zoo_greedy_text(gpt2_saved_model):
    """Prompts in, prompt and greedy continuation out, in a process with TensorFlow
    alone: the same text as zoo's greedy generation, for each prompt its own."""
    from zoo.models.gpt2_textgen import export_generate

    run, out, info = gpt2_saved_model
    generate = info["signatures"]["generate"]
    assert generate["matches"] and generate["rounding_ties"] == [] and generate["custom_ops"] == []
    from zoo import cli

    # What `zoo export` prints of it: the serving check, then each signature's.
    printed = cli.export_summary(info).splitlines()
    assert printed[0].startswith("Wrote saved_model export to ") and len(printed) == 3
    assert printed[1].startswith(f"Signature `generate` reproduces zoo on {generate['num_examples']} inputs (")
    assert generate["inputs"] == {"prompts": {"dtype": "string", "shape": [None]}}
    assert generate["outputs"] == {"text": {"dtype": "string", "shape": [None]}}
    assert info["signatures"]["generate_max_length"]["inputs"]["max_length"] == {"dtype": "int32", "shape": []}
    length = generate["max_length"]
    assert length == 32 and [e["prompt"] for e in generate["examples"]][-1] == ""
    prompts = ["The list of", "python keeps", "é  <|endoftext|>x"]
    got = _fresh(GENERATE, out / "1", json.dumps(prompts), 12)
    assert got["imported"] == []
    assert {"serving_default", "generate", "generate_max_length"} <= set(got["signatures"])
    assert got["default"] == export_generate.zoo_greedy_text(os.path.join(run.dir, "preset"), prompts, length)
    for prompt, text, short in zip(prompts, got["default"], got["short"]):
        # The special token in the prompt is dropped, as keras-hub's detokenizer does.
        prompt = prompt.replace("<|endoftext|>", "")
        # 12 tokens in all: a shorter continuation of the same greedy text.
        assert text.startswith(short) and len(prompt) < len(short) < len(text) and short.startswith(prompt)
    assert "so nothing is left to generate" in got["too_long"]


def _bpe_tokenizer(tmp_path):
    """A byte-level BPE with merges across spaces and newlines (trained on
    this package's code, as zoo trains a run's), in keras-hub's `GPT2Tokenizer`."""
    import keras_hub

    from zoo.models.gpt2_textgen import tokenizer as tokenizer_lib

    text = [open(exports.__file__, encoding="utf-8").read(), "héllo wörld ✓ 12345 it's"]
    files = tokenizer_lib.train_tokenizer(text, 600, str(tmp_path / "bpe"))
    return keras_hub.models.GPT2Tokenizer(vocabulary=files[0], merges=files[1])


TRICKY = ["The list of", "def main(x):\n    return x  + 1", "a  b", "", "    if x:\n        pass",
          "héllo wörld ✓ 日本 \u00a0\r\n", "a<|endoftext|><|endoftext|>b<|endoftext|>", "<|pad|> 12345 it's"]


def test_graph_tokenizer_is_keras_hubs_eager_tokenizer(tmp_path):
    """The graph's ids are those zoo trains and generates with: keras-hub's
    eager path, which does not pre-split (its graph path does, and differs)."""
    import tensorflow as tf

    from zoo.models.gpt2_textgen import export_generate

    tokenizer = _bpe_tokenizer(tmp_path)
    graph = export_generate.GraphTokenizer(tokenizer)
    got = tf.function(graph.tokenize)(tf.constant(TRICKY)).to_list()
    assert got == [[int(i) for i in tokenizer(s)] for s in TRICKY]
    assert got[2] == [tokenizer.token_to_id(t) for t in ("a", "ĠĠ", "b")]
    ids = tf.ragged.constant(got).to_tensor(-1)
    text = [t.decode("utf-8") for t in graph.detokenize(ids, ids >= 0).numpy()]
    assert text == TRICKY == tokenizer.detokenize(got)
    # Bytes that are not UTF-8 (a cut multi-byte character) read as U+FFFD, as in keras-hub.
    chars = export_generate.byte_characters()
    cut = [[tokenizer.token_to_id(chars[b]) for b in "€".encode() + b"\xe2\x82"]]
    assert graph.detokenize(tf.constant(cut), tf.constant([[True] * 5])).numpy()[0].decode() == "€\ufffd"
    assert tokenizer.detokenize(cut) == ["€\ufffd"]


def test_generate_graph_follows_zoo_on_an_untrained_model(tmp_path):
    """Random weights make every prompt continue differently: the graph's
    greedy loop gives zoo's text for each."""
    import keras
    import keras_hub
    import tensorflow as tf

    from zoo.models.gpt2_textgen import decoding, export_generate, generation

    keras.utils.set_random_seed(0)
    tokenizer = _bpe_tokenizer(tmp_path)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer=tokenizer, sequence_length=16)
    lm = decoding.install(keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor))
    lm.compile(sampler="greedy")
    prompts = ["The list of", "def main(x):", "", "a  b"]
    generator = export_generate.Generator(lm, 24)
    want = generation.generate_text(lm, prompts, 24)
    got = [t.decode("utf-8") for t in generator.default(tf.constant(prompts))["text"].numpy()]
    assert got == want
    assert len({t[len(p):] for p, t in zip(prompts, want)}) == len(prompts)
    # Where nothing parts, or the text is not the graph's, there is no tie to explain.
    explain = export_generate.RoundingTie(lm, generator, prompts, 24)
    assert explain("text", 1, got[1]) is None and explain("text", 1, got[1] + "x") is None


def test_a_generate_signature_that_does_not_reproduce_zoo_is_an_error(gpt2_saved_model):
    """What the fresh process returned, against other text than zoo's: refused."""
    run, out, info = gpt2_saved_model
    examples = info["signatures"]["generate"]["examples"]
    got = {"text": [e["text"] for e in examples]}
    generate = zoo.task.ServingSignature(
        "generate", None, inputs={"prompts": [e["prompt"] for e in examples]},
        expected={"text": ["The list of cats", *got["text"][1:]]}, checked_on="the run's prompts")
    with pytest.raises(exports.ExportMismatchError, match=r"`generate` signature does not reproduce zoo: "
                       r"for input 0 \('The list of'\) its `text` is 'The list of.*', zoo's 'The list of "
                       r"cats'; they differ from character 11 on"):
        exports._check_signature(generate, got)
    with pytest.raises(exports.ExportMismatchError, match=r"returns \['output_0'\]; expected \['text'\]"):
        exports._check_signature(generate, {"output_0": got["text"]})


def test_a_text_that_parts_from_zoo_at_a_rounding_tie_is_accepted_and_recorded():
    """zoo's loop runs under XLA, the graph's does not: where the two best
    tokens' logits are within the logits' tolerance, either pick is greedy."""
    import tensorflow as tf

    function = tf.function(lambda prompts: {"text": prompts},
                           input_signature=[tf.TensorSpec([None], tf.string, name="prompts")])

    def signature(gap, dtype):
        tie = {"index": 0, "token": 5, "zoo": "Ġand", "export": "Ġis", "logit_gap": gap,
               "logit_scale": 8.0, "dtype": dtype}
        return zoo.task.ServingSignature("generate", function, inputs={"prompts": ["Return a"]},
                                         expected={"text": ["Return a and"]}, checked_on="a prompt",
                                         explain=lambda key, i, value: dict(tie))

    got = {"text": ["Return a is"]}
    # bfloat16 keeps 8 bits: two units in the last place of 8.0 are 0.125.
    check = exports._check_signature(signature(0.1, "bfloat16"), got)
    assert check["matches"] and check["rounding_ties"][0]["tolerance"] == 0.125
    assert check["rounding_ties"][0]["export"] == "Ġis"
    with pytest.raises(exports.ExportMismatchError, match="logits are 0.2 apart, more than the tolerance 0.125"):
        exports._check_signature(signature(0.2, "bfloat16"), got)
    with pytest.raises(exports.ExportMismatchError, match="logits are 0.1 apart, more than the tolerance 0.008"):
        exports._check_signature(signature(0.1, "float32"), got)
