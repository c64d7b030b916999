"""The shared trainer's hooks for `image_classifier`: data, compile, metrics."""

import dataclasses
import math
import os
import typing

from zoo import config as config_lib
from zoo import inference
from zoo.data import images as images_lib
from zoo.data import splits, tfds
from zoo.metrics import classification as metrics_lib
from zoo.models.image_classifier import network
from zoo.task import Data, Evaluation, Predictions, Task

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
    # Per-class accuracies are in run_summary (and the confusion matrix image).
    headline_metrics = ("test_accuracy", "test_top_*_accuracy", "test_balanced_accuracy")
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

    def serving_model(self, model):
        """Images in [0, 1] (8-bit pixels / 255), float32 `(batch, height,
        width, channels)`, to class probabilities `(batch, num_classes)`
        in the order of `config.json`'s `data.class_names`. The network
        itself takes [-1, 1]; the export rescales first."""
        import keras

        images = keras.Input(model.inputs[0].shape[1:], name="images")
        probabilities = model(keras.layers.Rescaling(2.0, offset=-1.0, name="from_unit_interval")(images))
        return keras.Model(images, probabilities, name="image_classifier_probabilities")

    def serving_examples(self, config, load_data, count):
        images, _ = load_data().test_arrays
        return (images[:count] + 1.0) / 2.0, f"the first {min(count, len(images))} test images"

    def predict(self, run, data, *, keep=(), batch_size=1024, top_k=None):
        """A row per image: `path`, `class`, `probability`, then `class_<k>`
        and `probability_<k>` for the next likeliest classes, up to `top_k`
        (defaults to 3, or fewer classes). Images are read (and resized to
        the run's size, as training reads a folder) a chunk at a time."""
        import numpy as np

        config = run.model_config
        class_names = list(run.config["data"].get("class_names") or range(config.num_classes))
        top_k = min(metrics_lib.TOP_K, len(class_names)) if top_k is None else top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= len(class_names):
            raise ValueError(
                f"Invalid value for `top_k`: must be an int in [1, {len(class_names)}] (the run's "
                f"classes). Received: top_k={top_k!r}.")
        if keep:
            raise ValueError(f"Invalid value for `keep`: images have no columns to keep. Received: keep={list(keep)!r}.")
        paths, images = _prediction_inputs(data, config)
        columns = ["path", "class", "probability"]
        for k in range(2, top_k + 1):
            columns += [f"class_{k}", f"probability_{k}"]
        model = run.model

        def chunks():
            for start in range(0, len(paths), batch_size):
                names = paths[start:start + batch_size]
                batch = (images[start:start + batch_size] if images is not None else np.stack([
                    images_lib.read_image(p, config.image_height, config.image_width, config.channels)
                    for p in names]))
                probabilities = np.asarray(model.predict_on_batch(batch), "float32")
                order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
                out = {"path": names}
                for k in range(top_k):
                    suffix = "" if k == 0 else f"_{k + 1}"
                    out[f"class{suffix}"] = [str(class_names[i]) for i in order[:, k]]
                    out[f"probability{suffix}"] = np.take_along_axis(probabilities, order[:, k:k + 1], 1)[:, 0]
                yield out

        return Predictions(columns, [c for c in columns if c != "path"], chunks(), str(data))

    def evaluate_data(self, run, data, options, own_data, batch_size=None):
        """The accuracy family of the run (`test_accuracy`,
        `test_top_3_accuracy`, `test_balanced_accuracy`, per class): on the
        run's test split for its own data; on every image of a class folder
        (sub-folders named as the run's classes), a dataset split
        (`digits`, `mnist:test`) or `(images, labels)` arrays otherwise."""
        import numpy as np

        config = run.model_config
        model = run.model
        if own_data:
            table = load_images(data, config, options)
            metrics = self.evaluate(model, table, run.train_config)
            return Evaluation(metrics, table.name, "test", len(table.test_arrays[1]))
        class_names = list(run.config["data"].get("class_names") or range(config.num_classes))
        images, labels, name = _evaluation_images(data, config, options, class_names)
        batch_size = batch_size or PREDICT_BATCH
        probabilities = np.concatenate([np.asarray(model.predict_on_batch(images[i:i + batch_size]))
                                        for i in range(0, len(images), batch_size)])
        scores = metrics_lib.classification_metrics(labels, probabilities, class_names)
        metrics = {"test_num_examples": len(labels), **{f"test_{k}": v for k, v in scores.items()}}
        return Evaluation(metrics, name, "all", len(labels))

    def fold_data(self, data, num_folds, fold, seed):
        """Stratified folds of every image (train, validation and test
        together): fold `fold` tests, a stratified share of the rest
        validates, as the run's own split did."""
        import numpy as np

        parts = [p for p in (data.test_arrays, data.validation_arrays) if p is not None]
        train_images, train_labels = _train_arrays(data)
        images = np.concatenate([train_images] + [p[0] for p in parts])
        labels = np.concatenate([train_labels] + [p[1] for p in parts])
        counts = np.bincount(labels, minlength=len(data.class_names))
        smallest = int(np.argmin(counts))
        needed = 2 if data.validation_arrays is None else 3
        if counts[smallest] < num_folds or len(labels) - len(labels) // num_folds < needed * len(counts):
            raise ValueError(
                f"Invalid value for `folds`: '{data.name}' has {counts[smallest]} images of class "
                f"'{data.class_names[smallest]}', so {num_folds} stratified folds cannot each test it; "
                f"use at most {int(counts.min())} folds. Received: folds={num_folds}.")
        rest, test = splits.kfold(len(labels), num_folds, fold, seed, labels=labels)
        folded = _labelled(data.name, (images[rest], labels[rest]), (images[test], labels[test]),
                           data.class_names, VALIDATION_SHARE if data.validation_arrays is not None else 0,
                           named=False)
        folded.config_updates = dict(data.config_updates)
        return folded

    def example_input(self, config, batch_size=2):
        import numpy as np

        shape = (batch_size, config.image_height, config.image_width, config.channels)
        return np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype("float32")

    def expected_output_shape(self, config, batch_size=2):
        return (batch_size, config.num_classes)

    def count_params(self, config):
        return network.count_params(config)


