"""The `zoo` command: list, info, train, generate, predict, evaluate, compare,
serve, export, compress and launch.

User mistakes (an unknown model, a bad override, a missing file, a corrupt
file, a run directory another process is training) print one clear
`error:` line and exit with status 2, never a TensorFlow traceback; a run
stopped by its circumstances (a diverged loss, a full disk) prints one and
exits with status 1; zoo's own bugs keep their traceback. Set `ZOO_DEBUG=1` to see the traceback
of a user mistake too.

The training flags, shared with the recipes, are in `zoo.recipe`.
"""

import argparse
import os
import sys

from zoo import quiet
from zoo.files import WriteError
from zoo.recipe import USER_ERRORS, add_train_arguments, fail, parse_data_options, run_training

def _cmd_list(args):
    from zoo import registry

    names = registry.list_models(args.pattern)
    if not names:
        print(f"No model matches '{args.pattern}'. Available: {', '.join(registry.list_models())}.")
        return 1
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {registry.get_entry(name).summary}")
    return 0


def _cmd_info(args):
    from zoo import registry

    try:
        info = registry.info(args.name)
    except KeyError as e:
        return fail(e)
    print(f"{info['name']}: {info['summary']}\n")
    if info["parameters"] is not None:
        print(f"Parameters (default config): {info['parameters']:,}")
    print(f"Default data: {info['default_data']}    Data: {info['data']}")
    defaults = ", ".join(
        f"{k}={'auto (from the data size)' if v is None else v}" for k, v in info["train_defaults"].items()
    )
    print(f"Recipe: zoo train {info['name']}  (python {info['recipe']}); defaults: {defaults}")
    if info["presets"]:
        print("Presets: a keras-hub preset name or a local preset directory (--preset)")
    print("\nConfig fields (override with --set KEY=VALUE or zoo.get(name, KEY=VALUE)):")
    width = max(len(f["name"]) for f in info["fields"])
    for field in info["fields"]:
        print(f"  {field['name']:<{width}}  {field['type']} = {field['default']!r}")
        doc = field["doc"]
        if doc.startswith(field["type"] + ". "):
            doc = doc[len(field["type"]) + 2 :]
        if doc:
            print(f"  {'':<{width}}    {doc}")
    return 0


def _cmd_train(name, rest):
    from zoo import registry

    try:
        task = registry.get_entry(name).task
    except KeyError as e:
        return fail(e)
    parser = argparse.ArgumentParser(prog=f"zoo train {name}")
    add_train_arguments(parser, dict(task.train_defaults), task)
    return run_training(name, parser.parse_args(rest))


def generate(args):
    """`zoo generate RUN`: samples from a finished run, whatever its model.

    The run's `config.json` names the model; its task's `generate` hook does
    the work (a PNG grid for `dcgan`, text for `gpt2_textgen`). Returns the
    exit status.
    """
    from zoo import registry
    from zoo.files import read_json

    run = os.fspath(args.run)
    if not os.path.isdir(run):
        raise FileNotFoundError(f"Run directory '{run}' not found.")
    config = read_json(os.path.join(run, "config.json"))
    if config is None:
        raise FileNotFoundError(
            f"'{run}' is not a zoo run directory: it has no config.json. "
            "`zoo generate` takes a directory made by `zoo train`."
        )
    entry = registry.get_entry(config["model_name"])
    if not os.path.exists(os.path.join(run, "model.keras")):
        raise FileNotFoundError(
            f"Run '{run}' has not finished: it has no model.keras yet. Rerun its "
            "training command with the same --run-dir to finish it."
        )
    return entry.task.generate(run, args)


def _cmd_generate(args):
    quiet.filter_stderr()
    try:
        return generate(args)
    except USER_ERRORS as e:
        return fail(e)
    except WriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _open_run(path, command):
    from zoo import runs

    return runs.open_run(path, f"`{command}`")


def _cmd_predict(args):
    quiet.filter_stderr()
    try:
        run = _open_run(args.run, "zoo predict")
        rows = run.predict(args.data, out=args.out, keep=args.keep, batch_size=args.batch_size,
                           top_k=args.top_k)
    except USER_ERRORS as e:
        return fail(e)
    print(f"Wrote {rows} rows of predictions to {args.out}")
    return 0


