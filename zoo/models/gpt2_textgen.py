"""`gpt2_textgen`: GPT-2 text generation on keras-hub's `GPT2CausalLM`.

Data: `pydoc` (the default: Python's own documentation, which ships with
every CPython), `.txt` files, folders or globs, and the tfds datasets
`imdb_reviews` and `tiny_shakespeare` from the tfds data dir. Documents are
split into training and validation with a fixed seed.

The tokenizer of a model trained from scratch is a byte-level BPE trained
with the `tokenizers` package on the training split of the run. Its special
tokens are `<|pad|>` (id 0, which keras-hub's GPT-2 pads with) and
`<|endoftext|>` (id 1): if the end token had id 0, padding would read as
"end" and `generate` would stop at once and return only the prompt.

Each split is tokenized once into one stream, `<|endoftext|>` before every
document, and cut into windows of `sequence_length` tokens: no token is
lost to truncation or padding. Training windows start at a random offset
each epoch. The score is the validation set's bits per byte beside what
`xz -9` needs for the same bytes.
"""

import dataclasses
import glob
import hashlib
import json
import math
import os

from zoo import config as config_lib
from zoo import registry
from zoo.task import Data, Task, prefetch_fixed

PAD_TOKEN = "<|pad|>"
END_TOKEN = "<|endoftext|>"
BUILTIN_PRESET_HINT = "gpt2_base_en, gpt2_medium_en, gpt2_large_en, gpt2_extra_large_en"
EMBEDDED_DATA = "pydoc"
TFDS_DATASETS = ("imdb_reviews", "tiny_shakespeare")
DATA_OPTIONS = ("tfds_data_dir", "validation_fraction")
SAMPLERS = ("greedy", "top_k", "top_p", "beam")
# The validation split is the same for every run of a corpus, so runs with
# different training seeds are scored on the same bytes.
SPLIT_SEED = 0
VALIDATION_FRACTION = 0.1
NUM_SAMPLE_PROMPTS = 3
SAMPLE_MAX_LENGTH = 64


@dataclasses.dataclass(frozen=True)
class GPT2TextGenConfig:
    """Config of `gpt2_textgen`.

    Attributes:
        vocabulary_size: int. Tokens in the byte-level BPE vocabulary,
            including the 256 byte tokens and 2 special tokens; a small
            corpus may yield fewer. Defaults to 4096.
        num_layers: int. Transformer decoder layers. Defaults to 4.
        num_heads: int. Attention heads; must divide hidden_dim. Defaults
            to 4.
        hidden_dim: int. Width of the residual stream. Defaults to 256.
        intermediate_dim: int. Width of each feed-forward block. Defaults
            to 1024.
        max_sequence_length: int. Position embeddings, the longest context
            the model can see. Defaults to 256.
        sequence_length: int. Tokens per training example; at most
            max_sequence_length. Defaults to 128.
        dropout: float. Dropout rate, in [0, 1). Defaults to 0.1.
        embedding_stddev: float. Standard deviation of the token
            embedding's initial values, for a model trained from scratch.
            keras-hub's default, 0.01, leaves token rows half the size of
            the position embedding's (0.02), and a small model then sits on
            the unigram plateau for its first epochs; 0.05 does not.
            Defaults to 0.05.
    """

    vocabulary_size: int = 4096
    num_layers: int = 4
    num_heads: int = 4
    hidden_dim: int = 256
    intermediate_dim: int = 1024
    max_sequence_length: int = 256
    sequence_length: int = 128
    dropout: float = 0.1
    embedding_stddev: float = 0.05

    def __post_init__(self):
        config_lib.require(
            self.vocabulary_size >= 260, "vocabulary_size", self.vocabulary_size,
            "must be at least 260 (256 byte tokens, 2 special tokens and some merges)",
        )
        for field in ("num_layers", "num_heads", "hidden_dim", "intermediate_dim", "max_sequence_length"):
            config_lib.require(getattr(self, field) >= 1, field, getattr(self, field), "must be at least 1")
        config_lib.require(
            self.hidden_dim % self.num_heads == 0, "num_heads", self.num_heads,
            f"must divide hidden_dim={self.hidden_dim}",
        )
        config_lib.require(
            2 <= self.sequence_length <= self.max_sequence_length, "sequence_length",
            self.sequence_length, f"must be in [2, max_sequence_length={self.max_sequence_length}]",
        )
        config_lib.require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        config_lib.require(
            self.embedding_stddev > 0, "embedding_stddev", self.embedding_stddev, "must be positive"
        )


