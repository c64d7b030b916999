"""Regression metrics of predictions, and the mean baseline beside them."""


def regression_metrics(y_true, y_pred):
    """MSE, MAE and R² of predictions, as floats.

    ```python
    regression_metrics([1.0, 2.0], [1.0, 3.0])  # {"mse": 0.5, "mae": 0.5, "r2": -1.0}
    ```
    """
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


def with_mean_baseline(y_train, y_true, y_pred):
    """`test_*` metrics of `y_pred` and `baseline_*` of the training mean."""
    import numpy as np

    baseline = np.broadcast_to(np.asarray(y_train).mean(axis=0), np.shape(y_true))
    metrics = {}
    for prefix, p in (("test", y_pred), ("baseline", baseline)):
        metrics.update({f"{prefix}_{k}": v for k, v in regression_metrics(y_true, p).items()})
    return metrics


class RunningRegression:
    """`regression_metrics` over rows that arrive in chunks (a file larger
    than memory), from running sums in float64.

    ```python
    totals = RunningRegression()
    for y_true, y_pred in chunks:
        totals.update(y_true, y_pred)
    totals.result()  # {"mse": ..., "mae": ..., "r2": ...}
    ```
    """

    def __init__(self):
        self.rows = self.cells = 0
        self.squared = self.absolute = 0.0
        self.total = self.total_squared = 0.0  # Per target column, once rows arrive.

    def update(self, y_true, y_pred):
        import numpy as np

        y_true = np.asarray(y_true, "float64").reshape(len(y_true), -1)
        residual = y_true - np.asarray(y_pred, "float64").reshape(y_true.shape)
        self.rows += len(y_true)
        self.cells += residual.size
        self.squared += float(np.sum(residual**2))
        self.absolute += float(np.sum(np.abs(residual)))
        self.total = self.total + y_true.sum(axis=0)
        self.total_squared = self.total_squared + (y_true**2).sum(axis=0)

    def result(self):
        import numpy as np

        if not self.rows:
            raise ValueError("No rows to score.")
        mse = self.squared / self.cells
        mean = np.asarray(self.total) / self.rows
        variance = float(np.mean(np.asarray(self.total_squared) / self.rows - mean**2))
        scale = float(np.mean(mean**2)) + 1.0
        return {
            "mse": mse,
            "mae": self.absolute / self.cells,
            "r2": 1.0 - mse / variance if variance > 1e-12 * scale else float("nan"),
        }
