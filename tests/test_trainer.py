"""The shared trainer: run directories, TensorBoard, resume, NaN, replicas."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

import zoo
from conftest import ROOT, ZOO, zoo_env

SMALL = dict(data_options={"num_train": 256}, batch_size=32, hidden_units=(16, 16), verbose=0)


def read_scalars(logdir):
    """{(run, tag): [(step, value), ...]} from every event file under logdir."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    scalars, plugins = {}, set()
    for root, _, files in os.walk(logdir):
        for name in files:
            if not name.startswith("events.out.tfevents"):
                continue
            run = os.path.relpath(root, logdir)
            for record in tf.data.TFRecordDataset(os.path.join(root, name)):
                event = event_pb2.Event.FromString(record.numpy())
                for value in event.summary.value:
                    plugins.add(value.metadata.plugin_data.plugin_name)
                    if value.metadata.plugin_data.plugin_name == "scalars":
                        number = float(tf.make_ndarray(value.tensor))
                        scalars.setdefault((run, value.tag), []).append((event.step, number))
    return {k: sorted(v) for k, v in scalars.items()}, plugins


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "mlp"
    return zoo.train("mlp_regressor", epochs=2, run_dir=run_dir, log_every_n_steps=2,
                     steps_per_execution=1, **SMALL)


def test_run_dir_holds_every_file(finished_run):
    files = set(os.listdir(finished_run.dir))
    assert {"config.json", "env.json", "logs", "checkpoints", "model.keras", "metrics.json", "history.json"} <= files
    assert not [f for f in files if f.startswith(".tmp")]
    config = json.load(open(os.path.join(finished_run.dir, "config.json")))
    assert config["model"]["hidden_units"] == [16, 16] and config["train"]["epochs"] == 2
    assert config["train"]["data_options"] == [["num_train", 256]]
    env = json.load(open(os.path.join(finished_run.dir, "env.json")))
    assert env["strategy"]["num_replicas_in_sync"] == 1 and env["versions"]["keras"].startswith("3.")
    assert finished_run.metrics["epochs_trained"] == 2
    assert finished_run.history["loss"] and len(finished_run.history["val_loss"]) == 2


def test_tensorboard_events_hold_scalars_and_hparams(finished_run):
    scalars, plugins = read_scalars(os.path.join(finished_run.dir, "logs"))
    assert [s for s, _ in scalars[("train", "epoch_loss")]] == [1, 2]
    assert [s for s, _ in scalars[("validation", "epoch_loss")]] == [1, 2]
    for tag in ("epoch_mae", "epoch_learning_rate", "epoch_examples_per_second", "batch_loss"):
        assert ("train", tag) in scalars, tag
    steps = [s for s, _ in scalars[("train", "batch_loss")]]
    assert steps == sorted(set(steps)) and steps[0] == 2  # Every 2 global steps, no repeats.
    assert ("train", "epoch_examples_per_second") in scalars
    assert (".", "evaluation/test_mse") in scalars and not [t for _, t in scalars if t.startswith("final")]
    assert "hparams" in plugins


def test_recipe_steps_per_execution_default_keeps_losses_and_step_logs(tmp_path):
    """mlp_regressor runs 8 steps per execution by default: the same losses
    as one step per call, and step scalars still by global step, once each."""
    eight = zoo.train("mlp_regressor", epochs=2, run_dir=tmp_path / "a", log_every_n_steps=1, **SMALL)
    one = zoo.train("mlp_regressor", epochs=2, run_dir=tmp_path / "b", steps_per_execution=1, **SMALL)
    assert eight.config["train"]["steps_per_execution"] == 8
    assert one.config["train"]["steps_per_execution"] == 1
    assert eight.history["loss"] == pytest.approx(one.history["loss"], rel=1e-5)
    scalars, _ = read_scalars(os.path.join(eight.dir, "logs"))
    steps = [s for s, _ in scalars[("train", "batch_loss")]]
    assert steps == [8, 16]  # 8 steps an epoch, one execution each.


def test_finished_run_is_not_retrained(finished_run, capsys):
    before = os.path.getmtime(os.path.join(finished_run.dir, "model.keras"))
    again = zoo.train("mlp_regressor", epochs=2, run_dir=finished_run.dir, **{**SMALL, "verbose": "auto"})
    assert "already finished" in capsys.readouterr().out
    assert again.metrics == finished_run.metrics
    assert os.path.getmtime(os.path.join(finished_run.dir, "model.keras")) == before


