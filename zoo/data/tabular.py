"""CSV tables: numeric feature and target columns read with their errors.

Every problem is named with the file, the column and the row, before any
training starts. Nothing here imports TensorFlow.
"""

import csv
import math
import os

from zoo import config as config_lib

# Rows needed to split a table into train, validation and test.
MIN_ROWS = 20
# The largest float32: the model trains in float32, where more is `inf`.
FLOAT32_MAX = 3.4028234663852886e38


def read_csv(path, *, target, features=None, drop_missing=False, min_rows=MIN_ROWS):
    """Reads a numeric CSV file into feature and target arrays.

    Args:
        path: str. The CSV file, with a header row.
        target: str. The target column.
        features: list of str, or a comma-separated str. The feature
            columns. Defaults to every column but the target.
        drop_missing: bool. Drop rows with empty cells instead of raising.
            Defaults to False.
        min_rows: int. Usable rows needed. Defaults to `MIN_ROWS`.

    Returns:
        `(x, y, feature_names)`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a column has no name or the name of another, a named
            column is missing, a cell is not a number or not finite (`inf`,
            `1e999`), cells are empty, or a column is constant. The message
            names the file, column and row.
    """
    import numpy as np

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Data file '{path}' not found (looked in {os.path.abspath(path)}). "
            "`data` takes the path of a CSV file or a dataset name (`zoo info NAME` lists them)."
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"Could not read '{path}' as CSV: {e}.") from None
    if not rows or not any(c.strip() for c in rows[0]):
        raise ValueError(f"'{path}' is empty: expected a header row and data rows.")
    header = [c.strip() for c in rows[0]]
    for index, name in enumerate(header):
        if not name:
            raise ValueError(
                f"'{path}', header (line 1), column {index + 1}: the column has no name. "
                "Every column needs a unique name in the header row (a trailing comma "
                "makes an empty one).")
        if header.index(name) != index:
            raise ValueError(
                f"'{path}', header (line 1): columns {header.index(name) + 1} and {index + 1} "
                f"are both named '{name}'. Column names must be unique: rename one.")
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
                value = float(cell)
            except ValueError:
                raise ValueError(
                    f"'{path}', row {row_number} (line {row_number + 1}), column "
                    f"'{name}': {cell!r} is not a number. Every feature and target "
                    "column must be numeric."
                ) from None
            if not abs(value) <= FLOAT32_MAX:
                raise ValueError(
                    f"'{path}', row {row_number} (line {row_number + 1}), column "
                    f"'{name}': {cell!r} is not a finite number"
                    + (" a float32 can hold" if math.isfinite(value) else "")
                    + ". Replace it with a number, or leave the cell empty and drop "
                    "such rows with `--drop-missing`.")
            parsed.append(value)
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
    if len(table) < min_rows:
        raise ValueError(
            f"'{path}' has {len(table)} usable rows; at least {min_rows} are needed "
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
