"""`mlp_regressor`: a Keras MLP for tabular regression, and its data.

Datasets: `friedman1` (the default, generated), `diabetes` (scikit-learn's
bundled real data) and any CSV file with a `target` column.
"""

import csv
import dataclasses
import math
import os

from zoo import config as config_lib
from zoo import registry
from zoo.task import Data, Task

ACTIVATIONS = (
    "relu", "gelu", "silu", "swish", "tanh", "sigmoid", "elu", "selu",
    "softplus", "leaky_relu", "relu6", "mish", "linear",
)
DATASETS = ("friedman1", "diabetes")
MIN_ROWS = 20


@dataclasses.dataclass(frozen=True)
class MLPRegressorConfig:
    """Config of `mlp_regressor`.

    Attributes:
        input_dim: int. Number of input features; the trainer sets it from
            the data. Defaults to 10, the features of `friedman1`.
        hidden_units: tuple[int, ...]. Width of each hidden layer. Defaults
            to (128, 128).
        activation: str. Activation of the hidden layers, a Keras activation
            name. Defaults to "relu".
        dropout: float. Dropout rate after each hidden layer, in [0, 1).
            Defaults to 0.0.
        output_dim: int. Number of regression targets. Defaults to 1.
    """

    input_dim: int = 10
    hidden_units: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    dropout: float = 0.0
    output_dim: int = 1

    def __post_init__(self):
        config_lib.require(self.input_dim >= 1, "input_dim", self.input_dim, "must be at least 1")
        config_lib.require(
            len(self.hidden_units) >= 1 and all(u >= 1 for u in self.hidden_units),
            "hidden_units", self.hidden_units, "must be one or more positive layer widths",
        )
        config_lib.require(
            self.activation in ACTIVATIONS, "activation", self.activation,
            f"must be one of {', '.join(ACTIVATIONS)}"
            + config_lib.did_you_mean(self.activation, ACTIVATIONS),
        )
        config_lib.require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        config_lib.require(self.output_dim >= 1, "output_dim", self.output_dim, "must be at least 1")


