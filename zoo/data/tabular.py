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
# Cells that mean "no value" (compared stripped and lowercased).
MISSING_CELLS = ("", "na", "nan", "null", "none")


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
    header, rows = _read_table_rows(path)
    features = _training_columns(path, header, target, features)
    names = features + [target]
    values = _parse_training_rows(path, header, rows, names, drop_missing)
    table = np.asarray(values, dtype="float64").reshape(-1, len(names))
    _check_training_table(path, table, names, target, min_rows)
    return table[:, :-1].astype("float32"), table[:, -1:].astype("float32"), features


def _read_table_rows(path):
    """The stripped header and the raw rows of the CSV file at `path`."""
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
    return header, rows[1:]


def _training_columns(path, header, target, features):
    """The feature columns (default: all but the target), each checked."""
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
    return features


def _parse_training_rows(path, header, rows, names, drop_missing):
    """The `names` columns of every row as floats; every missing cell is
    reported at once unless `drop_missing` drops its row."""
    columns = [header.index(c) for c in names]
    values, missing = [], []
    for row_number, row in enumerate(rows, start=1):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(
                f"'{path}', row {row_number} (line {row_number + 1}) has {len(row)} "
                f"fields; the header has {len(header)}."
            )
        parsed = [_training_cell(path, row_number, name, row[index]) for name, index in zip(names, columns)]
        row_missing = [name for name, value in zip(names, parsed) if value is None]
        if row_missing:
            missing.append((row_number, row_missing))
            if drop_missing:
                continue
        values.append([math.nan if v is None else v for v in parsed])
    if missing and not drop_missing:
        cells = sum(len(m) for _, m in missing)
        where = "; ".join(f"row {r}: {', '.join(m)}" for r, m in missing[:5])
        more = f" (and {len(missing) - 5} more rows)" if len(missing) > 5 else ""
        raise ValueError(
            f"'{path}' has {cells} missing values in {len(missing)} rows: {where}{more}. "
            "Fill them in, or drop those rows with `--drop-missing` "
            "(`data_options={'drop_missing': True}` in Python)."
        )
    return values


def _training_cell(path, row_number, name, cell):
    """A cell as a float a float32 can hold, or None when it is empty."""
    cell = cell.strip()
    if cell.lower() in MISSING_CELLS:
        return None
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
    return value


def _check_training_table(path, table, names, target, min_rows):
    """Enough rows to split, and no constant column."""
    import numpy as np

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


# Rows read, checked and handed on at once by `stream_csv`.
CHUNK_ROWS = 8192


def stream_csv(path, columns, *, keep=(), chunk_rows=CHUNK_ROWS, allow_missing=False, wanted="columns"):
    """Checks a CSV file's header, then streams its numeric `columns` in chunks.

    The columns are found by name, in any order; other columns are skipped
    unless named in `keep`, whose cells pass through as text. The header is
    checked at once; each chunk's cells are checked as it is read, so a file
    larger than memory streams through and a bad cell is named by row.

    Args:
        path: str. A CSV file with a header row.
        columns: list of str. The numeric columns to read, in the order of
            the returned arrays.
        keep: list of str. Columns to pass through as text.
        chunk_rows: int. Rows per chunk. Defaults to `CHUNK_ROWS`.
        allow_missing: bool. Empty (or NA) cells read as NaN instead of
            raising. Defaults to False.
        wanted: str. What `columns` are, for the error message (such as
            "the run's features"). Defaults to "columns".

    Returns:
        An iterator of `(values, kept, first_row)`: a float64 array of shape
        `(rows, len(columns))`, a dict of each kept column's cells, and the
        number of the chunk's first data row (1 is the row after the header).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be read, has no header, lacks a column;
            while streaming, a row with the wrong field count, a cell that
            is not a number, or a missing cell (unless `allow_missing`),
            each named by row and column.

    ```python
    for values, kept, first_row in stream_csv("new.csv", ["rooms", "area"], keep=["id"]):
        ...
    ```
    """
    path = os.fspath(path)
    header = _csv_header(path)
    _check_columns(header, columns, keep, wanted, subject=f"'{path}'",
                   listing=f"Columns of '{path}'", where=f"'{path}'")
    return _stream_rows(path, header, list(columns), list(keep), chunk_rows, allow_missing)