# ---------------------------------------------------------------------------
# Corpus: documents in, (train, validation) documents out.


def embedded_corpus():
    """Python's own documentation, as `{topic: text}`, from `pydoc_data`.

    It ships with every CPython (about 465,000 characters), so the default
    recipe needs no download.
    """
    from pydoc_data import topics

    return dict(sorted(topics.topics.items()))


def read_corpus(data=None, options=None):
    """Reads a corpus and splits it into training and validation documents.

    Args:
        data: str or None. `"pydoc"` (the default), `"imdb_reviews"`,
            `"tiny_shakespeare"`, or a `.txt` file, a folder of them
            (searched recursively) or a glob.
        options: dict. `tfds_data_dir` (str) and `validation_fraction`
            (float, 0.1 by default).

    Returns:
        `(train_documents, validation_documents, name)`.

    ```python
    train, validation, name = read_corpus("my_texts/")
    ```
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(DATA_OPTIONS))
    if unknown:
        raise ValueError(
            f"Unknown data option '{unknown[0]}' for gpt2_textgen."
            f"{config_lib.did_you_mean(unknown[0], DATA_OPTIONS)} Accepted: {', '.join(DATA_OPTIONS)}."
        )
    fraction = options.get("validation_fraction", VALIDATION_FRACTION)
    config_lib.require(
        isinstance(fraction, (int, float)) and 0 < fraction < 1, "validation_fraction",
        fraction, "must be a number in (0, 1)",
    )
    data = EMBEDDED_DATA if data is None else os.fspath(data)
    if data == EMBEDDED_DATA:
        documents = list(embedded_corpus().values())
    elif data in TFDS_DATASETS:
        splits = _read_tfds(data, options.get("tfds_data_dir"))
        if "validation" in splits:
            return splits["train"], splits["validation"], data
        documents = splits["train"]
    else:
        documents = _read_text_files(data)
    train, validation = split_documents(documents, fraction, data)
    return train, validation, data


def _read_text_files(path):
    known = (EMBEDDED_DATA,) + TFDS_DATASETS
    if glob.has_magic(path):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise FileNotFoundError(f"No files match the glob '{path}'.")
    elif os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(glob.escape(path), "**", "*.txt"), recursive=True))
        if not files:
            raise ValueError(
                f"Folder '{path}' has no .txt files. gpt2_textgen reads UTF-8 .txt files "
                "from a folder (recursively), a file or a glob."
            )
    elif os.path.isfile(path):
        files = [path]
    else:
        raise FileNotFoundError(
            f"Dataset '{path}' not found: it is no file, folder or glob, and no dataset "
            f"name.{config_lib.did_you_mean(path, known)} Datasets: {', '.join(known)}; "
            "or give .txt files."
        )
    documents = []
    for name in files:
        try:
            with open(name, encoding="utf-8") as f:
                documents.append(f.read())
        except UnicodeDecodeError as e:
            raise ValueError(f"Cannot read '{name}' as UTF-8 text ({e.reason} at byte {e.start}).") from None
        except OSError as e:
            raise ValueError(f"Cannot read '{name}': {e.strerror}.") from None
    if not any(d.strip() for d in documents):
        raise ValueError(
            f"'{path}' holds no text: {len(files)} file(s), all empty. gpt2_textgen needs "
            "UTF-8 text to train on."
        )
    return documents


def _read_tfds(name, data_dir=None):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(
            f"Dataset '{name}' needs tensorflow-datasets: pip install tensorflow-datasets."
        ) from None
    data_dir = os.path.expanduser(
        data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
    )
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"tfds dataset '{name}' is not in the tfds data dir '{data_dir}'. zoo does not "
            "download it; on a machine with network run `python -c \"import tensorflow_datasets "
            f"as tfds; tfds.load('{name}', data_dir='{data_dir}')\"`, or point "
            "--tfds-data-dir (data option tfds_data_dir) at a copy."
        )
    splits = {}
    wanted = {"train": "train", "validation": "validation"} if name == "tiny_shakespeare" else {"train": "train"}
    for key, split in wanted.items():
        texts = []
        for example in builder.as_dataset(split=split).as_numpy_iterator():
            texts.append(example["text"].decode("utf-8"))
        splits[key] = texts
    return splits


def split_documents(documents, fraction=VALIDATION_FRACTION, name="text"):
    """Splits documents into training and validation with `SPLIT_SEED`.

    Duplicates are dropped. Whole documents go to validation, in a seeded
    order, until they hold
    about `fraction` of the characters. A single document, or documents too
    large for that, are cut once at a line break instead.
    """
    import random

    # Duplicates (pydoc files some topics under two names) would put the
    # same text on both sides.
    documents = list(dict.fromkeys(d for d in documents if d.strip()))
    if not documents:
        raise ValueError(f"'{name}' holds no text; gpt2_textgen needs UTF-8 text to train on.")
    total = sum(len(d) for d in documents)
    target = fraction * total
    order = list(range(len(documents)))
    random.Random(SPLIT_SEED).shuffle(order)
    validation, size = set(), 0
    for i in order:
        if size >= target:
            break
        if size + len(documents[i]) <= 2 * target and len(validation) < len(documents) - 1:
            validation.add(i)
            size += len(documents[i])
    if size >= target / 2:
        return ([d for i, d in enumerate(documents) if i not in validation],
                [d for i, d in enumerate(documents) if i in validation])
    # Too few or too large documents: cut the text once, at a line break.
    text = "\n".join(documents)
    cut = int(len(text) * (1 - fraction))
    newline = text.rfind("\n", 0, cut)
    cut = newline + 1 if newline > len(text) // 2 else cut
    train, validation = text[:cut], text[cut:]
    if not train.strip() or not validation.strip():
        raise ValueError(
            f"'{name}' is too short to split into training and validation text "
            f"({len(text)} characters)."
        )
    return [train], [validation]


# ---------------------------------------------------------------------------
# Tokenizer.


def cache_dir():
    """Where zoo caches derived files: `$ZOO_CACHE_DIR` or `~/.cache/zoo`."""
    return os.environ.get("ZOO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "zoo")


def train_tokenizer(texts, vocabulary_size, directory):
    """Trains a byte-level BPE on `texts` and writes keras-hub's files.

    Args:
        texts: iterable of str. The training text.
        vocabulary_size: int. The vocabulary size, special tokens included.
        directory: str. Receives `vocabulary.json` and `merges.txt`, the
            two files `keras_hub.models.GPT2Tokenizer` takes.

    Returns:
        `(vocabulary_path, merges_path)`.

    ```python
    vocabulary, merges = train_tokenizer(["Some text."], 300, "/tmp/bpe")
    ```
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocabulary_size,
        special_tokens=[PAD_TOKEN, END_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocabulary, merges = model["vocab"], model["merges"]
    os.makedirs(directory, exist_ok=True)
    vocabulary_path = os.path.join(directory, "vocabulary.json")
    merges_path = os.path.join(directory, "merges.txt")
    from zoo.trainer import atomic_path

    with atomic_path(vocabulary_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(vocabulary, f, ensure_ascii=False)
    with atomic_path(merges_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for merge in merges:
            f.write((merge if isinstance(merge, str) else " ".join(merge)) + "\n")
    return vocabulary_path, merges_path


def tokenizer_files_for(texts, vocabulary_size, prefix="bpe"):
    """The BPE of `texts` at `vocabulary_size`, trained once and cached.

    The cache key is a digest of the text, so a resumed run finds the same
    tokenizer as its first start.
    """
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    directory = os.path.join(cache_dir(), "tokenizers", f"{prefix}-{digest}-{vocabulary_size}")
    vocabulary_path = os.path.join(directory, "vocabulary.json")
    merges_path = os.path.join(directory, "merges.txt")
    if not (os.path.exists(vocabulary_path) and os.path.exists(merges_path)):
        train_tokenizer(texts, vocabulary_size, directory)
    return vocabulary_path, merges_path


def default_tokenizer_files(vocabulary_size):
    """The BPE of the default recipe's training split at `vocabulary_size`."""
    train, _, _ = read_corpus(EMBEDDED_DATA)
    return tokenizer_files_for(train, vocabulary_size, prefix="pydoc")


def make_tokenizer(vocabulary_path, merges_path):
    """A keras-hub `GPT2Tokenizer` from BPE files made by `train_tokenizer`."""
    import keras_hub

    return keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary_path, merges=merges_path)


def token_stream(tokenizer, documents):
    """Token ids of `documents` as one int32 array, `<|endoftext|>` first
    and between documents.

    The end token before each document is what `generate` puts before a
    prompt, so the model learns how documents begin.
    """
    import numpy as np

    end = tokenizer.end_token_id
    pieces = [np.array([end], "int32")]
    for ids in tokenizer(list(documents)):
        pieces += [np.asarray(ids, "int32").reshape(-1), np.array([end], "int32")]
    # Ends after the last document too: every document is followed by one.
    return np.concatenate(pieces)


def stream_bytes(documents):
    """The bytes a token stream stands for: each document then one byte.

    The byte stands for the `<|endoftext|>` after each document, which the
    model also predicts; `xz` compresses exactly these bytes.
    """
    return b"".join(d.encode("utf-8") + b"\x00" for d in documents)


def validation_windows(stream, sequence_length):
    """Cuts a token stream into padded windows, every target exactly once.

    Returns:
        `(x, y, sample_weight)` NumPy arrays, `x` a dict of `token_ids` and
        a bool `padding_mask`, as keras-hub's preprocessor yields them.
    """
    import numpy as np

    targets = len(stream) - 1
    n = max(1, math.ceil(targets / sequence_length))
    ids = np.zeros((n, sequence_length), "int32")
    mask = np.zeros((n, sequence_length), bool)
    labels = np.zeros((n, sequence_length), "int32")
    weights = np.zeros((n, sequence_length), "float32")
    for k in range(n):
        start = k * sequence_length
        x = stream[start:start + sequence_length]
        y = stream[start + 1:start + sequence_length + 1]
        ids[k, :len(x)], mask[k, :len(x)] = x, True
        labels[k, :len(y)], weights[k, :len(y)] = y, 1.0
    return {"token_ids": ids, "padding_mask": mask}, labels, weights


def _training_windows(stream, sequence_length, num_windows, seed):
    """Windows of the training stream, each shifted by a random offset in
    [0, sequence_length) that changes every epoch, so the model sees the
    text cut at new places each time."""
    import tensorflow as tf

    tokens = tf.constant(stream, tf.int32)
    length = sequence_length
    offsets = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def window(i, r):
        start = i * length + tf.math.floormod(r, length)
        w = tokens[start:start + length + 1]
        x = {"token_ids": tf.reshape(w[:-1], [length]), "padding_mask": tf.ones([length], tf.bool)}
        return x, tf.reshape(w[1:], [length]), tf.ones([length], tf.float32)

    return tf.data.Dataset.zip(tf.data.Dataset.range(num_windows), offsets).map(window)


def _pretokenized(x, y=None, sample_weight=None):
    import keras

    return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)


# ---------------------------------------------------------------------------
# Metrics.


def text_metrics(total_nll, num_tokens, num_bytes):
    """Perplexity and bits per byte from a summed negative log-likelihood.

    Args:
        total_nll: float. The summed cross-entropy in nats.
        num_tokens: int. The tokens it was summed over.
        num_bytes: int. The bytes those tokens spell.

    Returns:
        `{"perplexity": exp(nll / tokens), "bits_per_byte": nll / ln 2 / bytes}`.

    ```python
    text_metrics(4 * math.log(2), 4, 2)  # perplexity 2.0, bits_per_byte 2.0
    ```
    """
    if num_tokens <= 0 or num_bytes <= 0:
        raise ValueError(f"Need tokens and bytes to score. Received: {num_tokens} tokens, {num_bytes} bytes.")
    return {
        "perplexity": math.exp(total_nll / num_tokens),
        "bits_per_byte": total_nll / math.log(2) / num_bytes,
    }


def xz_bits_per_byte(data):
    """Bits per byte that `xz -9` (Python's `lzma`, preset 9) needs for `data`."""
    import lzma

    return 8 * len(lzma.compress(data, format=lzma.FORMAT_XZ, preset=9)) / len(data)


def summed_nll(model, dataset):
    """The summed token cross-entropy (nats) of `model` on batches of
    `(x, y, sample_weight)`, and the number of weighted tokens."""
    import numpy as np
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(x, y, w):
        logits = tf.cast(model(x, training=False), tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=logits)
        w = tf.cast(w, tf.float32)
        return tf.reduce_sum(tf.cast(ce, tf.float64) * tf.cast(w, tf.float64)), tf.reduce_sum(w)

    total, count = 0.0, 0.0
    for x, y, w in dataset:
        nll, n = step(x, y, w)
        total += float(nll)
        count += float(n)
    return float(np.float64(total)), int(round(count))


# ---------------------------------------------------------------------------
# Presets and generation.


def _kaggle_reachable(timeout=3.0):
    """Whether Kaggle, where built-in presets come from, answers at all.

    keras-hub retries a failed download for a while; this fails fast.
    """
    import socket

    try:
        socket.create_connection(("api.kaggle.com", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _builtin_cached(preset):
    root = os.environ.get("KAGGLEHUB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kagglehub")
    return bool(glob.glob(os.path.join(glob.escape(root), "models", "keras", "*", "keras", preset, "*")))


def from_preset(cls, preset):
    """`cls.from_preset(preset)` with clear errors for a bad or offline name.

    A built-in name needs the network (keras-hub fetches it from Kaggle);
    offline it fails at once with a message that says what to do instead.
    """
    preset = os.fspath(preset)
    if os.path.isdir(preset):
        if not os.path.exists(os.path.join(preset, "config.json")):
            raise FileNotFoundError(
                f"'{preset}' is not a keras-hub preset directory: it has no config.json. "
                "Runs save theirs in <run>/preset."
            )
        return cls.from_preset(preset)
    if os.path.sep in preset or preset.startswith("."):
        raise FileNotFoundError(
            f"Preset directory '{preset}' not found. `preset` takes a local preset "
            f"directory (as saved by `save_to_preset`, or <run>/preset) or a keras-hub "
            f"name such as {BUILTIN_PRESET_HINT}."
        )
    import keras_hub

    builtin = keras_hub.models.GPT2CausalLM.presets
    if preset not in builtin:
        raise ValueError(
            f"Unknown preset '{preset}'.{config_lib.did_you_mean(preset, builtin)} Built-in "
            f"GPT-2 presets: {', '.join(sorted(builtin))}; or give a local preset directory."
        )
    offline = (
        f"Could not download keras-hub preset '{preset}': built-in presets come from "
        "Kaggle and need the network, which this machine cannot reach. Download it once "
        "where there is network and save it with "
        f"`keras_hub.models.GPT2CausalLM.from_preset('{preset}').save_to_preset(DIR)`, "
        "then pass that DIR as the preset."
    )
    if not _builtin_cached(preset) and not _kaggle_reachable():
        raise ConnectionError(offline)
    try:
        return cls.from_preset(preset)
    except Exception as e:  # keras-hub raises many kinds on a failed download.
        raise ConnectionError(f"{offline} ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def load_preset(preset):
    """Loads a `GPT2CausalLM` from a keras-hub preset name or directory,
    with zoo's faster generate function (`zoo.decoding`)."""
    import keras_hub

    from zoo import decoding

    return decoding.install(from_preset(keras_hub.models.GPT2CausalLM, preset))


def _preset_architecture(preset):
    """Config fields of a preset's backbone, for the run's `config.json`."""
    from keras_hub.src.utils.preset_utils import load_json

    backbone = load_json(os.fspath(preset), "config.json").get("config", {})
    fields = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim",
              "intermediate_dim", "max_sequence_length", "dropout")
    return {k: backbone[k] for k in fields if k in backbone}


def make_sampler(name, *, temperature=1.0, top_k=10, top_p=0.9, num_beams=4, seed=None):
    """A keras-hub sampler from its name and settings.

    Args:
        name: str. "greedy", "top_k", "top_p" or "beam".
        temperature: float. Softens (> 1) or sharpens (< 1) the
            distribution. Defaults to 1.0.
        top_k: int. Tokens kept by "top_k". Defaults to 10.
        top_p: float. Probability mass kept by "top_p". Defaults to 0.9.
        num_beams: int. Beams of "beam". Defaults to 4.
        seed: int. Makes "top_k" and "top_p" reproducible. Defaults to None.

    ```python
    lm.compile(sampler=make_sampler("top_p", temperature=0.8, seed=1))
    ```
    """
    import keras_hub

    if name not in SAMPLERS:
        raise ValueError(
            f"Unknown sampler '{name}'.{config_lib.did_you_mean(name, SAMPLERS)} "
            f"Accepted: {', '.join(SAMPLERS)}."
        )
    config_lib.require(
        isinstance(temperature, (int, float)) and temperature > 0, "temperature", temperature,
        "must be a positive number",
    )
    if name == "greedy":
        return keras_hub.samplers.GreedySampler()
    if name == "top_k":
        config_lib.require(isinstance(top_k, int) and top_k >= 1, "top_k", top_k, "must be a positive int")
        return keras_hub.samplers.TopKSampler(k=top_k, seed=seed, temperature=temperature)
    if name == "top_p":
        config_lib.require(
            isinstance(top_p, (int, float)) and 0 < top_p <= 1, "top_p", top_p, "must be in (0, 1]"
        )
        return keras_hub.samplers.TopPSampler(p=top_p, seed=seed, temperature=temperature)
    config_lib.require(
        isinstance(num_beams, int) and num_beams >= 1, "num_beams", num_beams, "must be a positive int"
    )
    return keras_hub.samplers.BeamSampler(num_beams=num_beams, temperature=temperature)


def generate_text(model, prompts, max_length=SAMPLE_MAX_LENGTH, sampler=None):
    """Generates from `prompts` with `model`, checking the lengths first.

    Args:
        model: `keras_hub.models.GPT2CausalLM`.
        prompts: list of str. One batch of prompts.
        max_length: int. Tokens in all, prompt included; at most the
            model's `max_sequence_length`. Defaults to 64.
        sampler: a keras-hub sampler, or None for the compiled one. A new
            sampler drops the compiled generate function (one trace).

    Returns:
        A list of str, each prompt followed by its continuation.
    """
    limit = model.backbone.max_sequence_length
    if not isinstance(max_length, int) or not 2 <= max_length <= limit:
        raise ValueError(
            f"Invalid value for `max_length`: must be an int in [2, {limit}] (the model's "
            f"max_sequence_length). Received: max_length={max_length!r}."
        )
    tokenizer = model.preprocessor.tokenizer
    for prompt in prompts:
        length = len(tokenizer(prompt)) + 1  # The start token.
        if length >= max_length:
            raise ValueError(
                f"Invalid value for `max_length`: the prompt {prompt[:40]!r} is already "
                f"{length} tokens, so nothing is left to generate. Received: max_length={max_length}."
            )
    if sampler is not None and sampler is not model.sampler:
        model.sampler = sampler
        model.generate_function = None
    outputs = model.generate(list(prompts), max_length=max_length)
    return [str(o) for o in outputs]


class GPT2TextGenTask(Task):
    """Causal language modelling with AdamW and a warmup-then-decay schedule.

    `load_data` reads the corpus, trains the run's BPE on the training
    split (or takes the preset's tokenizer) and cuts both splits into token
    windows; `build` hands those tokenizer files to the builder. The windows
    are already what keras-hub's preprocessor would make, so `build` tells
    the model's `fit` to pass them through, until training ends.
    `summaries` writes greedy samples from fixed prompts each epoch;
    `evaluate` scores the validation split against `xz -9`; `export` saves
    the keras-hub preset and greedy samples in `samples.txt`.
    """

    default_data = EMBEDDED_DATA
    has_presets = True
    data_help = ("pydoc (default: Python's documentation), .txt files, folders or globs, "
                 "tfds imdb_reviews or tiny_shakespeare (data options: tfds_data_dir, "
                 "validation_fraction)")
    train_defaults = {"epochs": 10, "batch_size": 16, "learning_rate": 1e-3}

    def load_data(self, data, config, options, seed, preset=None):
        import numpy as np
        import tensorflow as tf

        train_docs, val_docs, name = read_corpus(data, options)
        updates, files = {}, None
        if preset is None:
            files = tokenizer_files_for(train_docs, config.vocabulary_size)
            tokenizer = make_tokenizer(*files)
        else:
            import keras_hub

            tokenizer = from_preset(keras_hub.models.GPT2Tokenizer, preset)
            updates = _preset_architecture(preset)
        length = config.sequence_length
        limit = updates.get("max_sequence_length", config.max_sequence_length)
        if length > limit:
            raise ValueError(
                f"Invalid value for `sequence_length`: must be at most {limit}, the model's "
                f"max_sequence_length. Received: sequence_length={length}."
            )
        train_stream = token_stream(tokenizer, train_docs)
        val_stream = token_stream(tokenizer, val_docs)
        num_windows = (len(train_stream) - length) // length
        if num_windows < 1:
            raise ValueError(
                f"'{name}' is too short: its training split has {len(train_stream)} tokens, "
                f"fewer than 2 * sequence_length + 1 = {2 * length + 1}. Give more text or a "
                f"smaller sequence_length. Received: sequence_length={length}."
            )
        x, y, w = validation_windows(val_stream, length)
        prompts = [" ".join(d.split()[:3]) for d in val_docs[:NUM_SAMPLE_PROMPTS]]
        return Data(
            train=_training_windows(train_stream, length, num_windows, seed),
            validation=tf.data.Dataset.from_tensor_slices((x, y, w)),
            num_train=num_windows,
            name=name,
            config_updates=updates,
            extras={
                "tokenizer_files": files,
                "validation_bytes": stream_bytes(val_docs),
                "train_tokens": int(len(train_stream)),
                "validation_tokens": int(np.sum(w)),
                "prompts": prompts,
            },
        )

    def batch(self, dataset, batch_size, *, training, seed=0):
        # No `cache()`: it would freeze the first epoch's random window
        # offsets, and a window is only a slice of the token stream.
        if training:
            dataset = dataset.shuffle(100_000, seed=seed, reshuffle_each_iteration=True)
        return prefetch_fixed(dataset.batch(batch_size, drop_remainder=training))

    def build(self, builder, config, preset, data):
        model = builder(config, preset=preset, tokenizer_files=data.extras.get("tokenizer_files"))
        # keras-hub's `fit` runs the string preprocessor over every batch;
        # these batches are token windows already (cut once, not re-tokenized
        # each epoch), so pass them through. Removed when training ends.
        model.preprocess_samples = _pretokenized
        return model

    def callbacks(self, model, data, train_config, run_dir):
        import keras

        class RestorePreprocessing(keras.callbacks.Callback):
            def on_train_end(self, logs=None):
                vars(self.model).pop("preprocess_samples", None)

        return [RestorePreprocessing()]

    def compile(self, model, config, train_config=None, steps_per_epoch=None):
        import keras

        learning_rate = train_config.learning_rate if train_config else self.train_defaults["learning_rate"]
        if train_config is not None and steps_per_epoch:
            total = max(2, steps_per_epoch * train_config.epochs)
            warmup = max(1, total // 20)
            learning_rate = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=0.0, decay_steps=total - warmup, alpha=0.1,
                warmup_target=learning_rate, warmup_steps=warmup,
            )
        extra = {}
        if train_config is not None:
            extra = {"steps_per_execution": train_config.steps_per_execution,
                     "jit_compile": _resolve_jit_compile(train_config.jit_compile)}
        model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            sampler="greedy",
            **extra,
        )

    def summaries(self, model, data, epoch):
        import tensorflow as tf

        prompts = data.extras.get("prompts") or [""]
        outputs = generate_text(model, prompts, min(SAMPLE_MAX_LENGTH, model.backbone.max_sequence_length))
        lines = [f"**{p or '(empty prompt)'}** → {o}" for p, o in zip(prompts, outputs)]
        tf.summary.text("samples/greedy", "\n\n".join(_markdown_safe(line) for line in lines))

    def evaluate(self, model, data, train_config):
        vars(model).pop("preprocess_samples", None)
        dataset = data.validation.batch(train_config.batch_size if train_config else 32)
        nll, tokens = summed_nll(model, dataset)
        raw = data.extras["validation_bytes"]
        scores = text_metrics(nll, tokens, len(raw))
        xz = xz_bits_per_byte(raw)
        return {
            "val_perplexity": scores["perplexity"],
            "val_bits_per_byte": scores["bits_per_byte"],
            "xz_bits_per_byte": xz,
            "bits_per_byte_vs_xz": scores["bits_per_byte"] / xz,
            "val_tokens": tokens,
            "val_bytes": len(raw),
        }

    def export(self, model, data, run_dir):
        from zoo.trainer import atomic_path

        with atomic_path(os.path.join(run_dir, "preset")) as tmp:
            model.save_to_preset(tmp)
        prompts = data.extras.get("prompts") or [""]
        length = min(SAMPLE_MAX_LENGTH, model.backbone.max_sequence_length)
        # Greedy only: the compiled sampler, so no new trace. Sample with
        # `zoo generate RUN --sampler top_p --seed 1`.
        text = [f"{p!r} -> {o!r}\n" for p, o in zip(prompts, generate_text(model, prompts, length))]
        with atomic_path(os.path.join(run_dir, "samples.txt")) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("# Greedy samples from the first words of validation documents\n\n")
                f.write("\n".join(text))

    def generate(self, run_dir, args):
        import keras

        prompts = list(args.prompt or [""])
        sampler = make_sampler(
            args.sampler, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            num_beams=args.num_beams, seed=args.seed,
        )
        preset = os.path.join(run_dir, "preset")
        if not os.path.isdir(preset):
            raise FileNotFoundError(
                f"Run '{run_dir}' has no preset directory; it was saved by an older zoo. "
                "Retrain it to get <run>/preset."
            )
        if args.seed is not None:
            keras.utils.set_random_seed(args.seed)
        model = load_preset(preset)
        model.compile(sampler=sampler)
        outputs = generate_text(model, prompts, args.max_length)
        text = "\n\n".join(outputs) + "\n"
        if args.out:
            from zoo.trainer import atomic_path

            with atomic_path(args.out) as tmp:
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)
            print(f"Wrote {len(outputs)} text(s) to {args.out}")
        else:
            for i, output in enumerate(outputs):
                if i:
                    print("\n---\n")
                print(output)
        return 0

    def count_params(self, config):
        h, v, p, i, n = (config.hidden_dim, config.vocabulary_size, config.max_sequence_length,
                         config.intermediate_dim, config.num_layers)
        layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h  # attention, MLP, 2 layer norms
        return v * h + p * h + n * layer + 2 * h

    def tokens_per_example(self, config):
        return config.sequence_length


def _resolve_jit_compile(jit_compile):
    """XLA for training: "auto" means on, with one replica.

    Keras' own "auto" turns XLA off on CPU-only machines and under any
    `tf.distribute` strategy; for this model XLA steps are faster on CPU
    too (see docs/models/gpt2_textgen.md), so zoo turns it on wherever a
    single replica trains. Under several replicas "auto" stays Keras' call.
    """
    import tensorflow as tf

    if jit_compile != "auto":
        return jit_compile
    return True if tf.distribute.get_strategy().num_replicas_in_sync == 1 else "auto"


def _markdown_safe(text):
    # TensorBoard renders text summaries as Markdown; keep code and markup literal.
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_").replace("#", "\\#").replace(
        "\n", "  \n")


