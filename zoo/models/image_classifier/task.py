"""The shared trainer's hooks for `image_classifier`: data, compile, metrics."""

import dataclasses
import math
import os
import typing

from zoo import config as config_lib
from zoo.data import images as images_lib
from zoo.data import splits, tfds
from zoo.metrics import classification as metrics_lib
from zoo.models.image_classifier import network
from zoo.task import Data, Task

TFDS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = ("digits",) + TFDS_DATASETS
# The held-out splits are the same for every training seed, so runs with
# other seeds are scored on the same images.
SPLIT_SEED = 0
TEST_SHARE, VALIDATION_SHARE = 0.2, 0.1
WARMUP_EPOCHS = 3
PREDICT_BATCH = 1024


@dataclasses.dataclass
class LabelledImages(Data):
    """Image splits as arrays, beside the training and validation datasets.

    The datasets yield `(image, one_hot_label)`; the arrays keep int labels.

    Attributes:
        class_names: list of str. The name of each class, by label.
        validation_arrays: tuple or None. `(images, labels)` of the
            validation split (taken from the training images), or None when
            `validation_share` is 0.
        test_arrays: tuple. `(images, labels)` of the held-out test split,
            which only `evaluate` and `export` look at.
    """

    class_names: list = dataclasses.field(default_factory=list)
    validation_arrays: typing.Any = None
    test_arrays: typing.Any = None

    def describe(self):
        # The class names map the model's output indices back to classes.
        return {
            "class_names": list(self.class_names),
            "num_validation": 0 if self.validation_arrays is None else len(self.validation_arrays[1]),
            "num_test": len(self.test_arrays[1]),
        }


class ImageClassifierTask(Task):
    """Cross-entropy with label smoothing, AdamW, warm-up then cosine decay.

    Data (`load_data`): `digits` (the default, scikit-learn's 1,797 8x8
    handwritten digits), the tfds datasets `mnist`, `fashion_mnist` and
    `cifar10` read from the tfds data dir (data option `tfds_data_dir`), a
    folder with one sub-folder of images per class (resized to the config's
    shape), or `(images, labels)` arrays. A named dataset sets the image
    shape and `num_classes`, and so do arrays; a folder sets `num_classes`. The test
    split is tfds' own `test` split, or a stratified `test_share` of the
    images; a stratified `validation_share` of the rest is the validation
    split. Both are drawn with `SPLIT_SEED`, the same for every `--seed`.

    Each epoch, `summaries` writes the confusion matrix of the validation
    split (the test split when there is none) to TensorBoard, tag
    `confusion_matrix`. `evaluate` scores the test split: `test_accuracy`,
    `test_top_3_accuracy`, `test_balanced_accuracy` and
    `test_accuracy_class_<name>`; `export` writes its confusion matrix as
    `confusion_matrix.png` and `confusion_matrix.json`.
    """

    default_data = "digits"
    data_help = (
        "digits (default), mnist, fashion_mnist, cifar10 (tfds; option tfds_data_dir), "
        "a folder with one sub-folder of PNG/JPEG images per class (resized to the config's size), "
        "or (images, labels) arrays; options test_share, validation_share"
    )
    data_options = {
        "tfds_data_dir": (str, "where tensorflow-datasets keeps downloaded data"),
        "test_share": (float, f"share of the images held out for the test metrics ({TEST_SHARE}; not tfds)"),
        "validation_share": (float, f"share of the training images kept for validation ({VALIDATION_SHARE})"),
    }
    data_flags = ("tfds_data_dir",)
    # 8 steps per execution, as the other small-step recipes.
    train_defaults = {"epochs": 40, "batch_size": 64, "learning_rate": 3e-3, "steps_per_execution": 8}

    def load_data(self, data, config, options, seed, preset=None):
        return load_images(self.default_data if data is None else data, config, options)

    def default_batch_size(self, num_train):
        """64, or a power of two near a quarter of a small training set."""
        return int(min(self.train_defaults["batch_size"], 2 ** max(0, math.floor(math.log2(max(1, num_train / 4))))))

    def compile(self, model, config, train_config, steps_per_epoch=None):
        import keras

        learning_rate = train_config.learning_rate
        if steps_per_epoch:
            total = steps_per_epoch * train_config.epochs
            warmup = min(WARMUP_EPOCHS * steps_per_epoch, total // 10)
            learning_rate = keras.optimizers.schedules.CosineDecay(
                0.0 if warmup else learning_rate, decay_steps=max(1, total - warmup),
                warmup_target=learning_rate if warmup else None, warmup_steps=warmup,
            )
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if config.num_classes > metrics_lib.TOP_K:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(
                metrics_lib.TOP_K, name=f"top_{metrics_lib.TOP_K}_accuracy"))
        model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=metrics,
            **self.execution_options(train_config),
        )

    def summaries(self, model, data, epoch):
        import tensorflow as tf

        split = "validation" if data.validation_arrays is not None else "test"
        images, labels = data.validation_arrays if split == "validation" else data.test_arrays
        matrix = metrics_lib.confusion_matrix(labels, predict(model, images).argmax(-1), len(data.class_names))
        picture = metrics_lib.render_confusion_matrix(matrix, data.class_names)
        tf.summary.image("confusion_matrix", picture[None],
                         description=f"Rows: true class, columns: predicted, on the {split} split.")

    def evaluate(self, model, data, train_config):
        images, labels = data.test_arrays
        scores = metrics_lib.classification_metrics(labels, predict(model, images), data.class_names)
        return {"test_num_examples": len(labels), **{f"test_{k}": v for k, v in scores.items()}}

    def export(self, model, data, run_dir):
        from zoo.files import write_json

        images, labels = data.test_arrays
        matrix = metrics_lib.confusion_matrix(labels, predict(model, images).argmax(-1), len(data.class_names))
        images_lib.save_png(metrics_lib.render_confusion_matrix(matrix, data.class_names),
                            os.path.join(run_dir, "confusion_matrix.png"))
        write_json(os.path.join(run_dir, "confusion_matrix.json"), {
            "split": "test", "rows": "true class", "columns": "predicted class",
            "class_names": list(data.class_names), "counts": matrix.tolist(),
        })

    def example_input(self, config, batch_size=2):
        import numpy as np

        shape = (batch_size, config.image_height, config.image_width, config.channels)
        return np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype("float32")

    def expected_output_shape(self, config, batch_size=2):
        return (batch_size, config.num_classes)

    def count_params(self, config):
        return network.count_params(config)