def _check_columns(header, columns, keep, wanted, *, subject, listing, where):
    """Raises a `ValueError` for a needed or kept column missing from `header`.

    `subject` starts the message ("'new.csv'", "The DataFrame"), `listing`
    introduces the columns there are, `where` names the table for `keep`.
    """
    lacking = [c for c in columns if c not in header]
    if lacking:
        # Only columns that nothing else needs can be the misspelt one.
        spare = [c for c in header if c not in columns]
        hints = "".join(config_lib.did_you_mean(c, spare) for c in lacking[:3]) if spare else ""
        raise ValueError(
            f"{subject} lacks {len(lacking)} of {wanted}: {', '.join(lacking)}.{hints} "
            f"{listing}: {', '.join(header)}. Needed: {', '.join(columns)}."
        )
    for column in keep:
        if column not in header:
            raise ValueError(
                f"Invalid value for `keep`: column '{column}' not found in {where}."
                f"{config_lib.did_you_mean(column, header)} Columns: {', '.join(header)}."
            )


def _csv_header(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Data file '{path}' not found (looked in {os.path.abspath(path)})."
            if not os.path.isdir(path) else
            f"'{path}' is a folder; expected a CSV file."
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            first = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"Could not read '{path}' as CSV: {e}.") from None
    if not first or not any(c.strip() for c in first):
        raise ValueError(f"'{path}' is empty: expected a header row and data rows.")
    return [c.strip() for c in first]


def _stream_rows(path, header, columns, keep, chunk_rows, allow_missing):
    import numpy as np

    indices = [header.index(c) for c in columns]
    kept_indices = [header.index(c) for c in keep]
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            next(reader)
            values, kept, first_row = [], [[] for _ in keep], None
            for row_number, row in enumerate(reader, start=1):
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise ValueError(
                        f"'{path}', row {row_number} (line {row_number + 1}) has {len(row)} "
                        f"fields; the header has {len(header)}."
                    )
                values.append([_cell(path, row_number, name, row[i], allow_missing)
                               for name, i in zip(columns, indices)])
                for cells, i in zip(kept, kept_indices):
                    cells.append(row[i])
                first_row = first_row or row_number
                if len(values) == chunk_rows:
                    yield np.asarray(values, "float64"), dict(zip(keep, kept)), first_row
                    values, kept, first_row = [], [[] for _ in keep], None
            if values:
                yield np.asarray(values, "float64"), dict(zip(keep, kept)), first_row
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"Could not read '{path}' as CSV: {e}.") from None


def _cell(path, row_number, name, cell, allow_missing):
    cell = cell.strip()
    if cell.lower() in MISSING_CELLS:
        if allow_missing:
            return math.nan
        raise ValueError(
            f"'{path}', row {row_number} (line {row_number + 1}), column '{name}' is empty: "
            "the run was trained without missing values (no --drop-missing), so every "
            "needed cell must hold a number."
        )
    try:
        return float(cell)
    except ValueError:
        raise ValueError(
            f"'{path}', row {row_number} (line {row_number + 1}), column '{name}': {cell!r} "
            "is not a number. Every feature and target column must be numeric."
        ) from None


