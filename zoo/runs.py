"""Run directories: the files a run writes, and opening a finished run.

A run directory holds:

- `config.json`: the resolved model and training config;
- `env.json`: package versions, devices, strategy and replica count, and
  the dtype policy and XLA setting with the reason for them (`precision`);
- `logs/`: TensorBoard events (`train/`, `validation/`, and the images,
  text, HParams session and final metrics at the top; `zoo.tensorboard`);
- `checkpoints/`: weights, optimizer and callback state of the last epoch;
- `history.json`, `model.keras` and `metrics.json`, written last: a run
  with `metrics.json` is finished;
- `.lock`: the id of the process training it, while one does;
- `evaluations/<name>.json`, one per `zoo evaluate`, and their TensorBoard
  events in `logs/evaluations/<name>/`.

A cross-validation run (`zoo train NAME --folds K`, `zoo.folds`) holds one
such run per fold in `fold-<i>/`, beside its own `config.json` (with a
`cross_validation` section) and a `metrics.json` of each metric's mean,
standard deviation and per-fold values.

Every file is written atomically (`zoo.files`), so a crash never leaves half
of one. `open_run_dir` is how the trainer enters a directory: it checks the
path, takes the lock (a second process is refused at once, with the first
one's id; the lock of a killed process does not count), clears what
interrupted writes left, and reads the saved config; `resume_plan` then
decides whether the run resumes, continues with more epochs, is already
finished, or is refused.
"""

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import socket
import sys
import time

from zoo import config as config_lib
from zoo import distribute
from zoo import registry
from zoo import files
from zoo.files import json_default, read_json

CONFIG = "config.json"
METRICS = "metrics.json"
LOCK = ".lock"
# What a run directory may hold before its config.json exists: a run
# killed while starting leaves these.
_STARTING = {LOCK, "env.json", "logs", "checkpoints"}
# Training fields that may change when a run resumes: how it executes
# (devices, steps per call, XLA), what it logs and how often it checkpoints
# change neither the model nor what it learns. (A multi-worker resume must
# run 1 step per execution, so that one follows the strategy.)
RESUMABLE_FIELDS = ("strategy", "steps_per_execution", "jit_compile", "log_every_n_steps",
                    "profile_batch", "checkpoint_every_seconds", "summaries_max_share")


class RunLockedError(ValueError):
    """Another live process is training in the run directory."""


def load_model(path, **kwargs):
    """Loads a `.keras` file saved by zoo, with `safe_mode` on.

    The same as `keras.models.load_model`, after registering zoo's own
    Keras classes (such as `DCGAN`), which plain Keras cannot find alone.

    ```python
    model = zoo.load_model("runs/dcgan/20260101-120000/model.keras")
    ```
    """
    import keras

    registry.register_keras_classes()
    return keras.models.load_model(path, **kwargs)


def is_finished(run_dir):
    """Whether `run_dir` holds a finished run (its `metrics.json`)."""
    return os.path.exists(os.path.join(run_dir, METRICS))


def config_json(name, model_config, train_config, data, fold=None):
    """The `config.json` of a run: model and training config, the data.

    `fold` is `(index, count)` for one fold of a cross-validation, recorded
    as `data.fold` and `data.num_folds`.
    """
    folds = {"fold": fold[0], "num_folds": fold[1]} if fold else {}
    return {
        "model_name": name,
        "model": config_lib.to_dict(model_config),
        "train": config_lib.to_dict(train_config),
        "data": {"name": data.name, "num_train": data.num_train, **data.describe(), **folds},
    }


