"""Using an image_classifier run: predict on image files, evaluate on other
images, cross-validate. One tiny run on the digits is shared."""

import csv
import json
import os
import subprocess

import numpy as np
import pytest

import zoo
from conftest import ZOO, zoo_env
from zoo.data import images as images_lib

TINY = zoo.registry.get_entry("image_classifier").tiny


@pytest.fixture(scope="module")
def classified(tmp_path_factory):
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("classifier")
    run = zoo.train("image_classifier", epochs=3, run_dir=root / "run", verbose=0, **TINY)
    digits = load_digits()
    folder = root / "pngs"
    for i in range(100):
        label = str(digits.target[-1 - i])  # The last images, as 8-bit PNG files.
        os.makedirs(folder / label, exist_ok=True)
        images_lib.save_png(np.round(digits.images[-1 - i] / 16 * 255).astype("uint8")[..., None],
                            folder / label / f"{i:03d}.png")
    return run, root, folder


def test_cli_predict_on_a_folder_gives_class_probability_and_top_k(classified):
    run, root, folder = classified
    out = subprocess.run([*ZOO, "predict", run.dir, "--data", str(folder), "--out", str(root / "pred.csv"),
                          "--top-k", "2"], env=zoo_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with open(root / "pred.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "class", "probability", "class_2", "probability_2"]
    paths = images_lib.list_images(folder)
    assert [r[0] for r in rows[1:]] == paths
    images = np.stack([images_lib.read_image(p, 8, 8, 1) for p in paths])
    probabilities = run.model.predict(images, verbose=0)
    names = run.config["data"]["class_names"]
    top = np.argsort(-probabilities, axis=1, kind="stable")
    assert [r[1] for r in rows[1:]] == [names[i] for i in top[:, 0]]
    assert [r[3] for r in rows[1:]] == [names[i] for i in top[:, 1]]
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], probabilities.max(axis=1), rtol=1e-6)
    assert all(float(r[2]) >= float(r[4]) for r in rows[1:])


def test_evaluate_reproduces_the_run_and_scores_a_folder(classified):
    run, root, folder = classified
    own = zoo.load_run(run.dir).evaluate("digits")
    assert own["own_data"] and own["split"] == "test"
    for key, value in own["metrics"].items():
        assert value == run.metrics[key], key
    record = zoo.load_run(run.dir).evaluate(folder)
    assert record["name"] == "pngs" and record["num_examples"] == 100
    paths = images_lib.list_images(folder)
    labels = np.array([int(os.path.basename(os.path.dirname(p))) for p in paths])
    predicted = run.model.predict(np.stack([images_lib.read_image(p, 8, 8, 1) for p in paths]), verbose=0)
    assert record["metrics"]["test_accuracy"] == pytest.approx(np.mean(predicted.argmax(-1) == labels))
    assert os.path.exists(os.path.join(run.dir, "evaluations", "pngs.json"))


def test_bad_images_are_refused_and_nothing_written(classified, tmp_path):
    run, root, folder = classified
    loaded = zoo.load_run(run.dir)
    with pytest.raises(ValueError, match=r"must be shaped \(n, 8, 8, 1\).*Received: shape \(2, 28, 28, 1\)"):
        loaded.predict(np.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match=r"images of 'arrays' are 8x8x3 .*takes 8x8x1 images"):
        loaded.evaluate((np.zeros((4, 8, 8, 3)), np.arange(4)))
    cats = tmp_path / "animals"
    for name in ("cats", "7"):
        os.makedirs(cats / name)
        images_lib.save_png(np.zeros((8, 8, 1), "uint8"), cats / name / "a.png")
    with pytest.raises(ValueError, match=r"sub-folders that are not classes of this run: cats"):
        loaded.evaluate(cats)
    broken = tmp_path / "broken"
    os.makedirs(broken)
    images_lib.save_png(np.zeros((8, 8, 1), "uint8"), broken / "a.png")
    (broken / "b.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"Could not read image '.*b.png'"):
        loaded.predict(broken, out=tmp_path / "out.csv")
    with pytest.raises(ValueError, match=r"Invalid value for `top_k`: must be an int in \[1, 10\]"):
        loaded.predict(broken, top_k=11)
    assert not (tmp_path / "out.csv").exists()
    assert not os.path.exists(os.path.join(run.dir, "evaluations", "animals.json"))
    assert not os.path.exists(os.path.join(run.dir, "evaluations", "arrays.json"))


def test_cross_validation_of_the_classifier(tmp_path):
    with pytest.raises(ValueError, match=r"has \d+ images of class .*use at most \d+ folds. Received: folds=500"):
        zoo.train("image_classifier", folds=500, epochs=1, run_dir=tmp_path / "big", verbose=0, **TINY)
    assert not (tmp_path / "big").exists()
    cv = zoo.train("image_classifier", folds=2, epochs=1, run_dir=tmp_path / "cv", verbose=0, **TINY)
    saved = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    per_fold = [f.metrics["test_accuracy"] for f in cv.folds]
    assert saved["test_accuracy"]["per_fold"] == per_fold
    assert saved["test_accuracy"]["std"] == pytest.approx(np.std(per_fold, ddof=1))
    # Stratified folds of all 1,797 digits: each image is tested once.
    assert sum(f.metrics["test_num_examples"] for f in cv.folds) == 1797
