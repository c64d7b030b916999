"""Runs zoo's benchmarks and writes `benchmarks/results/<host>-<date>.json`.

```
pip install -e ".[bench]"
python benchmarks/run.py                      # every benchmark
python benchmarks/run.py gpt2_train --quick   # one, on a smaller config
python benchmarks/run.py --list
```

Each benchmark runs in a fresh worker process, which alternates its
contenders, excludes a warm-up round and quotes medians (see
`benchmarks/common.py`). The peak resident memory of each contender is then
measured alone, in a process of its own, so one contender's memory does not
show up in another's. The results file is written atomically; a later run
on the same day replaces the benchmarks it ran and keeps the others.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import common  # noqa: E402

# name -> (module, function, contenders measured alone for peak RSS)
BENCHMARKS = {
    "startup": ("hardware", "startup", ()),
    "matmul_peak": ("hardware", "matmul_peak", ()),
    "mlp_train": ("training", "mlp_train", ("zoo", "keras", "torch")),
    "dcgan_train": ("training", "dcgan_train", ("zoo", "keras")),
    "classifier_train": ("classifier", "classifier_train", ("zoo", "keras")),
    "gpt2_train": ("training", "gpt2_train", ("zoo", "keras", "torch_float32")),
    "gpt2_generate": ("generation", "gpt2_generate", ("zoo", "keras_hub", "keras_hub_xla", "transformers")),
    "input_wait": ("tuning", "input_wait", ()),
    "retracing": ("tuning", "retracing", ()),
    "strategy_auto": ("tuning", "strategy_auto", ()),
    "mlp_tuning": ("tuning", "mlp_tuning", ()),
    "gpt2_tuning": ("tuning", "gpt2_tuning", ()),
    "fit_tail": ("tuning", "fit_tail", ()),
    "zoo_overhead": ("tuning", "zoo_overhead", ()),
    "precision_train": ("precision", "precision_train", ()),
    # Every contender of gpt2_small also runs alone ("*"): TensorFlow and
    # PyTorch in one process slow each other down (each framework's thread
    # pools), so its rows also carry each contender's time in a process of
    # its own (`alone_*`).
    "gpt2_small": ("precision", "gpt2_small", "*"),
    "tensorboard_logger": ("tensorboard_logger", "logger_epoch", ()),
}
TORCH_CONTENDERS = {"torch", "torch_float32", "torch_bfloat16", "transformers"}
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")


def run_benchmark(name, size, only=None):
    """Runs benchmark `name` in this process and returns its result dict."""
    import importlib

    module, function, _ = BENCHMARKS[name]
    fn = getattr(importlib.import_module(f"benchmarks.{module}"), function)
    common.ALONE = bool(only)
    start = time.perf_counter()
    load_before = common.load_average()
    try:
        result = fn(size, only=only) if only else fn(size)
    finally:
        common.ALONE = False
    result.update(
        size=size, wall_s=round(time.perf_counter() - start, 2),
        load_average_before=load_before, load_average_after=common.load_average(),
        process_peak_rss_mb=common.peak_rss_mb(),
        finished_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    return result


def _worker(name, size, only=None, timeout=3600):
    """Runs a benchmark in a fresh process; returns its result dict."""
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        path = os.path.join(tmp, "result.json")
        args = [os.path.join("benchmarks", "run.py"), "--worker", name, "--size", size,
                "--result-file", path] + (["--only", only] if only else [])
        _, done = common.run_python(args, timeout=timeout)
        if done.returncode != 0 or not os.path.exists(path):
            return {"error": (done.stderr or done.stdout)[-3000:], "size": size}
        with open(path) as f:
            return json.load(f)


def check_names(names):
    """Raises a `ValueError` naming an unknown benchmark and the choices."""
    from zoo import config as config_lib

    for name in names:
        if name not in BENCHMARKS:
            raise ValueError(
                f"Unknown benchmark '{name}'.{config_lib.did_you_mean(name, list(BENCHMARKS))} "
                f"Available: {', '.join(BENCHMARKS)}."
            )


def _alone_contenders(name, result):
    """The contenders of `result` that run again, each alone in a process."""
    listed = BENCHMARKS[name][2]
    present = result.get("contenders", {})
    if listed == "*":
        return [c for c in present if not c.startswith("matmul_")]
    return [c for c in listed if c in present]


def run(names=None, size="full", out_dir=RESULTS_DIR, in_process=False, rss=True, say=print):
    """Runs benchmarks `names` and writes the results file.

    Args:
        names: list of str. Benchmarks to run. Defaults to all.
        size: str. "full", "quick" (smaller configs, fewer repeats) or
            "tiny" (the smoke test's). Defaults to "full".
        out_dir: str. Where `<host>-<date>.json` goes.
        in_process: bool. Run in this process instead of fresh workers
            (for the tests). Defaults to False.
        rss: bool. Measure each contender's peak RSS alone in a process of
            its own. Defaults to True.
        say: callable. Progress output. Defaults to `print`.

    Returns:
        `(path, document)`: the results file and its content.
    """
    names = list(names or BENCHMARKS)
    check_names(names)
    from zoo.files import write_json

    machine = common.machine_info()
    path = os.path.join(out_dir, f"{platform.node()}-{datetime.date.today().isoformat()}.json")
    document = {"machine": machine, "benchmarks": {}}
    if os.path.exists(path):
        with open(path) as f:
            document["benchmarks"] = json.load(f).get("benchmarks", {})
    for name in names:
        say(f"[{time.strftime('%H:%M:%S')}] {name} ({size}) ...", flush=True)
        result = run_benchmark(name, size) if in_process else _worker(name, size)
        if rss and "error" not in result:
            for contender in _alone_contenders(name, result):
                alone = run_benchmark(name, size, contender) if in_process else _worker(name, size, contender)
                entry = result["contenders"][contender]
                entry["process_peak_rss_mb"] = alone.get("process_peak_rss_mb")
                timing = alone.get("contenders", {}).get(contender, {})
                for key in ALONE_METRICS:
                    if BENCHMARKS[name][2] == "*" and timing.get(key) is not None:
                        entry[f"alone_{key}"] = timing[key]
        document["benchmarks"][name] = result
        document["machine"]["load_average"] = [round(x, 2) for x in os.getloadavg()]
        write_json(path, document)
        if "error" in result:
            say(f"  failed:\n{result['error']}")
    return path, document


MAIN_METRICS = ("tokens_per_s", "examples_per_s", "gflops", "seconds", "wait_fraction")
# A contender's times alone in a process, for the benchmarks that list "*".
ALONE_METRICS = ("step_s", "tokens_per_s")
COLUMNS = ("step_s", "epoch_s", "epoch_mean_s", "fit_s", "end_tail_s", "after_train_end_s", "call_s", "compile_s",
           "model_gflops", "mfu_vs_measured_peak", "alone_step_s", "alone_tokens_per_s", "peak_rss_mb",
           "process_peak_rss_mb")
# In the results file but left out of the printed tables.
HIDDEN = ("first_epoch_s", "fit_setup_s", "total_s", "tracing_counts", "wait_fraction_samples")



def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return "-" if value is None else str(value)


def render(document, markdown=False):
    """The results as text tables (or Markdown), one per benchmark."""
    lines = []
    for name, result in document["benchmarks"].items():
        head = (f"### {name}" if markdown else f"== {name}") + (
            f" ({result.get('size')}, {result.get('unit', '')}; load "
            f"{result.get('load_average_before')} -> {result.get('load_average_after')}, "
            f"{result.get('finished_utc', '')})")
        lines += [head, ""]
        if "error" in result:
            lines += ["error: " + result["error"].splitlines()[-1] if result["error"] else "error", ""]
            continue
        contenders = result.get("contenders", {})
        cols = []
        for entry in contenders.values():
            for key, value in entry.items():
                if key not in cols and key not in HIDDEN and not isinstance(value, dict):
                    cols.append(key)
        rank = {c: i for i, c in enumerate(MAIN_METRICS + COLUMNS)}
        cols.sort(key=lambda c: rank.get(c, len(rank)))
        rows = [["contender", *cols]] + [[n, *[_fmt(v.get(c)) for c in cols]] for n, v in contenders.items()]
        lines += _table(rows, markdown)
        for cname, entry in contenders.items():
            for key, value in entry.items():
                if isinstance(value, dict) and key != "samples" and value:
                    items = ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
                    lines.append(f"{'- ' if markdown else '  '}{cname} {key}: {items}")
        for key, value in (result.get("ratios") or {}).items():
            lines.append(f"{'- ' if markdown else '  '}{key}: {_fmt(value)}")
        for b in result.get("bars", []):
            mark = {True: "met", False: "MISSED", None: "not measured"}[b["met"]]
            sign = ">=" if b["higher_is_better"] else "<="
            why = f" ({b['why']})" if b.get("why") else ""
            lines.append(f"{'- ' if markdown else '  '}bar: {b['name']}: {_fmt(b['value'])} "
                         f"(target {sign} {_fmt(b['target'])}) {mark}{why}")
        for note in result.get("notes", []):
            lines.append(f"{'- ' if markdown else '  '}note: {note}")
        lines.append("")
    return "\n".join(lines)


def _table(rows, markdown):
    if markdown:
        out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        return out + ["| " + " | ".join(r) + " |" for r in rows[1:]] + [""]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="smaller configs and fewer repeats")
    parser.add_argument("--size", choices=("tiny", "quick", "full"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=RESULTS_DIR, help="results directory")
    parser.add_argument("--no-rss", action="store_true", help="skip the per-contender RSS processes")
    parser.add_argument("--in-process", action="store_true", help="no worker processes")
    parser.add_argument("--list", action="store_true", help="list the benchmarks")
    parser.add_argument("--render", metavar="RESULTS_JSON", help="print a results file's tables")
    parser.add_argument("--markdown", action="store_true", help="render as Markdown")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = args.size or ("quick" if args.quick else "full")
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    if args.render:
        with open(args.render) as f:
            print(render(json.load(f), markdown=args.markdown))
        return 0
    if args.worker:
        from zoo.files import write_json

        write_json(args.result_file, run_benchmark(args.worker, size, args.only))
        return 0
    try:
        path, document = run(args.names, size, args.out, in_process=args.in_process, rss=not args.no_rss)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print(render({"benchmarks": {n: document["benchmarks"][n] for n in (args.names or BENCHMARKS)}}))
    print(f"Results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
