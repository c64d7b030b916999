"""Using a trained run: predict, evaluate, cross-validate and compare.

One tiny mlp_regressor run on a CSV file and one 3-fold cross-validation
are shared by the tests; the CLI is run as a user runs it, in subprocesses.
"""

import csv
import json
import os
import subprocess

import numpy as np
import pytest

import zoo
from conftest import ZOO, zoo_env
from test_mlp_regressor import houses, write_csv
from test_trainer import _wait_for, read_scalars

FAST = dict(epochs=4, batch_size=16, learning_rate=1e-2, hidden_units=(16,), verbose=0)
FEATURES = ["rooms", "area", "floor"]


def zoo_cli(*args, cwd=None):
    return subprocess.run([*ZOO, *map(str, args)], env=zoo_env(), cwd=cwd, capture_output=True, text=True)


def read_table(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def new_houses(path, n=80, seed=1, order=("floor", "id", "price", "area", "rooms")):
    """Other houses, in another column order, with an extra `id` column."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rooms, area = int(rng.integers(1, 6)), round(float(rng.uniform(30, 200)), 1)
        cells = {"rooms": rooms, "area": area, "floor": i % 7, "id": f"h{i:03d}",
                 "price": round(50 * rooms + 2 * area + rng.normal(), 2)}
        rows.append([cells[c] for c in order])
    return write_csv(path, list(order), rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("use")
    data = houses(root, n=200)
    run = zoo.train("mlp_regressor", data=data, data_options={"target": "price"},
                    run_dir=root / "run", **FAST)
    return run, root, data


@pytest.fixture(scope="module")
def cross_validated(trained):
    _, root, data = trained
    return zoo.train("mlp_regressor", folds=3, data=data, data_options={"target": "price"},
                     run_dir=root / "cv", **FAST)


def model_rows(run, path):
    """`run.model` on the rows of a CSV file, features in the run's order."""
    header, rows = read_table(path)
    x = np.array([[float(r[header.index(c)]) for c in FEATURES] for r in rows], "float32")
    return run.model.predict(x, verbose=0)[:, 0]


# --- predict ---------------------------------------------------------------

def test_cli_predict_matches_the_model_in_raw_units_for_shuffled_columns(trained):
    run, root, _ = trained
    data = new_houses(root / "shuffled.csv")
    out = zoo_cli("predict", run.dir, "--data", data, "--out", root / "pred.csv", "--keep", "id")
    assert out.returncode == 0, out.stderr
    assert "Wrote 80 rows of predictions to" in out.stdout
    header, rows = read_table(root / "pred.csv")
    assert header == ["id", "price_predicted"]
    assert [r[0] for r in rows] == [f"h{i:03d}" for i in range(80)]
    predicted = np.array([float(r[1]) for r in rows], "float32")
    np.testing.assert_array_equal(predicted, model_rows(run, data))
    # Raw units: prices in the hundreds, not standardized values near 0.
    source_header, source_rows = read_table(data)
    prices = np.array([float(r[source_header.index("price")]) for r in source_rows])
    assert abs(predicted.mean() - prices.mean()) < 0.5 * prices.std()


def test_python_predict_takes_a_path_a_dataframe_a_dict_and_an_array(trained):
    run, root, _ = trained
    data = new_houses(root / "frame.csv")
    expected = model_rows(run, data)
    loaded = zoo.load_run(run.dir)
    columns = loaded.predict(data, keep="id")
    assert list(columns) == ["id", "price_predicted"]
    np.testing.assert_array_equal(columns["price_predicted"], expected)
    header, rows = read_table(data)
    table = {c: np.array([float(r[header.index(c)]) for r in rows]) for c in ("price", "area", "rooms", "floor")}
    np.testing.assert_array_equal(loaded.predict(table)["price_predicted"], expected)
    array = np.stack([table[c] for c in FEATURES], axis=1)
    np.testing.assert_array_equal(loaded.predict(array)[:, 0], expected)
    # Small chunks give the same rows as one chunk.
    np.testing.assert_array_equal(loaded.predict(array, batch_size=7)[:, 0], expected)
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(data).set_index("id")
    result = loaded.predict(frame)
    assert list(result.columns) == ["price_predicted"] and list(result.index) == list(frame.index)
    np.testing.assert_array_equal(result["price_predicted"].to_numpy(), expected)


def test_predict_streams_a_file_in_chunks(trained):
    """A file streams through in chunks: Python's peak memory is the same
    for 8 times the rows, and every row comes out."""
    import tracemalloc

    run, root, _ = trained

    def peak_for(rows):
        path = root / f"big{rows}.csv"
        rng = np.random.default_rng(3)
        block = np.column_stack([rng.integers(1, 6, rows), rng.uniform(30, 200, rows).round(1),
                                 rng.integers(0, 7, rows)])
        with open(path, "w") as f:
            f.write("rooms,area,floor\n")
            np.savetxt(f, block, fmt=["%d", "%.1f", "%d"], delimiter=",")
        tracemalloc.start()
        try:
            written = run.predict(path, out=root / "big_pred.csv", batch_size=1024)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert written == rows
        with open(root / "big_pred.csv") as f:
            assert sum(1 for _ in f) == rows + 1
        return peak, os.path.getsize(path)

    run.predict(np.zeros((3, 3)))  # Loads and traces the model before measuring.
    small, _ = peak_for(5_000)
    large, size = peak_for(40_000)
    assert large < 1.3 * small, (small, large, size)


@pytest.mark.parametrize("name, changes, message", [
    ("missing column", dict(order=("floor", "price", "rooms")),
     r"lacks 1 of the run's features: area\. .*Needed: rooms, area, floor"),
    ("not a number", {(4, "area"): "big"}, r"row 5 \(line 6\), column 'area': 'big' is not a number"),
    ("missing value", {(9, "rooms"): ""}, r"row 10 \(line 11\), column 'rooms' is empty.*without missing values"),
])
def test_predict_refuses_bad_rows_and_writes_nothing(trained, name, changes, message):
    run, root, _ = trained
    order = changes.pop("order", ("floor", "id", "price", "area", "rooms"))
    path = new_houses(root / "bad.csv", order=order)
    if changes:
        header, rows = read_table(path)
        for (row, column), value in changes.items():
            rows[row][header.index(column)] = value
        write_csv(path, header, rows)
    out = root / "bad_pred.csv"
    with pytest.raises(ValueError, match=message):
        run.predict(path, out=out)
    assert not out.exists() and not [f for f in os.listdir(root) if f.startswith(".tmp")]


def test_rows_with_missing_features_follow_the_run_drop_missing(trained, tmp_path):
    """A run that dropped incomplete rows in training leaves their
    predictions empty; the other rows are predicted as usual."""
    _, root, _ = trained
    data = houses(tmp_path, n=100, changes={(3, 0): ""})
    run = zoo.train("mlp_regressor", data=data, data_options={"target": "price", "drop_missing": True},
                    run_dir=tmp_path / "run", **{**FAST, "epochs": 1})
    path = new_houses(tmp_path / "gaps.csv", n=20)
    header, rows = read_table(path)
    rows[2][header.index("area")] = "NA"
    write_csv(path, header, rows)
    run.predict(path, out=tmp_path / "out.csv", keep="id")
    _, out = read_table(tmp_path / "out.csv")
    assert len(out) == 20 and out[2] == ["h002", ""]
    complete = [r for i, r in enumerate(rows) if i != 2]
    x = np.array([[float(r[header.index(c)]) for c in FEATURES] for r in complete], "float32")
    np.testing.assert_array_equal(np.array([float(r[1]) for i, r in enumerate(out) if i != 2], "float32"),
                                  run.model.predict(x, verbose=0)[:, 0])


def test_predict_refuses_an_unreadable_file_a_non_run_and_a_generator(trained, tmp_path):
    run, root, _ = trained
    binary = tmp_path / "image.csv"
    binary.write_bytes(b"\xff\xd8\xff\xe0 not text \x00\x9f")
    with pytest.raises(ValueError, match=r"Could not read '.*image.csv' as CSV"):
        run.predict(binary, out=tmp_path / "p.csv")
    with pytest.raises(FileNotFoundError, match=r"Data file '.*nothere.csv' not found"):
        run.predict(tmp_path / "nothere.csv", out=tmp_path / "p.csv")
    out = zoo_cli("predict", tmp_path, "--data", binary, "--out", tmp_path / "p.csv")
    assert out.returncode == 2 and "is not a zoo run directory: it has no config.json" in out.stderr
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"model_name": "mlp_regressor"}))
    out = zoo_cli("predict", unfinished, "--data", binary, "--out", tmp_path / "p.csv")
    assert out.returncode == 2 and "has not finished: it has no metrics.json or model.keras" in out.stderr
    # A generator's run: `zoo predict` points to `zoo generate`.
    gan = tmp_path / "gan"
    gan.mkdir()
    (gan / "config.json").write_text(json.dumps({"model_name": "dcgan", "model": {}, "train": {}}))
    (gan / "metrics.json").write_text("{}")
    (gan / "model.keras").write_text("")
    out = zoo_cli("predict", gan, "--data", binary, "--out", tmp_path / "p.csv")
    assert out.returncode == 2 and "Use `zoo generate RUN` instead" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "p.csv").exists()