def _cmd_evaluate(args):
    from zoo import registry

    quiet.filter_stderr()
    try:
        run = _open_run(args.run, "zoo evaluate")
        task = registry.get_entry(run.config["model_name"]).task
        flags = {"tfds_data_dir": args.tfds_data_dir} if "tfds_data_dir" in task.data_options else {}
        if args.tfds_data_dir and not flags:
            raise KeyError(f"Unknown data option 'tfds_data_dir' for model '{run.config['model_name']}'.")
        options = parse_data_options(args.data_options, flags, task)
        record = run.evaluate(args.data, name=args.name, data_options=options or None,
                              batch_size=args.batch_size)
    except USER_ERRORS as e:
        return fail(e)
    if args.json:
        import json

        print(json.dumps(record, indent=2))
        return 0
    rows = (f"the run's own {record['split']} split" if record["own_data"]
            else "all of it" if record["split"] == "all" else f"its {record['split']} split")
    print(f"Evaluation '{record['name']}' of {run.dir} on {record['data']} "
          f"({rows}, {record['num_examples']} examples):")
    width = max((len(k) for k in record["metrics"]), default=0)
    for key, value in record["metrics"].items():
        own = record["run_metrics"].get(key)
        beside = f"   (run: {own:.6g})" if isinstance(own, (int, float)) else ""
        print(f"  {key:<{width}}  {value:<12.6g}{beside}")
    print(f"Saved {os.path.join(run.dir, 'evaluations', record['name'] + '.json')}")
    print(f"TensorBoard: tensorboard --logdir {run.dir}")
    return 0


def _cmd_compare(args):
    from zoo import compare

    try:
        table = compare.compare(args.runs, sort=args.sort, reverse=args.reverse)
    except USER_ERRORS as e:
        return fail(e)
    for skipped in table["skipped"]:
        print(f"skipped {skipped['path']}: {skipped['reason']}", file=sys.stderr)
    fmt = "json" if args.json else "markdown" if args.markdown else "text"
    print(compare.format_table(table, fmt))
    return 0


def _cmd_serve(args):
    from zoo.serve import server

    quiet.filter_stderr()
    try:
        return server.serve(args)
    except USER_ERRORS as e:
        return fail(e)


def _cmd_export(args):
    quiet.filter_stderr()
    try:
        from zoo import exports

        info = exports.export(args.run, args.format, out=args.out)
    except (*USER_ERRORS, FileExistsError) as e:
        return fail(e)
    print(export_summary(info))
    return 0


def export_summary(info):
    """What `zoo export` prints of an export's `export.json`: the file and
    its check, then each of the task's own SavedModel signatures."""
    lines = [f"Wrote {info['format']} export to {info['path']}; checked in a fresh process on "
             f"{info['checked_on']}: max abs difference {info['max_abs_diff']:.3g} "
             f"(tolerance {info['tolerance']:.3g})."]
    for name, check in (info.get("signatures") or {}).items():
        ties = len(check.get("rounding_ties") or [])
        lines.append(f"Signature `{name}` reproduces zoo on {check['num_examples']} inputs "
                     f"({check['checked_on']})"
                     + (f", {ties} of them parting at a near tie of logits within the tolerance" if ties else "")
                     + ".")
    return "\n".join(lines)


