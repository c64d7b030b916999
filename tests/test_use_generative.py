"""`zoo evaluate` and `zoo predict` on the generative models: dcgan's FID
against other images, gpt2_textgen's perplexity and bits per byte on other
text. One tiny run of each is shared by the tests."""

import json
import os
import subprocess

import numpy as np
import pytest

import zoo
from conftest import ZOO, zoo_env
from test_dcgan import TINY as GAN_TINY, _fake_mnist, cache  # noqa: F401  `cache` is a fixture.
from test_gpt2_textgen import TINY as GPT_TINY, _text_dir
from zoo.data import images as images_lib
from zoo.metrics import text as text_metrics


def zoo_cli(*args):
    return subprocess.run([*ZOO, *map(str, args)], env=zoo_env(), capture_output=True, text=True)


@pytest.fixture(scope="module")
def gan(cache, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("gan")
    return zoo.train("dcgan", epochs=1, batch_size=128, seed=3, run_dir=root / "run", verbose=0, **GAN_TINY), root


@pytest.fixture(scope="module")
def lm(cache, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("lm")
    folder = _text_dir(root)
    run = zoo.train("gpt2_textgen", data=str(folder), epochs=1, batch_size=8, learning_rate=3e-3,
                    jit_compile=False, run_dir=root / "run", verbose=0, **GPT_TINY)
    return run, root, folder


def test_dcgan_evaluate_on_its_own_data_reproduces_its_metrics(gan):
    run, _ = gan
    record = zoo.load_run(run.dir).evaluate("digits")
    assert record["own_data"] and record["split"] == "held-out" and record["num_examples"] == 360
    assert set(record["metrics"]) == set(run.metrics) - {k for k in run.metrics if k.startswith("final_")} - {
        "epochs_trained"}
    for key, value in record["metrics"].items():
        assert value == run.metrics[key], key  # The ceiling too: the untrained generator is rebuilt exactly.


@pytest.mark.slow
def test_cli_dcgan_evaluate_against_an_image_folder(gan, cache):  # noqa: F811
    from sklearn.datasets import load_digits

    run, root = gan
    folder = root / "pngs"
    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images[:300], digits.target[:300])):
        os.makedirs(folder / str(label), exist_ok=True)
        images_lib.save_png(np.round(image / 16 * 255).astype("uint8")[..., None], folder / str(label) / f"{i}.png")
    out = zoo_cli("evaluate", run.dir, "--data", folder)
    assert out.returncode == 0, out.stderr
    assert "Evaluation 'pngs'" in out.stdout and "(all of it, 60 examples)" in out.stdout
    record = json.loads(open(os.path.join(run.dir, "evaluations", "pngs.json")).read())
    metrics = record["metrics"]
    # Real digits are close to the run's classifier's view of digits; noise from an untrained generator is not.
    assert metrics["fid_real_floor"] < metrics["fid_untrained_ceiling"] / 5
    assert metrics["fid_num_samples"] == 60 and 0 < metrics["fid"]
    assert metrics["fid_progress"] == pytest.approx(
        (metrics["fid_untrained_ceiling"] - metrics["fid"]) / (metrics["fid_untrained_ceiling"] - metrics["fid_real_floor"]))
    assert os.listdir(os.path.join(run.dir, "logs", "evaluations", "pngs"))


def test_dcgan_refuses_images_of_another_size_and_predict(gan, tmp_path, monkeypatch):
    run, _ = gan
    data_dir = tmp_path / "tfds"
    _fake_mnist(data_dir, monkeypatch)
    before = sorted(os.listdir(os.path.join(run.dir, "evaluations"))) if os.path.isdir(
        os.path.join(run.dir, "evaluations")) else []
    with pytest.raises(ValueError, match=r"The images of 'mnist:test' are 28x28x1 .*makes 8x8x1 images"):
        zoo.load_run(run.dir).evaluate("mnist:test", data_options={"tfds_data_dir": str(data_dir)})
    with pytest.raises(ValueError, match=r"Unknown split 'valid' of 'mnist'. Accepted: train, test"):
        zoo.load_run(run.dir).evaluate("mnist:valid", data_options={"tfds_data_dir": str(data_dir)})
    after = sorted(os.listdir(os.path.join(run.dir, "evaluations"))) if os.path.isdir(
        os.path.join(run.dir, "evaluations")) else []
    assert after == before
    with pytest.raises(ValueError, match=r"does not apply to this run.*Use `zoo generate RUN` instead"):
        zoo.load_run(run.dir).predict(np.zeros((2, 8)))


def test_gpt2_evaluate_on_its_own_corpus_reproduces_its_metrics(lm):
    run, _, folder = lm
    record = zoo.load_run(run.dir).evaluate(str(folder))
    assert record["own_data"] and record["split"] == "validation"
    for key in ("val_perplexity", "val_bits_per_byte", "xz_bits_per_byte", "bits_per_byte_vs_xz",
                "val_tokens", "val_bytes"):
        assert record["metrics"][key] == run.metrics[key], key


@pytest.mark.slow
def test_cli_gpt2_evaluate_on_a_text_file(lm):
    run, root, _ = lm
    text = "The list of items grows while the quick fox jumps over the lazy dog.\n" * 40
    path = root / "other.txt"
    path.write_text(text, encoding="utf-8")
    out = zoo_cli("evaluate", run.dir, "--data", path, "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["name"] == "other" and record["split"] == "all" and not record["own_data"]
    metrics = record["metrics"]
    raw = text.encode() + b"\x00"  # The byte stream of one document, as training measures it.
    assert metrics["val_bytes"] == len(raw)
    assert metrics["xz_bits_per_byte"] == pytest.approx(text_metrics.xz_bits_per_byte(raw))
    assert metrics["bits_per_byte_vs_xz"] == pytest.approx(metrics["val_bits_per_byte"] / metrics["xz_bits_per_byte"])
    assert 1 < metrics["val_perplexity"] < GPT_TINY["vocabulary_size"] * 2
    assert os.path.exists(os.path.join(run.dir, "evaluations", "other.json"))


def test_gpt2_refuses_unreadable_text_and_predict(lm, tmp_path):
    run, _, _ = lm
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"Cannot read '.*latin1.txt' as UTF-8"):
        zoo.load_run(run.dir).evaluate(bad)
    assert not os.path.exists(os.path.join(run.dir, "evaluations", "latin1.json"))
    with pytest.raises(ValueError, match=r"does not apply to this run.*Use `zoo generate RUN` instead"):
        zoo.load_run(run.dir).predict(str(bad), out=tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def test_compare_puts_runs_of_different_models_side_by_side(gan, lm):
    from zoo import compare

    (gan_run, _), (lm_run, _, _) = gan, lm
    table = compare.compare([gan_run.dir, lm_run.dir])
    assert [r["model"] for r in table["runs"]] == ["dcgan", "gpt2_textgen"]
    assert "model.latent_dim" in table["fields"] and "model.num_layers" in table["fields"]
    lines = {line.split()[0]: line.split()[1:] for line in compare.format_table(table).splitlines()}
    assert lines["model"] == ["dcgan", "gpt2_textgen"]
    assert lines["epochs_trained"] == ["1", "1"]  # A shared metric: one row, both runs.
    assert len(lines["fid"]) == 1 and len(lines["val_perplexity"]) == 1  # Each model's own: one value.
