"""Chooses the `tf.distribute` strategy from a string.

This is the one module that picks where work runs. Models never touch
`tf.distribute`; the trainer builds and compiles them inside the chosen
strategy's scope.
"""

import json
import os

from zoo import config as config_lib

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker")


def check_name(name):
    """Raises a `ValueError` that lists the choices for an unknown name."""
    if name not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy '{name}'.{config_lib.did_you_mean(name, STRATEGIES)} "
            f"Accepted: {', '.join(STRATEGIES)}."
        )


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


def resolve_name(name="auto"):
    """Returns the explicit strategy name that `name` stands for.

    `"auto"` picks `multi_worker` when `TF_CONFIG` names a cluster of two or
    more workers, `mirrored` on two or more GPUs, `one_device` on one GPU and
    `default` otherwise. It never picks `mirrored` on a single device: on a
    CPU, MirroredStrategy over logical devices trains several times slower
    than the default strategy.
    """
    check_name(name)
    if name != "auto":
        return name
    if cluster_workers() >= 2:
        return "multi_worker"
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
    cluster from `TF_CONFIG`.
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
        return tf.distribute.MirroredStrategy(cpus)
    from zoo import workarounds

    workarounds.apply_multi_worker_fixes()
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
