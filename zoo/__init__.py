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

from zoo.quiet import quiet_tensorflow as _quiet_tensorflow

_quiet_tensorflow()

from zoo.config import TrainConfig, apply_overrides  # noqa: E402
from zoo.registry import get, get_config, info, list_models, register  # noqa: E402
from zoo.task import Data, Task  # noqa: E402

from zoo import models  # noqa: E402, F401  Importing it registers the built-in models.

__version__ = "0.1.0"


def train(name, **kwargs):
    """Trains model `name` with the shared trainer; see `zoo.trainer.train`."""
    from zoo import trainer

    return trainer.train(name, **kwargs)


def load_model(path, **kwargs):
    """Loads a `.keras` file saved by zoo; see `zoo.runs.load_model`."""
    from zoo import runs

    return runs.load_model(path, **kwargs)


def load_run(run_dir):
    """Opens a finished run directory as a `zoo.runs.Run`."""
    from zoo import runs

    return runs.Run.load(run_dir)


__all__ = [
    "Data", "Task", "TrainConfig", "apply_overrides", "get", "get_config", "info", "list_models",
    "load_model", "load_run", "register", "train",
]
