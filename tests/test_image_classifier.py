"""image_classifier end to end: digits, an image folder, metrics, pictures and bad inputs."""

import glob
import json
import os

import numpy as np
import pytest

import zoo
from zoo.metrics import classification as metrics_lib
from zoo.models.image_classifier import network
from zoo.models.image_classifier.task import ImageClassifierTask, load_images

NAME = "image_classifier"
SMALL = dict(stage_widths=(16,), blocks_per_stage=1)
FAST = dict(epochs=3, learning_rate=1e-2, verbose=0, **SMALL)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A few epochs of a small ResNet on the digits."""
    return zoo.train(NAME, run_dir=tmp_path_factory.mktemp("runs") / "digits", **FAST)


def _image_tags(run_dir):
    from tensorboard.backend.event_processing import event_accumulator

    tags = {}
    for path in glob.glob(os.path.join(run_dir, "logs", "events.out.tfevents.*")):
        acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            tags.setdefault(tag, []).extend(acc.Tensors(tag))
    return tags


def test_digits_run_reports_metrics_and_writes_confusion_matrices(digits_run):
    import tensorflow as tf

    metrics = json.load(open(os.path.join(digits_run.dir, "metrics.json")))
    assert metrics["test_num_examples"] == 360
    assert digits_run.config["data"] == {"name": "digits", "num_train": 1293, "num_validation": 144,
                                         "num_test": 360, "class_names": [str(d) for d in range(10)]}
    assert metrics["test_accuracy"] > 0.5  # Chance is 0.1.
    assert metrics["test_top_3_accuracy"] >= metrics["test_accuracy"]
    per_class = [metrics[f"test_accuracy_class_{d}"] for d in range(10)]
    assert metrics["test_balanced_accuracy"] == pytest.approx(np.mean(per_class))
    assert {"final_val_accuracy", "final_val_top_3_accuracy"} <= set(metrics)

    # Confusion matrices of the validation split in TensorBoard: the first and the last epoch
    # always, those between as `summaries_max_share` allows.
    events = sorted(_image_tags(digits_run.dir)["confusion_matrix"], key=lambda e: e.step)
    steps = [e.step for e in events]
    assert steps[0] == 1 and steps[-1] == 3 and steps == sorted(set(steps)), steps
    width, height, png = tf.make_ndarray(events[-1].tensor_proto)[:3]
    assert tf.io.decode_png(png).shape == (int(height), int(width), 3)

    # The test split's matrix beside the model: its diagonal is the accuracy.
    saved = json.load(open(os.path.join(digits_run.dir, "confusion_matrix.json")))
    counts = np.array(saved["counts"])
    assert counts.sum() == 360 and saved["class_names"] == [str(d) for d in range(10)]
    assert np.trace(counts) / counts.sum() == pytest.approx(metrics["test_accuracy"])
    assert os.path.exists(os.path.join(digits_run.dir, "confusion_matrix.png"))


def test_epoch_matrices_and_evaluation_share_one_traced_model(digits_run):
    from zoo import inference

    # Three epochs' confusion matrices and the test evaluation ran through it: one trace.
    function = inference.function(digits_run.model)
    assert function.experimental_get_tracing_count() == 1
    images, _ = load_images("digits", zoo.get_config(NAME)).test_arrays
    images = np.concatenate([images] * 4)[:1100]  # Two calls: 1024 and 76 images.
    np.testing.assert_allclose(inference.predict(digits_run.model, images, batch_size=1024),
                               digits_run.model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    assert function.experimental_get_tracing_count() == 1


def test_saved_model_reloads_in_safe_mode(digits_run, tmp_path):
    import keras

    images, _ = load_images("digits", zoo.get_config(NAME)).test_arrays
    reloaded = keras.models.load_model(os.path.join(digits_run.dir, "model.keras"))  # No zoo classes.
    np.testing.assert_allclose(reloaded.predict(images[:16], verbose=0),
                               digits_run.model.predict(images[:16], verbose=0), rtol=1e-5, atol=1e-6)


def _write_folder(root, per_class=6, size=12):
    """Three classes of 12x12 RGB pictures, easy to tell apart."""
    from PIL import Image

    rng = np.random.default_rng(0)
    patterns = {
        "dark": lambda: np.zeros((size, size, 3)),
        "light": lambda: np.full((size, size, 3), 255.0),
        "stripes": lambda: np.tile((np.arange(size) % 4 < 2)[None, :, None] * 255.0, (size, 1, 3)),
    }
    for name, pattern in patterns.items():
        os.makedirs(root / name)
        for i in range(per_class):
            pixels = np.clip(pattern() + rng.normal(0, 20, (size, size, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return str(root)


def test_image_folder_with_class_subfolders_trains(tmp_path):
    folder = _write_folder(tmp_path / "pictures")
    run = zoo.train(NAME, data=folder, run_dir=tmp_path / "run", image_height=12, image_width=12,
                    channels=3, **{**FAST, "epochs": 2})
    assert run.config["model"]["num_classes"] == 3 and run.config["data"]["name"] == "pictures"
    assert run.config["data"]["class_names"] == ["dark", "light", "stripes"]
    assert {"test_accuracy_class_dark", "test_accuracy_class_light", "test_accuracy_class_stripes"} <= set(run.metrics)
    assert "test_top_3_accuracy" not in run.metrics  # Always 1 with 3 classes.
    assert run.model.output_shape == (None, 3)


def test_splits_are_stratified_and_the_same_for_every_seed():
    task, config = ImageClassifierTask(), zoo.get_config(NAME)
    first, other = task.load_data("digits", config, {}, 0), task.load_data("digits", config, {}, 7)
    np.testing.assert_array_equal(first.test_arrays[1], other.test_arrays[1])
    assert (len(first.test_arrays[1]), len(first.validation_arrays[1]), first.num_train) == (360, 144, 1293)
    assert np.bincount(first.test_arrays[1]).min() >= 35  # About 36 of each digit.
    assert first.config_updates == {"num_classes": 10, "image_height": 8, "image_width": 8, "channels": 1}
    none = task.load_data("digits", config, {"validation_share": 0.0, "test_share": 0.5}, 0)
    assert none.validation is None and none.num_train + len(none.test_arrays[1]) == 1797


def test_arrays_are_data_too(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    images = np.where(labels[:, None, None] == 1, 0.5, -0.5) + rng.normal(0, 0.1, (40, 6, 6))
    run = zoo.train(NAME, data=(images, labels), run_dir=tmp_path / "run", **{**FAST, "epochs": 2})
    assert run.config["model"]["image_height"] == 6 and run.config["model"]["num_classes"] == 2


@pytest.mark.parametrize("backbone", network.BACKBONES)
def test_both_backbones_count_build_and_reload(backbone, tmp_path):
    import keras

    overrides = dict(backbone=backbone, stage_widths=(8, 16), image_height=9, image_width=7, channels=3,
                     num_classes=4)
    model = zoo.get(NAME, **overrides)
    config = zoo.get_config(NAME, **overrides)
    assert model.count_params() == network.count_params(config)
    x = ImageClassifierTask().example_input(config, 2)
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, 4) and np.allclose(y.sum(axis=-1), 1, atol=1e-5)
    model.save(tmp_path / "m.keras")
    reloaded = zoo.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(x, training=False)), y, atol=1e-6)
    # Training mode shifts the images (the augmentation is in the model).
    assert not np.allclose(keras.ops.convert_to_numpy(reloaded(x, training=True)), y, atol=1e-6)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(backbone="resnte"), r"must be one of resnet, mobilenet \(did you mean 'resnet'\?\). Received: backbone='resnte'"),
        (dict(backbone="mobilnet"), "did you mean 'mobilenet'"),
        (dict(stage_widths=(32, 0)), "must be one or more positive channel counts"),
        (dict(channels=2), "must be 1 or 3"),
        (dict(random_shift=5.0), r"must be in \[0, 4\] pixels"),
        (dict(label_smoothing=1.0), r"must be in \[0, 1\)"),
    ],
)
def test_bad_config_values_say_what_is_allowed(overrides, message):
    with pytest.raises(ValueError, match=message):
        zoo.get_config(NAME, **overrides)


def test_tfds_dataset_not_prepared_is_a_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    run_dir = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"tfds dataset 'mnist' has not been downloaded to the tfds "
                                                r"data dir '.*empty'.*--tfds-data-dir.*--data digits"):
        zoo.train(NAME, data="mnist", data_options={"tfds_data_dir": str(tmp_path / "empty")},
                  run_dir=run_dir, **FAST)
    assert not run_dir.exists()


def test_bad_data_is_explained_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="Unknown dataset 'digts'. Did you mean 'digits'"):
        zoo.train(NAME, data="digts", run_dir=run_dir, **FAST)
    flat = tmp_path / "flat"
    flat.mkdir()
    from PIL import Image

    for i in range(4):
        Image.new("L", (8, 8), i * 60).save(flat / f"{i}.png")
    with pytest.raises(ValueError, match="has no class sub-folders: .*one sub-folder per class"):
        zoo.train(NAME, data=str(flat), run_dir=run_dir, **FAST)
    folder = _write_folder(tmp_path / "few", per_class=6)
    os.remove(os.path.join(folder, "stripes", "0.png"))
    for i in range(1, 5):
        os.remove(os.path.join(folder, "stripes", f"{i}.png"))
    with pytest.raises(ValueError, match=r"too few images in class 'stripes' \(1\): each class needs at least 3"):
        zoo.train(NAME, data=folder, run_dir=run_dir, **FAST)
    with pytest.raises(KeyError, match="Unknown data option 'test_shares'.*Did you mean 'test_share'"):
        zoo.train(NAME, data_options={"test_shares": 0.3}, run_dir=run_dir, **FAST)
    with pytest.raises(ValueError, match=r"`test_share`: must be a number in \(0, 1\). Received: test_share=1.5"):
        zoo.train(NAME, data_options={"test_share": 1.5}, run_dir=run_dir, **FAST)
    with pytest.raises(ValueError, match="the data 'digits' needs image_height=8. Received: image_height=28"):
        zoo.train(NAME, image_height=28, run_dir=run_dir, **FAST)
    assert not run_dir.exists()


def test_classification_metrics_known_case():
    labels = np.array([0, 0, 1, 1, 2, 3])
    probabilities = np.array([
        [0.7, 0.1, 0.1, 0.1],   # right
        [0.1, 0.6, 0.2, 0.1],   # wrong, 0 is third: in the top 3
        [0.1, 0.8, 0.05, 0.05],  # right
        [0.4, 0.3, 0.2, 0.1],   # wrong, second
        [0.1, 0.1, 0.7, 0.1],   # right
        [0.4, 0.3, 0.2, 0.1],   # wrong, last: not in the top 3
    ])
    metrics = metrics_lib.classification_metrics(labels, probabilities, ["a", "b", "c", "d e"])
    assert metrics["accuracy"] == pytest.approx(3 / 6) and metrics["top_3_accuracy"] == pytest.approx(5 / 6)
    assert metrics["accuracy_class_a"] == 0.5 and metrics["accuracy_class_d_e"] == 0.0
    assert metrics["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1 + 0) / 4)
    matrix = metrics_lib.confusion_matrix(labels, probabilities.argmax(-1), 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]
    picture = metrics_lib.render_confusion_matrix(matrix, ["a", "b", "c", "a long class name"])
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
