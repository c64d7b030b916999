"""The shared training core: one `train` for every registered model.

`train` reads as its phases: resolve the configs, load and check the data
(before anything is written, so bad input leaves nothing behind), open the
run directory (locked, checked against a saved config), build and compile the model inside the `tf.distribute`
strategy's scope, resume from the last checkpoint, `fit` with TensorBoard
logging, then evaluate and save. What a run directory holds is described in
`zoo.runs`; the callbacks are in `zoo.callbacks`.
"""

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile

from zoo import config as config_lib
from zoo import distribute
from zoo import files
from zoo import quiet
from zoo import registry
from zoo import runs
from zoo import task as task_lib
from zoo.config import TrainConfig
from zoo.files import atomic_path, write_json


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or Inf; the last good checkpoint was kept."""


@dataclasses.dataclass
class _Session:
    """What the phases of one `train` call share."""

    name: str
    entry: registry.Entry
    model_config: object
    train_config: TrainConfig
    run_dir: str
    chief: bool
    say: object
    strategy: object = None
    data: object = None
    config_json: dict = None
    write_dir: str = None
    overrides: dict = dataclasses.field(default_factory=dict)
    batch_size_given: bool = False
    precision: object = None
    fitting: bool = False
    plan: str = "new"
    fold: tuple = None


def train(name, *, data=None, run_dir=None, callbacks=(), verbose="auto", fold=None, **options):
    """Trains model `name` and returns its `Run`.

    Args:
        name: str. A registered model, see `zoo.list_models()`.
        data: str or tuple. A dataset name, a path, or `(x, y)` arrays.
            Defaults to the model's embedded dataset.
        run_dir: str. The run directory; an existing one resumes. Defaults
            to `runs/<name>/<YYYYmmdd-HHMMSS>`.
        callbacks: list of `keras.callbacks.Callback`. Extra callbacks.
        verbose: "auto", 0, 1 or 2. Keras' progress output; 0 also drops
            the summary. Defaults to "auto".
        fold: (int, int) or None. `(index, count)`: train on one fold of
            a cross-validation (`zoo.folds` runs them all), through the
            task's `fold_data`. Defaults to None.
        **options: training options, the fields of `zoo.config.TrainConfig`
            (`epochs`, `batch_size`, `learning_rate`, `strategy`, `seed`,
            `mixed_precision` ("auto" by default, see `zoo.precision`),
            `steps_per_execution`, `jit_compile`,
            `log_every_n_steps`, `profile_batch`, `preset`, and
            `data_options` as a dict), whose defaults are the recipe's; any
            other keyword is a model config field.

    Returns:
        A `zoo.runs.Run` with `dir`, `metrics`, `config`, `history` and
        `model`.

    ```python
    run = zoo.train("mlp_regressor", epochs=5)
    print(run.dir, run.metrics["test_mse"])
    ```
    """
    session = _resolve(name, data, run_dir, verbose, options)
    session.fold = fold
    _start_tensorflow(session)
    _load_data(session, data, options)
    _choose_precision(session)
    with _dtype_policy(session.precision.policy):
        with _run_dir(session) as plan:
            session.plan = plan
            if plan == "finished":
                # Every worker checks, so none of them waits alone for a finished run.
                session.say(f"Run {session.run_dir} already finished; not training again. "
                            "Use another --run-dir for a new run, or more --epochs to train "
                            "it further.")
                return runs.Run.load(session.run_dir)
            model = _build_model(session)
            checkpoint, guard, fit_callbacks = _make_callbacks(session, model, callbacks)
            session.fitting = True
            _fit(session, model, checkpoint, guard, fit_callbacks, verbose)
            return _finish(session, model, checkpoint, verbose)


def check(name, *, data=None, fold=None, **options):
    """Resolves the configs and loads the data as `train` would, writing
    nothing; returns the run's `config.json` dict. Raises what `train`
    would raise for the same arguments before it writes anything."""
    session = _resolve(name, data, None, 0, options)
    session.fold = fold
    _start_tensorflow(session)
    _load_data(session, data, options)  # In float32, as `train` loads it.
    return session.config_json


def _resolve(name, data, run_dir, verbose, options):
    """Phase 1: the model and training configs, checked, without TensorFlow."""
    entry = registry.get_entry(name)
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)} - {"data"}
    overrides = {k: v for k, v in options.items() if k not in train_keys}
    given = {k: v for k, v in options.items() if k in train_keys}
    model_config = registry.get_config(name, **overrides)
    entry.check_preset(given.get("preset"))
    defaults = entry.task.train_defaults
    strategy = given.get("strategy", "auto")
    multi_worker = distribute.picks_multi_worker(strategy)
    steps = given.get("steps_per_execution")
    if steps is None:
        # Keras 3.15's multi-step loop fails under MultiWorkerMirroredStrategy.
        # A profiled run marks every step: on a CPU the Profile tab times a
        # step only at one step per call (tensorboard-plugin-profile 2.24).
        steps = (1 if multi_worker or given.get("profile_batch")
                 else defaults.get("steps_per_execution", 1))
    elif steps > 1 and multi_worker:
        raise ValueError(
            "steps_per_execution > 1 does not work under the multi_worker strategy: Keras' "
            "multi-step training loop fails there (Keras 3.15). Use steps_per_execution=1 "
            f"(the default for multi-worker runs). Received: steps_per_execution={steps}."
        )
    fill = {
        "epochs": defaults["epochs"],
        "batch_size": defaults.get("batch_size") or 1,
        "learning_rate": defaults["learning_rate"],
    }
    values = {**fill, **{k: v for k, v in given.items() if v is not None}}
    values["steps_per_execution"] = steps
    values["data_options"] = tuple(sorted(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in dict(given.get("data_options") or {}).items()))
    if values.get("profile_batch"):
        values["profile_batch"] = tuple(values["profile_batch"])
    if values.get("preset") is not None:
        values["preset"] = os.fspath(values["preset"])
    values["data"] = data if isinstance(data, (str, type(None))) else f"<{type(data).__name__}>"
    if isinstance(data, os.PathLike):
        values["data"] = os.fspath(data)
    train_config = config_lib.apply_overrides(TrainConfig, values, what="training")
    chief = distribute.is_chief()
    say = print if (chief and verbose != 0) else (lambda *a, **k: None)
    run_dir = os.fspath(run_dir) if run_dir else runs.default_run_dir(name)
    runs.check_run_dir(run_dir)
    if chief:
        runs.check_unlocked(run_dir)  # Refused before TensorFlow starts.
    return _Session(name, entry, model_config, train_config, run_dir, chief, say,
                    overrides=overrides, batch_size_given=given.get("batch_size") is not None)


def _start_tensorflow(session):
    """Phase 2: TensorFlow without its start-up noise, the upstream fixes,
    the seed and the strategy."""
    quiet.import_tensorflow()
    import keras

    from zoo import workarounds

    workarounds.apply_all()
    session.strategy = distribute.get_strategy(session.train_config.strategy)
    keras.utils.set_random_seed(session.train_config.seed)


@contextlib.contextmanager
def _dtype_policy(policy):
    """Sets Keras' global dtype policy for one run and restores the old one."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _load_data(session, data, options):
    """Phase 3: the data, the config fields it sets, and the batch checks."""
    task, train_config = session.entry.task, session.train_config
    dataset = task.load_data(data, session.model_config, dict(train_config.data_options),
                             train_config.seed, preset=train_config.preset)
    if session.fold is not None:
        dataset = task.fold_data(dataset, session.fold[1], session.fold[0], train_config.seed)
    updates = {k: v for k, v in dataset.config_updates.items()
               if getattr(session.model_config, k) != v}
    for key in updates:
        if key in session.overrides:
            raise ValueError(
                f"Invalid value for `{key}`: the data '{dataset.name}' needs "
                f"{key}={dataset.config_updates[key]!r}. Received: {key}={session.overrides[key]!r}."
            )
    session.model_config = config_lib.apply_overrides(
        session.model_config, updates, what=f"{session.name} config")
    if not session.batch_size_given:
        train_config = dataclasses.replace(
            train_config, batch_size=task.default_batch_size(dataset.num_train))
    replicas = session.strategy.num_replicas_in_sync
    if train_config.batch_size % replicas:
        raise ValueError(
            f"Invalid value for `batch_size`: the global batch must split evenly over "
            f"{replicas} replicas. Received: batch_size={train_config.batch_size}."
        )
    if dataset.num_train < train_config.batch_size:
        raise ValueError(
            f"Invalid value for `batch_size`: larger than the {dataset.num_train} "
            f"training examples of '{dataset.name}'. Received: batch_size={train_config.batch_size}."
        )
    session.train_config, session.data = train_config, dataset
    session.config_json = runs.config_json(session.name, session.model_config, train_config, dataset,
                                           fold=session.fold)


