"""The `zoo` command: list, info, train, generate, predict, evaluate, compare,
serve, export, compress and launch.

User mistakes (an unknown model, a bad override, a missing file, a corrupt
file, a run directory another process is training) print one clear
`error:` line and exit with status 2, never a TensorFlow traceback; a run
stopped by its circumstances (a diverged loss, a full disk) prints one and
exits with status 1; zoo's own bugs keep their traceback. Set `ZOO_DEBUG=1` to see the traceback
of a user mistake too.

The training flags come from `zoo.config.TrainConfig` (one flag a field,
its help from the field's doc) and from the model's task, which declares its
dataset options (`Task.data_options`) and which of them get their own flag.
"""

import argparse
import os
import sys

from zoo import config as config_lib
from zoo import quiet
from zoo.files import WriteError

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, ConnectionError, config_lib.ConfigTypeError)
# Not a mistake in the command, not a bug either: one `error:` line, status 1.
RUN_ERRORS = (FloatingPointError, WriteError)

# TrainConfig fields with a flag of their own: field -> argparse keywords.
# `data`, `data_options` and `preset` are set from the flags below.
_TRAIN_FLAGS = {
    "epochs": dict(type=int),
    "batch_size": dict(type=int),
    "learning_rate": dict(type=float),
    "strategy": dict(default="auto", choices=config_lib.STRATEGIES),
    "seed": dict(type=int, default=0),
    "mixed_precision": dict(default="auto", choices=config_lib.MIXED_PRECISION),
    "steps_per_execution": dict(type=int),
    "jit_compile": dict(default="auto", choices=["auto", "true", "false"]),
    "log_every_n_steps": dict(type=int, default=50),
    "profile_batch": dict(metavar="START,STOP"),
    "checkpoint_every_seconds": dict(type=float, metavar="SECONDS"),
}


def _fail(error):
    if os.environ.get("ZOO_DEBUG"):
        raise error
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    print(f"error: {message}", file=sys.stderr)
    return 2


def _field_help(name):
    doc = config_lib.field_docs(config_lib.TrainConfig).get(name, "")
    # "int. Number of passes..." -> "Number of passes..."
    return doc.split(". ", 1)[1] if ". " in doc else doc


def add_train_arguments(parser, defaults=None, task=None):
    """Adds the training flags shared by `zoo train` and `recipes/*.py`.

    Args:
        parser: `argparse.ArgumentParser`.
        defaults: dict. Recipe defaults shown in `--help` (`epochs`,
            `batch_size`, `learning_rate`, `steps_per_execution`); the
            trainer applies them. Defaults to none.
        task: `zoo.task.Task`. Adds the flags of its dataset options
            (`Task.data_flags`). Defaults to None.
    """
    defaults = defaults or {}
    add = parser.add_argument
    add("--data", help="dataset name or path; defaults to the model's embedded dataset")
    for name, kwargs in _TRAIN_FLAGS.items():
        text = _field_help(name)
        if name in defaults:
            # Shown, not set: the trainer fills in the recipe's value (and,
            # for steps_per_execution, 1 under multi_worker).
            recipe = "chosen from the data size" if defaults[name] is None else defaults[name]
            text = f"{text} This model's recipe: {recipe}."
        add(f"--{name.replace('_', '-')}", help=text, **kwargs)
    add("--run-dir", help="run directory; rerun with the same one to resume")
    add("--folds", type=int, metavar="K",
        help="cross-validate: K seeded folds, each a run in RUN/fold-<i>/, and their mean and std")
    add("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a model config field, such as --set hidden_units=[256,256]")
    if task is None or task.has_presets:
        add("--preset", help="start from a keras-hub preset name or directory")
    options = dict(getattr(task, "data_options", {}) or {})
    for name in getattr(task, "data_flags", ()):
        kind, text = options[name]
        flag = f"--{name.replace('_', '-')}"
        if kind is bool:
            add(flag, dest=f"option_{name}", action="store_true", help=text)
        else:
            add(flag, dest=f"option_{name}", metavar=name.upper(), help=text)
    add("--data-option", dest="data_options", action="append", default=[], metavar="KEY=VALUE",
        help="a dataset option" + (f" ({', '.join(options)})" if options else ""))
    add("--quiet", action="store_true", help="no progress bar or summary")