def predict(model, images):
    """Class probabilities of `images` (inference mode) as a NumPy array."""
    return model.predict(images, batch_size=PREDICT_BATCH, verbose=0)


def load_images(data, config, options=None):
    """Loads an `image_classifier` dataset as a `LabelledImages`.

    Args:
        data: str or tuple. "digits", "mnist", "fashion_mnist", "cifar10",
            a folder with one sub-folder per class, or `(images, labels)`
            arrays (images in [-1, 1], shaped `(n, height, width,
            channels)`; labels ints from 0).
        config: `ImageClassifierConfig`. A folder is resized to its shape.
        options: dict. `tfds_data_dir`, `test_share`, `validation_share`.
            Defaults to None.

    Returns:
        A `LabelledImages` with the training and validation datasets and the
        arrays of every split.

    ```python
    data = load_images("digits", zoo.get_config("image_classifier"))
    ```
    """
    options = dict(options or {})
    test_share = options.get("test_share", TEST_SHARE)
    validation_share = options.get("validation_share", VALIDATION_SHARE)
    config_lib.require(isinstance(test_share, (int, float)) and 0 < test_share < 1,
                       "test_share", test_share, "must be a number in (0, 1)")
    config_lib.require(isinstance(validation_share, (int, float)) and 0 <= validation_share < 1,
                       "validation_share", validation_share, "must be a number in [0, 1)")
    if isinstance(data, tuple) and len(data) == 2:
        config_lib.check_options(options, ("test_share", "validation_share"), "arrays")
        images, labels = _arrays(*data)
        class_names = [str(i) for i in range(int(labels.max()) + 1)]
        name, folder = "arrays", False
    elif not isinstance(data, (str, os.PathLike)):
        raise ValueError(
            f"image_classifier takes a dataset name, an image folder or (images, labels) "
            f"arrays. Received: data={data!r} ({type(data).__name__})."
        )
    elif os.fspath(data) == "digits":
        config_lib.check_options(options, ("test_share", "validation_share"), data)
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Pixel values are 0..16.
        images, labels = (digits.images.astype("float32") / 8.0 - 1.0)[..., None], digits.target
        class_names, name, folder = [str(i) for i in range(10)], "digits", False
    elif os.fspath(data) in TFDS_DATASETS:
        name = os.fspath(data)
        config_lib.check_options(options, ("tfds_data_dir", "validation_share"), name)
        train, test, class_names = tfds.image_splits(name, options.get("tfds_data_dir"), fallback="--data digits")
        return _labelled(name, train, test, class_names, validation_share, named=True)
    elif os.path.exists(data) or os.sep in os.fspath(data) or os.fspath(data).startswith("."):
        config_lib.check_options(options, ("test_share", "validation_share"), data)
        images, labels, class_names = images_lib.read_folder(
            data, config.image_height, config.image_width, config.channels)
        if labels is None:
            raise ValueError(
                f"Image folder '{os.fspath(data)}' has no class sub-folders: image_classifier needs "
                f"one sub-folder per class (two or more), each holding that class's images, "
                f"such as {os.path.join(os.fspath(data), 'cats', '1.png')}."
            )
        name, folder = os.path.basename(os.path.normpath(os.fspath(data))), True
    else:
        data = os.fspath(data)
        raise ValueError(
            f"Unknown dataset '{data}'.{config_lib.did_you_mean(data, DATASETS)} "
            f"Accepted: {', '.join(DATASETS)}, a folder with one sub-folder of images per class, "
            "or (images, labels) arrays."
        )
    _check_class_sizes(name, labels, class_names, validation_share)
    train, test = splits.stratified_split(images, labels, _share(test_share, labels), SPLIT_SEED)
    # A folder is resized to the config's shape; other data has its own.
    return _labelled(name, train, test, class_names, validation_share, named=not folder)


