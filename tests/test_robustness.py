"""Bad input, corruption, full disks and a second process, through the CLI.

Each test runs `zoo` as a user does and checks the exit status, the message
and the files on disk before and after. Most call `zoo.cli.main` in this
process (the `zoo` command minus its stderr filter, which stays off once
TensorFlow is imported), so TensorFlow starts once; what needs a process of
its own (a second process, a file-size limit, a segfault, a kill) runs
`python -m zoo.cli` in a subprocess.
"""

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest

import zoo
from conftest import ZOO, zoo_env
from zoo import cli

# A tiny finished run: 2 epochs, a checkpoint each (--checkpoint-every-seconds 0).
TINY = ["--data-option", "num_train=64", "--batch-size", "16", "--set", "hidden_units=[8]",
        "--checkpoint-every-seconds", "0", "--quiet"]


def main(capsys, *argv):
    """Runs `zoo ARGV` in this process; returns `(status, stdout, stderr)`."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def train(capsys, run_dir, *extra, epochs=2, quiet=True):
    flags = TINY if quiet else [a for a in TINY if a != "--quiet"]
    return main(capsys, "train", "mlp_regressor", "--epochs", epochs, "--run-dir", run_dir, *flags, *extra)


def files(path):
    """`{relative path: sha256}` of every file under `path`."""
    found = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return found


def epoch_steps(run_dir, tag="epoch_loss"):
    """The steps of `train/<tag>` in a run's TensorBoard events."""
    from test_trainer import read_scalars

    scalars, _ = read_scalars(os.path.join(run_dir, "logs"))
    return [s for s, _ in scalars[("train", tag)]]


