"""What TensorBoard shows of a run: event files, HParams, summary, profiles.

`zoo.trainer` adds `TensorBoardLogger` to every `fit` and calls
`write_final_summaries` once the run is evaluated. A run's `logs/` holds:

- `train/` and `validation/`: `epoch_<metric>` scalars each epoch (step =
  epoch), `batch_loss` and `batch_learning_rate` every
  `log_every_n_steps` global steps (step = global step), the learning rate
  and the throughput in examples/s (and tokens/s for text);
- the top level: the task's images and text (step = epoch), the HParams
  session of the run, its evaluation metrics under `evaluation/` and one
  readable `run_summary` text;
- `train/plugins/profile/`: the `--profile-batch` trace, each step (each
  execution of `steps_per_execution` steps) marked for the Profile tab.

TensorBoard's default loader reads a run's event files in the order of
their names and drops a point whose step goes back, so the order of the
files is the order of the history. The logger keeps one writer per run
directory open for the whole `fit` (one file per directory per process),
and a resumed run first merges what an interrupted one left into one file
per directory that holds each point once, cut at the checkpoint, and sorts
before the files the resumed run writes (`merge_events`).
"""

import math
import os
import socket
import time

from zoo import quiet
from zoo.task import Task

EVENTS = "events.out.tfevents."
# Points per tag that TensorBoard keeps unless told `--samples_per_plugin`.
TENSORBOARD_SAMPLES = {"images": 10, "audio": 10, "text": 10}
# Tags written at the end of a run (rewritten if the end runs again).
SUMMARY_TAG = "run_summary"
EVALUATION_PREFIX = "evaluation/"
# Tags whose step is the global step; every other tag's step is the epoch.
STEP_TAG_PREFIX = "batch_"
_MERGE_TMP = ".zoo-merge-"


def _callback_base():
    quiet.import_tensorflow()
    import keras

    return keras.callbacks.Callback


def real_steps(batch, params):
    """Steps done in an epoch once `on_train_batch_end(batch)` has run.

    With `steps_per_execution` > 1, Keras passes the last step index an
    execution would reach, also when the epoch ends first (keras#20861:
    `batch` is 23 for the 22 steps of an epoch at 8 steps per execution).
    """
    steps = (params or {}).get("steps")
    return min(batch + 1, steps) if steps else batch + 1


def _progbar_base():
    quiet.import_tensorflow()
    import keras

    return keras.callbacks.ProgbarLogger


class StepProgbar(_progbar_base()):
    """Keras' progress bar, counting the steps that ran (keras#20861).

    Stock Keras shows `24/22` for the last execution of a 22-step epoch at
    8 steps per execution. `fit` uses this one instead of its own when it
    is among the callbacks; with `verbose=0` it prints nothing.
    """

    def on_train_batch_end(self, batch, logs=None):
        # ProgbarLogger keeps the epoch's steps in `target`, not `params`.
        super().on_train_batch_end(real_steps(batch, {"steps": self.target}) - 1, logs)


