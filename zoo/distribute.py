"""Chooses the `tf.distribute` strategy from a string.

This is the one module that picks where work runs. Models never touch
`tf.distribute`; the trainer builds and compiles them inside the chosen
strategy's scope.
"""

import json
import os

from zoo import config as config_lib

STRATEGIES = config_lib.STRATEGIES
check_name = config_lib.check_strategy


def tf_config():
    """Returns the parsed `TF_CONFIG`, or an empty dict."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"TF_CONFIG is not valid JSON ({e}). Received: TF_CONFIG={raw!r}."
        ) from None


def cluster_workers():
    """Returns the number of workers (and chief) that `TF_CONFIG` names."""
    cluster = tf_config().get("cluster", {})
    return sum(len(cluster.get(k, [])) for k in ("chief", "worker"))


def is_chief():
    """Whether this process is the chief: the one that writes the run dir.

    With a `chief` task in the cluster, that task is the chief; otherwise
    worker 0 is, as in `MultiWorkerMirroredStrategy`.
    """
    config = tf_config()
    if not config or cluster_workers() <= 1:
        return True
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if "chief" in config.get("cluster", {}):
        return kind == "chief"
    return kind == "worker" and index == 0


def task_id():
    """A name for this process: `chief`, or `worker-N`."""
    task = tf_config().get("task", {})
    if is_chief():
        return "chief"
    return f"{task.get('type', 'worker')}-{task.get('index', 0)}"


def picks_multi_worker(name="auto"):
    """Whether `name` stands for the multi_worker strategy here, decided from
    `TF_CONFIG` without importing TensorFlow."""
    check_name(name)
    return name == "multi_worker" or (name == "auto" and cluster_workers() >= 2)


def resolve_name(name="auto"):
    """Returns the explicit strategy name that `name` stands for.

    `"auto"` picks `multi_worker` when `TF_CONFIG` names a cluster of two or
    more workers, `mirrored` on two or more GPUs, `one_device` on one GPU and
    `default` otherwise. It never picks `mirrored` on a single device: on a
    CPU, MirroredStrategy over logical devices trains several times slower
    than the default strategy.
    """
    if picks_multi_worker(name):
        return "multi_worker"
    if name != "auto":
        return name
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= 2:
        return "mirrored"
    if len(gpus) == 1:
        return "one_device"
    return "default"


def get_strategy(name="auto"):
    """Returns a `tf.distribute.Strategy` for `name`.

    Args:
        name: str. One of `"auto"`, `"default"`, `"one_device"`,
            `"mirrored"` or `"multi_worker"`. Defaults to `"auto"`.

    `mirrored` uses every GPU, or every logical CPU device when there are
    several and no GPU (how the tests run it); `multi_worker` reads the
    cluster from `TF_CONFIG`; Keras 3's `fit` needs `zoo.workarounds.apply_all()`
    under it, which the trainer calls first.
    """
    name = resolve_name(name)
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        # On CPUs MirroredStrategy all-reduces with collective ops whose
        # instance keys restart with every strategy; a second strategy in
        # the same process (a notebook, a test session) then collides with
        # the first one's collectives ("Shape mismatch in the collective
        # instance 100"). Reducing through one device needs no collectives.
        return tf.distribute.MirroredStrategy(
            cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    # Keras 3's `fit` needs the fixes in `zoo.workarounds` under this
    # strategy; the trainer applies them before it picks one.
    communication = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=communication)


def describe(strategy):
    """A JSON-ready description of `strategy` for `env.json`."""
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # The default strategy has no device list.
        devices = []
    return {
        "class": type(strategy).__name__,
        "num_replicas_in_sync": int(strategy.num_replicas_in_sync),
        "devices": devices,
        "task": task_id(),
    }


def is_peer_lost(error, strategy):
    """Whether `error` means a worker of a multi-worker cluster went away.

    TensorFlow's coordination service notices a worker that stops sending
    heartbeats (about 10 s here) and aborts the collective ops of the
    others with `UnavailableError`; a peer that closed its connection gives
    `CancelledError`, `AbortedError` or `DeadlineExceededError`.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    kinds = (tf.errors.UnavailableError, tf.errors.CancelledError,
             tf.errors.AbortedError, tf.errors.DeadlineExceededError)
    return isinstance(error, kinds)


def peer_lost_error(error, epoch, run_dir):
    """A `ConnectionError` that says which worker was lost and how to resume."""
    import re

    text = str(error)
    task = re.search(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", text)
    who = f"{task.group(1)}-{task.group(2)}" if task else "a worker"
    keys = ("unhealthy", "Connection refused", "failed to connect", "Socket closed",
            "Connection reset", "Deadline Exceeded")
    reason = next((l.strip() for l in text.splitlines() if any(k in l for k in keys)), "")
    reason = reason.strip(":. ")[:200]
    return ConnectionError(
        f"Lost {who} of the cluster during training, so this worker stopped "
        f"({type(error).__name__}{': ' + reason if reason else ''}). The last "
        f"checkpoint is epoch {epoch} in {run_dir}; start every worker again with "
        "the same command and --run-dir to resume from it."
    )


def check_resume_epoch(strategy, epoch, run_dir):
    """Raises a `ValueError` on every worker unless all resume the same epoch.

    Every worker restores the chief's checkpoint from the run directory; one
    that does not see it (a run directory that is not shared) would start
    from epoch 0 while the others resume, and the cluster would fall out of
    step. One all-gather at start-up finds that instead.

    Args:
        strategy: `tf.distribute.Strategy`. Only a multi-worker one checks.
        epoch: int. The epoch this worker resumes from.
        run_dir: str. The run directory, for the message.
    """
    import tensorflow as tf

    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()):
        return
    # In a tf.function: run eagerly, this strategy warns of its overhead.
    gather = tf.function(lambda: strategy.gather(
        strategy.run(lambda: tf.constant([epoch], tf.int64)), axis=0))
    epochs = [int(e) for e in gather().numpy()]
    # Replicas come worker by worker; keep one value per worker.
    epochs = epochs[:: max(1, len(strategy.extended.worker_devices))]
    message = resume_mismatch(epochs, run_dir)
    if message:
        raise ValueError(message)


def resume_mismatch(epochs, run_dir):
    """The error message for workers that would resume different epochs."""
    if len(set(epochs)) <= 1:
        return None
    found = ", ".join(f"worker-{i} at epoch {e}" for i, e in enumerate(epochs))
    return (
        f"The workers would resume from different epochs ({found}): every worker "
        f"reads the chief's checkpoint in {run_dir}, so that directory must be the "
        "same shared path on every host (NFS, a mounted bucket). Received: "
        f"--run-dir {run_dir}."
    )
