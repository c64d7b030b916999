"""gpt2_textgen: corpus, tokenizer, training, presets, generation, metrics.

Tiny configs throughout (2 layers, hidden 16, a ~300-token BPE, 16-token
windows) on a few kilobytes of text; one training run is shared.
"""

import argparse
import math
import os

import pytest

from zoo import hub
from zoo.data import text as corpus
from zoo.metrics import text as text_metrics
from zoo.models import gpt2_textgen as g
from zoo.models.gpt2_textgen import generation
from zoo.models.gpt2_textgen import tokenizer as tokenizer_lib
from zoo.models.gpt2_textgen.task import GPT2TextGenTask

TINY = dict(vocabulary_size=300, num_layers=2, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=64, sequence_length=16)
PROMPTS = ["The quick", "A list"]


def _text_dir(root):
    """A folder of three small documents (~5 KB) with varied words."""
    words = ("the quick brown fox jumps over a lazy dog while the list of items grows "
             "and python keeps every value in order so that code reads well").split()
    folder = root / "texts"
    folder.mkdir()
    for k in range(3):
        lines = [" ".join(words[(i * 7 + k * 3 + j) % len(words)] for j in range(9)).capitalize() + "."
                 for i in range(24)]
        (folder / f"doc{k}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run under the default strategy, shared by the tests below."""
    import zoo

    root = tmp_path_factory.mktemp("gpt2")
    os.environ["ZOO_CACHE_DIR"] = str(root / "cache")
    folder = _text_dir(root)
    run = zoo.train("gpt2_textgen", data=str(folder), epochs=2, batch_size=8, learning_rate=3e-3,
                    strategy="default", run_dir=str(root / "run"), verbose=0, **TINY)
    return run, folder


def test_tokenizer_round_trip(tmp_path):
    text = "def main():\n    print('héllo wörld')  # ok\n" * 20
    vocabulary, merges = tokenizer_lib.train_tokenizer([text], 300, str(tmp_path))
    tokenizer = tokenizer_lib.make_tokenizer(vocabulary, merges)
    assert tokenizer.token_to_id(tokenizer_lib.PAD_TOKEN) == 0 and tokenizer.pad_token_id == 0
    assert tokenizer.token_to_id(tokenizer_lib.END_TOKEN) == 1 and tokenizer.end_token_id == 1
    assert 258 < tokenizer.vocabulary_size() <= 300
    ids = tokenizer(text)
    assert len(ids) < len(text.encode()) / 2  # Merges were learned.
    assert tokenizer.detokenize(ids) == text


def test_corpus_split_is_fixed_and_disjoint(tmp_path):
    train, validation, name = corpus.read_corpus()
    again, validation_again, _ = corpus.read_corpus()
    assert name == "pydoc" and validation == validation_again and train == again
    assert not set(train) & set(validation)
    share = sum(map(len, validation)) / sum(map(len, train + validation))
    assert 0.05 < share < 0.2
    # One file is cut once, at a line break.
    (tmp_path / "one.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    train, validation, _ = corpus.read_corpus(str(tmp_path / "one.txt"))
    assert len(train) == len(validation) == 1 and validation[0].startswith("line ")
    assert train[0] + validation[0] == (tmp_path / "one.txt").read_text()
    # A glob reads every matching file.
    (tmp_path / "two.txt").write_text("more text\n" * 50)
    train, validation, _ = corpus.read_corpus(str(tmp_path / "*.txt"))
    assert len(train) + len(validation) == 2


def test_bad_inputs(tmp_path, monkeypatch):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="holds no text"):
        corpus.read_corpus(str(tmp_path / "empty.txt"))
    with pytest.raises(FileNotFoundError, match="not found"):
        corpus.read_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(FileNotFoundError, match="Did you mean 'imdb_reviews'"):
        corpus.read_corpus("imdb_review")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="UTF-8"):
        corpus.read_corpus(str(tmp_path / "bin.txt"))
    with pytest.raises(ValueError, match="Unknown data option 'tfds_dir'"):
        corpus.read_corpus(None, {"tfds_dir": "x"})
    with pytest.raises(FileNotFoundError, match="not in the tfds data dir"):
        corpus.read_corpus("tiny_shakespeare", {"tfds_data_dir": str(tmp_path / "tfds")})
    with pytest.raises(ValueError, match="Unknown sampler 'topp'. Did you mean 'top_p'"):
        generation.make_sampler("topp")
    with pytest.raises(ValueError, match="Unknown preset 'gpt2_base'"):
        generation.load_preset("gpt2_base")
    with pytest.raises(FileNotFoundError, match="Preset directory"):
        generation.load_preset(str(tmp_path / "nope"))
    # Offline, a built-in name fails at once with what to do instead.
    monkeypatch.setattr(hub, "kaggle_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(hub, "builtin_cached", lambda preset: False)
    with pytest.raises(ConnectionError, match="need the network.*save_to_preset"):
        generation.load_preset("gpt2_base_en")


def test_metrics_on_known_cases():
    import lzma

    scores = text_metrics.text_metrics(4 * math.log(2), 4, 2)
    assert scores["perplexity"] == pytest.approx(2.0)
    assert scores["bits_per_byte"] == pytest.approx(2.0)
    data = b"abcabcabc" * 1000
    assert text_metrics.xz_bits_per_byte(data) == 8 * len(lzma.compress(data, preset=9)) / len(data)
    assert text_metrics.xz_bits_per_byte(data) < 0.2 < text_metrics.xz_bits_per_byte(os.urandom(5000)) > 7.9
    # Windows cover every target of the stream exactly once.
    import numpy as np

    stream = np.arange(1, 41, dtype="int32")
    x, y, w = tokenizer_lib.validation_windows(stream, 16)
    assert w.sum() == 39 and sorted(y[w > 0].tolist()) == list(range(2, 41))
    assert (x["token_ids"][x["padding_mask"]] == stream[:40]).all()


def test_token_embedding_starts_at_the_configured_scale(tmp_path, monkeypatch):
    """keras-hub's 0.01 keeps a small model on the unigram plateau; zoo's
    builder draws the token embedding at `embedding_stddev` instead, and
    the same seed gives the same values."""
    import keras
    import numpy as np

    import zoo

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    files = tokenizer_lib.train_tokenizer(["some text to learn merges from, " * 40], 300, str(tmp_path / "bpe"))
    stds = {}
    for stddev in (0.05, 0.2):
        keras.utils.set_random_seed(0)
        model = g.gpt2_textgen(zoo.get_config("gpt2_textgen", embedding_stddev=stddev, **TINY),
                               tokenizer_files=files)
        stds[stddev] = np.asarray(model.backbone.token_embedding.embeddings)
    assert np.std(stds[0.05]) == pytest.approx(0.05, rel=0.1)
    assert np.std(stds[0.2]) == pytest.approx(0.2, rel=0.1)
    keras.utils.set_random_seed(0)
    again = g.gpt2_textgen(zoo.get_config("gpt2_textgen", **TINY), tokenizer_files=files)
    assert np.array_equal(np.asarray(again.backbone.token_embedding.embeddings), stds[0.05])


def test_uniform_model_scores_log_vocabulary(trained, tmp_path):
    """A model whose logits are all 0 has perplexity = vocabulary size."""
    import numpy as np
    import tensorflow as tf

    run, _ = trained
    model = generation.load_preset(os.path.join(run.dir, "preset"))
    embedding = model.backbone.token_embedding
    embedding.embeddings.assign(np.zeros(embedding.embeddings.shape, "float32"))
    stream = np.arange(2, 2 + 50, dtype="int32") % 250 + 2
    x, y, w = tokenizer_lib.validation_windows(stream, 16)
    nll, tokens = text_metrics.summed_nll(model, tf.data.Dataset.from_tensor_slices((x, y, w)).batch(2))
    vocabulary = model.backbone.vocabulary_size
    assert tokens == 49
    assert text_metrics.text_metrics(nll, tokens, 98)["perplexity"] == pytest.approx(vocabulary, rel=1e-5)
    assert text_metrics.text_metrics(nll, tokens, 98)["bits_per_byte"] == pytest.approx(49 * math.log2(vocabulary) / 98, rel=1e-5)


def test_training_run_writes_metrics_preset_and_samples(trained):
    run, _ = trained
    for key in ("val_perplexity", "val_bits_per_byte", "xz_bits_per_byte", "bits_per_byte_vs_xz"):
        assert math.isfinite(run.metrics[key]) and run.metrics[key] > 0
    assert run.metrics["val_perplexity"] < 300  # Better than uniform over the vocabulary.
    assert run.history["loss"][-1] < run.history["loss"][0]
    for path in ("preset/config.json", "preset/assets/tokenizer/vocabulary.json", "samples.txt", "metrics.json"):
        assert os.path.exists(os.path.join(run.dir, path)), path
    # The per-epoch text summary reached TensorBoard.
    import glob

    import tensorflow as tf

    tags = set()
    for path in glob.glob(os.path.join(run.dir, "logs", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {v.tag for v in event.summary.value}
    assert "samples/greedy" in tags


def test_plain_keras_hub_loads_preset_with_identical_greedy_output(trained):
    import keras_hub

    import zoo

    run, _ = trained
    preset = os.path.join(run.dir, "preset")
    plain = keras_hub.models.GPT2CausalLM.from_preset(preset)
    plain.compile(sampler="greedy")
    ours = zoo.get("gpt2_textgen", preset=preset)  # Compiled with greedy.
    assert "make_generate_function" in vars(ours)  # zoo.decoding's generate, not keras-hub's.
    expected = plain.generate(PROMPTS, max_length=24)
    assert list(ours.generate(PROMPTS, max_length=24)) == list(expected)
    assert list(run.model.generate(PROMPTS, max_length=24)) == list(expected)


def test_every_sampler_adds_text_without_recompiling(trained):
    run, _ = trained
    model = generation.load_preset(os.path.join(run.dir, "preset"))
    for name in generation.SAMPLERS:
        sampler = generation.make_sampler(name, temperature=0.8, top_k=5, top_p=0.9, num_beams=2, seed=1)
        outputs = generation.generate_text(model, PROMPTS, 24, sampler)
        assert len(outputs) == 2
        for prompt, output in zip(PROMPTS, outputs):
            # New text after the prompt: an end token that doubled as the pad
            # token used to stop generation at once.
            assert len(output) > len(prompt) + 2, (name, output)
        function = model.generate_function
        generation.generate_text(model, ["Another prompt"], 24)
        generation.generate_text(model, PROMPTS, 24)
        # keras-hub#779: the same max_length reuses the traced function.
        assert model.generate_function is function
        assert function.experimental_get_tracing_count() <= 2  # Batch 2, then batch 1.


def test_zoo_generate_is_reproducible_with_a_seed(trained, tmp_path, capsys):
    from zoo import cli

    run, _ = trained
    texts = []
    for k in range(2):
        out = tmp_path / f"out{k}.txt"
        args = argparse.Namespace(
            run=run.dir, prompt=PROMPTS, max_length=24, sampler="top_p", temperature=0.8,
            top_k=10, top_p=0.9, num_beams=4, seed=1, out=str(out), num_images=64,
        )
        assert cli.generate(args) == 0
        texts.append(out.read_text())
    assert texts[0] == texts[1] and texts[0].startswith(PROMPTS[0])
    args.max_length = 1000
    with pytest.raises(ValueError, match="max_length"):
        cli.generate(args)


def test_fine_tune_from_run_preset_under_mirrored(trained, tmp_path):
    """Mirrored `fit` with keras-hub's bool padding mask (keras#20585), from
    a local preset directory, on new data."""
    import zoo

    run, folder = trained
    new = tmp_path / "new.txt"
    new.write_text((folder / "doc1.txt").read_text() * 2)
    tuned = zoo.train("gpt2_textgen", data=str(new), preset=os.path.join(run.dir, "preset"), epochs=1,
                      batch_size=8, learning_rate=1e-3, strategy="mirrored",
                      run_dir=str(tmp_path / "tuned"), verbose=0, sequence_length=16)
    import json

    env = json.loads((tmp_path / "tuned" / "env.json").read_text())
    assert env["strategy"]["num_replicas_in_sync"] == 2
    assert tuned.config["model"]["hidden_dim"] == TINY["hidden_dim"]  # From the preset.
    assert math.isfinite(tuned.metrics["val_bits_per_byte"])
    assert os.path.exists(tmp_path / "tuned" / "preset" / "config.json")


def test_training_windows_move_every_epoch():
    import numpy as np

    task = GPT2TextGenTask()
    stream = np.arange(2, 2 + 400, dtype="int32")
    dataset = task.batch(tokenizer_lib.training_windows(stream, 16, (400 - 16) // 16, 0), 4, training=True)
    epochs = [sorted(int(x["token_ids"][i, 0]) for x, _, _ in dataset for i in range(4)) for _ in range(2)]
    assert epochs[0] != epochs[1]
    for x, y, w in dataset.take(1):
        assert (y.numpy()[:, :-1] == x["token_ids"].numpy()[:, 1:]).all()
        assert x["padding_mask"].dtype.name == "bool" and float(w.numpy().min()) == 1.0