# --- evaluate --------------------------------------------------------------

def test_cli_evaluate_on_the_training_data_reproduces_the_run_metrics(trained):
    run, root, data = trained
    out = zoo_cli("evaluate", run.dir, "--data", data)
    assert out.returncode == 0, out.stderr
    assert "the run's own test split, 30 examples" in out.stdout
    record = json.loads((root / "run" / "evaluations" / "houses.json").read_text())
    assert record["own_data"] and record["split"] == "test" and record["num_examples"] == 30
    for key in ("test_mse", "test_mae", "test_r2", "baseline_mse", "baseline_mae", "baseline_r2"):
        assert record["metrics"][key] == run.metrics[key], key


def test_evaluate_on_new_data_is_kept_apart_and_shown_in_tensorboard(trained):
    from zoo.metrics.regression import regression_metrics

    run, root, _ = trained
    first = new_houses(root / "houses_2025.csv", n=120, seed=5)
    record = zoo.load_run(run.dir).evaluate(first)
    assert record["name"] == "houses_2025" and not record["own_data"] and record["num_examples"] == 120
    header, rows = read_table(first)
    y = np.array([[float(r[header.index("price")])] for r in rows])
    expected = regression_metrics(y, model_rows(run, first)[:, None])
    for key in ("mse", "mae", "r2"):
        assert record["metrics"][f"test_{key}"] == pytest.approx(expected[key], rel=1e-6)
    train_mean = float(np.ravel(run.model.get_layer("target_denormalization").mean)[0])
    baseline = regression_metrics(y, np.full_like(y, train_mean))
    assert record["metrics"]["baseline_mse"] == pytest.approx(baseline["mse"], rel=1e-6)
    # Another file of the same name elsewhere is kept apart; the same file again replaces its own.
    other_dir = root / "other"
    other_dir.mkdir(exist_ok=True)
    second = zoo.load_run(run.dir).evaluate(new_houses(other_dir / "houses_2025.csv", n=40, seed=6))
    again = zoo.load_run(run.dir).evaluate(first)
    assert second["name"] == "houses_2025-2" and again["name"] == "houses_2025"
    saved = json.loads((root / "run" / "evaluations" / "houses_2025-2.json").read_text())
    assert saved["num_examples"] == 40
    scalars, _ = read_scalars(os.path.join(run.dir, "logs"))
    for name in ("houses_2025", "houses_2025-2"):
        points = scalars[(os.path.join("evaluations", name), "evaluation/test_mse")]
        assert len(points) == 1 and points[0][0] == run.metrics["epochs_trained"]
    assert scalars[(os.path.join("evaluations", "houses_2025"), "evaluation/test_mse")][0][1] == pytest.approx(
        record["metrics"]["test_mse"], rel=1e-6)