class MLPRegressorTask(Task):
    """Tabular regression: MSE loss, Adam, ReduceLROnPlateau, early stopping.

    The model holds a `Normalization` layer for its inputs and an inverted
    one for its targets, both adapted on the training split only, so a saved
    model predicts in raw units from raw features.
    """

    default_data = "friedman1"
    data_help = (
        "friedman1 (default; options num_train, noise, data_seed), diabetes, "
        "or a CSV path with options target, features, drop_missing"
    )
    # 8 steps per execution: 1.36x faster epochs, the same losses (docs/performance.md).
    train_defaults = {"epochs": 300, "batch_size": None, "learning_rate": 3e-3, "steps_per_execution": 8}

    def default_batch_size(self, num_train):
        """About 40 steps an epoch: 256 for 10,000 rows, 16 for small tables."""
        import math

        return int(min(256, max(16, 2 ** round(math.log2(max(1, num_train / 40))))))

    def load_data(self, data, config, options, seed):
        import numpy as np

        data = data or self.default_data
        options = dict(options or {})
        if isinstance(data, tuple) and len(data) == 2:
            x, y = (np.asarray(a, dtype="float32") for a in data)
            name = "arrays"
        elif data == "friedman1":
            return self._friedman1(options, seed)
        elif data == "diabetes":
            from sklearn.datasets import load_diabetes

            config_lib.check_options(options, (), data)
            x, y = load_diabetes(return_X_y=True)
            name = "diabetes"
        elif isinstance(data, (str, os.PathLike)) and (
            str(data).endswith(".csv") or os.path.exists(data)
        ):
            config_lib.check_options(options, ("target", "features", "drop_missing"), data)
            x, y, _ = read_csv(
                data,
                target=options.get("target"),
                features=options.get("features"),
                drop_missing=bool(options.get("drop_missing", False)),
            )
            name = os.path.basename(str(data))
        else:
            raise ValueError(
                f"Unknown dataset '{data}'.{config_lib.did_you_mean(data, DATASETS)} "
                f"`data` takes one of {', '.join(DATASETS)} or the path of a CSV file."
            )
        x = np.asarray(x, "float32")
        y = np.asarray(y, "float32").reshape(len(x), -1)
        if len(x) < MIN_ROWS:
            raise ValueError(
                f"Dataset '{name}' has {len(x)} rows; at least {MIN_ROWS} are "
                "needed to split it into train, validation and test."
            )
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = n_val = max(1, int(round(0.15 * len(x))))
        splits = {
            "test": order[:n_test],
            "validation": order[n_test : n_test + n_val],
            "train": order[n_test + n_val :],
        }
        arrays = {k: (x[v], y[v]) for k, v in splits.items()}
        return self._data(arrays, name)

    def _friedman1(self, options, seed):
        import numpy as np
        from sklearn.datasets import make_friedman1

        config_lib.check_options(options, ("num_train", "noise", "data_seed"), "friedman1")
        num_train = int(options.get("num_train", 10_000))
        if num_train < MIN_ROWS:
            raise ValueError(
                f"Invalid value for `num_train`: must be at least {MIN_ROWS}. "
                f"Received: num_train={num_train}."
            )
        noise = float(options.get("noise", 1.0))
        data_seed = int(options.get("data_seed", seed))
        n_val = n_test = max(MIN_ROWS, num_train // 5)
        x, y = make_friedman1(
            n_samples=num_train + n_val + n_test, n_features=10, noise=noise,
            random_state=data_seed,
        )
        x, y = x.astype("float32"), y.astype("float32").reshape(-1, 1)
        bounds = np.cumsum([num_train, n_val])
        arrays = {
            "train": (x[: bounds[0]], y[: bounds[0]]),
            "validation": (x[bounds[0] : bounds[1]], y[bounds[0] : bounds[1]]),
            "test": (x[bounds[1] :], y[bounds[1] :]),
        }
        return self._data(arrays, "friedman1")

    def _data(self, arrays, name):
        import tensorflow as tf

        datasets = {k: tf.data.Dataset.from_tensor_slices(v) for k, v in arrays.items()}
        x_train, y_train = arrays["train"]
        return Data(
            train=datasets["train"],
            validation=datasets["validation"],
            test=datasets["test"],
            num_train=len(x_train),
            name=name,
            config_updates={"input_dim": x_train.shape[1], "output_dim": y_train.shape[1]},
            extras={"arrays": arrays},
        )

    def prepare(self, model, data):
        x_train, y_train = data.extras["arrays"]["train"]
        model.get_layer("feature_normalization").adapt(x_train)
        model.get_layer("target_denormalization").adapt(y_train)

    def compile(self, model, config, train_config=None, steps_per_epoch=None):
        import keras

        learning_rate = train_config.learning_rate if train_config else self.train_defaults["learning_rate"]
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="mse",
            metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
            **_compile_kwargs(train_config),
        )

    def callbacks(self, model, data, train_config, run_dir):
        import keras

        return [
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=8, min_lr=1e-5, verbose=0
            ),
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=25, restore_best_weights=True, verbose=0
            ),
        ]

    def evaluate(self, model, data, train_config):
        import numpy as np

        x_train, y_train = data.extras["arrays"]["train"]
        x_test, y_test = data.extras["arrays"]["test"]
        pred = model.predict(x_test, batch_size=1024, verbose=0)
        baseline = np.broadcast_to(y_train.mean(axis=0), y_test.shape)
        metrics = {}
        for prefix, p in (("test", pred), ("baseline", baseline)):
            metrics.update({f"{prefix}_{k}": v for k, v in regression_metrics(y_test, p).items()})
        return metrics

    def count_params(self, config):
        total, width = 2 * config.input_dim + 1, config.input_dim
        for units in config.hidden_units:
            total += width * units + units
            width = units
        total += width * config.output_dim + config.output_dim
        return total + 2 * config.output_dim + 1


def _compile_kwargs(train_config):
    """`steps_per_execution` and `jit_compile` from a `TrainConfig`."""
    if train_config is None:
        return {}
    return {
        "steps_per_execution": train_config.steps_per_execution,
        "jit_compile": train_config.jit_compile,
    }


def regression_metrics(y_true, y_pred):
    """MSE, MAE and R² of predictions, as floats."""
    import numpy as np

    y_true, y_pred = np.asarray(y_true, "float64"), np.asarray(y_pred, "float64")
    residual = y_true - y_pred
    mse = float(np.mean(residual**2))
    total = float(np.mean((y_true - y_true.mean(axis=0)) ** 2))
    return {
        "mse": mse,
        "mae": float(np.mean(np.abs(residual))),
        "r2": 1.0 - mse / total if total > 0 else float("nan"),
    }