def parse_data_options(assignments, flags, task):
    """The dataset options of `--data-option K=V` and their own flags,
    each parsed with the type its task declares.

    Raises:
        KeyError: an option the task does not declare (with the closest).
        ValueError: a value that is not of the option's type.
    """
    declared = dict(getattr(task, "data_options", {}) or {})
    options = {}
    for item in assignments:
        if "=" not in item:
            raise ValueError(
                f"Invalid value for `--data-option`: expected KEY=VALUE. Received: '{item}'.")
        key, raw = (p.strip() for p in item.split("=", 1))
        if declared and key not in declared:
            raise KeyError(
                f"Unknown data option '{key}'.{config_lib.did_you_mean(key, declared)} "
                f"Accepted: {', '.join(declared)}."
            )
        kind = declared[key][0] if key in declared else None
        options[key] = _parse_typed(key, raw, kind)
    options.update({k: v for k, v in flags.items() if v not in (None, False)})
    return options


def _parse_typed(key, raw, kind):
    accepted = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
    try:
        if kind is None:
            return config_lib.parse_assignments([f"{key}={raw}"])[key]
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        return kind(raw)
    except ValueError:
        raise ValueError(
            f"Invalid value for data option `{key}`: expected {accepted.get(kind, kind)}. "
            f"Received: {key}={raw!r}."
        ) from None


def _profile_batch(text):
    if not text:
        return None
    try:
        profile = tuple(int(p) for p in text.split(","))
    except ValueError:
        profile = ()
    if len(profile) != 2 or not 0 <= profile[0] < profile[1]:
        raise ValueError(
            "Invalid value for `--profile-batch`: expected START,STOP with "
            f"0 <= START < STOP. Received: {text!r}."
        )
    return profile


def train_kwargs(args, task=None):
    """Turns parsed training flags into `zoo.train` keyword arguments."""
    flags = {k[len("option_"):]: v for k, v in vars(args).items() if k.startswith("option_")}
    kwargs = {name: getattr(args, name) for name in _TRAIN_FLAGS}
    kwargs["jit_compile"] = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    kwargs["profile_batch"] = _profile_batch(args.profile_batch)
    return dict(
        data=args.data,
        run_dir=args.run_dir,
        preset=getattr(args, "preset", None),
        data_options=parse_data_options(args.data_options, flags, task),
        verbose=0 if args.quiet else "auto",
        **({"folds": args.folds} if getattr(args, "folds", None) is not None else {}),
        **kwargs,
        **config_lib.parse_assignments(args.overrides),
    )


def run_training(name, args):
    """Runs `zoo.train` for parsed flags; returns the exit status."""
    from zoo import registry

    quiet.filter_stderr()
    try:
        task = registry.get_entry(name).task
        kwargs = train_kwargs(args, task)
        if "folds" in kwargs:
            from zoo import folds

            folds.train_folds(name, **kwargs)
        else:
            from zoo import trainer

            trainer.train(name, **kwargs)
    except KeyboardInterrupt:
        print("\nInterrupted. Rerun the same command with the same --run-dir to resume "
              "from the last finished epoch.", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        return _fail(e)
    except RUN_ERRORS as e:
        if os.environ.get("ZOO_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def recipe_main(name, argv=None, description=None):
    """The whole of a recipe's `main`: its flags, then one training run."""
    from zoo import registry

    task = registry.get_entry(name).task
    parser = argparse.ArgumentParser(
        prog=f"recipes/{name}.py", description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser, dict(task.train_defaults), task)
    return run_training(name, parser.parse_args(argv))


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
        return _fail(e)
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
        return _fail(e)
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
        return _fail(e)
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
        return _fail(e)
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
        return _fail(e)
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
        return _fail(e)
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
        return _fail(e)


def _cmd_export(args):
    quiet.filter_stderr()
    try:
        from zoo import exports

        info = exports.export(args.run, args.format, out=args.out)
    except (*USER_ERRORS, FileExistsError) as e:
        return _fail(e)
    print(f"Wrote {info['format']} export to {info['path']}; checked in a fresh process on "
          f"{info['checked_on']}: max abs difference {info['max_abs_diff']:.3g} "
          f"(tolerance {info['tolerance']:.3g}).")
    return 0


def _cmd_compress(args):
    quiet.filter_stderr()
    try:
        from zoo import compression

        report = compression.compress(
            args.run, quantize=args.quantize, prune=args.prune, prune_block=args.prune_block,
            fine_tune_epochs=args.fine_tune_epochs, out=args.out,
            verbose=0 if args.quiet else "auto")
    except (*USER_ERRORS, FileExistsError) as e:
        return _fail(e)
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
                        "(1: weight by weight, the default)")
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