def test_evaluate_refuses_bad_data_and_writes_nothing(trained, tmp_path):
    run, root, _ = trained
    no_target = new_houses(tmp_path / "no_price.csv", order=("rooms", "area", "floor"))
    before = sorted(os.listdir(os.path.join(run.dir, "evaluations")))
    with pytest.raises(ValueError, match=r"lacks 1 of the run's features and targets: price"):
        zoo.load_run(run.dir).evaluate(no_target)
    out = zoo_cli("evaluate", run.dir, "--data", tmp_path / "nothere.csv")
    assert out.returncode == 2 and "not found" in out.stderr and "Traceback" not in out.stderr
    out = zoo_cli("evaluate", tmp_path, "--data", no_target)
    assert out.returncode == 2 and "is not a zoo run directory" in out.stderr
    assert sorted(os.listdir(os.path.join(run.dir, "evaluations"))) == before
    assert not os.path.exists(os.path.join(run.dir, "logs", "evaluations", "no_price"))


# --- cross-validation -------------------------------------------------------

def test_cross_validation_gives_fold_runs_and_their_statistics(cross_validated, trained):
    _, root, _ = trained
    cv = cross_validated
    assert [f.dir for f in cv.folds] == [str(root / "cv" / f"fold-{i}") for i in range(3)]
    saved = json.loads((root / "cv" / "metrics.json").read_text())
    for key in ("test_mse", "test_r2", "baseline_mse", "baseline_r2"):
        per_fold = [json.loads((root / "cv" / f"fold-{i}" / "metrics.json").read_text())[key] for i in range(3)]
        assert saved[key]["per_fold"] == per_fold
        assert saved[key]["mean"] == pytest.approx(np.mean(per_fold), rel=1e-12)
        assert saved[key]["std"] == pytest.approx(np.std(per_fold, ddof=1), rel=1e-12)
    assert saved["test_mse"]["mean"] < saved["baseline_mse"]["mean"]
    config = json.loads((root / "cv" / "config.json").read_text())
    assert config["cross_validation"] == {"num_folds": 3, "seed": 0}
    for i, fold in enumerate(cv.folds):
        assert fold.config["data"]["fold"] == i and fold.config["data"]["num_folds"] == 3
    # Every row is tested in exactly one fold: test rows add up to the table.
    from zoo.models.mlp_regressor import MLPRegressorTask

    task = MLPRegressorTask()
    whole = task.load_data(str(root / "houses.csv"), zoo.get_config("mlp_regressor"), {"target": "price"}, 0)
    tested = np.concatenate([task.fold_data(whole, 3, i, 0).arrays["test"][1] for i in range(3)])
    everything = np.concatenate([whole.arrays[k][1] for k in ("train", "validation", "test")])
    np.testing.assert_array_equal(np.sort(tested, axis=0), np.sort(everything, axis=0))