def read(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run, made by the CLI; tests copy it before changing it."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(["train", "mlp_regressor", "--epochs", "2", "--run-dir", str(run_dir), *TINY]) == 0
    return run_dir


@pytest.fixture
def unfinished(finished, tmp_path):
    """A copy of the finished run, as a kill before its end leaves it."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    os.remove(run_dir / "metrics.json")
    return run_dir


@pytest.fixture
def copied(finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    return run_dir


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))


# The table of the issue, one row at a time.

def test_batch_larger_than_data_writes_nothing(tmp_path, capsys):
    status, _, err = main(capsys, "train", "mlp_regressor", "--batch-size", "100000",
                          "--data-option", "num_train=64", "--run-dir", tmp_path / "r")
    assert status == 2 and "larger than the 64 training examples" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_launch_with_an_odd_batch_writes_nothing(tmp_path):
    run_dir = tmp_path / "r"
    out = subprocess.run(
        [*ZOO, "launch", "--workers", "2", "--", sys.executable, "-m", "zoo.cli", "train",
         "mlp_regressor", "--strategy", "multi_worker", "--batch-size", "33",
         "--data-option", "num_train=64", "--run-dir", str(run_dir)],
        env=zoo_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert (out.stdout + out.stderr).count("split evenly over 2 replicas") == 2
    assert not run_dir.exists()


def test_data_option_of_the_wrong_type_names_option_and_type(tmp_path, capsys):
    status, _, err = main(capsys, "train", "mlp_regressor", "--data-option", "num_train=lots")
    assert status == 2
    assert err == "error: Invalid value for data option `num_train`: expected an integer. Received: num_train='lots'.\n"
    assert os.listdir(tmp_path) == []


def test_preset_for_a_model_without_presets_is_refused(tmp_path, capsys):
    (tmp_path / "preset").mkdir()
    status, _, err = main(capsys, "train", "mlp_regressor", "--preset", tmp_path / "preset")
    assert status == 2 and "unrecognized arguments: --preset" in err
    with pytest.raises(ValueError, match="Model 'mlp_regressor' has no presets.*Models with presets: .*gpt2_textgen"):
        zoo.train("mlp_regressor", preset=str(tmp_path / "preset"), run_dir=tmp_path / "r")
    assert os.listdir(tmp_path) == ["preset"]


def _csv(path, header, rows):
    path.write_text(header + "\n" + "".join(f"{r}\n" for r in rows))
    return path


GOOD_ROWS = [f"{i % 7},{i % 5},{i % 3 + i % 7}" for i in range(40)]


@pytest.mark.parametrize("header, rows, message", [
    ("a,b,y", GOOD_ROWS[:20] + ["1,inf,2"] + GOOD_ROWS[20:],
     r"row 21 \(line 22\), column 'b': 'inf' is not a finite number"),
    ("a,b,y", GOOD_ROWS + ["-1e999,1,2"], r"row 41 \(line 42\), column 'a': '-1e999' is not a finite number"),
    ("a,b,y", GOOD_ROWS + ["1,1e39,2"], r"row 41 \(line 42\), column 'b': '1e39' is not a finite number a float32 can hold"),
    ("a,a,y", GOOD_ROWS, r"header \(line 1\): columns 1 and 2 are both named 'a'"),
    ("a,,y", GOOD_ROWS, r"header \(line 1\), column 2: the column has no name"),
])
def test_csv_cells_and_columns_are_checked(tmp_path, capsys, header, rows, message):
    data = _csv(tmp_path / "t.csv", header, rows)
    status, _, err = main(capsys, "train", "mlp_regressor", "--data", data, "--target", "y",
                          "--run-dir", tmp_path / "r")
    assert status == 2 and re.search(message, err), err
    assert err.startswith(f"error: '{data}'") and err.count("\n") == 1
    assert os.listdir(tmp_path) == ["t.csv"]


def _preset(tmp_path, finished):
    """A directory shaped like a keras-hub preset: a config and a weights file."""
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "config.json").write_text(json.dumps({"class_name": "GPT2Backbone", "config": {"num_layers": 2}}))
    shutil.copy(finished / "checkpoints" / "epoch-0002.weights.h5", preset / "model.weights.h5")
    return preset


def test_corrupt_preset_config_names_the_file(tmp_path, capsys, finished):
    preset = _preset(tmp_path, finished)
    (preset / "config.json").write_text('{"class_name": "GPT2Backbone", "config": {"num_la')
    before = files(tmp_path)
    status, _, err = main(capsys, "train", "gpt2_textgen", "--preset", preset, "--run-dir", tmp_path / "r")
    assert status == 2, err
    assert err.startswith(f"error: Preset file '{preset}/config.json' is corrupt: it is not valid JSON (")
    assert "Save the preset again" in err and "Traceback" not in err
    assert files(tmp_path) == before and not (tmp_path / "r").exists()


def test_truncated_preset_weights_name_the_file(tmp_path, capsys, finished):
    preset = _preset(tmp_path, finished)
    weights = preset / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:5000])
    before = files(tmp_path)
    status, _, err = main(capsys, "train", "gpt2_textgen", "--preset", preset, "--run-dir", tmp_path / "r")
    assert status == 2, err
    assert err.startswith(f"error: Preset file '{weights}' is corrupt: it does not open as an HDF5 weights file")
    assert "5000 bytes, truncated?" in err and "Traceback" not in err
    assert files(tmp_path) == before and not (tmp_path / "r").exists()


def test_a_run_that_fails_before_training_removes_the_directory_it_made(tmp_path, capsys):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class BrokenConfig:
        """Attributes:
            units: int. Width. Defaults to 2.
        """
        units: int = 2

    @zoo.register("zz_unbuildable", config=BrokenConfig)
    def zz_unbuildable(config):
        """A builder that refuses."""
        raise ValueError("This model cannot be built here.")

    try:
        import numpy as np

        x = np.zeros((40, 3), "float32")
        with pytest.raises(ValueError, match="cannot be built"):
            zoo.train("zz_unbuildable", data=(x, x[:, :1]), run_dir=tmp_path / "r", verbose=0)
        # Only zoo's cache (`_in_tmp`), where an AVX512_BF16 CPU records its bfloat16 check.
        assert [name for name in os.listdir(tmp_path) if name != "cache"] == []
    finally:
        zoo.registry.unregister("zz_unbuildable")


def test_finished_run_with_another_config_is_refused_with_the_differences(copied, capsys):
    before = files(copied)
    status, _, err = train(capsys, copied, "--set", "hidden_units=[32]")
    assert status == 2
    assert ("holds a finished run with another config, so it cannot continue with this one: "
            "model.hidden_units: saved [8], now [32].") in err
    status, _, err = train(capsys, copied, "--learning-rate", "0.1", "--seed", "3")
    assert status == 2 and "train.learning_rate: saved 0.003, now 0.1; train.seed: saved 0, now 3." in err
    status, _, err = train(capsys, copied, epochs=1)
    assert status == 2 and "train.epochs: saved 2, now 1 (a run's epochs can only grow)" in err
    assert files(copied) == before
    # The same settings (execution and logging ones may differ): nothing to do.
    status, out, _ = train(capsys, copied, "--steps-per-execution", "2", "--log-every-n-steps", "1",
                           quiet=False)
    assert status == 0 and "already finished; not training again" in out
    assert files(copied) == before


def test_finished_run_given_more_epochs_continues(copied, capsys):
    first = read(copied / "history.json")
    status, out, err = train(capsys, copied, epochs=4)
    assert status == 0, err
    history, metrics = read(copied / "history.json"), read(copied / "metrics.json")
    assert metrics["epochs_trained"] == 4 and len(history["loss"]) == 4
    assert history["loss"][:2] == first["loss"]  # The first two epochs are the same ones.
    assert read(copied / "config.json")["train"]["epochs"] == 4
    state = read(copied / "checkpoints" / "state.json")
    assert state["epoch"] == 4 and state["step"] == 4 * 4 and state["previous"]["epoch"] == 3
    assert epoch_steps(copied) == [1, 2, 3, 4]
    assert sorted(f for f in os.listdir(copied / "checkpoints")) == [
        "epoch-0003.best-EarlyStopping.npz", "epoch-0003.weights.h5",
        "epoch-0004.best-EarlyStopping.npz", "epoch-0004.weights.h5", "state.json"]


def test_corrupt_state_json_names_the_file_and_what_to_do(unfinished, capsys):
    state = unfinished / "checkpoints" / "state.json"
    state.write_text(state.read_text()[:300])
    before = files(unfinished)
    status, _, err = train(capsys, unfinished)
    assert status == 2 and err.startswith(f"error: '{state}' is corrupt: it is not valid JSON (")
    assert f"Delete the folder '{unfinished / 'checkpoints'}' to train this run again from epoch 0" in err
    assert files(unfinished) == before


def test_corrupt_config_json_names_the_file_and_the_advice_works(unfinished, capsys):
    config = unfinished / "config.json"
    config.write_text(config.read_text()[:200])
    before = files(unfinished)
    status, _, err = train(capsys, unfinished)
    assert status == 2 and err.startswith(f"error: '{config}' is corrupt: it is not valid JSON (")
    assert f"delete '{config}' and rerun: the run resumes from its checkpoint" in err
    assert files(unfinished) == before
    os.remove(config)
    status, _, err = train(capsys, unfinished)
    assert status == 0, err
    assert read(config)["model"]["hidden_units"] == [8] and read(unfinished / "metrics.json")["epochs_trained"] == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_bad_last_checkpoint_falls_back_to_the_one_before(unfinished, capsys, damage):
    weights = unfinished / "checkpoints" / "epoch-0002.weights.h5"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 3])
    elif damage == "flip":
        weights.write_bytes(data[:-100] + bytes(b ^ 0xFF for b in data[-100:]))
    else:
        os.remove(weights)
    status, out, err = train(capsys, unfinished)
    assert status == 0, err
    problem = "is missing" if damage == "delete" else "fails its checksum"
    assert re.search(rf"^warning: the last checkpoint \(epoch 2\) in .* is unusable: '{weights}' {problem}.*"
                     r"Resuming from the checkpoint before it \(epoch 1\)\.$", err, re.M), err
    assert read(unfinished / "metrics.json")["epochs_trained"] == 2
    assert len(read(unfinished / "history.json")["loss"]) == 2
    assert epoch_steps(unfinished) == [1, 2]
    assert read(unfinished / "checkpoints" / "state.json")["files"]["epoch-0002.weights.h5"] == \
        hashlib.sha256(weights.read_bytes()).hexdigest()


def test_no_usable_checkpoint_is_an_error_that_names_both(unfinished, capsys):
    for name in ("epoch-0001.weights.h5", "epoch-0002.weights.h5"):
        path = unfinished / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:1000])
    before = files(unfinished)
    status, _, err = train(capsys, unfinished)
    assert status == 2 and err.startswith(f"error: No checkpoint in {unfinished / 'checkpoints'} can be restored: ")
    assert "epoch 2: '" in err and "epoch 1: '" in err and err.count("fails its checksum") == 2
    assert "Delete the folder" in err and "Traceback" not in err
    assert files(unfinished) == before


def test_run_dir_that_is_a_file_or_a_foreign_folder_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_text("meow")
    before = files(tmp_path)
    status, _, err = main(capsys, "train", "mlp_regressor", "--run-dir", tmp_path / "notes.txt")
    assert status == 2 and "'notes.txt' is a file, not a directory" in err.replace(str(tmp_path) + "/", "")
    status, _, err = main(capsys, "train", "mlp_regressor", "--run-dir", tmp_path / "notes.txt" / "run")
    assert status == 2 and "is a file, so" in err
    status, _, err = main(capsys, "train", "mlp_regressor", "--run-dir", tmp_path / "photos")
    assert status == 2 and "holds no zoo run (no config.json) but other files (cat.jpg)" in err
    assert files(tmp_path) == before


# The bullets under the table.

@pytest.mark.parametrize("name", ["dcgan", "image_classifier"])
def test_image_data_that_is_a_file_says_so(tmp_path, capsys, name):
    from PIL import Image

    (tmp_path / "digits").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "digits" / "00.png")
    status, _, err = main(capsys, "train", name, "--data", tmp_path / "digits" / "00.png",
                          "--run-dir", tmp_path / "r")
    assert status == 2
    assert err == (f"error: '{tmp_path}/digits/00.png' is a file; an image dataset is a folder of "
                   f"PNG/JPEG files (with one subfolder per class for labels). Give its folder, "
                   f"such as '{tmp_path}/digits'.\n")
    assert not (tmp_path / "r").exists()


def test_options_that_do_not_apply_are_refused(tmp_path, capsys):
    status, _, err = main(capsys, "train", "dcgan", "--data-option", "target=y")
    assert status == 2 and "Unknown data option 'target'" in err
    status, _, err = main(capsys, "train", "mlp_regressor", "--target", "y")
    assert status == 2 and "Unknown data option 'target' for data 'friedman1'" in err
    status, _, err = main(capsys, "train", "gpt2_textgen", "--tfds-data-dir", tmp_path / "tfds")
    assert status == 2 and "applies to the tfds datasets (imdb_reviews, tiny_shakespeare) only, not to 'pydoc'" in err
    assert [p for p in os.listdir(tmp_path) if p != "cache"] == []


def test_temporary_files_of_interrupted_writes_are_removed(unfinished, capsys):
    leftovers = [unfinished / ".tmp-999999-model.keras", unfinished / ".tmp-999999-metrics.json",
                 unfinished / "checkpoints" / ".tmp-999999-epoch-0003.weights.h5"]
    for path in leftovers:
        path.write_bytes(b"half")
    (unfinished / ".tmp-999999-preset" / "assets").mkdir(parents=True)
    status, out, err = train(capsys, unfinished, quiet=False)
    assert status == 0, err
    for path in [*leftovers, unfinished / ".tmp-999999-preset"]:
        assert not path.exists()
        assert f"Removed {os.path.relpath(path, unfinished)}, left in {unfinished} by an interrupted write." in out
    assert not [p for p in files(unfinished) if ".tmp-" in p]


def test_a_bug_in_a_hook_keeps_its_traceback(tmp_path, capsys):
    import dataclasses

    from zoo.task import Task

    class BuggyTask(Task):
        def load_data(self, data, config, options, seed, preset=None):
            return len(None)  # A TypeError: a bug, not a user's mistake.

    @dataclasses.dataclass(frozen=True)
    class BuggyConfig:
        """Attributes:
            units: int. Width. Defaults to 2.
        """
        units: int = 2

    zoo.register("zz_buggy", config=BuggyConfig, task=BuggyTask())(lambda config: None)
    try:
        with pytest.raises(TypeError, match="has no len"):
            cli.main(["train", "zz_buggy", "--run-dir", str(tmp_path / "r")])
    finally:
        zoo.registry.unregister("zz_buggy")
    assert not (tmp_path / "r").exists()


SEGFAULT = """
import ctypes, dataclasses, sys
import zoo
from zoo import cli

@dataclasses.dataclass(frozen=True)
class Config:
    \"\"\"Attributes:
        units: int. Width. Defaults to 2.
    \"\"\"
    units: int = 2

    def __post_init__(self):
        print("about to crash", file=sys.stderr, flush=True)
        ctypes.string_at(0)

zoo.register("zz_crash", config=Config)(lambda config: None)
cli.main(["train", "zz_crash"])
"""


def test_fatal_error_output_passes_the_stderr_filter(tmp_path):
    out = subprocess.run([sys.executable, "-X", "faulthandler", "-c", SEGFAULT], env=zoo_env(),
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGSEGV
    assert "about to crash" in out.stderr
    assert "Fatal Python error: Segmentation fault" in out.stderr and "__post_init__" in out.stderr


@pytest.mark.slow
def test_second_process_is_refused_and_a_killed_ones_lock_does_not_block(tmp_path, capsys):
    run_dir = tmp_path / "busy"
    argv = ["train", "mlp_regressor", "--epochs", "30", "--run-dir", str(run_dir), "--quiet",
            "--data-option", "num_train=2000", "--batch-size", "32", "--set", "hidden_units=[64,64]",
            "--checkpoint-every-seconds", "0", "--steps-per-execution", "1"]
    first = subprocess.Popen([*ZOO, *argv], env=zoo_env(), cwd=tmp_path)
    state = run_dir / "checkpoints" / "state.json"
    try:
        deadline = time.monotonic() + 240
        while not (state.exists() and read(state)["epoch"] >= 1):
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.05)
        lock = read(run_dir / ".lock")
        assert lock["pid"] == first.pid
        config = (run_dir / "config.json").read_bytes()
        started = time.monotonic()
        status, _, err = main(capsys, *argv)
        refused_in = time.monotonic() - started
        assert first.poll() is None, "the first run ended before the second one tried"
        assert status == 2
        assert err.startswith(f"error: Run directory '{run_dir}' is being trained by process {first.pid} on ")
        assert f"kill {first.pid})" in err
        assert (run_dir / "config.json").read_bytes() == config
        assert refused_in < 10  # At once: before TensorFlow and the data, and no waiting.
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    assert (run_dir / ".lock").exists() and not (run_dir / "metrics.json").exists()
    killed_at = read(state)["epoch"]
    status, out, err = main(capsys, *argv)
    assert status == 0, err
    assert read(run_dir / "metrics.json")["epochs_trained"] == 30 and killed_at < 30
    assert len(read(run_dir / "history.json")["loss"]) == 30
    assert not (run_dir / ".lock").exists()


def _limited(nbytes):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


@pytest.mark.parametrize("every_seconds, saved", [
    # Writes of 0.25 s: the next checkpoint waits 50 times that, 12.5 s, of 2-s epochs.
    (1.0, [1, 8, 10]),
    (16.0, [8, 10]),  # At least `every_seconds`, when that is longer.
    (0.0, list(range(1, 11))),  # 0 saves every epoch.
])
def test_checkpoints_take_at_most_a_small_share_of_training(tmp_path, monkeypatch, every_seconds, saved):
    import types

    from zoo import callbacks

    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(callbacks, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    written = []

    def save(self, epoch):  # The clock as a real write moves it: 0.25 s a checkpoint.
        written.append(epoch)
        clock.now += 0.25
        self._last_save, self._save_seconds = clock.now, 0.25

    monkeypatch.setattr(callbacks.Checkpoint, "save", save)
    checkpoint = callbacks.Checkpoint(str(tmp_path / "checkpoints"), every_seconds=every_seconds)
    checkpoint.set_model(types.SimpleNamespace(stop_training=False))
    checkpoint.set_params({"epochs": 10})
    checkpoint.on_train_begin()
    for epoch in range(10):
        clock.now += 2.0
        checkpoint.on_epoch_end(epoch, {"loss": 1.0})
    assert written == saved  # The last epoch always.


def test_checkpoint_writes_build_no_reference_objects(finished, tmp_path, monkeypatch):
    """Keras 3.15 recomputes its saving skip sets for every object of every
    save (a lookup under the wrong key); `Checkpoint` keeps them."""
    import numpy as np

    from conftest import layers_built
    from zoo import callbacks

    model = zoo.load_model(str(finished / "model.keras"))
    callbacks._save_weights(model, str(tmp_path / "first.weights.h5"))
    assert layers_built(monkeypatch, lambda: callbacks._save_weights(model, str(tmp_path / "second.weights.h5"))) == []
    # The file holds the model and its optimizer, as Keras' own save does.
    again = zoo.load_model(str(finished / "model.keras"))
    for variable in again.variables + again.optimizer.variables:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    again.load_weights(str(tmp_path / "second.weights.h5"))
    for a, b in zip(model.variables + model.optimizer.variables, again.variables + again.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_a_failing_checkpoint_write_keeps_the_last_checkpoint(copied, capsys):
    checkpoints = copied / "checkpoints"
    weights = (checkpoints / "epoch-0002.weights.h5").stat().st_size
    others = max(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(copied / "logs") for n in ns)
    limit = weights // 2
    assert others < limit and (copied / "config.json").stat().st_size < limit
    before = files(checkpoints)
    # A file-size limit makes the disk "full" for files past `limit` bytes.
    out = subprocess.run([*ZOO, "train", "mlp_regressor", "--epochs", "4", "--run-dir", str(copied), *TINY],
                         env=zoo_env(), capture_output=True, text=True, preexec_fn=_limited(limit), timeout=300)
    assert out.returncode == 1, out.stderr
    target = checkpoints / "epoch-0003.weights.h5"
    assert out.stderr.endswith(
        f"error: Could not write '{target}': File too large. The file was not created and nothing "
        "half-written was left. Raise the file-size limit (`ulimit -f`) or free space, then rerun "
        "the same command: a training run resumes from its last checkpoint.\n"), out.stderr
    assert "Traceback" not in out.stderr
    assert files(checkpoints) == before and not [f for f in os.listdir(copied) if f.startswith(".tmp")]
    status, _, err = train(capsys, copied, epochs=4)
    assert status == 0, err
    assert read(copied / "metrics.json")["epochs_trained"] == 4 and epoch_steps(copied) == [1, 2, 3, 4]


@pytest.mark.parametrize("name", ["metrics.json", "model.keras"])
def test_a_failing_final_write_keeps_the_previous_files(copied, capsys, monkeypatch, name):
    import errno

    real_replace = os.replace

    def full_disk(src, dst):
        if os.path.basename(dst) == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    old_model = hashlib.sha256((copied / "model.keras").read_bytes()).hexdigest()
    monkeypatch.setattr(os, "replace", full_disk)
    status, _, err = train(capsys, copied, epochs=3)
    monkeypatch.setattr(os, "replace", real_replace)
    assert status == 1
    kept = "kept as it was" if name == "model.keras" else "not created"
    assert err == (f"error: Could not write '{copied / name}': No space left on device. The file "
                   f"was {kept} and nothing half-written was left. Free some disk space, then rerun "
                   "the same command: a training run resumes from its last checkpoint.\n")
    assert not (copied / "metrics.json").exists()  # Not finished: a rerun completes it.
    assert not [p for p in files(copied) if ".tmp-" in p]
    if name == "model.keras":
        assert hashlib.sha256((copied / "model.keras").read_bytes()).hexdigest() == old_model
    assert read(copied / "checkpoints" / "state.json")["epoch"] == 3
    status, out, err = train(capsys, copied, epochs=3)
    assert status == 0, err
    assert read(copied / "metrics.json")["epochs_trained"] == 3 and epoch_steps(copied) == [1, 2, 3]


# Every flag of `zoo train NAME --help`, each with a wrong value: an error
# that names it, and nothing written. A flag missing here fails the test.
WRONG = {
    "--data": (["nosuchdata"], r"nosuchdata"),
    "--epochs": (["0"], r"Invalid value for `epochs`: must be at least 1"),
    "--batch-size": (["zero"], r"argument --batch-size: invalid int value: 'zero'"),
    "--learning-rate": (["-1"], r"Invalid value for `learning_rate`: must be a positive number"),
    "--strategy": (["mirored"], r"argument --strategy: invalid choice: 'mirored'"),
    "--seed": (["1.5"], r"argument --seed: invalid int value: '1.5'"),
    "--mixed-precision": (["float64"], r"argument --mixed-precision: invalid choice: 'float64'"),
    "--steps-per-execution": (["0"], r"Invalid value for `steps_per_execution`: must be at least 1"),
    "--jit-compile": (["maybe"], r"argument --jit-compile: invalid choice: 'maybe'"),
    "--log-every-n-steps": (["-5"], r"Invalid value for `log_every_n_steps`"),
    "--profile-batch": (["5,2"], r"Invalid value for `--profile-batch`: expected START,STOP"),
    "--folds": (["1"], r"Invalid value for `folds`: cross-validation needs an integer of at least 2 folds"),
    "--checkpoint-every-seconds": (["-1"], r"Invalid value for `checkpoint_every_seconds`"),
    "--summaries-max-share": (["2"], r"Invalid value for `summaries_max_share`: must be 0 \(every epoch\) or a share"),
    "--run-dir": (["{file}"], r"is a file, not a directory"),
    "--set": (["nope=1"], r"Unknown \w+ config key 'nope'"),
    "--preset": (["{missing}"], r"Preset directory '.*missing' not found"),
    "--target": (["price"], r"Unknown data option 'target' for data 'friedman1'"),
    "--features": (["a,b"], r"Unknown data option 'features' for data 'friedman1'"),
    "--drop-missing": (["yes"], r"unrecognized arguments: yes"),
    "--tfds-data-dir": (["{missing}"], r"(Unknown data option 'tfds_data_dir'|applies to the tfds datasets)"),
    "--data-option": (["bogus=1"], r"Unknown data option 'bogus'"),
    "--quiet": (["please"], r"unrecognized arguments: please"),
}


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_train_flag_with_a_wrong_value_writes_nothing(tmp_path, capsys, name):
    status, help_text, _ = main(capsys, "train", name, "--help")
    assert status == 0
    flags = sorted(set(re.findall(r"(--[a-z][a-z-]+)", help_text)) - {"--help"})
    assert set(flags) - set(WRONG) == set(), "give the new flag a wrong value in WRONG"
    (tmp_path / "a-file").write_text("not a directory")
    before = files(tmp_path)
    for flag in flags:
        values, message = WRONG[flag]
        values = [v.format(file=tmp_path / "a-file", missing=tmp_path / "missing") for v in values]
        run_dir = [] if flag == "--run-dir" else ["--run-dir", str(tmp_path / "run")]
        started = time.monotonic()
        status, out, err = main(capsys, "train", name, flag, *values, *run_dir)
        assert status == 2, (flag, out, err)
        assert re.search(message, err), (flag, err)
        assert "Traceback" not in err and "Epoch 1/" not in out, flag
        assert files(tmp_path) == before, flag
        assert [p for p in os.listdir(tmp_path) if p not in ("a-file", "cache")] == [], flag
        assert time.monotonic() - started < 60, f"{flag} took long: did it train?"


HOLD_LOCK = """
import sys, time
from zoo import runs
with runs.locked(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_held_lock_refuses_at_once_and_a_dead_ones_does_not(unfinished, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(unfinished)], env=zoo_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        before = files(unfinished)
        started = time.monotonic()
        status, _, err = train(capsys, unfinished)
        assert status == 2 and f"is being trained by process {holder.pid} on " in err, err
        assert time.monotonic() - started < 10 and files(unfinished) == before
    finally:
        holder.kill()
        holder.wait()
    # The killed holder's lock file stays, naming a dead process: no lock.
    assert read(unfinished / ".lock")["pid"] == holder.pid
    status, _, err = train(capsys, unfinished)
    assert status == 0, err
    assert read(unfinished / "metrics.json")["epochs_trained"] == 2 and not (unfinished / ".lock").exists()
