"""Frozen config dataclasses and strict overrides.

Every model has one frozen dataclass of fields with types, defaults and an
`Attributes:` docstring, and training has one: `TrainConfig`. Overrides are strict, as in nanoGPT's
`configurator.py`: an unknown key raises with the valid keys and the closest
match, a value of the wrong type names the field, the expected type and what
was received. Nothing here imports TensorFlow.
"""

import ast
import dataclasses
import difflib
import math
import re
import types
import typing

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker")
# "auto" lets `zoo.precision.choose` pick one of the others for the hardware.
MIXED_PRECISION = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def closest(name, choices):
    """Returns the closest match of `name` among `choices`, or None."""
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name, choices):
    match = closest(name, choices)
    return f" Did you mean '{match}'?" if match else ""


def field_docs(cls):
    """Parses the `Attributes:` section of a dataclass docstring.

    Returns a dict of field name to its one-paragraph description.
    """
    doc = cls.__doc__ or ""
    docs, current, in_section = {}, None, False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped == "Attributes:":
            in_section = True
            continue
        if not in_section:
            continue
        if not stripped:
            current = None
            continue
        match = re.match(r"^(\w+): (.*)$", stripped)
        if match and match.group(1) in {f.name for f in dataclasses.fields(cls)}:
            current = match.group(1)
            docs[current] = match.group(2)
        elif current:
            docs[current] += " " + stripped
    return docs


def type_name(tp):
    if tp is type(None):
        return "None"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{type_name(args[0])}, ...]"
        return f"tuple[{', '.join(type_name(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def coerce(value, tp):
    """Returns `value` as type `tp`, or raises `TypeError`.

    Accepted conversions are the lossless ones a user means: an int for a
    float field, a list for a tuple field.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg)
            except TypeError:
                pass
        raise TypeError
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0]) for v in value)
        if len(args) != len(value):
            raise TypeError
        return tuple(coerce(v, a) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    if isinstance(value, tp):
        return value
    raise TypeError


class ConfigTypeError(TypeError):
    """A config value of the wrong type: a user's mistake, not a bug."""


def apply_overrides(config, overrides, *, what="config"):
    """Returns a copy of the dataclass `config` with `overrides` applied.

    Args:
        config: a dataclass instance, or a dataclass type for its defaults.
        overrides: dict. Field names to new values.
        what: str. How to name the config in error messages.

    Raises:
        KeyError: an override names no field. The message lists the fields
            and the closest match.
        TypeError: a value has the wrong type. The message names the field,
            the expected type and the received value.
        ValueError: a value is out of range, as the config's own
            `__post_init__` checks say.
    """
    if isinstance(config, type):
        config = config()
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    values = {}
    for key, value in overrides.items():
        if key not in hints or key not in names:
            raise KeyError(
                f"Unknown {what} key '{key}'.{did_you_mean(key, names)} "
                f"Valid keys: {', '.join(names)}."
            )
        try:
            values[key] = coerce(value, hints[key])
        except TypeError:
            raise ConfigTypeError(
                f"Invalid type for {what} field `{key}`: expected "
                f"{type_name(hints[key])}. Received: {key}={value!r} "
                f"({type(value).__name__})."
            ) from None
    return dataclasses.replace(config, **values)


def parse_assignments(items):
    """Parses `key=value` strings as given to `--set`.

    Values are Python literals (`ast.literal_eval`), so `hidden_units=[64,64]`
    is a list and `dropout=0.1` a float; anything that is not a literal is
    kept as a string, so `activation=gelu` needs no quotes.
    """
    result = {}
    for item in items:
        if "=" not in item:
            raise ValueError(
                f"Invalid override: expected key=value. Received: '{item}'."
            )
        key, raw = item.split("=", 1)
        key, raw = key.strip(), raw.strip()
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        result[key] = value
    return result


def to_dict(config):
    """A JSON-ready dict of a dataclass, tuples as lists."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(config).items()
    }


def require(condition, field, value, allowed):
    """Raises a Keras-style `ValueError` unless `condition` holds."""
    if not condition:
        raise ValueError(
            f"Invalid value for `{field}`: {allowed}. Received: {field}={value!r}."
        )


def require_positive(config, *fields):
    """`require` each of `config`'s `fields` to be at least 1."""
    for field in fields:
        value = getattr(config, field)
        require(value >= 1, field, value, "must be at least 1")


def check_options(options, accepted, data):
    """Raises a `KeyError` naming an unknown dataset option of `data`."""
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise KeyError(
            f"Unknown data option '{unknown[0]}' for data '{data}'."
            f"{did_you_mean(unknown[0], accepted)} "
            f"Accepted: {', '.join(accepted) or 'none'}."
        )


def check_strategy(name):
    """Raises a `ValueError` that lists the choices for an unknown strategy."""
    if name not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy '{name}'.{did_you_mean(name, STRATEGIES)} "
            f"Accepted: {', '.join(STRATEGIES)}."
        )


