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
