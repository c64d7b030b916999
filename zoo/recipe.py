"""What a training command line takes: the flags that `zoo train NAME` and
`python recipes/NAME.py` share, parsed into one `zoo.train` call.

The flags come from `zoo.config.TrainConfig` (one flag a field, its help
from the field's doc) and from the model's task, which declares its dataset
options (`Task.data_options`) and which of them get their own flag. A
recipe is `recipe.main(NAME, argv, description=__doc__)`.

User mistakes (an unknown model, a bad override, a missing file, a corrupt
file, a run directory another process is training) print one clear
`error:` line and exit with status 2, never a TensorFlow traceback; a run
stopped by its circumstances (a diverged loss, a full disk) prints one and
exits with status 1; zoo's own bugs keep their traceback. Set `ZOO_DEBUG=1`
to see the traceback of a user mistake too.
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
    "summaries_max_share": dict(type=float, metavar="SHARE"),
}


def fail(error):
    """Prints a user mistake as one `error:` line; returns the exit status, 2."""
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
        return fail(e)
    except RUN_ERRORS as e:
        if os.environ.get("ZOO_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(name, argv=None, description=None):
    """The whole of a recipe's `main`: its flags, then one training run."""
    from zoo import registry

    task = registry.get_entry(name).task
    parser = argparse.ArgumentParser(
        prog=f"recipes/{name}.py", description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser, dict(task.train_defaults), task)
    return run_training(name, parser.parse_args(argv))