def test_changed_config_does_not_resume(finished_run):
    with pytest.raises(ValueError, match="another config.*model.hidden_units"):
        os.rename(os.path.join(finished_run.dir, "metrics.json"), os.path.join(finished_run.dir, "m.json"))
        try:
            zoo.train("mlp_regressor", epochs=2, run_dir=finished_run.dir, **{**SMALL, "hidden_units": (8,)})
        finally:
            os.rename(os.path.join(finished_run.dir, "m.json"), os.path.join(finished_run.dir, "metrics.json"))


def test_one_and_two_replicas_agree(tmp_path):
    import tensorflow as tf

    assert len(tf.config.list_logical_devices("CPU")) == 2
    # one_device (1 replica) against mirrored (2 logical CPUs): both go
    # through Keras' distributed `fit`, so the seeded shuffle sees the
    # same number of iterators and the data order is identical.
    runs = {
        strategy: zoo.train("mlp_regressor", epochs=2, strategy=strategy, run_dir=tmp_path / strategy, **SMALL)
        for strategy in ("one_device", "mirrored")
    }
    env = json.load(open(tmp_path / "mirrored" / "env.json"))
    assert env["strategy"] == {**env["strategy"], "class": "MirroredStrategy", "num_replicas_in_sync": 2}
    np.testing.assert_allclose(runs["one_device"].history["loss"], runs["mirrored"].history["loss"], rtol=1e-4)
    for a, b in zip(runs["one_device"].model.get_weights(), runs["mirrored"].model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    with pytest.raises(FloatingPointError, match=r"The loss became (nan|inf) at epoch 1, step \d+.*last good checkpoint \(epoch 0\).*learning_rate=1e\+20"):
        zoo.train("mlp_regressor", epochs=3, learning_rate=1e20, run_dir=tmp_path / "nan", **SMALL)
    assert not os.path.exists(tmp_path / "nan" / "metrics.json")
    assert not os.path.exists(tmp_path / "nan" / "checkpoints" / "state.json")


def test_bad_arguments_leave_nothing_behind(tmp_path):
    with pytest.raises(ValueError, match="Unknown strategy 'mirored'. Did you mean 'mirrored'"):
        zoo.train("mlp_regressor", strategy="mirored", run_dir=tmp_path / "a", **SMALL)
    with pytest.raises(ValueError, match="larger than the 256 training examples"):
        zoo.train("mlp_regressor", batch_size=1000, run_dir=tmp_path / "b",
                  **{k: v for k, v in SMALL.items() if k != "batch_size"})
    assert not os.path.exists(tmp_path / "a")


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_sigkill_then_rerun_resumes(tmp_path):
    run_dir = tmp_path / "run"
    command = [*ZOO, "train", "mlp_regressor", "--epochs", "6", "--run-dir", str(run_dir), "--quiet",
               "--data-option", "num_train=2000", "--batch-size", "16", "--log-every-n-steps", "10",
               "--steps-per-execution", "1", "--checkpoint-every-seconds", "0"]
    # A checkpoint every epoch (0), whatever the time spacing would choose on a
    # loaded machine: the kill must land after one mid-run checkpoint.
    state = run_dir / "checkpoints" / "state.json"
    process = subprocess.Popen(command, env=zoo_env(), cwd=tmp_path)
    try:
        _wait_for(lambda: state.exists() and json.loads(state.read_text())["epoch"] >= 2, 120, "epoch 2")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert killed_at < 6 and not (run_dir / "metrics.json").exists()
    out = subprocess.run(command, env=zoo_env(), cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    assert metrics["epochs_trained"] == 6 and len(history["loss"]) == 6
    scalars, _ = read_scalars(run_dir / "logs")
    for run in ("train", "validation"):
        assert [s for s, _ in scalars[(run, "epoch_loss")]] == list(range(1, 7))
    steps = [s for s, _ in scalars[("train", "batch_loss")]]
    assert len(steps) == len(set(steps)), "step-level history was duplicated"
    assert steps == list(range(10, 6 * 125 + 1, 10)), "step-level history was lost"


@pytest.mark.slow
def test_recipe_script_and_tensorboard_server(tmp_path):
    run_dir = tmp_path / "runs" / "mlp"
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "recipes", "mlp_regressor.py"), "--epochs", "2",
         "--run-dir", str(run_dir), "--data-option", "num_train=256"],
        env=zoo_env(), cwd=tmp_path, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert f"TensorBoard: tensorboard --logdir {run_dir}/logs" in out.stdout
    assert "Run finished" in out.stdout and "test_mse" in out.stdout
    assert "cuda" not in out.stderr.lower() and "absl::InitializeLog" not in out.stderr

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path / "runs"), "--port", str(port),
         "--host", "127.0.0.1", "--load_fast", "false", "--reload_interval", "1"],
        env=zoo_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def get(path):
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return json.loads(response.read())

        def has_scalars():
            try:
                return "mlp/logs/train" in get("/data/plugin/scalars/tags")
            except OSError:
                return False

        _wait_for(has_scalars, 60, "tensorboard to load the run")
        tags = get("/data/plugin/scalars/tags")
        assert "epoch_loss" in tags["mlp/logs/train"] and "epoch_loss" in tags["mlp/logs/validation"]
        query = urllib.parse.urlencode({"run": "mlp/logs/train", "tag": "epoch_loss"})
        points = get(f"/data/plugin/scalars/scalars?{query}")
        assert [p[1] for p in points] == [1, 2]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_registered_third_party_model_trains_on_arrays(tmp_path):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class TinyConfig:
        """Config of `zz_tiny`.

        Attributes:
            units: int. Width of the hidden layer. Defaults to 16.
        """

        units: int = 16

    @zoo.register("zz_tiny", config=TinyConfig)
    def zz_tiny(config):
        """A one-layer regressor."""
        import keras

        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(config.units), keras.layers.Dense(1)])

    try:
        x = np.random.default_rng(0).normal(size=(200, 3)).astype("float32")
        y = x @ np.array([[1.0], [-2.0], [0.5]], "float32")
        run = zoo.train("zz_tiny", data=(x, y), epochs=3, units=8, learning_rate=0.05,
                        run_dir=tmp_path / "tiny", verbose=0)
        assert run.config["model"] == {"units": 8} and run.config["train"]["data"] == "<tuple>"
        assert run.history["loss"][-1] < run.history["loss"][0]
    finally:
        zoo.registry.unregister("zz_tiny")