def test_folds_are_separate_hparams_trials(cross_validated):
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorflow.core.util import event_pb2

    trials = {}
    for fold in cross_validated.folds:
        logdir = os.path.join(fold.dir, "logs")
        for name in os.listdir(logdir):
            if not name.startswith("events.out"):
                continue
            for record in tf.data.TFRecordDataset(os.path.join(logdir, name)):
                for value in event_pb2.Event.FromString(record.numpy()).summary.value:
                    if value.tag == "_hparams_/session_start_info":
                        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                        start = data.session_start_info
                        # The trial is the fold's run directory: one trial per fold.
                        trials["/".join(start.group_name.split(os.sep)[-2:])] = start.hparams["fold"].number_value
    assert trials == {"cv/fold-0": 0, "cv/fold-1": 1, "cv/fold-2": 2}


def test_fold_counts_the_data_cannot_support_are_refused(trained, tmp_path):
    _, root, data = trained
    out = zoo_cli("train", "mlp_regressor", "--folds", "1", "--data", data, "--target", "price",
                  "--run-dir", tmp_path / "a", "--epochs", "1")
    assert out.returncode == 2 and "needs an integer of at least 2 folds. Received: folds=1" in out.stderr
    with pytest.raises(ValueError, match="has 200 rows, so 500 folds would hold fewer than 2 rows each"):
        zoo.train("mlp_regressor", folds=500, data=data, data_options={"target": "price"},
                  run_dir=tmp_path / "b", **FAST)
    with pytest.raises(ValueError, match=r"does not apply to model 'dcgan'.*Models with folds: image_classifier, mlp_regressor"):
        zoo.train("dcgan", folds=3, run_dir=tmp_path / "c", epochs=1)
    assert not any((tmp_path / d).exists() for d in "abc")


