"""`mlp_regressor`: a Keras MLP for tabular regression, and its data.

Datasets: `friedman1` (the default, generated), `diabetes` (scikit-learn's
bundled real data) and any CSV file with a `target` column.
"""

import dataclasses
import os
import typing

from zoo import config as config_lib
from zoo import registry
from zoo.data import splits, tabular
from zoo.metrics import regression
from zoo.task import Data, Evaluation, Predictions, Task

ACTIVATIONS = (
    "relu", "gelu", "silu", "swish", "tanh", "sigmoid", "elu", "selu",
    "softplus", "leaky_relu", "relu6", "mish", "linear",
)
DATASETS = ("friedman1", "diabetes")
MIN_ROWS = 20


TINY = dict(input_dim=5, hidden_units=(8, 4))


@dataclasses.dataclass
class TableData(Data):
    """A table's splits as arrays, beside the datasets.

    Attributes:
        arrays: dict. `"train"`, `"validation"` and `"test"` to `(x, y)`
            float32 arrays, `y` shaped `(rows, outputs)`.
        features: list of str. The feature columns, in the model's order.
        targets: list of str. The target columns.
    """

    arrays: typing.Any = None
    features: list = dataclasses.field(default_factory=list)
    targets: list = dataclasses.field(default_factory=list)

    def describe(self):
        return {"features": list(self.features), "targets": list(self.targets)}


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
    # 8 steps per execution: 1.36x faster epochs, the same losses (docs/tuning.md).
    data_options = {
        "target": (str, "target column of a CSV file"),
        "features": (str, "comma-separated feature columns of a CSV file"),
        "drop_missing": (bool, "drop CSV rows with missing values"),
        "num_train": (int, "friedman1: training rows (10000)"),
        "noise": (float, "friedman1: noise standard deviation (1.0)"),
        "data_seed": (int, "friedman1: seed of the generated data (the run's seed)"),
    }
    data_flags = ("target", "features", "drop_missing")
    # The training-mean baseline_* scores are in run_summary, for reference.
    headline_metrics = ("test_mse", "test_mae", "test_r2")
    # Measured on the default recipe at 50 % sparsity: blocks of 4 make the
    # pruned file's gzip 0.580x (0.618x weight by weight) at a lower test MSE.
    prune_block = 4
    train_defaults = {"epochs": 300, "batch_size": None, "learning_rate": 3e-3, "steps_per_execution": 8}

    def default_batch_size(self, num_train):
        """About 40 steps an epoch: 256 for 10,000 rows, 16 for small tables."""
        import math

        return int(min(256, max(16, 2 ** round(math.log2(max(1, num_train / 40))))))

    def load_data(self, data, config, options, seed, preset=None):
        import numpy as np

        data = data or self.default_data
        options = dict(options or {})
        if isinstance(data, tuple) and len(data) == 2:
            x, y = (np.asarray(a, dtype="float32") for a in data)
            name = "arrays"
            features, targets = None, None
        elif data == "friedman1":
            return self._friedman1(options, seed)
        elif data == "diabetes":
            from sklearn.datasets import load_diabetes

            config_lib.check_options(options, (), data)
            bunch = load_diabetes()
            x, y = bunch.data, bunch.target
            name = "diabetes"
            features, targets = list(bunch.feature_names), ["target"]
        elif isinstance(data, (str, os.PathLike)) and (
            str(data).endswith(".csv") or os.path.exists(data)
        ):
            config_lib.check_options(options, ("target", "features", "drop_missing"), data)
            x, y, features = tabular.read_csv(
                data,
                target=options.get("target"),
                features=options.get("features"),
                drop_missing=bool(options.get("drop_missing", False)),
                min_rows=MIN_ROWS,
            )
            name = os.path.basename(str(data))
            targets = [options.get("target")]
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
        parts = splits.shuffled_partition(len(x), {"test": 0.15, "validation": 0.15, "train": None}, seed)
        arrays = {k: (x[v], y[v]) for k, v in parts.items()}
        return self._data(arrays, name, features, targets)

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
        return self._data(arrays, "friedman1", [f"x{i}" for i in range(10)], ["y"])

    def _data(self, arrays, name, features=None, targets=None):
        import tensorflow as tf

        x_train, y_train = arrays["train"]
        return TableData(
            train=tf.data.Dataset.from_tensor_slices(arrays["train"]),
            validation=tf.data.Dataset.from_tensor_slices(arrays["validation"]),
            num_train=len(x_train),
            name=name,
            config_updates={"input_dim": x_train.shape[1], "output_dim": y_train.shape[1]},
            arrays=arrays,
            features=list(features or (f"x{i}" for i in range(x_train.shape[1]))),
            targets=list(targets or (["y"] if y_train.shape[1] == 1 else [f"y{i}" for i in range(y_train.shape[1])])),
        )

    def prepare(self, model, data):
        x_train, y_train = data.arrays["train"]
        model.get_layer("feature_normalization").adapt(x_train)
        model.get_layer("target_denormalization").adapt(y_train)

    def compile(self, model, config, train_config, steps_per_epoch=None):
        import keras

        model.compile(
            optimizer=keras.optimizers.Adam(train_config.learning_rate),
            loss="mse",
            metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
            **self.execution_options(train_config),
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
        _, y_train = data.arrays["train"]
        x_test, y_test = data.arrays["test"]
        pred = model.predict(x_test, batch_size=1024, verbose=0)
        return regression.with_mean_baseline(y_train, y_test, pred)

    def serving_examples(self, config, load_data, count):
        # Raw features in, raw-unit predictions out: the model holds both
        # normalizations, so the serving model is the model itself.
        x_test, _ = load_data().arrays["test"]
        return x_test[:count], f"the first {min(count, len(x_test))} rows of the test split"

    def predict(self, run, data, *, keep=(), batch_size=1024, top_k=None):
        """`<target>_predicted` columns in the target's units, features by name.

        Rows with a missing feature get empty predictions when the run
        dropped such rows in training (`drop_missing`); otherwise they are
        refused, naming the row and column.
        """
        if top_k is not None:
            raise ValueError(f"Invalid value for `top_k`: it applies to classifiers. Received: top_k={top_k}.")
        features, targets = _run_columns(run)
        rows = tabular.stream_table(data, features, keep=keep, chunk_rows=batch_size,
                                    allow_missing=_drop_missing(run), wanted="the run's features")
        predicted = [f"{t}_predicted" for t in targets]
        model = run.model

        def chunks():
            for values, kept, _ in rows:
                out = dict(kept)
                prediction = _predict(model, values, batch_size)
                out.update({name: prediction[:, j] for j, name in enumerate(predicted)})
                yield out

        return Predictions(list(keep) + predicted, predicted, chunks(), _source(data))

    def evaluate_data(self, run, data, options, own_data, batch_size=None):
        """Regression metrics and the training-mean baseline, named as the
        run's (`test_mse`, `baseline_mse`, ...): on the run's test split for
        its own data, on every row (streamed) of other data."""
        import numpy as np

        batch_size = batch_size or 1024
        features, targets = _run_columns(run)
        if own_data:
            table = self.load_data(data, run.model_config, options, run.train_config.seed)
            metrics = self.evaluate(run.model, table, run.train_config)
            return Evaluation(metrics, table.name, "test", len(table.arrays["test"][0]))
        if isinstance(data, str) and data in DATASETS:
            table = self.load_data(data, run.model_config, options, run.train_config.seed)
            x = np.concatenate([table.arrays[k][0] for k in ("train", "validation", "test")])
            y = np.concatenate([table.arrays[k][1] for k in ("train", "validation", "test")])
            data = dict(zip(table.features + table.targets, np.concatenate([x, y], axis=1).T))
        elif isinstance(data, tuple) and len(data) == 2:
            x, y = (np.asarray(a, "float64") for a in data)
            data = np.concatenate([x.reshape(len(x), -1), y.reshape(len(y), -1)], axis=1)
        elif options:
            raise KeyError(
                f"Unknown data option '{sorted(options)[0]}' for evaluating on {_source(data)}: a "
                "table is read by the run's own feature and target columns, so it takes no data "
                "options. Accepted: none (data options apply to friedman1 and diabetes)."
            )
        rows = tabular.stream_table(data, features + targets, chunk_rows=batch_size,
                                    allow_missing=_drop_missing(run),
                                    wanted="the run's features and targets")
        model = run.model
        train_mean = np.ravel(model.get_layer("target_denormalization").mean).astype("float64")
        scores, baseline = regression.RunningRegression(), regression.RunningRegression()
        for values, _, _ in rows:
            values = values[~np.isnan(values).any(axis=1)]  # Only with drop_missing.
            if len(values):
                x, y = values[:, :len(features)], values[:, len(features):]
                scores.update(y, _predict(model, x, batch_size))
                baseline.update(y, np.broadcast_to(train_mean, y.shape))
        if not scores.rows:
            raise ValueError(f"{_source(data)} has no rows to score.")
        metrics = {f"test_{k}": v for k, v in scores.result().items()}
        metrics.update({f"baseline_{k}": v for k, v in baseline.result().items()})
        return Evaluation(metrics, _source(data), "all", scores.rows)

    def fold_data(self, data, num_folds, fold, seed):
        """Fold `fold` of every row is the test split; 15% of the rows, from
        the other folds, validate; the rest train."""
        import numpy as np

        x = np.concatenate([data.arrays[k][0] for k in ("train", "validation", "test")])
        y = np.concatenate([data.arrays[k][1] for k in ("train", "validation", "test")])
        if len(x) // num_folds < 2:
            raise ValueError(
                f"Invalid value for `folds`: '{data.name}' has {len(x)} rows, so {num_folds} folds "
                f"would hold fewer than 2 rows each (R² needs 2); use at most {len(x) // 2} folds. "
                f"Received: folds={num_folds}."
            )
        rest, test = splits.kfold(len(x), num_folds, fold, seed)
        rest = np.random.default_rng(seed).permutation(rest)
        cut = max(1, int(round(0.15 * len(x))))
        if len(rest) - cut < 2:
            raise ValueError(
                f"Invalid value for `folds`: '{data.name}' has {len(x)} rows, too few to train on "
                f"the other {num_folds - 1} folds. Received: folds={num_folds}."
            )
        arrays = {"train": (x[rest[cut:]], y[rest[cut:]]), "validation": (x[rest[:cut]], y[rest[:cut]]),
                  "test": (x[test], y[test])}
        return self._data(arrays, data.name, data.features, data.targets)

    def example_input(self, config, batch_size=2):
        import numpy as np

        return np.random.default_rng(0).normal(size=(batch_size, config.input_dim)).astype("float32")

    def expected_output_shape(self, config, batch_size=2):
        return (batch_size, config.output_dim)

    def count_params(self, config):
        total, width = 2 * config.input_dim + 1, config.input_dim
        for units in config.hidden_units:
            total += width * units + units
            width = units
        total += width * config.output_dim + config.output_dim
        return total + 2 * config.output_dim + 1


def _run_columns(run):
    """The run's feature and target columns, from its `config.json`."""
    data = run.config.get("data", {})
    model = run.config.get("model", {})
    features = data.get("features") or [f"x{i}" for i in range(model.get("input_dim", 0))]
    targets = data.get("targets") or (["y"] if model.get("output_dim", 1) == 1
                                      else [f"y{i}" for i in range(model["output_dim"])])
    return list(features), list(targets)


def _drop_missing(run):
    options = dict(run.config.get("train", {}).get("data_options") or [])
    return bool(options.get("drop_missing", False))


def _predict(model, values, batch_size):
    """Raw-unit predictions of float rows; NaN for rows with a missing value."""
    import numpy as np

    complete = ~np.isnan(values).any(axis=1)
    out = np.full((len(values), model.outputs[0].shape[-1]), np.nan, "float32")
    if complete.any():
        rows = values[complete].astype("float32")
        # One compiled call per chunk of `batch_size` rows; no tf.data per call.
        out[complete] = np.concatenate([model.predict_on_batch(rows[i:i + batch_size])
                                        for i in range(0, len(rows), batch_size)])
    return out


def _source(data):
    return f"'{os.fspath(data)}'" if isinstance(data, (str, os.PathLike)) else f"the {type(data).__name__}"


@registry.register("mlp_regressor", config=MLPRegressorConfig, task=MLPRegressorTask(), tiny=TINY)
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
    # Both normalizations compute in float32 under a mixed policy: raw
    # features and targets can be large (prices), and bfloat16 keeps 3 digits.
    x = keras.layers.Normalization(name="feature_normalization", dtype="float32")(inputs)
    for i, units in enumerate(config.hidden_units):
        x = keras.layers.Dense(units, activation=config.activation, name=f"hidden_{i}")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    x = keras.layers.Dense(config.output_dim, name="scaled_prediction")(x)
    outputs = keras.layers.Normalization(invert=True, name="target_denormalization", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="mlp_regressor")
