"""The run's tokenizer and token windows of `gpt2_textgen`.

The tokenizer of a model trained from scratch is a byte-level BPE trained
with the `tokenizers` package on the training split of the run. Its special
tokens are `<|pad|>` (id 0, which keras-hub's GPT-2 pads with) and
`<|endoftext|>` (id 1): if the end token had id 0, padding would read as
"end" and `generate` would stop at once and return only the prompt.

Each split is tokenized once into one stream, `<|endoftext|>` before every
document, and cut into windows of `sequence_length` tokens: no token is
lost to truncation or padding. Training windows start at a random offset
each epoch.
"""

import hashlib
import json
import math
import os

from zoo import files
from zoo.data import text
from zoo.files import atomic_path

PAD_TOKEN = "<|pad|>"
END_TOKEN = "<|endoftext|>"


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
    directory = files.cache_dir("tokenizers", f"{prefix}-{digest}-{vocabulary_size}")
    vocabulary_path = os.path.join(directory, "vocabulary.json")
    merges_path = os.path.join(directory, "merges.txt")
    if not (os.path.exists(vocabulary_path) and os.path.exists(merges_path)):
        train_tokenizer(texts, vocabulary_size, directory)
    return vocabulary_path, merges_path


def default_tokenizer_files(vocabulary_size):
    """The BPE of the default recipe's training split at `vocabulary_size`."""
    train, _, _ = text.read_corpus(text.EMBEDDED_DATA)
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


def training_windows(stream, sequence_length, num_windows, seed):
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


def pretokenized(x, y=None, sample_weight=None):
    """keras-hub's `preprocess_samples` for batches that are token windows
    already: packs them unchanged."""
    import keras

    return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

