"""The `zoo` command: list, info, train, generate and launch.

User mistakes (an unknown model, a bad override, a missing file) print one
clear `error:` line and exit with status 2, never a TensorFlow traceback.
Set `ZOO_DEBUG=1` to see the traceback anyway.
"""

import argparse
import os
import sys

from zoo import config as config_lib
from zoo import quiet

USER_ERRORS = (ValueError, KeyError, TypeError, FileNotFoundError, ConnectionError)


def _fail(error):
    if os.environ.get("ZOO_DEBUG"):
        raise error
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    print(f"error: {message}", file=sys.stderr)
    return 2


def add_train_arguments(parser, defaults=None):
    """Adds the training flags shared by `zoo train` and `recipes/*.py`.

    Args:
        parser: `argparse.ArgumentParser`.
        defaults: dict. Recipe defaults shown in `--help` (`epochs`,
            `batch_size`, `learning_rate`). Defaults to the model's own.
    """
    defaults = defaults or {}
    add = parser.add_argument
    add("--data", help="dataset name or path; defaults to the model's embedded dataset")
    add("--epochs", type=int, default=defaults.get("epochs"), help="passes over the data")
    add("--batch-size", type=int, default=defaults.get("batch_size"), help="global batch size")
    add("--learning-rate", type=float, default=defaults.get("learning_rate"), help="peak learning rate")
    add("--strategy", default="auto", help="auto, default, one_device, mirrored or multi_worker")
    add("--run-dir", help="run directory; rerun with the same one to resume")
    add("--seed", type=int, default=0)
    add("--mixed-precision", help="a Keras dtype policy such as mixed_bfloat16")
    add("--steps-per-execution", type=int, help="training steps per tf.function call (default: the recipe's)")
    add("--jit-compile", default="auto", choices=["auto", "true", "false"], help="XLA")
    add("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a model config field, such as --set hidden_units=[256,256]")
    add("--preset", help="start from a keras-hub preset name or directory (gpt2_textgen)")
    add("--target", help="target column of a CSV file")
    add("--features", help="comma-separated feature columns of a CSV file")
    add("--drop-missing", action="store_true", help="drop CSV rows with missing values")
    add("--tfds-data-dir", help="where tensorflow-datasets keeps downloaded data")
    add("--data-option", dest="data_options", action="append", default=[], metavar="KEY=VALUE",
        help="other dataset options, such as --data-option num_train=2000")
    add("--log-every-n-steps", type=int, default=50)
    add("--profile-batch", help="steps to profile, as START,STOP")
    add("--quiet", action="store_true", help="no progress bar or summary")


def train_kwargs(args):
    """Turns parsed training flags into `zoo.train` keyword arguments."""
    options = config_lib.parse_assignments(args.data_options)
    for key in ("target", "features", "tfds_data_dir"):
        if getattr(args, key):
            options[key] = getattr(args, key)
    if args.drop_missing:
        options["drop_missing"] = True
    profile = None
    if args.profile_batch:
        try:
            profile = tuple(int(p) for p in args.profile_batch.split(","))
            assert len(profile) == 2 and 0 <= profile[0] < profile[1]
        except (ValueError, AssertionError):
            raise ValueError(
                "Invalid value for `--profile-batch`: expected START,STOP with "
                f"0 <= START < STOP. Received: {args.profile_batch!r}."
            ) from None
    return dict(
        data=args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        strategy=args.strategy,
        run_dir=args.run_dir,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        steps_per_execution=args.steps_per_execution,
        jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile],
        data_options=options,
        preset=args.preset,
        log_every_n_steps=args.log_every_n_steps,
        profile_batch=profile,
        verbose=0 if args.quiet else "auto",
        **config_lib.parse_assignments(args.overrides),
    )


def run_training(name, args):
    """Runs `zoo.train` for parsed flags; returns the exit status."""
    from zoo import registry

    quiet.filter_stderr()
    try:
        registry.get_entry(name)
        kwargs = train_kwargs(args)
        from zoo import trainer

        trainer.train(name, **kwargs)
    except KeyboardInterrupt:
        print("\nInterrupted. Rerun the same command with the same --run-dir to resume "
              "from the last finished epoch.", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        return _fail(e)
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


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


def _cmd_train(args, rest):
    from zoo import registry

    try:
        entry = registry.get_entry(args.name)
    except KeyError as e:
        return _fail(e)
    parser = argparse.ArgumentParser(prog=f"zoo train {args.name}")
    add_train_arguments(parser)
    train_args = parser.parse_args(rest)
    del entry
    return run_training(args.name, train_args)


def _cmd_generate(args):
    from zoo import generate

    quiet.filter_stderr()
    try:
        return generate.main(args)
    except USER_ERRORS as e:
        return _fail(e)


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
        args, rest = parser.parse_known_args(argv[:2])
        return _cmd_train(args, argv[2:])
    args = parser.parse_args(argv)
    if args.command == "list":
        return _cmd_list(args)
    if args.command == "info":
        return _cmd_info(args)
    if args.command == "generate":
        return _cmd_generate(args)
    if args.command == "launch":
        from zoo import launch

        return launch.main(args)
    if args.command == "train":
        parser.parse_args(["train", "--help"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
