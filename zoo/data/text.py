"""Text corpora: the embedded Python documentation, text files and tfds text.

A corpus is a list of documents (str). `read_corpus` reads one and splits it
into training and validation documents with a fixed seed, so runs with other
training seeds are scored on the same text. Nothing here imports TensorFlow,
except to read a tfds dataset.
"""

import glob
import os

from zoo import config as config_lib

EMBEDDED_DATA = "pydoc"
TFDS_DATASETS = ("imdb_reviews", "tiny_shakespeare")
DATA_OPTIONS = ("tfds_data_dir", "validation_fraction")
# The validation split is the same for every run of a corpus, so runs with
# different training seeds are scored on the same bytes.
SPLIT_SEED = 0
VALIDATION_FRACTION = 0.1


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
            f"Unknown data option '{unknown[0]}' for text data."
            f"{config_lib.did_you_mean(unknown[0], DATA_OPTIONS)} Accepted: {', '.join(DATA_OPTIONS)}."
        )
    fraction = options.get("validation_fraction", VALIDATION_FRACTION)
    config_lib.require(
        isinstance(fraction, (int, float)) and 0 < fraction < 1, "validation_fraction",
        fraction, "must be a number in (0, 1)",
    )
    data = EMBEDDED_DATA if data is None else os.fspath(data)
    if "tfds_data_dir" in options and data not in TFDS_DATASETS:
        raise ValueError(
            f"The data option `tfds_data_dir` applies to the tfds datasets "
            f"({', '.join(TFDS_DATASETS)}) only, not to '{data}'. Received: "
            f"tfds_data_dir={options['tfds_data_dir']!r}.")
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


def read_documents(data, options=None):
    """Every document of a corpus, unsplit, for scoring a model on all of it.

    Args:
        data: str. A `.txt` file, a folder of them or a glob; `"pydoc"` or
            a tfds name, whose validation documents are returned (their
            training documents are what a model was trained on).
        options: dict. `tfds_data_dir` and `validation_fraction`, as
            `read_corpus` takes them.

    Returns:
        `(documents, name, split)`: the documents, the corpus' name, and
        `"all"` or `"validation"`.
    """
    data = EMBEDDED_DATA if data is None else os.fspath(data)
    if data == EMBEDDED_DATA or data in TFDS_DATASETS:
        _, validation, name = read_corpus(data, options)
        return validation, name, "validation"
    unknown = sorted(set(options or {}) - {"tfds_data_dir"})
    if unknown:
        raise KeyError(
            f"Unknown data option '{unknown[0]}' for text files: they are scored whole. Accepted: none.")
    documents = [d for d in _read_text_files(data) if d.strip()]
    return documents, data, "all"


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
    from zoo.data import tfds

    splits = ("train", "validation") if name == "tiny_shakespeare" else ("train",)
    return tfds.text_splits(name, data_dir, splits)


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