@dataclasses.dataclass
class Run:
    """A training run and its directory.

    Attributes:
        dir: str. The run directory.
        metrics: dict. The final evaluation, as in `metrics.json`.
        config: dict. The resolved configs, as in `config.json`.
        history: dict. Per-epoch logs, as in `history.json`.
        model: `keras.Model`. The trained model, loaded from `model.keras`
            on first access when the run was not trained in this process.
    """

    dir: str
    metrics: dict
    config: dict
    history: dict
    _model: object = None
    folds: list = dataclasses.field(default_factory=list)

    @property
    def model(self):
        if self._model is None:
            path = os.path.join(self.dir, "model.keras")
            if not os.path.exists(path):
                raise FileNotFoundError(_no_model(self.dir, self.config))
            self._model = load_model(path)
        return self._model

    @property
    def model_config(self):
        """The model's config dataclass, as `config.json` records it."""
        return registry.get_config(self.config["model_name"], **self.config["model"])

    @property
    def train_config(self):
        """The `TrainConfig` of the run, as `config.json` records it."""
        values = dict(self.config["train"])
        values["data_options"] = tuple((k, tuple(v) if isinstance(v, list) else v)
                                       for k, v in values.get("data_options") or ())
        return config_lib.apply_overrides(config_lib.TrainConfig, values, what="training")

    @classmethod
    def load(cls, run_dir):
        """Opens a finished run directory."""
        read = lambda name: read_json(os.path.join(run_dir, name), {})  # noqa: E731
        config = read("config.json")
        folds = [cls.load(os.path.join(run_dir, f"fold-{i}"))
                 for i in range(config.get("cross_validation", {}).get("num_folds", 0))
                 if is_finished(os.path.join(run_dir, f"fold-{i}"))]
        return cls(run_dir, read("metrics.json"), config, read("history.json"), folds=folds)

    def predict(self, data, *, out=None, keep=(), batch_size=None, top_k=None):
        """The model's predictions on new data; see `zoo.predict.predict`.

        ```python
        run = zoo.load_run("runs/mlp_regressor/20260101-120000")
        run.predict("new_houses.csv", out="predictions.csv")
        run.predict(frame)  # a DataFrame with `price_predicted`
        ```
        """
        from zoo import predict

        return predict.predict(self, data, out=out, keep=keep, batch_size=batch_size, top_k=top_k)

    def evaluate(self, data, *, name=None, data_options=None, batch_size=None):
        """The run's metrics on other data, saved under `evaluations/`; see
        `zoo.evaluate.evaluate`.

        ```python
        zoo.load_run(run_dir).evaluate("houses_2025.csv")["metrics"]["test_mse"]
        ```
        """
        from zoo import evaluate

        return evaluate.evaluate(self, data, name=name, data_options=data_options, batch_size=batch_size)


def _no_model(run_dir, config):
    if "cross_validation" in config:
        return (f"'{run_dir}' is a cross-validation run; its models are in its folds. "
                f"Use one of them, such as {os.path.join(run_dir, 'fold-0')}.")
    return f"Run '{run_dir}' has no model.keras: it has not finished."