class TensorBoardLogger(_callback_base()):
    """Writes TensorBoard scalars, task summaries and profiles during `fit`.

    One writer per run directory (`train`, `validation`, the top level for
    the task's images and text), opened on first use and kept open until
    `fit` ends; each epoch's end flushes them, so a kill loses nothing
    before the last checkpoint. On resume from epoch N, at global step S,
    the files an interrupted run left are merged and cut at N and S first
    (`merge_events`), so no point is lost or written twice.

    The task's summaries (`Task.summaries`: sample grids, confusion
    matrices, generated text) take at most `summaries_max_share` of the
    training time: the first epoch of `fit` writes them, a later epoch's end
    only when 1/share times as long as the last ones took has passed, and
    the last epoch always does (at `on_train_end`, when a callback after
    this one stopped training early). Short epochs are not each pictured;
    epochs that take a minute always are.

    Throughput counts the steps that ran, not Keras' end-step index. With
    `profile_batch=(start, stop)` the profiler runs over those global steps
    and marks each step, or each execution of `steps_per_execution` steps,
    with `tf.profiler.experimental.Trace("train", step_num=..., _r=1)`, the
    step marker that TensorBoard's Profile tab times steps by.
    """

    def __init__(self, logdir, task, data, train_config, *, tokens_per_example=None,
                 resume_epoch=0, resume_step=0, enabled=True):
        super().__init__()
        self.logdir = logdir
        self.task, self.data, self.train_config = task, data, train_config
        self.tokens_per_example = tokens_per_example
        self.enabled = enabled
        self.writers = {}
        self._profiling = False
        self._trace = None
        self.epoch = resume_epoch
        self._finished = resume_epoch  # The last epoch that ended, 1-based.
        self._summarized = resume_epoch  # The last epoch with summaries.
        self._finite = True  # Whether the last epoch's logs were finite.
        self._summaries_end, self._summaries_seconds = None, 0.0
        if enabled:
            merge_events(logdir, resume_epoch, resume_step)

    def _writer(self, kind):
        import tensorflow as tf

        if kind not in self.writers:
            path = os.path.join(self.logdir, kind) if kind else self.logdir
            self.writers[kind] = tf.summary.create_file_writer(path)
        return self.writers[kind]

    def _flush(self):
        for writer in self.writers.values():
            writer.flush()

    def close(self):
        """Closes the writers (and stops a profile still running)."""
        self._end_trace()
        if self._profiling:
            import tensorflow as tf

            tf.profiler.experimental.stop()
            self._profiling = False
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
        if not (self.enabled and profile):
            return
        import tensorflow as tf

        done = self.first_step + batch
        if not self._profiling:
            # The call about to run does global steps done+1 .. done+spe:
            # start if any of them is in the range (with steps_per_execution
            # > 1 a step is never seen alone).
            if done + self.train_config.steps_per_execution >= profile[0] and done < profile[1]:
                tf.profiler.experimental.start(os.path.join(self.logdir, "train"))
                self._profiling = True
        if self._profiling:
            # The global step about to run (1-based), or with several steps
            # per call the number of the execution.
            self._trace = tf.profiler.experimental.Trace(
                "train", step_num=done // self.train_config.steps_per_execution + 1, _r=1)
            self._trace.__enter__()

    def _end_trace(self):
        if self._trace is not None:
            self._trace.__exit__(None, None, None)
            self._trace = None

    def on_train_batch_end(self, batch, logs=None):
        self._end_trace()
        self.steps = real_steps(batch, self.params)
        self.train_time = time.perf_counter() - self.start
        if not self.enabled:
            return
        step = self.first_step + self.steps
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
        self._finished = epoch + 1
        self._finite = all(math.isfinite(float(v)) for v in logs.values())
        last = epoch + 1 >= self.params.get("epochs", epoch + 1) or self.model.stop_training
        if last or self._summaries_due():
            self._summaries(epoch + 1)
        self._flush()

    def _summaries_due(self):
        share = self.train_config.summaries_max_share
        if not share or self._summaries_end is None:
            return True
        return time.perf_counter() - self._summaries_end >= self._summaries_seconds / share

    def _summaries(self, epoch):
        if type(self.task).summaries is Task.summaries:
            return
        started = time.perf_counter()
        with self._writer("").as_default(step=epoch):
            self.task.summaries(self.model, self.data, epoch)
        self._summarized = epoch
        self._summaries_end = time.perf_counter()
        self._summaries_seconds = self._summaries_end - started

    def on_train_end(self, logs=None):
        # A callback after this one may have stopped training at an epoch
        # without summaries: the last one that ended gets them, unless it
        # diverged.
        if self.enabled and self._finished > self._summarized and self._finite:
            self._summaries(self._finished)
            self._flush()
        self.close()


def hparams_of(config_json):
    """The HParams of a run: its model, data and every config field.

    Numbers, booleans and strings stay as they are; lists, dicts and None
    become their JSON text with single quotes (TensorBoard shows a double
    quote inside a string column as `\\"`), a string column.
    """
    import json

    hparams = {"model": config_json["model_name"], "data": config_json["data"]["name"]}
    for section in ("model", "train"):
        for key, value in config_json[section].items():
            if isinstance(value, (list, tuple, dict)) or value is None:
                value = json.dumps(value).replace('"', "'")
            hparams[f"{section}.{key}"] = value
    if "fold" in config_json["data"]:
        hparams["fold"] = config_json["data"]["fold"]  # One trial per fold of a cross-validation.
    return hparams


def write_final_summaries(logdir, metrics, config_json, run_dir=None, headline=("*",)):
    """Writes a finished run's HParams session, evaluation and summary.

    No experiment summary (`hparams_config`) is written: TensorBoard takes
    one run's experiment for the whole logdir, which hides the columns of
    every other model. Without one it builds the table from every run's
    session, with each run's own hparams, and takes the metric columns from
    the scalars under each session: the last `train/epoch_*` and
    `validation/epoch_*` points, and the task's headline evaluation metrics
    written here as `evaluation/<name>` (the HParams plugin reads metric
    values from scalar series only, so each is also a one-point chart in
    Time Series; per-class scores and counts are left to the summary). The
    session's name is the run directory, so two runs never merge into one
    row. `run_summary` is every metric of `metrics.json` in one Markdown
    table, for the Text tab.

    Args:
        logdir: str. The run's `logs/` directory.
        metrics: dict. The run's `metrics.json`.
        config_json: dict. The run's `config.json`.
        run_dir: str. The run directory, the session's name. Defaults to
            the parent of `logdir`.
        headline: tuple of str. The task's `headline_metrics` patterns.
            Defaults to every metric.

    Returns:
        str. The `tensorboard` flags this run needs to show all of its
        images and text (`--samples_per_plugin images=100`), or "".
    """
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    run_dir = os.path.abspath(run_dir or os.path.dirname(os.path.abspath(logdir)))
    step = int(metrics.get("epochs_trained", 0))
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default(step=step):
        hp.hparams(hparams_of(config_json), trial_id=run_dir)
        for key, value in headline_metrics(metrics, headline).items():
            tf.summary.scalar(f"{EVALUATION_PREFIX}{key}", value)
        tf.summary.text(SUMMARY_TAG, summary_markdown(run_dir, metrics, config_json))
    writer.close()
    return samples_flags(logdir)


def headline_metrics(metrics, patterns=("*",)):
    """The finite numbers of `metrics` whose names match one of `patterns`
    (a task's `headline_metrics`), as floats: what goes to `evaluation/`.

    `final_<metric>` repeats the last point of an epoch series, which the
    HParams table shows already, and `epochs_trained` is in the summary, so
    neither is ever a headline.
    """
    return {
        key: float(value) for key, value in metrics.items()
        if is_headline(key, patterns)
        and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def is_headline(key, patterns=("*",)):
    """Whether metric `key` matches one of `patterns` and may be a headline
    (never `final_<metric>` or `epochs_trained`, see `headline_metrics`)."""
    import fnmatch

    return (not key.startswith("final_") and key != "epochs_trained"
            and any(fnmatch.fnmatchcase(key, p) for p in patterns))


def summary_markdown(run_dir, metrics, config_json):
    """One Markdown text of a run: what it is, then every final metric."""
    lines = [
        f"**{config_json['model_name']}** on **{config_json['data']['name']}** "
        f"({config_json['data'].get('num_train', '?')} training examples), "
        f"{metrics.get('epochs_trained', '?')} epochs; run `{run_dir}`",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key, value in metrics.items():
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key.replace('|', '/')} | {text} |")
    return "\n".join(lines)


def samples_flags(logdir):
    """`--samples_per_plugin` flags for the plugins whose tags in `logdir`
    hold more steps than TensorBoard keeps by default, or ""."""
    counts = {}
    for path in sorted(_event_files(logdir)):
        for event in _read_events(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin in TENSORBOARD_SAMPLES:
                    counts.setdefault((plugin, value.tag), set()).add(event.step)
    needed = {}
    for (plugin, _), steps in counts.items():
        if len(steps) > TENSORBOARD_SAMPLES[plugin]:
            needed[plugin] = max(needed.get(plugin, 0), len(steps))
    if not needed:
        return ""
    return "--samples_per_plugin " + ",".join(f"{k}={v}" for k, v in sorted(needed.items()))


def _event_files(directory):
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in names
            if n.startswith(EVENTS) and os.path.isfile(os.path.join(directory, n))]


def _read_events(path):
    """The events of one file, stopping at a record cut short by a kill."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    events = []
    try:
        for record in tf.data.TFRecordDataset(path):
            events.append(event_pb2.Event.FromString(record.numpy()))
    except tf.errors.DataLossError:
        pass
    return events


def merge_events(logdir, epoch, step):
    """Makes the event files under `logdir` hold each point once, up to a
    checkpoint, in one file per directory that sorts first.

    Before a resumed run writes, each directory's event files (left by the
    runs that trained before, maybe killed mid-epoch) are read in the order
    they were written and merged into one file that keeps a point only if
    its step is at most the checkpoint's (`epoch` for epoch tags, `step`
    for `batch_*` tags); a step that goes back replaces the points of its
    tag from that step on (the later write wins, once). The
    HParams session, evaluation and summary are dropped: the end of the run
    writes them again. The merged file is named with a time before now, so
    it sorts before any file this process creates, and it replaces the old
    files atomically (a kill during the merge leaves the old files, merged
    again on the next resume). Directories with nothing to drop are left
    alone, and a fresh run with no files costs one directory walk.

    Args:
        logdir: str. A run's `logs/` directory.
        epoch: int. The epoch of the checkpoint the run resumes from.
        step: int. The global step of that checkpoint.
    """
    if not os.path.isdir(logdir):
        return
    for root, dirs, files in os.walk(logdir):
        dirs[:] = [d for d in dirs if d != "plugins"]  # Profiles: no event files.
        for name in files:
            if name.startswith(_MERGE_TMP):
                os.remove(os.path.join(root, name))
        paths = [os.path.join(root, n) for n in files if n.startswith(EVENTS)]
        if paths:
            _merge_directory(root, paths, epoch, step)


def _merge_directory(directory, paths, epoch, step):
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    files = []
    for path in paths:
        events = _read_events(path)
        # The order the files were written in: the time of their first point
        # (microseconds; the version record at the top has whole seconds).
        times = [e.wall_time for e in events if e.HasField("summary")] or [
            e.wall_time for e in events] or [0.0]
        files.append((times[0], path, events))
    files.sort(key=lambda f: (f[0], f[1]))
    # A lone file that sorts before any file this process opens, with
    # nothing to drop, stays as it is.
    changed = len(files) > 1 or _stamp(files[0][1]) >= int(time.time())
    version, series, order = None, {}, 0
    for _, _, events in files:
        for event in events:
            if not event.HasField("summary"):
                version = version or event
                continue
            for value in event.summary.value:
                if not _keep(value, event.step, epoch, step):
                    changed = True
                    continue
                kept = series.setdefault(value.tag, [])
                # A step that goes back replaces the points from that step
                # on, as TensorBoard would if it read the files in order.
                while kept and kept[-1][0] >= event.step:
                    kept.pop()
                    changed = True
                single = event_pb2.Event(wall_time=event.wall_time, step=event.step)
                single.summary.value.append(value)
                kept.append((event.step, order, single))
                order += 1
    if not changed:
        return
    merged = sorted((p for kept in series.values() for p in kept), key=lambda p: p[1])
    if merged:
        first = min(f[0] for f in files if f[0]) if any(f[0] for f in files) else time.time()
        stamp = int(min(first, time.time() - 1))
        target = os.path.join(directory, f"{EVENTS}{stamp:010d}.{socket.gethostname()}.merged.v2")
        tmp = os.path.join(directory, f"{_MERGE_TMP}{os.getpid()}")
        with tf.io.TFRecordWriter(tmp) as writer:
            if version is not None:
                writer.write(version.SerializeToString())
            for _, _, event in merged:
                writer.write(event.SerializeToString())
        os.replace(tmp, target)
    else:
        target = None
    for _, path, _ in files:
        if path != target:
            os.remove(path)


def _stamp(path):
    """The time in an event file's name (`events.out.tfevents.<time>.`)."""
    try:
        return int(os.path.basename(path)[len(EVENTS):].split(".", 1)[0])
    except ValueError:
        return math.inf


def _keep(value, event_step, epoch, step):
    """Whether a point survives a resume from `epoch`, global step `step`."""
    plugin = value.metadata.plugin_data.plugin_name
    if plugin == "hparams" or value.tag == SUMMARY_TAG or value.tag.startswith(EVALUATION_PREFIX):
        return False
    return event_step <= (step if value.tag.startswith(STEP_TAG_PREFIX) else epoch)