def _choose_precision(session):
    """Phase 3b: the dtype policy and XLA setting for this machine and model.

    After the data, which can set the model's size (a preset's
    architecture); see `zoo.precision` for what "auto" picks. A run that
    resumes from a checkpoint keeps the policy it trained in
    (`precision.resume`); its `config.json` keeps the request it was
    started with, so resuming it under "auto", or under the policy it
    trains in, is no config change.
    """
    from zoo import precision

    train_config = session.train_config
    session.precision = precision.choose(
        train_config.mixed_precision, train_config.jit_compile,
        num_params=session.entry.task.count_params(session.model_config))
    recorded = _recorded_precision(session.run_dir)
    if recorded is None:
        return
    saved_request, env_precision = recorded
    session.precision = precision.resume(session.precision, env_precision, saved_request,
                                         session.run_dir, jit_compile=train_config.jit_compile)
    session.config_json["train"]["mixed_precision"] = saved_request


def _recorded_precision(run_dir):
    """`(saved mixed_precision, env.json precision or None)` of a run that
    has a checkpoint to resume from; None for a new run."""
    from zoo.callbacks import CHECKPOINT_STATE

    saved = None
    if os.path.exists(os.path.join(run_dir, "checkpoints", CHECKPOINT_STATE)):
        with contextlib.suppress(files.CorruptFileError):  # `_plan` reports a bad config.
            saved = runs.read_config(run_dir)
    if not isinstance(saved, dict) or not isinstance(saved.get("train"), dict):
        return None
    try:
        env = files.read_json(os.path.join(run_dir, "env.json")) or {}
    except files.CorruptFileError:  # A record only: the run still resumes.
        env = {}
    # A run saved before the field existed trained in float32 (None).
    return saved["train"].get("mixed_precision"), env.get("precision") if isinstance(env, dict) else None


