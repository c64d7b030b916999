"""mlp_regressor end to end: datasets, CSV errors, evaluation, reload."""

import os

import numpy as np
import pytest

import zoo
from zoo.data.tabular import read_csv
from zoo.metrics.regression import regression_metrics
from zoo.models.mlp_regressor import MLPRegressorTask

FAST = dict(epochs=4, batch_size=32, learning_rate=1e-2, hidden_units=(32,), verbose=0)


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(str(c) for c in row) + "\n")
    return str(path)


def houses(tmp_path, n=60, changes=None):
    """A numeric CSV whose price depends on rooms and area."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        rooms, area = int(rng.integers(1, 6)), float(rng.uniform(30, 200))
        rows.append([rooms, round(area, 1), i % 7, round(50 * rooms + 2 * area + rng.normal(), 2)])
    for (row, column), value in (changes or {}).items():
        rows[row][column] = value
    return write_csv(tmp_path / "houses.csv", ["rooms", "area", "floor", "price"], rows)


def test_friedman1_trains_and_beats_the_mean_baseline(tmp_path):
    run = zoo.train("mlp_regressor", run_dir=tmp_path / "run", data_options={"num_train": 1000}, **FAST)
    metrics = run.metrics
    assert metrics["test_mse"] < 0.5 * metrics["baseline_mse"]
    assert metrics["test_r2"] > 0.5 and abs(metrics["baseline_r2"]) < 0.05
    assert set(metrics) >= {"test_mse", "test_mae", "test_r2", "baseline_mse", "baseline_mae", "baseline_r2"}
    assert run.config["data"] == {"name": "friedman1", "num_train": 1000,
                                  "features": [f"x{i}" for i in range(10)], "targets": ["y"]}


def test_saved_model_predicts_from_raw_features(tmp_path):
    import keras
    from sklearn.datasets import make_friedman1

    run = zoo.train("mlp_regressor", run_dir=tmp_path / "run", data_options={"num_train": 1000}, **FAST)
    x, y = make_friedman1(n_samples=500, noise=1.0, random_state=123)
    model = keras.models.load_model(os.path.join(run.dir, "model.keras"))  # No zoo, no other files.
    pred = model.predict(x.astype("float32"), verbose=0)
    np.testing.assert_allclose(pred, run.model.predict(x.astype("float32"), verbose=0), rtol=1e-5, atol=1e-5)
    # Raw units: as good as the run's own test MSE, far better than predicting the mean.
    mse = regression_metrics(y.reshape(-1, 1), pred)["mse"]
    assert mse < 0.5 * np.var(y) and abs(mse - run.metrics["test_mse"]) < 0.5 * run.metrics["test_mse"]


def test_normalization_is_adapted_on_the_training_split_only():
    task = MLPRegressorTask()
    config = zoo.get_config("mlp_regressor")
    data = task.load_data("friedman1", config, {"num_train": 200}, 0)
    model = zoo.get("mlp_regressor")
    task.prepare(model, data)
    x_train, y_train = data.arrays["train"]
    layer = model.get_layer("feature_normalization")
    np.testing.assert_allclose(np.ravel(layer.mean), x_train.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(np.ravel(model.get_layer("target_denormalization").mean), y_train.mean(), rtol=1e-4)


def test_diabetes(tmp_path):
    run = zoo.train("mlp_regressor", data="diabetes", run_dir=tmp_path / "run", **{**FAST, "epochs": 20})
    assert run.config["model"]["input_dim"] == 10 and run.config["data"]["name"] == "diabetes"
    assert run.metrics["test_mse"] < run.metrics["baseline_mse"]


def test_csv_with_target_and_features(tmp_path):
    path = houses(tmp_path)
    run = zoo.train("mlp_regressor", data=path, data_options={"target": "price", "features": "rooms,area"},
                    run_dir=tmp_path / "run", **{**FAST, "epochs": 30, "batch_size": 8})
    assert run.config["model"]["input_dim"] == 2
    assert run.metrics["test_mse"] < run.metrics["baseline_mse"]


def test_splits_are_seeded():
    task = MLPRegressorTask()
    config = zoo.get_config("mlp_regressor")
    first = task.load_data("diabetes", config, {}, 3).arrays["test"][1]
    again = task.load_data("diabetes", config, {}, 3).arrays["test"][1]
    other = task.load_data("diabetes", config, {}, 4).arrays["test"][1]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    "changes, kwargs, error, message",
    [
        ({}, dict(target="prize"), ValueError,
         r"Column 'prize' not found in '.*houses.csv'. Did you mean 'price'\? Columns: rooms, area, floor, price."),
        ({(4, 1): "big"}, dict(target="price"), ValueError,
         r"houses.csv', row 5 \(line 6\), column 'area': 'big' is not a number"),
        ({(3, 0): "", (8, 3): "NA"}, dict(target="price"), ValueError,
         r"has 2 missing values in 2 rows: row 4: rooms; row 9: price.*--drop-missing"),
        ({}, dict(target=None), ValueError, r"needs a target column \(`--target COLUMN`\). Columns of .*: rooms, area"),
    ],
)
def test_bad_csv(tmp_path, changes, kwargs, error, message):
    with pytest.raises(error, match=message):
        read_csv(houses(tmp_path, changes=changes), **kwargs)


def test_missing_rows_can_be_dropped(tmp_path):
    x, y, names = read_csv(houses(tmp_path, changes={(3, 0): ""}), target="price", drop_missing=True)
    assert x.shape == (59, 3) and y.shape == (59, 1) and names == ["rooms", "area", "floor"]


def test_too_few_rows_and_constant_columns(tmp_path):
    with pytest.raises(ValueError, match="has 10 usable rows; at least 20 are needed"):
        read_csv(houses(tmp_path, n=10), target="price")
    path = write_csv(tmp_path / "c.csv", ["a", "zip", "y"], [[i, 5, i * 2 + i % 3] for i in range(30)])
    with pytest.raises(ValueError, match=r"column 'zip' has the same value \(5\) in every row.*--features"):
        read_csv(path, target="y")


def test_bad_data_leaves_no_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"Data file '.*nothere.csv' not found"):
        zoo.train("mlp_regressor", data=str(tmp_path / "nothere.csv"), data_options={"target": "y"},
                  run_dir=run_dir, **FAST)
    with pytest.raises(ValueError, match="Unknown dataset 'diabets'. Did you mean 'diabetes'"):
        zoo.train("mlp_regressor", data="diabets", run_dir=run_dir, **FAST)
    with pytest.raises(KeyError, match="Unknown data option 'num_trian'.*Did you mean 'num_train'"):
        zoo.train("mlp_regressor", data_options={"num_trian": 5}, run_dir=run_dir, **FAST)
    with pytest.raises(ValueError, match="not a number"):
        zoo.train("mlp_regressor", data=houses(tmp_path, changes={(4, 1): "big"}), data_options={"target": "price"},
                  run_dir=run_dir, **FAST)
    assert not run_dir.exists()


def test_input_dim_conflict_is_explained(tmp_path):
    with pytest.raises(ValueError, match=r"the data 'diabetes' needs input_dim=10. Received: input_dim=3"):
        zoo.train("mlp_regressor", data="diabetes", input_dim=3, run_dir=tmp_path / "r", **FAST)


def test_regression_metrics_known_case():
    metrics = regression_metrics(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [2.0], [5.0]]))
    assert metrics["mse"] == pytest.approx(4 / 3) and metrics["mae"] == pytest.approx(2 / 3)
    assert metrics["r2"] == pytest.approx(1 - (4 / 3) / (2 / 3))