@registry.register("gpt2_textgen", config=GPT2TextGenConfig, task=GPT2TextGenTask())
def gpt2_textgen(config, preset=None, tokenizer_files=None):
    """GPT-2 text generation: keras-hub's `GPT2CausalLM` with its preprocessor.

    With no preset, a fresh `GPT2Backbone` of the config's size, with a
    byte-level BPE tokenizer trained on the embedded corpus' training split
    (or the given `tokenizer_files`). With a preset, the preset's model and
    tokenizer.

    Args:
        config: `GPT2TextGenConfig`. The architecture (ignored for a preset,
            except `sequence_length`).
        preset: str. A keras-hub preset name (`gpt2_base_en`, which needs
            the network) or a local preset directory, such as a run's
            `<run>/preset`. Defaults to None.
        tokenizer_files: (str, str). `vocabulary.json` and `merges.txt`
            paths. Defaults to the embedded corpus' BPE.

    ```python
    lm = zoo.get("gpt2_textgen", num_layers=2)
    lm.generate("def main", max_length=32)
    ```
    """
    import keras
    import keras_hub

    if preset is not None:
        model = load_preset(preset)
        model.preprocessor.sequence_length = config.sequence_length
        return model
    vocabulary_path, merges_path = tokenizer_files or default_tokenizer_files(config.vocabulary_size)
    tokenizer = make_tokenizer(vocabulary_path, merges_path)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.hidden_dim,
        intermediate_dim=config.intermediate_dim,
        dropout=config.dropout,
        max_sequence_length=config.max_sequence_length,
    )
    # A plain value change: the preset stays a plain keras-hub GPT2Backbone.
    embeddings = backbone.token_embedding.embeddings
    embeddings.assign(keras.initializers.RandomNormal(stddev=config.embedding_stddev)(embeddings.shape))
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=config.sequence_length
    )
    from zoo import decoding

    # Same model and presets; `generate` keeps a per-layer cache and decodes under XLA.
    return decoding.install(keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor))