def read_csv(path, *, target, features=None, drop_missing=False):
    """Reads a numeric CSV file into feature and target arrays.

    Args:
        path: str. The CSV file, with a header row.
        target: str. The target column.
        features: list of str, or a comma-separated str. The feature
            columns. Defaults to every column but the target.
        drop_missing: bool. Drop rows with empty cells instead of raising.
            Defaults to False.

    Returns:
        `(x, y, feature_names)`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a named column is missing, a cell is not a number, cells
            are empty, or a column is constant. The message names the file,
            column and row.
    """
    import numpy as np

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Data file '{path}' not found (looked in {os.path.abspath(path)}). "
            f"`data` takes a CSV path or one of {', '.join(DATASETS)}."
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"Could not read '{path}' as CSV: {e}.") from None
    if not rows or not any(c.strip() for c in rows[0]):
        raise ValueError(f"'{path}' is empty: expected a header row and data rows.")
    header = [c.strip() for c in rows[0]]
    if target is None:
        raise ValueError(
            f"A CSV file needs a target column (`--target COLUMN`). Columns of "
            f"'{path}': {', '.join(header)}."
        )
    if isinstance(features, str):
        features = [c.strip() for c in features.split(",") if c.strip()]
    features = list(features) if features else [c for c in header if c != target]
    for column in [target, *features]:
        if column not in header:
            raise ValueError(
                f"Column '{column}' not found in '{path}'."
                f"{config_lib.did_you_mean(column, header)} Columns: {', '.join(header)}."
            )
    if target in features:
        raise ValueError(f"Column '{target}' is both the target and a feature in '{path}'.")
    columns = [header.index(c) for c in features + [target]]
    names = features + [target]
    values, missing = [], []
    for row_number, row in enumerate(rows[1:], start=1):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(
                f"'{path}', row {row_number} (line {row_number + 1}) has {len(row)} "
                f"fields; the header has {len(header)}."
            )
        parsed, row_missing = [], []
        for name, index in zip(names, columns):
            cell = row[index].strip()
            if cell == "" or cell.lower() in ("na", "nan", "null", "none"):
                row_missing.append(name)
                parsed.append(math.nan)
                continue
            try:
                parsed.append(float(cell))
            except ValueError:
                raise ValueError(
                    f"'{path}', row {row_number} (line {row_number + 1}), column "
                    f"'{name}': {cell!r} is not a number. Every feature and target "
                    "column must be numeric."
                ) from None
        if row_missing:
            missing.append((row_number, row_missing))
            if drop_missing:
                continue
        values.append(parsed)
    if missing and not drop_missing:
        cells = sum(len(m) for _, m in missing)
        where = "; ".join(f"row {r}: {', '.join(m)}" for r, m in missing[:5])
        more = f" (and {len(missing) - 5} more rows)" if len(missing) > 5 else ""
        raise ValueError(
            f"'{path}' has {cells} missing values in {len(missing)} rows: {where}{more}. "
            "Fill them in, or drop those rows with `--drop-missing` "
            "(`data_options={'drop_missing': True}` in Python)."
        )
    table = np.asarray(values, dtype="float64").reshape(-1, len(names))
    if len(table) < MIN_ROWS:
        raise ValueError(
            f"'{path}' has {len(table)} usable rows; at least {MIN_ROWS} are needed "
            "to split it into train, validation and test."
        )
    for j, name in enumerate(names):
        if np.all(table[:, j] == table[0, j]):
            raise ValueError(
                f"'{path}', column '{name}' has the same value ({table[0, j]:g}) in "
                f"every row, so it carries no information. "
                + ("Choose another target." if name == target
                   else "Leave it out with `--features`.")
            )
    return table[:, :-1].astype("float32"), table[:, -1:].astype("float32"), features


@registry.register("mlp_regressor", config=MLPRegressorConfig, task=MLPRegressorTask())
def mlp_regressor(config):
    """A multilayer perceptron for tabular regression.

    Raw features pass through a `keras.layers.Normalization` layer, then
    `Dense` layers, then an inverted `Normalization` that maps the output
    back to the target's units. The recipe adapts both on the training
    split, so the saved model predicts from raw features alone.

    Args:
        config: `MLPRegressorConfig`. The architecture.

    ```python
    model = zoo.get("mlp_regressor", input_dim=8, hidden_units=(64, 64))
    model.predict(x)
    ```
    """
    import keras

    inputs = keras.Input((config.input_dim,), name="features")
    x = keras.layers.Normalization(name="feature_normalization")(inputs)
    for i, units in enumerate(config.hidden_units):
        x = keras.layers.Dense(units, activation=config.activation, name=f"hidden_{i}")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    x = keras.layers.Dense(config.output_dim, name="scaled_prediction")(x)
    outputs = keras.layers.Normalization(invert=True, name="target_denormalization")(x)
    return keras.Model(inputs, outputs, name="mlp_regressor")
