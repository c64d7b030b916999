"""`zoo predict`: a finished run's predictions on new data.

The run's task reads the input and makes the output columns
(`Task.predict`): `mlp_regressor` takes a CSV file, a pandas DataFrame, a
dict of columns or an array, matched to the run's features by name, and
gives `<target>_predicted` in the target's own units. Rows stream through in
chunks of `batch_size`, so a CSV file larger than memory works; the output
CSV is written to a temporary file and renamed into place only when every
row has been predicted, so bad input leaves nothing behind.

```python
run = zoo.load_run("runs/mlp_regressor/20260101-120000")
run.predict("new_houses.csv", out="predictions.csv", keep=["id"])
```
"""

import csv
import os

from zoo import registry
from zoo.files import atomic_path

DEFAULT_BATCH_SIZE = 8192


def predict(run, data, *, out=None, keep=(), batch_size=None, top_k=None):
    """Predicts with a finished run's model on `data`.

    Args:
        run: `zoo.runs.Run`. A finished run (`zoo.load_run(dir)`).
        data: what the run's model takes: for `mlp_regressor` the path of a
            CSV file, a pandas DataFrame, a dict of columns or a 2-D array in
            the run's feature order.
        out: str or None. A CSV file to stream the output to. Defaults to
            None: the output is returned.
        keep: str or list of str. Input columns passed through to the
            output. Defaults to none.
        batch_size: int. Rows per chunk. Defaults to `DEFAULT_BATCH_SIZE`.
        top_k: int or None. Classifiers: how many classes to list.

    Returns:
        With `out`: the number of rows written. Without: a DataFrame (same
        index) for a DataFrame, a NumPy array of the predicted columns for
        an array, else a dict of column to NumPy array.

    Raises:
        ValueError, FileNotFoundError: bad input (named), or a model that
            does not predict (`dcgan`, `gpt2_textgen`: use `zoo generate`).
    """
    import numpy as np

    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Invalid value for `batch_size`: must be a positive int. Received: {batch_size!r}.")
    keep = [keep] if isinstance(keep, str) else list(keep or ())
    if out is not None:
        out = _check_out(os.fspath(out), data)
    task = registry.get_entry(run.config["model_name"]).task
    predictions = task.predict(run, data, keep=keep, batch_size=batch_size, top_k=top_k)
    if out is not None:
        return write_csv(predictions, out)
    columns = {c: [] for c in predictions.columns}
    for chunk in predictions.chunks:
        for c in predictions.columns:
            columns[c].append(np.asarray(chunk[c]))
    columns = {c: np.concatenate(v) if v else np.zeros(0) for c, v in columns.items()}
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):
        import pandas as pd

        return pd.DataFrame(columns, index=data.index)
    if isinstance(data, (np.ndarray, list)):
        return np.stack([columns[c] for c in predictions.predicted], axis=1)
    return columns


def _check_out(out, data):
    """Refuses an output path that cannot be written, before any work."""
    if os.path.isdir(out):
        raise ValueError(f"Invalid value for `out`: '{out}' is a folder; expected a file name such as predictions.csv.")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"Invalid value for `out`: its folder '{parent}' does not exist. Received: out={out!r}.")
    if isinstance(data, (str, os.PathLike)) and os.path.exists(out) and os.path.exists(data) \
            and os.path.samefile(out, data):
        raise ValueError(f"Invalid value for `out`: '{out}' is the input file; write the predictions elsewhere.")
    return out


def _text(values):
    """CSV cells of one column: floats at their shortest exact form, NaN empty."""
    import numpy as np

    values = np.asarray(values)
    if values.dtype.kind == "f":
        cells = values.astype(str)
        cells[np.isnan(values)] = ""
        return cells.tolist()
    return [str(v) for v in values.tolist()]


def write_csv(predictions, out):
    """Streams a `zoo.task.Predictions` to the CSV file `out`, atomically.

    Returns:
        The number of rows written.
    """
    rows = 0
    with atomic_path(out) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(predictions.columns)
            for chunk in predictions.chunks:
                cells = [_text(chunk[c]) for c in predictions.columns]
                writer.writerows(zip(*cells))
                rows += len(cells[0]) if cells else 0
    return rows
