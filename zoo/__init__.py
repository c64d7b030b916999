"""zoo: a Keras 3 / TensorFlow model zoo.

```python
import zoo

zoo.list_models()                          # ['dcgan', 'gpt2_textgen', 'image_classifier', 'mlp_regressor']
model = zoo.get("gpt2_textgen", num_layers=2)
run = zoo.train("mlp_regressor", epochs=5)
```

Importing `zoo`, listing and describing models do not import TensorFlow;
building and training do.
"""

import os as _os

from zoo.quiet import quiet_tensorflow as _quiet_tensorflow

_quiet_tensorflow()

from zoo.config import TrainConfig, apply_overrides  # noqa: E402
from zoo.registry import get, get_config, info, list_models, register  # noqa: E402
from zoo.task import Data, Task  # noqa: E402

from zoo import models  # noqa: E402, F401  Importing it registers the built-in models.

__version__ = "0.1.0"


def train(name, *, folds=None, **kwargs):
    """Trains model `name` with the shared trainer; see `zoo.trainer.train`.

    With `folds=K`, cross-validates over K seeded folds, each a run in
    `RUN/fold-<i>/`; see `zoo.folds.train_folds`.
    """
    if folds is not None:
        from zoo import folds as folds_lib

        return folds_lib.train_folds(name, folds=folds, **kwargs)
    from zoo import trainer

    return trainer.train(name, **kwargs)


def load_model(path, **kwargs):
    """Loads a `.keras` file saved by zoo; see `zoo.runs.load_model`."""
    from zoo import runs

    return runs.load_model(path, **kwargs)


def load_run(run_dir):
    """Opens a finished run directory as a `zoo.runs.Run`, with `predict`
    and `evaluate` methods.

    Raises:
        FileNotFoundError: `run_dir` is not a finished run (the message
            says what it lacks).
    """
    from zoo import runs

    if runs.is_finished(run_dir) and "cross_validation" in (runs.read_json(
            _os.path.join(run_dir, runs.CONFIG)) or {}):
        return runs.Run.load(run_dir)
    return runs.open_run(run_dir, "`zoo.load_run`")


__all__ = [
    "Data", "Task", "TrainConfig", "apply_overrides", "get", "get_config", "info", "list_models",
    "load_model", "load_run", "register", "train",
]
