"""`zoo compare`: finished runs side by side, in one table.

Each row is a run: its model, the config fields in which the runs differ,
then the final metrics (`metrics.json`). Runs of different models share the
columns of the metrics they share. A cross-validation run shows each
metric's mean and standard deviation over its folds.

```python
table = zoo.compare.compare(["runs/mlp_regressor/*"], sort="test_mse")
print(zoo.compare.format_table(table, "markdown"))
```
"""

import glob
import json
import math
import os

from zoo import config as config_lib
from zoo.files import read_json

FORMATS = ("text", "markdown", "json")
_SECTIONS = ("model", "train", "data", "cross_validation")
_SKIP = {("train", "strategy")}


def find_runs(patterns):
    """The finished run directories that `patterns` name.

    A pattern is a run directory or a glob (`runs/mlp_regressor/*`). A path
    given as such must be a finished run; what a glob matches that is not
    one is skipped and reported.

    Returns:
        `(run_dirs, skipped)`: sorted unique directories, and `(path,
        reason)` pairs of glob matches that are not finished runs.

    Raises:
        ValueError: no pattern, or no finished run among them.
        FileNotFoundError: a path that does not exist or is not a finished run.
    """
    if not patterns:
        raise ValueError("`zoo compare` needs at least one run directory or glob. Received: none.")
    found, skipped = [], []
    for pattern in map(os.fspath, patterns):
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"No files or folders match the glob '{pattern}'.")
            for path in matches:
                reason = _not_a_run(path)
                (skipped.append((path, reason)) if reason else found.append(path))
        else:
            reason = _not_a_run(pattern)
            if reason:
                raise FileNotFoundError(f"'{pattern}' {reason}. `zoo compare` takes finished run directories.")
            found.append(pattern)
    found = list(dict.fromkeys(os.path.normpath(p) for p in found))
    if not found:
        raise ValueError(
            f"No finished run among {', '.join(map(os.fspath, patterns))}: "
            + "; ".join(f"{p} {r}" for p, r in skipped[:5]) + ".")
    return found, skipped


def _not_a_run(path):
    if not os.path.exists(path):
        return "does not exist"
    if not os.path.isdir(path):
        return "is not a folder"
    if read_json(os.path.join(path, "config.json")) is None:
        return "is not a zoo run (no config.json)"
    if not os.path.exists(os.path.join(path, "metrics.json")):
        return "has not finished (no metrics.json)"
    return None


def _flat_config(config):
    flat = {}
    for section in _SECTIONS:
        for key, value in (config.get(section) or {}).items():
            if (section, key) not in _SKIP:
                flat[f"{section}.{key}"] = value
    return flat


def compare(patterns, sort=None, reverse=False):
    """The comparison table of the runs that `patterns` name.

    Args:
        patterns: list of str. Run directories or globs.
        sort: str or None. A metric to sort by, ascending (a
            cross-validation run by its mean); runs without it go last.
            Defaults to the order given.
        reverse: bool. Sort descending. Defaults to False.

    Returns:
        A dict: `runs` (one dict per run: `run`, `model`, `config` of the
        differing fields, `metrics`), `fields` (the differing config fields),
        `metrics` (every metric name, in first-seen order) and `skipped`.

    Raises:
        KeyError: `sort` names no metric of these runs (closest named).
    """
    run_dirs, skipped = find_runs(patterns)
    rows = []
    for run_dir in run_dirs:
        config = read_json(os.path.join(run_dir, "config.json"))
        rows.append({"run": run_dir, "model": config.get("model_name", "?"),
                     "flat": _flat_config(config), "metrics": read_json(os.path.join(run_dir, "metrics.json"))})
    keys = list(dict.fromkeys(k for r in rows for k in r["flat"]))
    fields = [k for k in keys
              if len({json.dumps(r["flat"].get(k), sort_keys=True) for r in rows}) > 1]
    metrics = list(dict.fromkeys(k for r in rows for k in r["metrics"]))
    if sort is not None:
        if sort not in metrics:
            raise KeyError(
                f"Unknown metric '{sort}' for `--sort`.{config_lib.did_you_mean(sort, metrics)} "
                f"Metrics of these runs: {', '.join(metrics)}."
            )
        present = [r for r in rows if _number(r["metrics"].get(sort)) is not None]
        absent = [r for r in rows if _number(r["metrics"].get(sort)) is None]
        rows = sorted(present, key=lambda r: _number(r["metrics"][sort]), reverse=reverse) + absent
    return {
        "runs": [{"run": r["run"], "model": r["model"], "config": {k: r["flat"].get(k) for k in fields},
                  "metrics": r["metrics"]} for r in rows],
        "fields": fields,
        "metrics": metrics,
        "skipped": [{"path": p, "reason": why} for p, why in skipped],
    }


def _number(value):
    """A metric's value to sort by: itself, or a cross-validation mean."""
    if isinstance(value, dict):
        value = value.get("mean")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return value


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, dict) and "mean" in value:
        return f"{value['mean']:.4g} ± {value['std']:.2g}"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def format_table(table, fmt="text"):
    """The table as aligned text, a Markdown table or JSON.

    Text and Markdown put one run in each column and one field or metric
    in each row, so that many metrics stay readable.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format '{fmt}'. Accepted: {', '.join(FORMATS)}.")
    if fmt == "json":
        return json.dumps(table, indent=2, default=str)
    runs = table["runs"]
    lines = [["run", *[r["run"] for r in runs]], ["model", *[r["model"] for r in runs]]]
    lines += [[k, *[_cell(r["config"][k]) for r in runs]] for k in table["fields"]]
    lines += [[k, *[_cell(r["metrics"].get(k)) for r in runs]] for k in table["metrics"]]
    if fmt == "markdown":
        out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines[1:]]
        return "\n".join(out)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
