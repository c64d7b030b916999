"""TensorFlow Datasets read from a local tfds data dir, never downloaded.

zoo runs offline: a tfds dataset must have been prepared once where there is
network access (`tfds.load(name, data_dir=DIR)`), and is then read from
`DIR`. A dataset that is not there, or tensorflow-datasets itself missing,
is a clear error that says what to do.
"""

import os


def data_dir(directory=None):
    """The tfds data dir: `directory`, `$TFDS_DATA_DIR` or `~/tensorflow_datasets`."""
    return os.path.expanduser(os.fspath(
        directory or os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
    ))


def prepared_builder(name, directory=None, *, fallback=None):
    """The tfds builder of `name`, checked to be prepared in the data dir.

    Args:
        name: str. A tfds dataset name, such as `"mnist"`.
        directory: str. The tfds data dir. Defaults to `data_dir()`.
        fallback: str. What the user can train on instead, for the error
            message, such as `"--data digits"`.

    Raises:
        ValueError: tensorflow-datasets is not installed.
        FileNotFoundError: the dataset is not prepared in the data dir.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(
            f"Dataset '{name}' needs tensorflow-datasets: pip install tensorflow-datasets."
        ) from None
    directory = data_dir(directory)
    builder = tfds.builder(name, data_dir=directory)
    if not builder.is_prepared():
        instead = f", or train on the embedded default: {fallback}" if fallback else ""
        raise FileNotFoundError(
            f"tfds dataset '{name}' has not been downloaded to the tfds data dir "
            f"'{directory}', so it is not in the tfds data dir (looked for "
            f"{builder.data_path}). zoo does not download it; "
            f"where there is network access run python -c \"import tensorflow_datasets as "
            f"tfds; tfds.load('{name}', data_dir='{directory}')\", then pass that folder "
            f"with --tfds-data-dir (data option tfds_data_dir){instead}."
        )
    return builder


def image_splits(name, directory=None, *, fallback=None):
    """The train and test splits of a labelled tfds image dataset.

    Returns:
        `((train_images, train_labels), (test_images, test_labels),
        class_names)`, images float32 in [-1, 1] shaped `(n, h, w, c)`.
    """
    builder = prepared_builder(name, directory, fallback=fallback)  # Checks the import first.
    import tensorflow_datasets as tfds

    def split(which):
        images, labels = tfds.as_numpy(builder.as_dataset(split=which, batch_size=-1, as_supervised=True))
        return images.astype("float32") / 127.5 - 1.0, labels.astype("int64")

    return split("train"), split("test"), list(builder.info.features["label"].names)


def text_splits(name, directory=None, splits=("train",), *, key="text"):
    """The documents of a tfds text dataset, as `{split: [str, ...]}`."""
    builder = prepared_builder(name, directory)
    return {
        split: [example[key].decode("utf-8") for example in builder.as_dataset(split=split).as_numpy_iterator()]
        for split in splits
    }