def stream_table(data, columns, *, keep=(), chunk_rows=CHUNK_ROWS, allow_missing=False,
                 wanted="columns"):
    """`stream_csv` for any table: a CSV path, a pandas DataFrame, a dict of
    columns, or a 2-D array whose columns are `columns` in order.

    A DataFrame or dict is read by column name (any order, extra columns
    ignored); an array by position, so it must have `len(columns)` columns
    and takes no `keep`. Cells are checked as in `stream_csv`, with the row
    named (for a DataFrame, by position and index label).

    Returns:
        An iterator of `(values, kept, first_row)`, as `stream_csv`.

    Raises:
        ValueError: a kind of input it does not take, a missing column, a
            cell that is not a number or is missing.
    """
    import numpy as np

    if isinstance(data, (str, os.PathLike)):
        return stream_csv(data, columns, keep=keep, chunk_rows=chunk_rows,
                          allow_missing=allow_missing, wanted=wanted)
    index = None
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # A pandas DataFrame.
        header = [str(c) for c in data.columns]
        table = {str(c): data[c].to_numpy() for c in data.columns}
        index = data.index
        name = "the DataFrame"
    elif isinstance(data, dict):
        header = [str(c) for c in data]
        table = {str(c): np.asarray(v) for c, v in data.items()}
        name = "the dict of columns"
    elif isinstance(data, (np.ndarray, list, tuple)):
        array = np.asarray(data) if not isinstance(data, tuple) else None
        if array is None or array.ndim != 2 or array.shape[1] != len(columns):
            shape = getattr(array, "shape", f"a tuple of {len(data)}")
            raise ValueError(
                f"An array of rows needs shape (rows, {len(columns)}), one column for each of "
                f"{wanted} ({', '.join(columns)}), in that order. Received: shape {shape}. "
                "Pass a DataFrame or a dict of columns to match columns by name."
            )
        if keep:
            raise ValueError(
                f"Invalid value for `keep`: an array has no column names. Received: keep={list(keep)!r}.")
        header = list(columns)
        table = {c: array[:, j] for j, c in enumerate(columns)}
        name = "the array"
    else:
        raise ValueError(
            f"Cannot read a table from {type(data).__name__}. Accepted: the path of a CSV file, "
            "a pandas DataFrame, a dict of column name to values, or a 2-D array."
        )
    _check_columns(header, columns, keep, wanted, subject=f"{name[0].upper()}{name[1:]}",
                   listing="Its columns", where=name)
    lengths = {len(table[c]) for c in list(columns) + list(keep)}
    if len(lengths) > 1:
        raise ValueError(f"The columns of {name} differ in length: {sorted(lengths)}.")
    numeric = np.stack([_numeric_column(name, c, table[c], index, allow_missing) for c in columns], axis=1) \
        if columns else np.zeros((lengths.pop() if lengths else 0, 0))
    return _chunked(numeric, {c: table[c] for c in keep}, chunk_rows)


def _chunked(numeric, kept, chunk_rows):
    for start in range(0, len(numeric), chunk_rows):
        yield (numeric[start:start + chunk_rows],
               {c: list(v[start:start + chunk_rows]) for c, v in kept.items()}, start + 1)


def _numeric_column(name, column, values, index, allow_missing):
    """One column as float64, with its first bad cell named."""
    import numpy as np

    values = np.asarray(values)
    try:
        if values.dtype.kind in "biuf":
            numbers = values.astype("float64")
        else:
            numbers = np.array([float(v) if not (v is None or (isinstance(v, str) and
                               v.strip().lower() in MISSING_CELLS)) else math.nan for v in values], "float64")
    except (TypeError, ValueError):
        for i, v in enumerate(values):
            try:
                float(v)
            except (TypeError, ValueError):
                label = f" (index {index[i]!r})" if index is not None else ""
                raise ValueError(
                    f"{name[0].upper()}{name[1:]}, row {i + 1}{label}, column '{column}': {v!r} is "
                    "not a number. Every feature and target column must be numeric."
                ) from None
        raise
    if not allow_missing:
        missing = np.flatnonzero(np.isnan(numbers))
        if len(missing):
            i = int(missing[0])
            label = f" (index {index[i]!r})" if index is not None else ""
            raise ValueError(
                f"{name[0].upper()}{name[1:]}, row {i + 1}{label}, column '{column}' is missing "
                f"({len(missing)} missing cells in that column): the run was trained without "
                "missing values (no --drop-missing), so every needed cell must hold a number."
            )
    return numbers