def open_run(run_dir, command="this command"):
    """Opens a finished run for `command`, or says what the directory lacks.

    Raises:
        FileNotFoundError: no such directory, or not a finished zoo run
            (no `config.json`, no `metrics.json` or `model.keras`), or a
            cross-validation run (whose models are in its folds).
        KeyError: the run's model is not registered.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(
            f"Run directory '{run_dir}' not found (looked in {os.path.abspath(run_dir)}).")
    config = read_json(os.path.join(run_dir, CONFIG))
    if not config or "model_name" not in config:
        raise FileNotFoundError(
            f"'{run_dir}' is not a zoo run directory: it has no config.json. "
            f"{command} takes a directory made by `zoo train`."
        )
    if "cross_validation" in config:
        raise FileNotFoundError(_no_model(run_dir, config) + f" {command} takes one trained model.")
    registry.get_entry(config["model_name"])
    if not is_finished(run_dir) or not os.path.exists(os.path.join(run_dir, "model.keras")):
        raise FileNotFoundError(
            f"Run '{run_dir}' has not finished: it has no metrics.json or model.keras yet. Rerun "
            "its training command with the same --run-dir to finish it."
        )
    return Run.load(run_dir)


def default_run_dir(name):
    """`runs/<name>/<YYYYmmdd-HHMMSS>`."""
    return os.path.join("runs", name, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def env_info(strategy, precision=None):
    """Versions, devices, the strategy and the precision, for `env.json`.

    `precision` is `zoo.precision.Choice.describe()`: policy, XLA, reason.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__, "numpy": np.__version__}
    try:
        import keras_hub

        versions["keras_hub"] = keras_hub.__version__
    except ImportError:
        pass
    return {
        "versions": versions,
        "platform": platform.platform(),
        "host": platform.node(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "strategy": distribute.describe(strategy),
        "tf_config": distribute.tf_config(),
        "precision": precision,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def config_mismatch(saved, new, ignore=RESUMABLE_FIELDS):
    """The fields in which two `config.json` dicts differ, as readable lines.

    Training fields in `ignore` (`RESUMABLE_FIELDS`: execution, logging and
    checkpoint settings) may differ; so may a training field the saved config lacks, one that a
    newer zoo added.
    """
    diffs = []
    # Compare as JSON sees them: a saved tuple reads back as a list.
    new = json.loads(json.dumps(new, default=json_default))
    for section in ("model", "train"):
        a, b = saved.get(section, {}), new.get(section, {})
        if section == "train":
            # Before "auto" became the default, None meant float32.
            a, b = ({**d, "mixed_precision": "float32"} if "mixed_precision" in d and d["mixed_precision"] is None
                    else d for d in (a, b))
        for key in sorted(set(a) | set(b)):
            if section == "train" and (key in ignore or key not in a):
                continue
            if a.get(key) != b.get(key):
                diffs.append(f"{section}.{key}: saved {a.get(key)!r}, now {b.get(key)!r}")
    for section, key in (("data", "fold"), ("data", "num_folds"), ("cross_validation", "num_folds")):
        a, b = saved.get(section, {}).get(key), new.get(section, {}).get(key)
        if a != b:
            diffs.append(f"{section}.{key}: saved {a!r}, now {b!r}")
    return diffs


def check_run_dir(run_dir):
    """Raises a `ValueError` unless `run_dir` can be a run directory.

    That is a path that does not exist yet (under a writable folder), an
    empty folder, or a folder that holds a zoo run; never a file, or a
    folder of other things. Runs before anything is written.
    """
    run_dir = os.fspath(run_dir)
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ValueError(
            f"Invalid value for `--run-dir`: '{run_dir}' is a file, not a directory. Give a "
            "new path (it is created) or the directory of a run to resume. "
            f"Received: run_dir='{run_dir}'.")
    if os.path.isdir(run_dir):
        entries = set(os.listdir(run_dir))
        is_run = CONFIG in entries or os.path.exists(os.path.join(run_dir, "checkpoints", "state.json"))
        if not is_run and not all(e in _STARTING or e.startswith(files.TMP_PREFIX) for e in entries):
            shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
            raise ValueError(
                f"Invalid value for `--run-dir`: '{run_dir}' is a folder that holds no zoo run "
                f"(no {CONFIG}) but other files ({shown}); zoo does not write into it. Give a "
                f"new or empty folder. Received: run_dir='{run_dir}'.")
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise ValueError(
                f"Invalid value for `--run-dir`: '{run_dir}' is not writable. "
                f"Received: run_dir='{run_dir}'.")
        return
    parent = os.path.dirname(os.path.abspath(run_dir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(
            f"Invalid value for `--run-dir`: '{parent}' is a file, so '{run_dir}' cannot be "
            f"created under it. Received: run_dir='{run_dir}'.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"Invalid value for `--run-dir`: '{run_dir}' cannot be created, since '{parent}' "
            f"is not writable. Received: run_dir='{run_dir}'.")


def _lock_owner(path):
    """`(pid, host, started)` from a lock file, None where unreadable."""
    try:
        with open(path) as f:
            owner = json.load(f)
        return int(owner["pid"]), owner.get("host"), owner.get("started")
    except (OSError, ValueError, KeyError, TypeError):
        return None, None, None


def _refuse(run_dir, path):
    pid, host, started = _lock_owner(path)
    who = f"process {pid}" + (f" on {host}" if host else "") if pid else "another process"
    since = f" (since {started})" if started else ""
    raise RunLockedError(
        f"Run directory '{run_dir}' is being trained by {who}{since}. Wait for it to "
        f"finish{f' or stop it (kill {pid})' if pid else ''}, then rerun to resume; or "
        "use another --run-dir.")


def check_unlocked(run_dir):
    """Raises `RunLockedError` if a live process holds the lock of `run_dir`.

    A probe that takes and drops the lock at once, so a second process is
    refused before it starts TensorFlow; `locked` takes it for the run.
    """
    import fcntl

    path = os.path.join(run_dir, LOCK)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        _refuse(run_dir, path)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(run_dir):
    """Holds `run_dir/.lock` while the block runs; another holder is refused.

    The lock is an `flock` on the file, which the kernel drops when its
    process dies however it dies, so the lock of a killed run never blocks
    a resume; the file holds the owner's pid and host for the message.

    Raises:
        RunLockedError: a live process holds the lock. Raised at once.
    """
    import fcntl

    path = os.path.join(run_dir, LOCK)
    tries = 0
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            tries += 1
            if tries >= 5:
                _refuse(run_dir, path)
            time.sleep(0.05)  # Perhaps only another process' `check_unlocked` probe.
            continue
        # The file may have been unlinked by its last owner between our
        # open and our lock: then it is not the lock any more; try again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(owner) + "\n").encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)  # Still locked, so no one else holds this file.
        os.close(fd)


def read_config(run_dir):
    """The saved `config.json` of `run_dir`, or None for a new run.

    Raises:
        zoo.files.CorruptFileError: the file cannot be parsed.
    """
    path = os.path.join(run_dir, CONFIG)
    return read_json(path, what_to_do=(
        "The run cannot be checked against this command's settings. If this command has the "
        f"settings the run was started with, delete '{path}' and rerun: the run resumes from "
        "its checkpoint and the file is written again. Otherwise use another --run-dir."))


def resume_plan(run_dir, saved, new, finished):
    """What to do with an existing run directory for the config `new`.

    Returns:
        "new" (no saved run), "resume" (an unfinished run, same config),
        "continue" (a finished run, only more epochs) or "finished" (the
        same config, nothing to train).

    Raises:
        ValueError: the configs differ otherwise, or in fewer epochs; the
            message lists every difference.
    """
    if saved is None:
        return "new"
    diffs = config_mismatch(saved, new, ignore=RESUMABLE_FIELDS + ("epochs",))
    before = saved.get("train", {}).get("epochs")
    after = new["train"]["epochs"]
    if isinstance(before, int) and after < before:
        diffs.append(f"train.epochs: saved {before}, now {after} (a run's epochs can only grow)")
    if diffs:
        state = "a finished run" if finished else "a run"
        raise ValueError(
            f"Run directory {run_dir} holds {state} with another config, so it cannot "
            f"{'continue' if finished else 'resume'} with this one: {'; '.join(diffs)}. Use "
            "another --run-dir, or the same settings as that run (only --epochs may grow, "
            "to train it further).")
    if finished:
        return "continue" if isinstance(before, int) and after > before else "finished"
    return "resume"


def print_summary(run_dir, metrics, tensorboard_flags="", precision=None):
    """Prints the final metrics and the command that opens the run in
    TensorBoard, with the flags it needs to show every image (`--samples_per_plugin`)."""
    print(f"\nRun finished: {run_dir}")
    if precision:
        xla = {True: "XLA on", False: "XLA off"}.get(precision["jit_compile"], "XLA auto")
        print(f"Precision: {precision['policy']}, {xla} ({precision['reason']})")
    width = max(len(k) for k in metrics) if metrics else 0
    for key, value in metrics.items():
        print(f"  {key:<{width}}  {value:.6g}" if isinstance(value, float) else f"  {key:<{width}}  {value}")
    flags = f" {tensorboard_flags}" if tensorboard_flags else ""
    print(f"TensorBoard: tensorboard --logdir {os.path.join(run_dir, 'logs')}{flags}")
    sys.stdout.flush()
