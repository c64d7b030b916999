"""Request checks of `zoo serve`: the limits, and the errors a client gets.

Every check raises `RequestError(status, message)`, which the app answers
as `{"error": message}` with that status. A message names the field (with
its path, such as `instances[2][0]`), what was received and what is
accepted, as zoo's other errors do. Nothing here imports TensorFlow.
"""

import dataclasses
import json
import math

from zoo import config as config_lib

# Largest magnitude a float32 holds; larger JSON numbers would become inf.
FLOAT32_MAX = 3.4028234663852886e38


class RequestError(Exception):
    """A client's mistake: answered with `status` and `{"error": message}`."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class Limits:
    """The caps of one `zoo serve` process, each a flag of `zoo serve`.

    Attributes:
        max_body_bytes: int. Largest request body; larger ones get 413.
            Defaults to 4 MiB.
        max_instances: int. Rows, prompts or images in one request.
            Defaults to 256.
        max_length: int. Largest `max_length` of a GPT-2 request (tokens,
            prompt included); the model's own `max_sequence_length` caps it
            too. Defaults to 256.
        max_image_pixels: int. Largest uploaded image, width times height.
            Defaults to 4,194,304 (2048 x 2048).
        max_images: int. Largest DCGAN `count`. Defaults to 256.
        max_batch_size: int. Most rows, prompts or images the batcher
            gathers into one model call; 1 turns batching off. Defaults to 32.
        batch_timeout_ms: float. Longest time the batcher waits for more
            requests after the first one of a batch arrives. Defaults to 5.
    """

    max_body_bytes: int = 4 * 2**20
    max_instances: int = 256
    max_length: int = 256
    max_image_pixels: int = 2048 * 2048
    max_images: int = 256
    max_batch_size: int = 32
    batch_timeout_ms: float = 5.0

    def __post_init__(self):
        for field in ("max_body_bytes", "max_instances", "max_length", "max_image_pixels",
                      "max_images", "max_batch_size"):
            value = getattr(self, field)
            config_lib.require(isinstance(value, int) and value >= 1, field, value, "must be a positive int")
        config_lib.require(
            isinstance(self.batch_timeout_ms, (int, float)) and 0 <= self.batch_timeout_ms <= 10_000,
            "batch_timeout_ms", self.batch_timeout_ms, "must be a number of milliseconds in [0, 10000]",
        )

    def describe(self):
        return dataclasses.asdict(self)


def parse_body(raw, limits):
    """The JSON object of a request body, or a 400/413 naming what is wrong."""
    if len(raw) > limits.max_body_bytes:
        raise too_large(len(raw), limits)
    if not raw.strip():
        raise RequestError(400, "The request body is empty; expected a JSON object such as "
                                '{"instances": [...]}.')
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise RequestError(400, f"Malformed JSON: the body is not UTF-8 text (byte {e.start}).") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise RequestError(400, f"Malformed JSON: {e.msg} at line {e.lineno} column {e.colno}.") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"The request body must be a JSON object. Received: {_kind(body)}.")
    return body


def too_large(size, limits):
    return RequestError(
        413, f"Request body too large: {size:,} bytes; the cap is max_body_bytes="
             f"{limits.max_body_bytes:,} (`zoo serve --max-body-bytes`).")


def check_fields(body, accepted, where="request"):
    """Raises a 400 for a key of `body` that is not in `accepted`."""
    for key in body:
        if key not in accepted:
            raise RequestError(
                400, f"Unknown field `{key}` in the {where}.{config_lib.did_you_mean(key, accepted)} "
                     f"Accepted: {', '.join(accepted)}.")


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, float) and not math.isfinite(value):
        return {"nan": "NaN"}.get(str(value), "Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (int, float)):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"{text!r} (a string)"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "an object"


def invalid(field, value, accepted, status=400):
    return RequestError(status, f"Invalid value for `{field}`: {accepted}. Received: {_kind(value)}.")


def number(value, field):
    """A finite JSON number (not a boolean) as a float that fits float32."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(field, value, "expected a number")
    value = float(value)
    if not math.isfinite(value):
        raise invalid(field, value, "expected a finite number (NaN and Infinity are not accepted)")
    if abs(value) > FLOAT32_MAX:
        raise invalid(field, value, f"expected a number of magnitude at most {FLOAT32_MAX:.4g} (float32)")
    return value


def integer(value, field, low=None, high=None, cap=None):
    """An int in [low, high]; `cap` names the limit that sets `high`."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise invalid(field, value, "expected an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f"at least {low}"
        raise invalid(field, value, f"expected an integer {bounds}" + (f" (the cap is {cap})" if cap else ""))
    return value


def real(value, field, low, high, low_open=False):
    """A finite number in [low, high] (or (low, high] with `low_open`)."""
    value = number(value, field)
    if value < low or value > high or (low_open and value == low):
        raise invalid(field, value, f"expected a number in {'(' if low_open else '['}{low}, {high}]")
    return value


def string(value, field):
    if not isinstance(value, str):
        raise invalid(field, value, "expected a string")
    return value


def boolean(value, field):
    if not isinstance(value, bool):
        raise invalid(field, value, "expected true or false")
    return value


def choice(value, field, choices):
    if not isinstance(value, str) or value not in choices:
        hint = config_lib.did_you_mean(value, choices) if isinstance(value, str) else ""
        shown = repr(value) if isinstance(value, str) else _kind(value)
        raise RequestError(400, f"Unknown {field} {shown}.{hint} Accepted: {', '.join(choices)}.")
    return value


def batch_list(value, field, limits):
    """A non-empty list of at most `limits.max_instances` items."""
    if not isinstance(value, list):
        raise invalid(field, value, "expected a list")
    if not value:
        raise invalid(field, value, "expected a non-empty list")
    if len(value) > limits.max_instances:
        raise RequestError(
            400, f"Too many items in `{field}`: {len(value)}; the cap is max_instances="
                 f"{limits.max_instances} (`zoo serve --max-instances`).")
    return value


def tensor_request(body, limits, named=()):
    """The items of a TF Serving predict body and whether it was row format.

    `{"instances": [...]}` (row format) or `{"inputs": ...}` (columnar), not
    both; `signature_name` may be "serving_default". `named` are the model's
    input names, which `inputs` may use as its one key.

    Returns:
        (items, field, rows): the request's items, the field they came
        from, and True for `instances`.
    """
    check_fields(body, ("instances", "inputs", "signature_name"))
    if "signature_name" in body and body["signature_name"] not in ("serving_default", ""):
        raise invalid("signature_name", body["signature_name"], 'expected "serving_default"')
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(400, "A predict request takes exactly one of `instances` (row format) or "
                                f"`inputs` (columnar format). Received: {', '.join(body) or 'neither'}.")
    field = "instances" if "instances" in body else "inputs"
    items = body[field]
    if field == "inputs" and isinstance(items, dict) and len(items) == 1 and next(iter(items)) in named:
        field = f"inputs.{next(iter(items))}"
        items = next(iter(items.values()))
    return items, field, field == "instances"