@contextlib.contextmanager
def _run_dir(session):
    """Phase 4: enter the run directory; yields the `runs.resume_plan`.

    The chief creates the directory, holds its lock for the whole run,
    removes what interrupted writes left, checks the saved config against
    this one and writes the config; a non-chief worker only checks, and
    writes into a temporary directory of its own. A directory this call
    created is removed again when the run fails before training starts,
    so a bad preset or model leaves nothing behind.
    """
    run_dir = session.run_dir
    if not session.chief:
        plan = _plan(session)
        session.write_dir = tempfile.mkdtemp(prefix=f"zoo-{distribute.task_id()}-")
        yield plan
        return
    created = not os.path.exists(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        raise ValueError(f"Invalid value for `--run-dir`: '{run_dir}' cannot be created "
                         f"({e.strerror}). Received: run_dir='{run_dir}'.") from None
    with runs.locked(run_dir):
        try:
            for path in files.remove_stale_temps(run_dir):
                session.say(f"Removed {os.path.relpath(path, run_dir)}, left in {run_dir} "
                            "by an interrupted write.")
            plan = _plan(session)
            session.write_dir = run_dir
            if plan == "continue":
                # Unfinished first, then the new epochs: a kill in between
                # leaves a run that resumes.
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(run_dir, runs.METRICS))
            if plan != "finished":
                write_json(os.path.join(run_dir, runs.CONFIG), session.config_json)
                write_json(os.path.join(run_dir, "env.json"),
                           runs.env_info(session.strategy, session.precision.describe()))
            yield plan
        except BaseException:
            if created and not session.fitting:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def _plan(session):
    """`runs.resume_plan` for this session; a finished run with more epochs
    continues unless it stopped early."""
    run_dir = session.run_dir
    # The config before `metrics.json`: the chief of a continued run
    # removes `metrics.json` before it writes the new config.
    saved = runs.read_config(run_dir)
    plan = runs.resume_plan(run_dir, saved, session.config_json, runs.is_finished(run_dir))
    if plan in ("resume", "continue"):
        from zoo.callbacks import Checkpoint

        # Read and check the checkpoint now, before anything is written.
        checkpoint = Checkpoint(os.path.join(run_dir, "checkpoints"))
        checkpoint.check()
        if plan == "continue" and checkpoint.state.get("stopped_early"):
            raise ValueError(
                f"Run {run_dir} stopped early at epoch {checkpoint.state.get('epoch')} (its "
                "validation loss stopped improving), so more epochs would not train it "
                "further. Use another --run-dir for a new run.")
    return plan


