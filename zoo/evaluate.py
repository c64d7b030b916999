"""`zoo evaluate`: a finished run's own metrics on other data.

The run's task scores the data (`Task.evaluate_data`) with the metrics the
run reported, under the same names: regression metrics beside the
training-mean baseline (`mlp_regressor`), FID with its real-data floor and
untrained-generator ceiling (`dcgan`), perplexity and bits per byte beside
`xz -9` (`gpt2_textgen`). On the run's own data the split its metrics were
measured on is scored again, so the numbers reproduce `metrics.json`.

Each evaluation is written atomically to `RUN/evaluations/<name>.json`, and
its metrics to TensorBoard as `evaluation/<metric>` in
`RUN/logs/evaluations/<name>/`, beside the run's own `evaluation/` scalars. The name defaults to the data's file
name; evaluations of other data under one name get `-2`, `-3`, ....

```python
record = zoo.load_run(run_dir).evaluate("houses_2025.csv")
record["metrics"]["test_mse"], record["run_metrics"]["test_mse"]
```
"""

import datetime
import os
import re
import shutil

from zoo import registry
from zoo.files import TMP_PREFIX, read_json, write_json

EVALUATIONS = "evaluations"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def evaluate(run, data=None, *, name=None, data_options=None, batch_size=None):
    """Scores a finished run on `data` and saves the evaluation.

    Args:
        run: `zoo.runs.Run`. A finished run (`zoo.load_run(dir)`).
        data: what `zoo train --data` takes for the run's model (a dataset
            name, a path; for `mlp_regressor` also a DataFrame, dict or
            `(x, y)` arrays). Defaults to the run's own data.
        name: str. The evaluation's name, its file
            `evaluations/<name>.json`. Defaults to the data's file name.
        data_options: dict. Dataset options, such as `tfds_data_dir`.
            Defaults to none (the run's own, for its own data).
        batch_size: int. Examples per model call. Defaults to the task's.

    Returns:
        The evaluation's record, as saved: `name`, `data`, `split`,
        `num_examples`, `metrics`, and `run_metrics` (the run's own values
        of the same metrics).
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"Invalid value for `batch_size`: must be a positive int. Received: {batch_size!r}.")
    if name is not None and not _NAME.match(str(name)):
        raise ValueError(
            f"Invalid value for `name`: letters, digits, '.', '_' and '-', starting with a letter "
            f"or digit. Received: name={name!r}."
        )
    task = registry.get_entry(run.config["model_name"]).task
    if data is None and str(run.config["train"].get("data")).startswith("<"):
        raise ValueError(
            f"Run '{run.dir}' was trained on in-memory data ({run.config['train']['data']}), "
            "which it cannot load again; pass the data to evaluate on. Received: data=None."
        )
    own, options = own_data(run, data, data_options, task)
    if data is None:
        data = run.config["train"].get("data") or task.default_data
    evaluation = task.evaluate_data(run, data, options, own, batch_size)
    source = {"data": _describe(data), "data_options": options}
    name = _name(run.dir, name, data, source)
    metrics = {k: float(v) for k, v in evaluation.metrics.items()}
    record = {
        "name": name,
        "model_name": run.config["model_name"],
        "run": run.dir,
        **source,
        "own_data": own,
        "split": evaluation.split,
        "num_examples": int(evaluation.num_examples),
        "metrics": metrics,
        "run_metrics": {k: run.metrics[k] for k in metrics if k in run.metrics},
        "evaluated": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    _write_events(run, name, record, task.headline_metrics)
    write_json(os.path.join(run.dir, EVALUATIONS, f"{name}.json"), record)
    return record


def own_data(run, data, data_options, task):
    """Whether `data` and `data_options` are the run's own training data,
    and the options to load them with."""
    saved = run.config["train"].get("data")
    saved_options = {k: v for k, v in (run.config["train"].get("data_options") or [])}
    given = dict(data_options or {})
    if data is None:
        return not given or given == saved_options, given or saved_options
    if not isinstance(data, (str, os.PathLike)) or saved is None and not task.default_data:
        return False, given
    data, saved = os.fspath(data), saved or task.default_data
    same = _same_path(data, saved)
    if same and (not given or given == saved_options):
        return True, saved_options
    return False, given


def _describe(data):
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    return f"<{type(data).__name__}>"


def _name(run_dir, name, data, source):
    """The given name, or the data's file name made unique among the run's
    evaluations of other data."""
    if name is not None:
        return str(name)
    if isinstance(data, (str, os.PathLike)):
        base = os.path.basename(os.path.normpath(os.fspath(data))) or "data"
        base = os.path.splitext(base)[0] if os.path.isfile(data) else base
    else:
        base = type(data).__name__.lower()
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._-")[:80] or "data"
    candidate, n = base, 1
    while True:
        saved = read_json(os.path.join(run_dir, EVALUATIONS, f"{candidate}.json"))
        if saved is None or (_same_path(saved.get("data"), source["data"])
                             and saved.get("data_options") == _as_json(source["data_options"])):
            return candidate
        n += 1
        candidate = f"{base}-{n}"


def _same_path(a, b):
    if a == b:
        return True
    return (isinstance(a, str) and isinstance(b, str) and os.path.exists(a) and os.path.exists(b)
            and os.path.realpath(a) == os.path.realpath(b))


def _as_json(obj):
    import json

    from zoo.files import json_default

    return json.loads(json.dumps(obj, default=json_default))


def _write_events(run, name, record, headline):
    """`evaluation/<metric>` scalars in `logs/evaluations/<name>/`, replacing an
    earlier evaluation of that name whole."""
    import tensorflow as tf

    from zoo.tensorboard import EVALUATION_PREFIX, headline_metrics

    final = os.path.join(run.dir, "logs", EVALUATIONS, name)
    # Built outside logs/, so TensorBoard never lists a half-written run.
    tmp = os.path.join(run.dir, f"{TMP_PREFIX}{os.getpid()}-evaluation-{name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        writer = tf.summary.create_file_writer(tmp, filename_suffix=".evaluation")
        with writer.as_default(step=int(run.metrics.get("epochs_trained", 0) or 0)):
            for key, value in headline_metrics(record["metrics"], headline).items():
                tf.summary.scalar(f"{EVALUATION_PREFIX}{key}", value)
            tf.summary.text("evaluation", (
                f"data: {record['data']}, split: {record['split']}, "
                f"{record['num_examples']} examples"))
        writer.close()
        os.makedirs(os.path.dirname(final), exist_ok=True)
        old = None
        if os.path.exists(final):
            old = f"{tmp}-old"
            os.replace(final, old)
        os.replace(tmp, final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
