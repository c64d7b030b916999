"""Frozen config dataclasses and strict overrides.

Every model has one frozen dataclass of fields with types, defaults and an
`Attributes:` docstring. Overrides are strict, as in nanoGPT's
`configurator.py`: an unknown key raises with the valid keys and the closest
match, a value of the wrong type names the field, the expected type and what
was received. Nothing here imports TensorFlow.
"""

import ast
import dataclasses
import difflib
import re
import types
import typing


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
            raise TypeError(
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


def check_options(options, accepted, data):
    """Raises a `KeyError` naming an unknown dataset option of `data`."""
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise KeyError(
            f"Unknown data option '{unknown[0]}' for data '{data}'."
            f"{did_you_mean(unknown[0], accepted)} "
            f"Accepted: {', '.join(accepted) or 'none'}."
        )