def _train_arrays(data):
    """The training images and int labels of a `LabelledImages`."""
    import numpy as np

    images, one_hot = data.train.batch(max(1, data.num_train)).get_single_element()
    return np.asarray(images), np.argmax(np.asarray(one_hot), axis=-1).astype("int64")


def _prediction_inputs(data, config):
    """`(paths, images)`: image files to read in chunks (images None), or
    the rows of an array (paths their indices) of the run's image shape."""
    import glob

    import numpy as np

    shape = (config.image_height, config.image_width, config.channels)
    if isinstance(data, (str, os.PathLike)):
        data = os.fspath(data)
        if os.path.isdir(data):
            return images_lib.list_images(data), None
        if glob.has_magic(data):
            files = sorted(f for f in glob.glob(data, recursive=True)
                           if f.lower().endswith(images_lib.IMAGE_EXTENSIONS))
            if not files:
                raise FileNotFoundError(f"No PNG or JPEG files match the glob '{data}'.")
            return files, None
        data = [data]
    if isinstance(data, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in data):
        missing = [os.fspath(p) for p in data if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"Image file '{missing[0]}' not found (looked in {os.path.abspath(missing[0])}).")
        return [os.fspath(p) for p in data], None
    images = np.asarray(data, "float32")
    if images.ndim == 3 and shape[-1] == 1:
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != shape:
        raise ValueError(
            f"Images for this run must be shaped (n, {', '.join(map(str, shape))}) (height, width, "
            f"channels) in [-1, 1]. Received: shape {images.shape}. A folder or image files are "
            "resized to the run's size.")
    return [str(i) for i in range(len(images))], images


def _evaluation_images(data, config, options, class_names):
    """Labelled images to score, labels indexed by the run's classes."""
    import numpy as np

    options = dict(options or {})
    shape = (config.image_height, config.image_width, config.channels)
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = _arrays(*data)
        name = "arrays"
    elif isinstance(data, (str, os.PathLike)) and os.fspath(data).partition(":")[0] in DATASETS:
        name, _, which = os.fspath(data).partition(":")
        if which not in ("", "train", "test"):
            raise ValueError(f"Unknown split '{which}' of '{name}'. Accepted: train, test. Received: data={data!r}.")
        if name == "digits":
            config_lib.check_options(options, (), name)
            whole = load_images("digits", config, {})
            images, labels = whole.test_arrays if which != "train" else _train_arrays(whole)
        else:
            config_lib.check_options(options, ("tfds_data_dir",), name)
            train, test, names = tfds.image_splits(name, options.get("tfds_data_dir"))
            images, labels = train if which == "train" else test
        name = os.fspath(data)
    elif isinstance(data, (str, os.PathLike)):
        config_lib.check_options(options, (), data)
        images, labels, names = images_lib.read_folder(data, *shape)
        if labels is None:
            raise ValueError(
                f"Image folder '{os.fspath(data)}' has no class sub-folders: scoring needs one "
                f"sub-folder per class, named as the run's classes ({', '.join(map(str, class_names))}).")
        unknown = [n for n in names if n not in [str(c) for c in class_names]]
        if unknown:
            raise ValueError(
                f"Image folder '{os.fspath(data)}' has sub-folders that are not classes of this run: "
                f"{', '.join(unknown)}.{config_lib.did_you_mean(unknown[0], [str(c) for c in class_names])} "
                f"The run's classes: {', '.join(map(str, class_names))}.")
        labels = np.array([[str(c) for c in class_names].index(names[i]) for i in labels], "int64")
        name = os.fspath(data)
    else:
        raise ValueError(
            f"image_classifier evaluates on a class folder, a dataset name or (images, labels) arrays. "
            f"Received: data={data!r} ({type(data).__name__}).")
    if images.shape[1:] != shape:
        raise ValueError(
            f"The images of '{name}' are {'x'.join(map(str, images.shape[1:]))} (height x width x channels); "
            f"this run's model takes {'x'.join(map(str, shape))} images. Evaluate on images of the run's "
            "size (a folder is resized to it).")
    if labels.max() >= len(class_names):
        raise ValueError(
            f"'{name}' has labels up to {labels.max()}; this run knows {len(class_names)} classes.")
    return images, labels, name


def predict(model, images):
    """Class probabilities of `images` (inference mode) as a NumPy array.

    Through one traced function (`zoo.inference`): this runs every epoch for
    the confusion matrix, where `model.predict` cost 6x more a call.
    """
    return inference.predict(model, images, PREDICT_BATCH)


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
