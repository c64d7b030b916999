"""The shared training core: one `train` for every registered model.

`train` resolves and checks the configs before it touches the disk, loads
the data, picks the `tf.distribute` strategy, builds and compiles the model
inside the strategy's scope, resumes from the run directory's last
checkpoint, runs Keras `fit` with TensorBoard logging, then evaluates and
saves. A run directory holds:

- `config.json`: the resolved model and training config;
- `env.json`: package versions, devices, strategy and replica count;
- `logs/`: TensorBoard events (`train/`, `validation/`, and the final
  metrics and hparams at the top);
- `checkpoints/`: weights, optimizer and callback state of the last epoch;
- `history.json`, `model.keras` and `metrics.json`, written last: a run
  with `metrics.json` is finished.

Every file is written atomically, so a crash never leaves half of one.
"""

import contextlib
import dataclasses
import datetime
import glob
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time

from zoo import config as config_lib
from zoo import distribute
from zoo import quiet
from zoo import registry
from zoo.task import Task

CHECKPOINT_STATE = "state.json"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; saved in `config.json` beside the model config.

    Attributes:
        epochs: int. Number of passes over the training data.
        batch_size: int. The global batch, split across replicas.
        learning_rate: float. Peak learning rate of the optimizer.
        strategy: str. "auto", "default", "one_device", "mirrored" or
            "multi_worker". Defaults to "auto".
        seed: int. Seeds weights, data order and splits. Defaults to 0.
        mixed_precision: str | None. A Keras dtype policy such as
            "mixed_bfloat16", or None for float32. Defaults to None.
        steps_per_execution: int. Training steps run per `tf.function`
            call. Defaults to 1.
        jit_compile: str | bool. XLA: "auto" lets Keras decide, True or
            False forces it. Defaults to "auto".
        log_every_n_steps: int. Step-level TensorBoard scalars every this
            many steps; 0 turns them off. Defaults to 50.
        profile_batch: tuple[int, int] | None. Steps to capture with the
            TensorFlow profiler, as (start, stop). Defaults to None.
        data: str | None. The dataset name or path. Defaults to the model's
            embedded dataset.
        data_options: tuple[tuple[str, str | int | float | bool | None], ...].
            Dataset options, such as (("target", "price"),).
        preset: str | None. The preset the model started from.
    """

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    strategy: str = "auto"
    seed: int = 0
    mixed_precision: str | None = None
    steps_per_execution: int = 1
    jit_compile: str | bool = "auto"
    log_every_n_steps: int = 50
    profile_batch: tuple[int, int] | None = None
    data: str | None = None
    data_options: tuple[tuple[str, str | int | float | bool | None], ...] = ()
    preset: str | None = None

    def __post_init__(self):
        config_lib.require(self.epochs >= 1, "epochs", self.epochs, "must be at least 1")
        config_lib.require(self.batch_size >= 1, "batch_size", self.batch_size, "must be at least 1")
        config_lib.require(
            self.learning_rate > 0 and math.isfinite(self.learning_rate),
            "learning_rate", self.learning_rate, "must be a positive number",
        )
        distribute.check_name(self.strategy)
        config_lib.require(
            self.steps_per_execution >= 1, "steps_per_execution",
            self.steps_per_execution, "must be at least 1",
        )
        config_lib.require(
            self.jit_compile in ("auto", True, False), "jit_compile",
            self.jit_compile, 'must be "auto", True or False',
        )
        config_lib.require(
            self.mixed_precision in (None, "mixed_float16", "mixed_bfloat16", "float32"),
            "mixed_precision", self.mixed_precision,
            'must be None, "float32", "mixed_float16" or "mixed_bfloat16"',
        )
        config_lib.require(
            self.log_every_n_steps >= 0, "log_every_n_steps", self.log_every_n_steps,
            "must be 0 (off) or a positive step count",
        )


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or Inf; the last good checkpoint was kept."""


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

    @property
    def model(self):
        if self._model is None:
            from zoo import load_model  # Registers zoo's Keras classes (DCGAN).

            self._model = load_model(os.path.join(self.dir, "model.keras"))
        return self._model

    @classmethod
    def load(cls, run_dir):
        """Opens a finished run directory."""
        read = lambda name: _read_json(os.path.join(run_dir, name), {})
        return cls(run_dir, read("metrics.json"), read("config.json"), read("history.json"))