def _build_model(session):
    """Phase 5: build, prepare and compile inside the strategy's scope."""
    task, train_config = session.entry.task, session.train_config
    steps_per_epoch = max(1, session.data.num_train // train_config.batch_size)
    with session.strategy.scope():
        model = task.build(session.entry.build, session.model_config, train_config.preset, session.data)
        task.prepare(model, session.data)
        task_lib.compile_model(task, model, session.model_config, train_config, steps_per_epoch)
    # The XLA setting as Keras resolved it, beside the policy and why.
    session.precision = dataclasses.replace(session.precision, jit_compile=model.jit_compile)
    if session.chief:
        write_json(os.path.join(session.run_dir, "env.json"),
                   runs.env_info(session.strategy, session.precision.describe()))
    return model


def _make_callbacks(session, model, user_callbacks):
    """Phase 6: the checkpoint (restored), the NaN guard and the logger."""
    from zoo.callbacks import Checkpoint, NaNGuard
    from zoo.tensorboard import StepProgbar, TensorBoardLogger

    task, train_config = session.entry.task, session.train_config
    task_callbacks = task.callbacks(model, session.data, train_config, session.run_dir)
    # Every worker resumes from the chief's checkpoint (read-only), so all
    # restore the same epoch; a non-chief's own directory is new and empty.
    checkpoint = Checkpoint(
        os.path.join(session.write_dir, "checkpoints"), task_callbacks,
        restore_dir=os.path.join(session.run_dir, "checkpoints"),
        # Workers decide alike: reading some variables to save them is a
        # collective op under multi_worker, so a clock's choice could hang.
        every_seconds=0 if distribute.cluster_workers() > 1 else train_config.checkpoint_every_seconds,
        warn=(lambda message: print(f"warning: {message}", file=sys.stderr)) if session.chief
        else (lambda message: None))
    initial_epoch = checkpoint.restore(model)
    distribute.check_resume_epoch(session.strategy, initial_epoch, session.run_dir)
    if session.plan == "continue":
        session.say(f"Continuing the finished run {session.run_dir} from epoch {initial_epoch} "
                    f"(step {checkpoint.state.get('step', 0)}) to epoch {train_config.epochs}.")
    elif initial_epoch:
        session.say(f"Resuming {session.run_dir} from epoch {initial_epoch} "
                    f"(step {checkpoint.state.get('step', 0)}).")
    auto_here = session.precision.auto_here
    if initial_epoch and auto_here is not None:
        session.say(f"Keeping the run's dtype policy {session.precision.policy}: its checkpoint "
                    f"belongs to it (\"auto\" would pick {auto_here.policy} on this machine).")
    guard = NaNGuard()
    checkpoint.guard = guard
    logger = TensorBoardLogger(
        os.path.join(session.run_dir, "logs"), task, session.data, train_config,
        tokens_per_example=task.tokens_per_example(session.model_config),
        resume_epoch=initial_epoch, resume_step=checkpoint.state.get("step", 0),
        enabled=session.chief,
    )
    import keras

    # Keras uses a ProgbarLogger among the callbacks instead of its own.
    progbar = [] if any(isinstance(cb, keras.callbacks.ProgbarLogger) for cb in user_callbacks) else [
        StepProgbar()]
    return checkpoint, guard, [guard, logger, *task_callbacks, checkpoint, *user_callbacks, *progbar]


def _fit(session, model, checkpoint, guard, fit_callbacks, verbose):
    """Phase 7: `fit` from the restored epoch to the last one."""
    task, train_config = session.entry.task, session.train_config
    initial_epoch = checkpoint.state.get("epoch", 0)
    if initial_epoch < train_config.epochs and not checkpoint.state.get("stopped_early"):
        batch = task.batch(session.data.train, train_config.batch_size, training=True,
                           seed=train_config.seed)
        validation = (task.batch(session.data.validation, train_config.batch_size, training=False)
                      if session.data.validation is not None else None)
        try:
            with task.fitting(model, session.data):
                model.fit(
                    batch,
                    validation_data=validation,
                    epochs=train_config.epochs,
                    initial_epoch=initial_epoch,
                    callbacks=fit_callbacks,
                    # One progress bar for the cluster, as in a single process.
                    verbose=verbose if session.chief else 0,
                    shuffle=False,  # The task's pipeline shuffles, seeded.
                )
        except Exception as e:
            # A worker lost mid-run aborts the collectives of the others.
            if not distribute.is_peer_lost(e, session.strategy):
                raise
            raise distribute.peer_lost_error(
                e, checkpoint.state.get("epoch", 0), session.run_dir) from None
        finally:
            # `fit` skips on_train_end when it raises; flush the events.
            from zoo.tensorboard import TensorBoardLogger

            for cb in fit_callbacks:
                if isinstance(cb, TensorBoardLogger):
                    cb.close()
    if guard.diverged:
        raise TrainingDivergedError(
            f"The loss became {guard.value} at epoch {guard.epoch + 1}, step "
            f"{guard.step + 1}; training stopped. The last good checkpoint "
            f"(epoch {checkpoint.state.get('epoch', 0)}) is kept in {checkpoint.directory}. "
            f"Lower the learning rate (received learning_rate="
            f"{train_config.learning_rate}) or check the data for extreme values."
        )
    for cb in checkpoint.stateful:
        # EarlyStopping restores the best weights only when it stops early;
        # the best weights are also the right final model after the last epoch.
        if getattr(cb, "restore_best_weights", False) and getattr(cb, "best_weights", None):
            model.set_weights(cb.best_weights)


def _finish(session, model, checkpoint, verbose):
    """Phase 8: evaluate, then save the model, exports and metrics (last)."""
    task, run_dir = session.entry.task, session.run_dir
    history = checkpoint.state.get("history", {})
    metrics = {k: float(v) for k, v in task.evaluate(model, session.data, session.train_config).items()}
    for key, values in history.items():
        if values:
            metrics.setdefault(f"final_{key}", float(values[-1]))
    metrics["epochs_trained"] = len(history.get("loss", []))
    tensorboard_flags = ""
    if session.chief:
        from zoo.tensorboard import write_final_summaries

        tensorboard_flags = write_final_summaries(
            os.path.join(run_dir, "logs"), metrics, session.config_json, run_dir, task.headline_metrics)
        write_json(os.path.join(run_dir, "history.json"), history)
        with atomic_path(os.path.join(run_dir, "model.keras")) as tmp:
            model.save(tmp)
        task.export(model, session.data, run_dir)
        write_json(os.path.join(run_dir, runs.METRICS), metrics)
    else:
        shutil.rmtree(session.write_dir, ignore_errors=True)
    if verbose != 0 and session.chief:
        runs.print_summary(run_dir, metrics, tensorboard_flags, session.precision.describe())
    return runs.Run(run_dir, metrics, session.config_json, history, model)