def check_mixed_precision(name):
    """Raises a `ValueError` that lists the choices for an unknown dtype policy."""
    if name is not None and name not in MIXED_PRECISION:
        raise ValueError(
            f"Invalid value for `mixed_precision`: unknown policy '{name}'."
            f"{did_you_mean(name, MIXED_PRECISION)} Accepted: {', '.join(MIXED_PRECISION)}."
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; saved in `config.json` beside the model config.

    Attributes:
        epochs: int. Number of passes over the training data.
        batch_size: int. The global batch, split across replicas.
        learning_rate: float. Peak learning rate of the optimizer.
        strategy: str. "auto", "default", "one_device", "mirrored" or
            "multi_worker". Defaults to "auto".
        seed: int. Seeds weights, data order and splits. Defaults to 0.
        mixed_precision: str | None. "auto" picks mixed_bfloat16 on CPUs
            with AMX (or AVX512_BF16 where a bfloat16 matmul measures
            faster) and on GPUs of compute capability 8.0+, mixed_float16
            with loss scaling on 7.x GPUs, float32 elsewhere and for models
            under 1M parameters, and no XLA under bfloat16 on a CPU (see
            env.json for the choice and why); or force "float32",
            "mixed_bfloat16" or "mixed_float16" (None means float32).
            Defaults to "auto".
        steps_per_execution: int. Training steps run per `tf.function`
            call. Defaults to 1.
        jit_compile: str | bool. XLA: "auto" lets Keras decide, True or
            False forces it. Defaults to "auto".
        log_every_n_steps: int. Step-level TensorBoard scalars every this
            many steps; 0 turns them off. Defaults to 50.
        profile_batch: tuple[int, int] | None. Steps to capture with the
            TensorFlow profiler, as (start, stop). Defaults to None.
        data: str | None. The dataset name or path. Defaults to the model's
            embedded dataset.
        data_options: tuple[tuple[str, str | int | float | bool | tuple[str, ...] | None], ...].
            Dataset options, such as (("target", "price"),).
        preset: str | None. The preset the model started from.
        checkpoint_every_seconds: float. Save a checkpoint at an epoch's end
            only when this many seconds have passed since the last one, and
            50 times as long as the last one took to write (the last epoch
            is always saved); 0 saves every epoch. Defaults to 1.0.
        summaries_max_share: float. The largest share of training time the
            task's per-epoch TensorBoard summaries (sample grids, confusion
            matrices, generated text) may take: after the first epoch's, an
            epoch's end writes them only when 1/share times as long as the
            last ones took has passed, and the last epoch always does; 0
            writes them every epoch. Defaults to 0.02.
    """

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    strategy: str = "auto"
    seed: int = 0
    mixed_precision: str | None = "auto"
    steps_per_execution: int = 1
    jit_compile: str | bool = "auto"
    log_every_n_steps: int = 50
    profile_batch: tuple[int, int] | None = None
    data: str | None = None
    data_options: tuple[tuple[str, str | int | float | bool | tuple[str, ...] | None], ...] = ()
    preset: str | None = None
    checkpoint_every_seconds: float = 1.0
    summaries_max_share: float = 0.02

    def __post_init__(self):
        require(self.epochs >= 1, "epochs", self.epochs, "must be at least 1")
        require(self.batch_size >= 1, "batch_size", self.batch_size, "must be at least 1")
        require(
            self.learning_rate > 0 and math.isfinite(self.learning_rate),
            "learning_rate", self.learning_rate, "must be a positive number",
        )
        check_strategy(self.strategy)
        require(
            self.steps_per_execution >= 1, "steps_per_execution",
            self.steps_per_execution, "must be at least 1",
        )
        require(
            self.jit_compile in ("auto", True, False), "jit_compile",
            self.jit_compile, 'must be "auto", True or False',
        )
        check_mixed_precision(self.mixed_precision)
        require(
            self.log_every_n_steps >= 0, "log_every_n_steps", self.log_every_n_steps,
            "must be 0 (off) or a positive step count",
        )
        require(
            self.checkpoint_every_seconds >= 0 and math.isfinite(self.checkpoint_every_seconds),
            "checkpoint_every_seconds", self.checkpoint_every_seconds,
            "must be 0 (every epoch) or a positive number of seconds",
        )
        require(
            0 <= self.summaries_max_share <= 1, "summaries_max_share", self.summaries_max_share,
            "must be 0 (every epoch) or a share of the training time in (0, 1]",
        )

    @classmethod
    def defaults_of(cls, task):
        """The `TrainConfig` of a task's recipe defaults, as `zoo.get` compiles with."""
        defaults = task.train_defaults
        return cls(
            epochs=defaults["epochs"],
            batch_size=defaults.get("batch_size") or 32,
            learning_rate=defaults["learning_rate"],
            steps_per_execution=defaults.get("steps_per_execution", 1),
        )


# Keywords of `zoo.train` that are not model config fields.
TRAIN_KEYWORDS = tuple(f.name for f in dataclasses.fields(TrainConfig)) + (
    "run_dir", "callbacks", "verbose", "data_options")