def _read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`, renamed onto it on success.

    The temporary name keeps the suffix (Keras checks `.keras` and
    `.weights.h5`), and a failure removes it, so readers only ever see a
    complete file.
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            if os.path.isdir(tmp):
                shutil.rmtree(tmp)
            else:
                os.remove(tmp)


def write_json(path, obj):
    """Writes `obj` as JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
            f.write("\n")


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)


def default_run_dir(name):
    return os.path.join("runs", name, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def _env_info(strategy):
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
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _saved_config_mismatch(saved, new):
    diffs = []
    # Compare as JSON sees them: a saved tuple reads back as a list.
    new = json.loads(json.dumps(new, default=_json_default))
    for section in ("model", "train"):
        a, b = saved.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if key in ("strategy",):
                continue  # A run may resume under another strategy.
            if a.get(key) != b.get(key):
                diffs.append(f"{section}.{key}: saved {a.get(key)!r}, now {b.get(key)!r}")
    return diffs


def train(
    name,
    *,
    data=None,
    epochs=None,
    batch_size=None,
    learning_rate=None,
    strategy="auto",
    run_dir=None,
    seed=0,
    mixed_precision=None,
    steps_per_execution=None,
    jit_compile="auto",
    callbacks=(),
    data_options=None,
    preset=None,
    log_every_n_steps=50,
    profile_batch=None,
    verbose="auto",
    **overrides,
):
    """Trains model `name` and returns its `Run`.

    Args:
        name: str. A registered model, see `zoo.list_models()`.
        data: str or tuple. A dataset name, a path, or `(x, y)` arrays.
            Defaults to the model's embedded dataset.
        epochs: int. Defaults to the recipe's default.
        batch_size: int. The global batch. Defaults to the recipe's default.
        learning_rate: float. Defaults to the recipe's default.
        strategy: str. See `zoo.distribute`. Defaults to "auto".
        run_dir: str. The run directory; an existing one resumes. Defaults
            to `runs/<name>/<YYYYmmdd-HHMMSS>`.
        seed: int. Defaults to 0.
        mixed_precision: str. A Keras dtype policy. Defaults to None.
        steps_per_execution: int. Training steps per `tf.function` call.
            Defaults to the recipe's default (8 for `mlp_regressor` and
            `dcgan`, whose steps are short; otherwise 1).
        jit_compile: "auto", True or False. Defaults to "auto".
        callbacks: list of `keras.callbacks.Callback`. Extra callbacks.
        data_options: dict. Dataset options (`target`, `features`, ...).
        preset: str. A preset to start from (models with presets).
        log_every_n_steps: int. Step-level TensorBoard scalars. Defaults to 50.
        profile_batch: (int, int). Steps to profile. Defaults to None.
        verbose: "auto", 0, 1 or 2. Keras' progress output; 0 also drops
            the summary. Defaults to "auto".
        **overrides: model config fields.

    Returns:
        A `Run` with `dir`, `metrics`, `config`, `history` and `model`.

    ```python
    run = zoo.train("mlp_regressor", epochs=5)
    print(run.dir, run.metrics["test_mse"])
    ```
    """
    entry = registry.get_entry(name)
    task = entry.task
    model_config = registry.get_config(name, **overrides)
    defaults = task.train_defaults
    options = dict(data_options or {})
    multi_worker = distribute.picks_multi_worker(strategy)
    if steps_per_execution is None:
        steps_per_execution = 1 if multi_worker else defaults.get("steps_per_execution", 1)  # See below.
    elif steps_per_execution > 1 and multi_worker:
        # Keras 3.15's multi-step loop fails under MultiWorkerMirroredStrategy
        # with "You must feed a value for placeholder tensor ... Placeholder".
        raise ValueError(
            "steps_per_execution > 1 does not work under the multi_worker strategy: Keras' "
            "multi-step training loop fails there (Keras 3.15). Use steps_per_execution=1 "
            "(the default for multi-worker runs). Received: "
            f"steps_per_execution={steps_per_execution}."
        )
    train_config = TrainConfig(
        epochs=epochs if epochs is not None else defaults["epochs"],
        batch_size=batch_size if batch_size is not None else defaults.get("batch_size") or 1,
        learning_rate=learning_rate if learning_rate is not None else defaults["learning_rate"],
        strategy=strategy,
        seed=seed,
        mixed_precision=mixed_precision,
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
        log_every_n_steps=log_every_n_steps,
        profile_batch=tuple(profile_batch) if profile_batch else None,
        data=data if isinstance(data, (str, type(None))) else f"<{type(data).__name__}>",
        data_options=tuple(sorted(options.items())),
        preset=preset,
    )
    run_dir = os.fspath(run_dir) if run_dir else default_run_dir(name)
    chief = distribute.is_chief()
    say = print if (chief and verbose != 0) else (lambda *a, **k: None)
    # Every worker checks, so none of them waits alone for a finished run.
    if os.path.exists(os.path.join(run_dir, "metrics.json")):
        say(f"Run {run_dir} already finished; not training again. "
            "Use another --run-dir for a new run.")
        return Run.load(run_dir)

    quiet.import_tensorflow()
    import keras

    from zoo import workarounds

    workarounds.apply_all()
    tf_strategy = distribute.get_strategy(train_config.strategy)
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_dtype_policy(mixed_precision or "float32")

    # Data comes before the run directory, so bad input leaves nothing behind.
    # A task with presets tokenizes with the preset's tokenizer, so it needs the preset.
    dataset = (task.load_data(data, model_config, options, seed, preset=preset)
               if task.has_presets else task.load_data(data, model_config, options, seed))
    updates = {
        k: v for k, v in dataset.config_updates.items() if getattr(model_config, k) != v
    }
    for key in updates:
        if key in overrides:
            raise ValueError(
                f"Invalid value for `{key}`: the data '{dataset.name}' needs "
                f"{key}={dataset.config_updates[key]!r}. Received: {key}={overrides[key]!r}."
            )
    model_config = config_lib.apply_overrides(model_config, updates, what=f"{name} config")
    if batch_size is None:
        train_config = dataclasses.replace(
            train_config, batch_size=task.default_batch_size(dataset.num_train)
        )
    config_json = {
        "model_name": name,
        "model": config_lib.to_dict(model_config),
        "train": config_lib.to_dict(train_config),
        "data": {"name": dataset.name, "num_train": dataset.num_train},
    }

    write_dir = run_dir if chief else tempfile.mkdtemp(prefix=f"zoo-{distribute.task_id()}-")
    ckpt_dir = os.path.join(write_dir, "checkpoints")
    saved = _read_json(os.path.join(run_dir, "config.json"))
    if saved is not None:
        diffs = _saved_config_mismatch(saved, config_json)
        if diffs:
            raise ValueError(
                f"Run directory {run_dir} holds a run with another config, so it "
                f"cannot resume with this one: {'; '.join(diffs)}. Use another "
                "--run-dir, or the same settings as that run."
            )
    if chief:
        write_json(os.path.join(run_dir, "config.json"), config_json)
        write_json(os.path.join(run_dir, "env.json"), _env_info(tf_strategy))

    replicas = tf_strategy.num_replicas_in_sync
    if train_config.batch_size % replicas:
        raise ValueError(
            f"Invalid value for `batch_size`: the global batch must split evenly over "
            f"{replicas} replicas. Received: batch_size={train_config.batch_size}."
        )
    steps_per_epoch = max(1, dataset.num_train // train_config.batch_size)
    if dataset.num_train < train_config.batch_size:
        raise ValueError(
            f"Invalid value for `batch_size`: larger than the {dataset.num_train} "
            f"training examples of '{dataset.name}'. Received: batch_size={train_config.batch_size}."
        )
    train_ds = task.batch(dataset.train, train_config.batch_size, training=True, seed=seed)
    val_ds = (
        task.batch(dataset.validation, train_config.batch_size, training=False)
        if dataset.validation is not None else None
    )

    with tf_strategy.scope():
        model = task.build(entry.builder, model_config, preset, dataset)
        task.prepare(model, dataset)
        task.compile(model, model_config, train_config, steps_per_epoch)
        if model.optimizer is not None and not model.optimizer.built:
            # keras#23085: an optimizer first built inside `fit` under a
            # strategy can fail; build it here, in the scope.
            model.optimizer.build(model.trainable_variables)

    user_callbacks = list(callbacks)
    task_callbacks = task.callbacks(model, dataset, train_config, run_dir)
    # Every worker resumes from the chief's checkpoint (read-only), so all
    # restore the same epoch; a non-chief's own directory is new and empty.
    checkpoint = Checkpoint(ckpt_dir, task_callbacks,
                            restore_dir=os.path.join(run_dir, "checkpoints"))
    initial_epoch = checkpoint.restore(model)
    distribute.check_resume_epoch(tf_strategy, initial_epoch, run_dir)
    if initial_epoch:
        say(f"Resuming {run_dir} from epoch {initial_epoch} "
            f"(step {checkpoint.state.get('step', 0)}).")
    guard = NaNGuard(train_config.learning_rate)
    checkpoint.guard = guard
    tokens = task.tokens_per_example(model_config)
    logger = TensorBoardLogger(
        os.path.join(run_dir, "logs"), task, dataset, train_config,
        tokens_per_example=tokens, resume_epoch=initial_epoch, enabled=chief,
    )
    all_callbacks = [guard, logger, *task_callbacks, checkpoint, *user_callbacks]

    if initial_epoch < train_config.epochs and not checkpoint.state.get("stopped_early"):
        try:
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=train_config.epochs,
                initial_epoch=initial_epoch,
                callbacks=all_callbacks,
                # One progress bar for the cluster, as in a single process.
                verbose=verbose if chief else 0,
                shuffle=False,  # The task's pipeline shuffles, seeded.
            )
        except Exception as e:
            # A worker lost mid-run aborts the collectives of the others.
            if not distribute.is_peer_lost(e, tf_strategy):
                raise
            raise distribute.peer_lost_error(e, checkpoint.state.get("epoch", 0), run_dir) from None
    if guard.diverged:
        raise TrainingDivergedError(
            f"The loss became {guard.value} at epoch {guard.epoch + 1}, step "
            f"{guard.step + 1}; training stopped. The last good checkpoint "
            f"(epoch {checkpoint.state.get('epoch', 0)}) is kept in {ckpt_dir}. "
            f"Lower the learning rate (received learning_rate="
            f"{train_config.learning_rate}) or check the data for extreme values."
        )
    history = checkpoint.state.get("history", {})
    for cb in task_callbacks:
        # EarlyStopping restores the best weights only when it stops early;
        # the best weights are also the right final model after the last epoch.
        if getattr(cb, "restore_best_weights", False) and getattr(cb, "best_weights", None):
            model.set_weights(cb.best_weights)

    metrics = {k: float(v) for k, v in task.evaluate(model, dataset, train_config).items()}
    for key, values in history.items():
        if values:
            metrics.setdefault(f"final_{key}", float(values[-1]))
    metrics["epochs_trained"] = len(history.get("loss", []))
    if chief:
        logger.write_final(metrics, config_json)
        write_json(os.path.join(run_dir, "history.json"), history)
        with atomic_path(os.path.join(run_dir, "model.keras")) as tmp:
            model.save(tmp)
        task.export(model, dataset, run_dir)
        write_json(os.path.join(run_dir, "metrics.json"), metrics)
    else:
        shutil.rmtree(write_dir, ignore_errors=True)
    if verbose != 0 and chief:
        print_summary(run_dir, metrics)
    return Run(run_dir, metrics, config_json, history, model)


def print_summary(run_dir, metrics):
    print(f"\nRun finished: {run_dir}")
    width = max(len(k) for k in metrics) if metrics else 0
    for key, value in metrics.items():
        print(f"  {key:<{width}}  {value:.6g}" if isinstance(value, float) else f"  {key:<{width}}  {value}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(run_dir, 'logs')}")
    sys.stdout.flush()


def _callback_base():
    quiet.import_tensorflow()
    import keras

    return keras.callbacks.Callback


class NaNGuard(_callback_base()):
    """Stops training at the first NaN or Inf loss and remembers where."""

    def __init__(self, learning_rate):
        super().__init__()
        self.learning_rate = learning_rate
        self.diverged = False
        self.epoch = self.step = 0
        self.value = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged, self.step, self.value = True, batch, float(loss)
            self.model.stop_training = True


# Callback attributes that `Checkpoint` saves and restores, so early stopping
# and learning-rate plateaus continue across a resume.
_STATEFUL_ATTRS = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")


class Checkpoint(_callback_base()):
    """Saves weights, optimizer and callback state at each epoch's end.

    Each epoch's weights go to a new `epoch-NNNN.weights.h5`; only then
    does `state.json` (epoch, step, history, callback state) switch to it,
    atomically, and older files are removed. A kill at any point leaves
    the previous complete checkpoint.
    """

    def __init__(self, directory, stateful_callbacks=(), *, restore_dir=None):
        super().__init__()
        self.directory = directory
        self.restore_dir = restore_dir or directory
        self.stateful = list(stateful_callbacks)
        self.guard = None
        self.state = _read_json(os.path.join(self.restore_dir, CHECKPOINT_STATE), {}) or {}

    def restore(self, model):
        """Loads the last checkpoint into `model`; returns the next epoch."""
        if not self.state:
            return 0
        model.load_weights(os.path.join(self.restore_dir, self.state["weights"]))
        for i, cb in enumerate(self.stateful):
            for attr, value in self.state.get("callbacks", {}).get(str(i), {}).items():
                setattr(cb, attr, value)
            best = os.path.join(self.restore_dir, f"best-{i}.npz")
            if hasattr(cb, "best_weights") and os.path.exists(best):
                import numpy as np

                with np.load(best) as f:
                    cb.best_weights = [f[f"arr_{j}"] for j in range(len(f.files))]
        return int(self.state["epoch"])

    def on_train_begin(self, logs=None):
        for i, cb in enumerate(self.stateful):
            # Keras callbacks reset their counters in on_train_begin, which
            # runs before this one; put the saved state back.
            for attr, value in self.state.get("callbacks", {}).get(str(i), {}).items():
                setattr(cb, attr, value)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.diverged:
            return
        import numpy as np

        os.makedirs(self.directory, exist_ok=True)
        weights = f"epoch-{epoch + 1:04d}.weights.h5"
        with atomic_path(os.path.join(self.directory, weights)) as tmp:
            self.model.save_weights(tmp)
        history = self.state.get("history", {})
        for key, value in (logs or {}).items():
            history.setdefault(key, []).append(float(value))
        callbacks = {}
        for i, cb in enumerate(self.stateful):
            callbacks[str(i)] = {
                a: getattr(cb, a) for a in _STATEFUL_ATTRS if hasattr(cb, a)
            }
            if getattr(cb, "best_weights", None) is not None:
                with atomic_path(os.path.join(self.directory, f"best-{i}.npz")) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, *cb.best_weights)
        self.state = {
            "epoch": epoch + 1,
            "step": int(self.model.optimizer.iterations.numpy()) if self.model.optimizer else 0,
            "weights": weights,
            "history": history,
            "callbacks": callbacks,
            "stopped_early": bool(self.model.stop_training),
        }
        write_json(os.path.join(self.directory, CHECKPOINT_STATE), self.state)
        for old in glob.glob(os.path.join(self.directory, "epoch-*.weights.h5")):
            if os.path.basename(old) != weights:
                os.remove(old)


class TensorBoardLogger(_callback_base()):
    """Writes TensorBoard scalars, task summaries, hparams and profiles.

    Every epoch writes to fresh event files tagged with the epoch number
    (`...epoch0003.v2`). On resume from epoch N, files of later epochs, which
    an interrupted run may have left, are deleted first: the history is
    neither lost nor duplicated.

    Scalars, in `train/` and `validation/`: `epoch_<metric>` each epoch,
    `batch_loss` every `log_every_n_steps` steps (by global step), the
    learning rate, and throughput in examples/s (and tokens/s for text).
    """

    def __init__(self, logdir, task, data, train_config, *, tokens_per_example=None,
                 resume_epoch=0, enabled=True):
        super().__init__()
        self.logdir = logdir
        self.task, self.data, self.train_config = task, data, train_config
        self.tokens_per_example = tokens_per_example
        self.enabled = enabled
        self.writers = {}
        self._profiling = False
        if enabled:
            _prune_events(logdir, resume_epoch)

    def _writer(self, kind):
        import tensorflow as tf

        if kind not in self.writers:
            path = os.path.join(self.logdir, kind) if kind else self.logdir
            self.writers[kind] = tf.summary.create_file_writer(
                path, filename_suffix=f".epoch{self.epoch + 1:04d}"
            )
        return self.writers[kind]

    def _close(self):
        for writer in self.writers.values():
            writer.close()
        self.writers = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.start = time.perf_counter()
        self.train_time = None
        self.steps = 0
        # One read of the global step an epoch, not a device sync a batch.
        self.first_step = int(self.model.optimizer.iterations.numpy()) if self.enabled else 0

    def on_train_batch_begin(self, batch, logs=None):
        profile = self.train_config.profile_batch
        if not (self.enabled and profile) or self._profiling:
            return
        # The call about to run does global steps done+1 .. done+spe: start
        # if any of them is in the range (with steps_per_execution > 1 a
        # step is never seen alone).
        done = self.first_step + batch
        if done + self.train_config.steps_per_execution >= profile[0] and done < profile[1]:
            import tensorflow as tf

            tf.profiler.experimental.start(os.path.join(self.logdir, "train"))
            self._profiling = True

    def on_train_batch_end(self, batch, logs=None):
        self.steps = batch + 1
        self.train_time = time.perf_counter() - self.start
        if not self.enabled:
            return
        step = self.first_step + batch + 1
        every = self.train_config.log_every_n_steps
        profile = self.train_config.profile_batch
        if profile and self._profiling and step >= profile[1]:
            import tensorflow as tf

            tf.profiler.experimental.stop()
            self._profiling = False
        if every and step % every < self.train_config.steps_per_execution and logs:
            import tensorflow as tf

            with self._writer("train").as_default(step=step):
                if "loss" in logs:
                    tf.summary.scalar("batch_loss", float(logs["loss"]))
                tf.summary.scalar("batch_learning_rate", self._learning_rate())

    def _learning_rate(self):
        lr = self.model.optimizer.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)

    def on_epoch_end(self, epoch, logs=None):
        if not self.enabled:
            return
        import tensorflow as tf

        logs = logs or {}
        seconds = self.train_time or (time.perf_counter() - self.start)
        examples = self.steps * self.train_config.batch_size
        with self._writer("train").as_default(step=epoch + 1):
            for key, value in logs.items():
                if not key.startswith("val_") and key != "learning_rate":
                    tf.summary.scalar(f"epoch_{key}", float(value))
            tf.summary.scalar("epoch_learning_rate", self._learning_rate())
            if seconds > 0:
                tf.summary.scalar("epoch_examples_per_second", examples / seconds)
                if self.tokens_per_example:
                    tf.summary.scalar(
                        "epoch_tokens_per_second", examples * self.tokens_per_example / seconds
                    )
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        if val:
            with self._writer("validation").as_default(step=epoch + 1):
                for key, value in val.items():
                    tf.summary.scalar(f"epoch_{key}", float(value))
        if type(self.task).summaries is not Task.summaries:
            with self._writer("").as_default(step=epoch + 1):
                self.task.summaries(self.model, self.data, epoch + 1)
        self._close()

    def on_train_end(self, logs=None):
        if self._profiling:
            import tensorflow as tf

            tf.profiler.experimental.stop()
            self._profiling = False
        self._close()

    def write_final(self, metrics, config_json):
        """Writes the final metrics and the HParams summary of the run."""
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hp

        self.epoch = config_json["train"]["epochs"]
        hparams = {}
        for section in ("model", "train"):
            for key, value in config_json[section].items():
                if isinstance(value, (list, tuple, dict)) or value is None:
                    value = json.dumps(value)
                hparams[f"{section}.{key}"] = value
        hparams["data"] = config_json["data"]["name"]
        with self._writer("").as_default(step=metrics.get("epochs_trained", 0)):
            hp.hparams_config(
                hparams=[hp.HParam(k) for k in sorted(hparams)],
                metrics=[hp.Metric(f"final/{k}") for k in sorted(metrics)],
            )
            hp.hparams(hparams, trial_id=os.path.basename(os.path.dirname(self.logdir)))
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    tf.summary.scalar(f"final/{key}", float(value))
        self._close()


def _prune_events(logdir, resume_epoch):
    """Deletes event files of epochs after `resume_epoch` (see the logger)."""
    for path in glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True):
        marker = path.rsplit(".epoch", 1)
        if len(marker) == 2:
            try:
                epoch = int(marker[1].split(".")[0])
            except ValueError:
                continue
            if epoch > resume_epoch:
                os.remove(path)
