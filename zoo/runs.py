"""Run directories: the files a run writes, and opening a finished run.

A run directory holds:

- `config.json`: the resolved model and training config;
- `env.json`: package versions, devices, strategy and replica count, and
  the dtype policy and XLA setting with the reason for them (`precision`);
- `logs/`: TensorBoard events (`train/`, `validation/`, and the final
  metrics and hparams at the top);
- `checkpoints/`: weights, optimizer and callback state of the last epoch;
- `history.json`, `model.keras` and `metrics.json`, written last: a run
  with `metrics.json` is finished.

Every file is written atomically (`zoo.files`), so a crash never leaves half
of one.
"""

import dataclasses
import datetime
import json
import os
import platform
import sys

from zoo import config as config_lib
from zoo import distribute
from zoo import registry
from zoo.files import json_default, read_json

CONFIG = "config.json"
METRICS = "metrics.json"


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


def config_json(name, model_config, train_config, data):
    """The `config.json` of a run: model and training config, the data."""
    return {
        "model_name": name,
        "model": config_lib.to_dict(model_config),
        "train": config_lib.to_dict(train_config),
        "data": {"name": data.name, "num_train": data.num_train, **data.describe()},
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

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(os.path.join(self.dir, "model.keras"))
        return self._model

    @classmethod
    def load(cls, run_dir):
        """Opens a finished run directory."""
        read = lambda name: read_json(os.path.join(run_dir, name), {})  # noqa: E731
        return cls(run_dir, read("metrics.json"), read("config.json"), read("history.json"))


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


def config_mismatch(saved, new):
    """The fields in which two `config.json` dicts differ, as readable lines."""
    diffs = []
    # Compare as JSON sees them: a saved tuple reads back as a list.
    new = json.loads(json.dumps(new, default=json_default))
    for section in ("model", "train"):
        a, b = saved.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if key in ("strategy",):
                continue  # A run may resume under another strategy.
            if a.get(key) != b.get(key):
                diffs.append(f"{section}.{key}: saved {a.get(key)!r}, now {b.get(key)!r}")
    return diffs


def print_summary(run_dir, metrics, precision=None):
    print(f"\nRun finished: {run_dir}")
    if precision:
        xla = {True: "XLA on", False: "XLA off"}.get(precision["jit_compile"], "XLA auto")
        print(f"Precision: {precision['policy']}, {xla} ({precision['reason']})")
    width = max(len(k) for k in metrics) if metrics else 0
    for key, value in metrics.items():
        print(f"  {key:<{width}}  {value:.6g}" if isinstance(value, float) else f"  {key:<{width}}  {value}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(run_dir, 'logs')}")
    sys.stdout.flush()