@pytest.mark.parametrize("steps_per_execution", [1, 8])
def test_profile_batch_captures_a_profile(tmp_path, steps_per_execution):
    # With 8 steps a call, steps 2-4 are never seen alone: the call that
    # runs them is profiled.
    zoo.train("mlp_regressor", epochs=1, run_dir=tmp_path / "p", profile_batch=(2, 4),
              steps_per_execution=steps_per_execution, **SMALL)
    profiles = [f for _, _, files in os.walk(tmp_path / "p" / "logs" / "train" / "plugins" / "profile")
                for f in files if f.endswith(".xplane.pb")]
    assert profiles


def test_two_mirrored_strategies_in_one_process():
    # A second MirroredStrategy on the same CPUs, with other variable
    # shapes, once collided with the first one's collective instance keys.
    import keras

    from zoo import distribute

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    for width in (8, 3):
        strategy = distribute.get_strategy("mirrored")
        with strategy.scope():
            model = keras.Sequential([
                keras.Input((4,)), keras.layers.Dense(width),
                keras.layers.BatchNormalization(synchronized=True), keras.layers.Dense(1),
            ])
            model.compile(optimizer="adam", loss="mse")
        history = model.fit(x, x[:, :1], batch_size=16, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])


def test_task_batch_reshuffles_every_epoch_with_its_seed(monkeypatch):
    import tensorflow as tf

    from zoo import task as task_lib

    x = np.arange(100, dtype="float32")[:, None] * np.ones((1, 3), "float32")
    rows = tf.data.Dataset.from_tensor_slices((x, np.arange(100)))

    def epochs(seed, count=2):
        dataset = task_lib.Task().batch(rows, 8, training=True, seed=seed)
        assert dataset.element_spec[0].shape == (8, 3)  # Static batches, remainder dropped.
        assert dataset.options().autotune.enabled is False
        assert int(dataset.cardinality()) == 12  # Keras and tf.distribute see the epoch length.
        out = []
        for _ in range(count):
            batches = [(bx.numpy(), by.numpy()) for bx, by in dataset]
            assert all((bx[:, 0] == by).all() for bx, by in batches)  # Rows stay whole.
            out.append(np.concatenate([by for _, by in batches]).tolist())
        return out

    first, second = epochs(seed=1)
    assert len(first) == len(set(first)) == 96 and first != second
    assert epochs(seed=1) == [first, second]  # A new pipeline replays the same epochs.
    assert epochs(seed=2, count=1)[0] != first
    # Gathering a few batches at a time (large rows) gives the same order.
    monkeypatch.setattr(task_lib, "GATHER_BYTES", 100)
    assert epochs(seed=1) == [first, second]
    # Evaluation keeps every example, in order.
    evaluation = task_lib.Task().batch(rows, 8, training=False)
    assert np.concatenate([by.numpy() for _, by in evaluation]).tolist() == list(range(100))