def _arrays(images, labels):
    import numpy as np

    images, labels = np.asarray(images, "float32"), np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            "image_classifier takes data=(images, labels): images shaped (n, height, width, "
            "channels) in [-1, 1] and n int labels. Received: images of shape "
            f"{images.shape}, labels of shape {labels.shape} ({labels.dtype})."
        )
    if labels.min() < 0:
        raise ValueError(f"Labels must be 0 or more. Received: a label {labels.min()}.")
    return images, labels.astype("int64")


def _check_class_sizes(name, labels, class_names, validation_share):
    """Every class needs an image in each split (train, test, validation)."""
    import numpy as np

    needed = 3 if validation_share else 2
    counts = np.bincount(labels, minlength=len(class_names))
    small = [f"'{class_names[i]}' ({counts[i]})" for i in np.flatnonzero(counts < needed)]
    if small:
        raise ValueError(
            f"Dataset '{name}' has too few images in class {', '.join(small)}: each class needs "
            f"at least {needed}, for the training, {'validation and ' if validation_share else ''}"
            "test splits."
        )


def _share(share, labels):
    """`share`, raised so that a stratified split holds one image per class."""
    import numpy as np

    return max(share, len(np.unique(labels)) / len(labels))


def _labelled(name, train, test, class_names, validation_share, *, named):
    import numpy as np
    import tensorflow as tf

    validation = None
    if validation_share:
        train, validation = splits.stratified_split(
            *train, _share(validation_share, train[1]), SPLIT_SEED)
    num_classes = len(class_names)

    def dataset(split):
        images, labels = split
        return tf.data.Dataset.from_tensor_slices((images, np.eye(num_classes, dtype="float32")[labels]))

    images = train[0]
    updates = {"num_classes": num_classes}
    if named:
        _, height, width, channels = images.shape
        updates.update(image_height=height, image_width=width, channels=channels)
    return LabelledImages(
        train=dataset(train),
        validation=dataset(validation) if validation is not None else None,
        num_train=len(images),
        name=name,
        config_updates=updates,
        class_names=list(class_names),
        validation_arrays=validation,
        test_arrays=test,
    )