@pytest.mark.slow
def test_cross_validation_resumes_after_a_kill(tmp_path):
    import signal

    run_dir = tmp_path / "cv"
    # Enough epochs that the kill lands mid-fold on a fast machine too.
    epochs = 20
    command = [*ZOO, "train", "mlp_regressor", "--folds", "3", "--epochs", str(epochs), "--run-dir", str(run_dir),
               "--quiet", "--data-option", "num_train=1500", "--batch-size", "16", "--set", "hidden_units=[8]",
               "--steps-per-execution", "1", "--checkpoint-every-seconds", "0"]
    state = run_dir / "fold-1" / "checkpoints" / "state.json"
    process = subprocess.Popen(command, env=zoo_env(), cwd=tmp_path)
    try:
        _wait_for(lambda: state.exists() and json.loads(state.read_text())["epoch"] >= 2, 240, "fold 1, epoch 2")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert (run_dir / "fold-0" / "metrics.json").exists() and not (run_dir / "metrics.json").exists()
    assert json.loads(state.read_text())["epoch"] < epochs
    finished_at = os.path.getmtime(run_dir / "fold-0" / "metrics.json")
    out = subprocess.run(command, env=zoo_env(), cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert os.path.getmtime(run_dir / "fold-0" / "metrics.json") == finished_at  # Not trained again.
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for i in range(3):
        history = json.loads((run_dir / f"fold-{i}" / "history.json").read_text())
        assert len(history["loss"]) == epochs
    assert metrics["epochs_trained"]["per_fold"] == [epochs] * 3
    # A different fold count in the same directory is refused.
    out = subprocess.run([*command[:command.index("--folds") + 1], "4", *command[command.index("--folds") + 2:]],
                         env=zoo_env(), cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 2 and "cross_validation.num_folds: saved 3, now 4" in out.stderr


@pytest.mark.slow
def test_tensorboard_server_shows_evaluations_beside_the_run_and_folds_as_trials(trained, cross_validated):
    import socket
    import urllib.request

    run, root, data = trained
    zoo.load_run(run.dir).evaluate(new_houses(root / "tb_houses.csv", n=50, seed=9))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [*ZOO[:1], "-m", "tensorboard.main", "--logdir", str(root), "--port", str(port), "--host", "127.0.0.1",
         "--load_fast", "false", "--reload_interval", "1"],
        env=zoo_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def get(path, body=None):
        request = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def loaded():
        try:
            tags = get("/data/plugin/scalars/tags")
            return "run/logs/evaluations/tb_houses" in tags and "cv/fold-2/logs" in tags
        except OSError:
            return False

    try:
        _wait_for(loaded, 90, "tensorboard to load the runs")
        tags = get("/data/plugin/scalars/tags")
        assert "evaluation/test_mse" in tags["run/logs/evaluations/tb_houses"] and "evaluation/test_mse" in tags["run/logs"]
        assert "evaluation/test_mse" in tags["cv/logs"] and "evaluation_std/test_mse" in tags["cv/logs"]
        groups = get("/data/plugin/hparams/session_groups", {
            "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                      "STATUS_RUNNING"],
            "colParams": [], "startIndex": 0, "sliceSize": 100})
        folds = {"/".join(g["name"].rstrip("/").split("/")[-2:]): g["hparams"]["fold"]
                 for g in groups["sessionGroups"] if "fold" in g["hparams"]}
        assert folds == {"cv/fold-0": 0, "cv/fold-1": 1, "cv/fold-2": 2}
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- compare ---------------------------------------------------------------

def test_compare_prints_the_differing_fields_and_sorts(trained, cross_validated, tmp_path):
    run, root, data = trained
    wide = zoo.train("mlp_regressor", data=data, data_options={"target": "price"}, run_dir=root / "wide",
                     **{**FAST, "hidden_units": (32, 32)})
    out = zoo_cli("compare", run.dir, wide.dir, "--markdown")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"| run | {run.dir} | {wide.dir} |"
    assert "| model.hidden_units | [16] | [32, 32] |" in lines
    assert not [line for line in lines if line.startswith("| train.epochs")]  # The same in both.
    assert f"| test_mse | {run.metrics['test_mse']:.4g} | {wide.metrics['test_mse']:.4g} |" in lines
    out = zoo_cli("compare", str(root / "*"), "--json", "--sort", "test_mse")
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    names = [os.path.basename(r["run"]) for r in table["runs"]]
    assert sorted(names) == ["cv", "run", "wide"]
    keyed = lambda r: r["metrics"]["test_mse"]["mean"] if r["run"].endswith("cv") else r["metrics"]["test_mse"]  # noqa: E731
    assert [keyed(r) for r in table["runs"]] == sorted(keyed(r) for r in table["runs"])
    assert {s["path"] for s in table["skipped"]} >= {str(root / "houses.csv")}
    text = zoo_cli("compare", run.dir, root / "cv").stdout
    cv_mse = cross_validated.metrics["test_mse"]
    assert f"{cv_mse['mean']:.4g} ± {cv_mse['std']:.2g}" in text and "cross_validation.num_folds" in text


def test_compare_refuses_zero_runs_and_non_runs(trained, tmp_path):
    run, root, _ = trained
    for args, message in [((), "needs at least one run directory or glob"),
                          ((tmp_path,), "is not a zoo run (no config.json)"),
                          ((str(tmp_path / "*"),), "No files or folders match the glob"),
                          ((run.dir, "--sort", "test_mze"), "Unknown metric 'test_mze' for `--sort`. Did you mean 'test_mse'")]:
        out = zoo_cli("compare", *args)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
