"""Cross-validation: K seeded folds, each a complete run, and their spread.

`train_folds` (`zoo train NAME --folds K`, `zoo.train(NAME, folds=K)`)
trains one run per fold in `RUN/fold-<i>/`. The task cuts the folds
(`Task.fold_data`): each example is held out for testing in exactly one
fold, the same folds for the same `seed`. Every fold is an ordinary run, so
an interrupted cross-validation resumes by running the same command again:
finished folds are kept, the fold under way resumes from its last epoch.

`RUN/metrics.json`, written last, holds for each metric of the folds
(the baseline's too, such as `baseline_mse`) its mean, sample standard
deviation (ddof=1) and per-fold values; `RUN/config.json` the configs and a
`cross_validation` section. In TensorBoard each fold is a trial of its own
in HParams (hparam `fold`), and `RUN/logs` holds the means as
`evaluation/<metric>` and the standard deviations as `evaluation_std/<metric>`.

```python
run = zoo.train("mlp_regressor", folds=5, epochs=50)
run.metrics["test_mse"]  # {"mean": ..., "std": ..., "per_fold": [...]}
run.folds[0].dir         # 'runs/mlp_regressor/<time>/fold-0'
```
"""

import contextlib
import math
import os

from zoo import registry, runs, trainer
from zoo.files import read_json, write_json
from zoo.task import Task


def supported_models():
    """The registered models whose task cuts folds (`Task.fold_data`)."""
    return [n for n in registry.list_models()
            if type(registry.get_entry(n).task).fold_data is not Task.fold_data]


def train_folds(name, *, folds, data=None, run_dir=None, verbose="auto", callbacks=(), **options):
    """Cross-validates model `name` over `folds` seeded folds.

    Args:
        name: str. A registered model with `fold_data`, see
            `supported_models()`.
        folds: int. K, at least 2; at most what the data holds (each fold
            needs examples to test on).
        data, run_dir, verbose, callbacks, **options: as `zoo.train`.

    Returns:
        A `zoo.runs.Run` of the cross-validation: `metrics` of mean, std and
        per-fold values, and `folds`, the `Run` of each fold.

    Raises:
        ValueError: a fold count below 2 or beyond the data, a model
            without folds; all before anything is written.
    """
    entry = registry.get_entry(name)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(
            f"Invalid value for `folds`: cross-validation needs an integer of at least 2 folds. "
            f"Received: folds={folds!r}."
        )
    if type(entry.task).fold_data is Task.fold_data:
        raise ValueError(
            f"Cross-validation does not apply to model '{name}': it needs held-out examples to "
            f"score, as the supervised models have. Models with folds: "
            f"{', '.join(supported_models()) or 'none'}. Received: folds={folds}."
        )
    run_dir = os.fspath(run_dir) if run_dir else runs.default_run_dir(name)
    runs.check_run_dir(run_dir)
    say = print if verbose != 0 else (lambda *a, **k: None)
    saved = read_json(os.path.join(run_dir, runs.CONFIG))
    if saved is not None and "cross_validation" not in saved:
        raise ValueError(
            f"Run directory {run_dir} holds a run that is not a cross-validation; use another --run-dir.")
    configs = [trainer.check(name, data=data, fold=(i, folds), **options) for i in range(folds)]
    config = {
        "model_name": name,
        "cross_validation": {"num_folds": folds, "seed": configs[0]["train"]["seed"]},
        "model": configs[0]["model"],
        "train": configs[0]["train"],
        "data": {**{k: v for k, v in configs[0]["data"].items() if k not in ("fold", "num_folds", "num_train")},
                 "num_train_per_fold": [c["data"]["num_train"] for c in configs]},
    }
    if saved is not None:
        diffs = runs.config_mismatch(saved, config)
        if diffs:
            raise ValueError(
                f"Run directory {run_dir} holds a cross-validation with another config, so it cannot "
                f"resume with this one: {'; '.join(diffs)}. Use another --run-dir, or the same settings."
            )
        if runs.is_finished(run_dir):
            say(f"Cross-validation {run_dir} already finished; not training again. "
                "Use another --run-dir for a new one.")
            return runs.Run.load(run_dir)
    write_json(os.path.join(run_dir, runs.CONFIG), config)
    fold_runs = []
    with _no_retracing_warnings():
        for i in range(folds):
            fold_dir = os.path.join(run_dir, f"fold-{i}")
            say(f"Fold {i + 1} of {folds}: {fold_dir}")
            fold_runs.append(trainer.train(name, data=data, run_dir=fold_dir, fold=(i, folds),
                                           verbose=verbose, callbacks=callbacks, **options))
    metrics = summarize([r.metrics for r in fold_runs])
    _write_events(os.path.join(run_dir, "logs"), metrics, entry.task.headline_metrics)
    write_json(os.path.join(run_dir, runs.METRICS), metrics)
    if verbose != 0:
        print_summary(run_dir, metrics)
    return runs.Run(run_dir, metrics, config, {}, folds=fold_runs)


@contextlib.contextmanager
def _no_retracing_warnings():
    """Drops TensorFlow's "triggered tf.function retracing" warnings: each
    fold builds a new model, whose functions are traced anew by design."""
    import logging

    def keep(record):
        return "triggered tf.function retracing" not in record.getMessage()

    logger = logging.getLogger("tensorflow")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def summarize(fold_metrics):
    """`{metric: {"mean", "std", "per_fold"}}` over the folds' metrics.

    The standard deviation is the sample one (ddof=1). A metric missing
    from a fold is None in `per_fold` and left out of the statistics.
    """
    import numpy as np

    keys = list(dict.fromkeys(k for m in fold_metrics for k in m))
    out = {}
    for key in keys:
        per_fold = [m.get(key) for m in fold_metrics]
        values = np.asarray([v for v in per_fold if isinstance(v, (int, float))], "float64")
        if not len(values):
            continue
        out[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "per_fold": [float(v) if isinstance(v, (int, float)) else None for v in per_fold],
        }
    return out


def _write_events(logdir, metrics, headline):
    import glob

    import tensorflow as tf

    from zoo.tensorboard import EVALUATION_PREFIX, is_headline

    for old in glob.glob(os.path.join(logdir, "events.out.tfevents.*.cross_validation")):
        os.remove(old)  # Left by a run stopped before its metrics.json.
    writer = tf.summary.create_file_writer(logdir, filename_suffix=".cross_validation")
    with writer.as_default(step=0):
        for key, stats in metrics.items():
            if not is_headline(key, headline):
                continue
            if math.isfinite(stats["mean"]):
                tf.summary.scalar(f"{EVALUATION_PREFIX}{key}", stats["mean"])
            if math.isfinite(stats["std"]):
                tf.summary.scalar(f"{EVALUATION_PREFIX.rstrip('/')}_std/{key}", stats["std"])
    writer.close()


def print_summary(run_dir, metrics):
    print(f"\nCross-validation finished: {run_dir}")
    width = max((len(k) for k in metrics), default=0)
    for key, stats in metrics.items():
        folds = ", ".join("-" if v is None else f"{v:.4g}" for v in stats["per_fold"])
        print(f"  {key:<{width}}  {stats['mean']:.6g} ± {stats['std']:.3g}  ({folds})")
    print(f"TensorBoard: tensorboard --logdir {run_dir}")