def _cmd_compress(args):
    quiet.filter_stderr()
    try:
        from zoo import compression

        report = compression.compress(
            args.run, quantize=args.quantize, prune=args.prune, prune_block=args.prune_block,
            fine_tune_epochs=args.fine_tune_epochs, out=args.out,
            verbose=0 if args.quiet else "auto")
    except (*USER_ERRORS, FileExistsError) as e:
        return fail(e)
    print(compression.format_report(report))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="zoo", description="A Keras 3 / TensorFlow model zoo.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", help="shell-style wildcard, such as 'gpt*'")
    p = sub.add_parser("info", help="describe a model and its config fields")
    p.add_argument("name")
    p = sub.add_parser("train", help="train a model (zoo train NAME --help for flags)",
                       add_help=False)
    p.add_argument("name")
    p = sub.add_parser("generate", help="generate images or text from a finished run")
    p.add_argument("run", help="a finished run directory, as made by zoo train")
    p.add_argument("--out", help="output file: a PNG grid for dcgan, a text file for gpt2_textgen")
    p.add_argument("--num-images", type=int, default=64, help="dcgan: images in the grid")
    p.add_argument("--prompt", action="append", help="gpt2_textgen: a prompt; repeat for a batch")
    p.add_argument("--max-length", type=int, default=64, help="gpt2_textgen: tokens in all")
    p.add_argument("--sampler", default="top_p", help="greedy, top_k, top_p or beam")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--num-beams", type=int, default=4)
    p.add_argument("--seed", type=int, default=None)
    p = sub.add_parser("predict", help="predict with a finished run on new data, into a CSV file")
    p.add_argument("run", help="a finished run directory, as made by zoo train")
    p.add_argument("--data", required=True,
                   help="the input: a CSV file (mlp_regressor); an image folder, file or glob (image_classifier)")
    p.add_argument("--out", required=True, help="the CSV file to write")
    p.add_argument("--keep", action="append", default=[], metavar="COLUMN",
                   help="an input column to copy to the output; repeat for more")
    p.add_argument("--batch-size", type=int, default=None, help="rows per chunk (8192)")
    p.add_argument("--top-k", type=int, default=None, help="classifiers: classes to list per input")
    p = sub.add_parser("evaluate", help="score a finished run on other data")
    p.add_argument("run", help="a finished run directory, as made by zoo train")
    p.add_argument("--data", help="dataset name or path, as zoo train takes; defaults to the run's own")
    p.add_argument("--name", help="the evaluation's name: RUN/evaluations/NAME.json (default: the data's name)")
    p.add_argument("--data-option", dest="data_options", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option")
    p.add_argument("--tfds-data-dir", help="where tensorflow-datasets keeps downloaded data")
    p.add_argument("--batch-size", type=int, default=None, help="examples per model call")
    p.add_argument("--json", action="store_true", help="print the saved record as JSON")
    p = sub.add_parser("compare", help="compare finished runs: differing config fields and metrics")
    p.add_argument("runs", nargs="*", help="run directories or globs, such as 'runs/mlp_regressor/*'")
    p.add_argument("--sort", metavar="METRIC", help="order the runs by this metric, ascending")
    p.add_argument("--reverse", action="store_true", help="with --sort: descending")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="a Markdown table")
    form.add_argument("--json", action="store_true", help="JSON")
    p = sub.add_parser("serve", help="serve finished runs over a REST API and a web page")
    from zoo.serve import server

    server.add_arguments(p)
    p = sub.add_parser("export", help="export a finished run to saved_model, litert or onnx")
    p.add_argument("run", help="a finished run directory, as made by zoo train or zoo compress")
    p.add_argument("--format", required=True, help="saved_model, litert or onnx")
    p.add_argument("--out", help="output directory (must not exist); defaults to RUN/export/FORMAT")
    p = sub.add_parser("compress", help="quantize and/or prune a finished run into a new run")
    p.add_argument("run", help="a finished run directory, as made by zoo train")
    p.add_argument("--quantize", help="int8, int4 or float8 (Keras 3's model.quantize)")
    p.add_argument("--prune", type=float, help="target sparsity of the kernels, in [0, 1)")
    p.add_argument("--prune-block", type=int,
                   help="prune blocks of N consecutive weights along each kernel's last axis "
                        "(1: weight by weight); defaults to the model's: 4 for mlp_regressor, else 1")
    p.add_argument("--fine-tune-epochs", type=int,
                   help="epochs of fine-tuning while pruning; defaults to a tenth of the recipe's")
    p.add_argument("--out", help="the compressed run's directory; defaults to RUN-int8 and the like")
    p.add_argument("--quiet", action="store_true", help="no progress bar while fine-tuning")
    p = sub.add_parser("launch", help="run a command as N local workers of one cluster",
                       add_help=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for the other workers once one has stopped")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    return parser


def main(argv=None):
    quiet.quiet_tensorflow()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["train"] and len(argv) >= 2 and not argv[1].startswith("-"):
        return _cmd_train(argv[1], argv[2:])
    args = parser.parse_args(argv)
    if args.command == "list":
        return _cmd_list(args)
    if args.command == "info":
        return _cmd_info(args)
    if args.command == "generate":
        return _cmd_generate(args)
    if args.command == "predict":
        return _cmd_predict(args)
    if args.command == "evaluate":
        return _cmd_evaluate(args)
    if args.command == "compare":
        return _cmd_compare(args)
    if args.command == "serve":
        return _cmd_serve(args)
    if args.command == "export":
        return _cmd_export(args)
    if args.command == "compress":
        return _cmd_compress(args)
    if args.command == "launch":
        from zoo import launch

        return launch.main(args)
    if args.command == "train":
        parser.parse_args(["train", "--help"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

