"""dcgan end to end: data, distributed training, pictures, FID and bad inputs."""

import glob
import json
import os
import subprocess

import numpy as np
import pytest

import zoo
from conftest import ZOO, zoo_env
from zoo import cli
from zoo.data import images as images_lib
from zoo.metrics import fid as fid_lib

TINY = dict(latent_dim=8, generator_filters=8, discriminator_filters=8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One FID-classifier cache for the module: the digits classifier trains once."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("ZOO_CACHE_DIR")
    os.environ["ZOO_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ZOO_CACHE_DIR", None)
    else:
        os.environ["ZOO_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def runs(cache, tmp_path_factory):
    """One epoch on the digits under the default and the mirrored strategy."""
    import tensorflow as tf

    assert len(tf.config.list_logical_devices("CPU")) == 2
    root = tmp_path_factory.mktemp("runs")
    return {
        strategy: zoo.train(
            "dcgan", epochs=1, batch_size=128, strategy=strategy, seed=3,
            run_dir=root / strategy, verbose=0, **TINY,
        )
        for strategy in ("default", "mirrored")
    }


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_training_writes_scores_grid_and_tensorboard_images(runs, strategy):
    run = runs[strategy]
    metrics = json.load(open(os.path.join(run.dir, "metrics.json")))
    assert run.config["model"]["image_height"] == 8 and run.config["data"]["num_train"] == 1437
    for key in ("fid", "fid_real_floor", "fid_untrained_ceiling", "fid_progress", "min_class_share"):
        assert np.isfinite(metrics[key]), key
    # A held-out real sample sits much closer to the training data than noise does.
    assert metrics["fid_real_floor"] < metrics["fid_untrained_ceiling"] / 10
    assert metrics["fid_num_samples"] == 360
    shares = [metrics[f"class_share_{d}"] for d in range(10)]
    assert sum(shares) == pytest.approx(1.0)
    assert images_lib.make_grid(np.zeros((64, 8, 8, 1))).shape == (265, 265, 1)
    from PIL import Image

    assert Image.open(os.path.join(run.dir, "samples.png")).size == (265, 265)

    from tensorboard.backend.event_processing import event_accumulator

    tags = {}
    for path in glob.glob(os.path.join(run.dir, "logs", "events.out.tfevents.*")):
        acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            tags.setdefault(tag, []).extend(acc.Tensors(tag))
    assert [e.step for e in tags["samples"]] == [1]
    assert [e.step for e in tags["fid"]] == [1]


def test_one_and_two_replicas_give_the_same_losses(runs):
    one, two = runs["default"], runs["mirrored"]
    assert json.load(open(os.path.join(two.dir, "env.json")))["strategy"]["num_replicas_in_sync"] == 2
    for key in ("d_loss", "g_loss"):
        np.testing.assert_allclose(one.history[key], two.history[key], rtol=1e-4)
    np.testing.assert_allclose(
        one.model.generate(4, seed=0), two.model.generate(4, seed=0), atol=1e-4
    )


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_grid_fid_and_export_share_one_traced_generator(runs, strategy):
    from zoo import inference
    from zoo.models.dcgan import task as dcgan_task

    generator = runs[strategy].model.generator
    # The epoch's grid, the FIDs, the evaluation and the export ran through it: one trace.
    function = inference.function(generator)
    assert function.experimental_get_tracing_count() == 1
    noise = dcgan_task.fixed_noise(TINY["latent_dim"], 700)  # Two chunks: 500 and 200 rows.
    eager = (np.clip(np.asarray(generator(noise, training=False)), -1.0, 1.0) + 1.0) / 2.0
    np.testing.assert_allclose(dcgan_task._sample(generator, noise), eager, atol=1e-6)
    assert function.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_generate_to_png_through_the_cli(runs, tmp_path):
    run = runs["default"]
    out = tmp_path / "grid.png"
    proc = subprocess.run(
        ZOO + ["generate", run.dir, "--num-images", "16", "--out", str(out), "--seed", "5"],
        env=zoo_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    written = np.asarray(Image.open(out))
    expected = images_lib.make_grid(zoo.load_model(os.path.join(run.dir, "model.keras")).generate(16, seed=5))
    assert written.shape == (133, 133)  # 4x4 cells of 32 px and 1 px gaps.
    np.testing.assert_array_equal(written, expected[..., 0])


def test_generate_rejects_bad_arguments(runs, tmp_path, capsys):
    assert cli.main(["generate", runs["default"].dir, "--num-images", "0"]) == 2
    assert "--num-images" in capsys.readouterr().err
    assert cli.main(["generate", runs["default"].dir, "--out", str(tmp_path / "x.jpg")]) == 2
    assert "PNG" in capsys.readouterr().err


def _write_images(folder, count, size=(12, 10), mode="L", ext=".png"):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    channels = 1 if mode == "L" else 3
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
        Image.fromarray(pixels[..., 0] if mode == "L" else pixels).save(folder / f"{i:03d}{ext}")


def test_image_folder_trains_at_the_config_size(cache, tmp_path):
    _write_images(tmp_path / "flat", 20, size=(20, 12))
    _write_images(tmp_path / "flat", 4, size=(9, 9), mode="RGB", ext=".jpg")
    run = zoo.train(
        "dcgan", data=str(tmp_path / "flat"), epochs=1, batch_size=8, image_height=16,
        image_width=8, channels=3, num_upsamples=1, run_dir=tmp_path / "run", verbose=0, **TINY,
    )
    assert run.config["data"] == {"name": str(tmp_path / "flat"), "num_train": 24}
    assert run.model.generate(2, seed=0).shape == (2, 16, 8, 3)
    assert "fid" not in run.metrics  # No class subfolders: no classifier, no FID.
    assert os.path.exists(os.path.join(run.dir, "samples.png"))


def test_read_folder_labels_subfolders_and_resizes(tmp_path):
    _write_images(tmp_path / "cats", 3, size=(30, 10), mode="RGB")
    _write_images(tmp_path / "dogs", 2, size=(10, 30), ext=".jpeg")
    images, labels, classes = images_lib.read_folder(tmp_path, 8, 4, channels=1)
    assert images.shape == (5, 8, 4, 1) and images.min() >= -1 and images.max() <= 1
    assert classes == ["cats", "dogs"] and labels.tolist() == [0, 0, 0, 1, 1]


def test_bad_image_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"holds no images. Accepted files: \.png, \.jpg, \.jpeg"):
        zoo.train("dcgan", data=str(tmp_path / "empty"), epochs=1, verbose=0)
    _write_images(tmp_path / "broken", 3)
    (tmp_path / "broken" / "bad.png").write_bytes(b"this is not a PNG")
    with pytest.raises(ValueError, match=r"Could not read image '.*bad\.png'"):
        zoo.train("dcgan", data=str(tmp_path / "broken"), epochs=1, verbose=0)
    with pytest.raises(FileNotFoundError, match="Image folder '.*missing' not found"):
        zoo.train("dcgan", data=str(tmp_path / "missing"), epochs=1, verbose=0)
    # The CLI prints one error line, no traceback, and leaves no run behind.
    assert cli.main(["train", "dcgan", "--data", str(tmp_path / "empty"),
                     "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Image folder") and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_unreachable_image_size_and_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"reaches only multiples of 4 .* such as 8 or 12.*image_height=10"):
        zoo.train("dcgan", image_height=10, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"multiples of 16 .*Received: image_height=8"):
        zoo.train("dcgan", num_upsamples=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="Unknown dataset 'digit'. Did you mean 'digits'?"):
        zoo.train("dcgan", data="digit", epochs=1, verbose=0)
    with pytest.raises(KeyError, match="Unknown data option 'tfds_data_dir' for data 'digits'"):
        zoo.train("dcgan", data_options={"tfds_data_dir": str(tmp_path)}, epochs=1, verbose=0)


@pytest.mark.slow
def test_tfds_dataset_missing_then_present(cache, tmp_path, monkeypatch):
    data_dir = tmp_path / "tfds"
    with pytest.raises(FileNotFoundError, match=r"'mnist' has not been downloaded to the tfds data dir"):
        zoo.train("dcgan", data="mnist", data_options={"tfds_data_dir": str(data_dir)}, verbose=0)
    _fake_mnist(data_dir, monkeypatch)
    # MNIST sets the shape, 28x28, which three upsamplings cannot reach.
    with pytest.raises(ValueError, match=r"images of 'mnist' are 28x28.*multiples of 8\); use num_upsamples=2"):
        zoo.train("dcgan", data="mnist", data_options={"tfds_data_dir": str(data_dir)},
                  num_upsamples=3, verbose=0, **TINY)
    run = zoo.train(
        "dcgan", data="mnist", data_options={"tfds_data_dir": str(data_dir)}, epochs=1,
        batch_size=16, run_dir=tmp_path / "run", verbose=0, **TINY,
    )
    model = run.config["model"]
    assert (model["image_height"], model["image_width"], model["channels"]) == (28, 28, 1)
    assert run.config["data"]["num_train"] == 60 and run.metrics["fid_num_samples"] == 30
    assert run.model.generate(1).shape == (1, 28, 28, 1)


def _fake_mnist(data_dir, monkeypatch):
    """Writes a tiny prepared `mnist` 3.0.1 (random pixels) that tfds' own MNIST reads."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    # tfds' writer needs the `importlib_resources` package (the test extra).
    rng = np.random.default_rng(0)

    def split(n):
        return tf.data.Dataset.from_tensor_slices({
            "image": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
            "label": np.arange(n) % 10,
        })

    tfds.dataset_builders.TfDataBuilder(
        name="mnist", version="3.0.1", data_dir=str(data_dir),
        split_datasets={"train": split(60), "test": split(30)},
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
    ).download_and_prepare()


def test_frechet_distance_known_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 6))
    assert fid_lib.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    # A shift by c in every one of d dimensions adds exactly d * c**2.
    assert fid_lib.frechet_distance(x, x + 0.5) == pytest.approx(6 * 0.25, rel=1e-6)
    # Two samples of one Gaussian are close; a wider Gaussian is far.
    y = rng.standard_normal((500, 6))
    assert fid_lib.frechet_distance(x, y) < 0.2
    # N(0, I) vs N(0, 4I): Tr(I + 4I - 2 * 2I) = d.
    assert fid_lib.frechet_distance(x, 2 * y) == pytest.approx(6, rel=0.2)
    with pytest.raises(ValueError, match="same number of columns"):
        fid_lib.frechet_distance(x, x[:, :3])
