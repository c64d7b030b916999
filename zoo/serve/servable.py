"""The base of every served model: `Servable`, `Call`, and shared helpers.

A `Servable` wraps one finished run: `load` opens the model once
(`zoo.load_run(dir).model`); `request(verb, body)` checks a request body and
returns a `Call`: the batching key, the items the batcher gathers across
requests, and how to turn the items' results into the JSON answer;
`run_batch` is the one model call per batch. Nothing here imports
TensorFlow at module level.
"""

import base64
import dataclasses
import io
import os
import secrets
import typing

from zoo.serve import validation as v

SEED_MAX = 2**31 - 1


@dataclasses.dataclass
class Call:
    """A checked request: what the batcher runs and how to answer.

    Attributes:
        key: hashable. Items batch together only with equal keys.
        items: list. The request's items, one model row each.
        finish: callable. `finish(results) -> dict`, the JSON answer.
        stream: bool. Whether the client asked for Server-Sent Events.
    """

    key: typing.Any
    items: list
    finish: typing.Callable
    stream: bool = False


class Servable:
    """One served run. Subclasses set `verbs` and implement the hooks.

    Attributes:
        name: str. The name in `/v1/models/NAME`.
        run_dir: str. The run directory.
        config: dict. The run's `config.json`.
        limits: `zoo.serve.validation.Limits`.
        heavy_checks: bool. Whether `request` does enough work (tokenizing,
            decoding images) to run on a thread, off the event loop.
    """

    verbs = ()
    heavy_checks = False

    def __init__(self, name, run_dir, config, limits):
        self.name = name
        self.run_dir = run_dir
        self.config = config
        self.limits = limits
        self.model_name = config["model_name"]

    def load(self):
        """Opens the model; runs once, on a loading thread."""
        import zoo

        self.model = zoo.load_run(self.run_dir).model

    def warm_up(self):
        """Runs one small batch so the first request does not trace."""

    def request(self, verb, body):
        """Checks `body` for `verb`; returns a `Call` or raises `RequestError`."""
        raise NotImplementedError

    def run_batch(self, key, items, sinks):
        """One model call for a batch of items; one result per item."""
        raise NotImplementedError

    def signature(self):
        """`(inputs, outputs)` of the metadata, TF Serving's tensor info."""
        return {}, {}

    def describe(self):
        """What `/v1/models/NAME/metadata` says beside the signature."""
        return {}

    def metadata(self):
        inputs, outputs = self.signature()
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": "1"},
            "metadata": {"signature_def": {"signature_def": {"serving_default": {
                "inputs": inputs, "outputs": outputs,
                "method_name": "tensorflow/serving/predict",
            }}}},
            "zoo": {"model": self.model_name, "run": os.path.abspath(self.run_dir), "verbs": list(self.verbs),
                    "limits": self.limits.describe(), **self.describe()},
        }


def tensor_info(name, dtype, *dims):
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d)} for d in dims]}, "name": name}


def seed_field(body):
    """The request's `seed`, or a fresh one (returned, so the answer can be
    reproduced)."""
    if body.get("seed") is None:
        return secrets.randbelow(SEED_MAX)
    return v.integer(body["seed"], "seed", 0, SEED_MAX)


def png_base64(image):
    """A uint8 `(h, w, c)` array as base64 PNG text."""
    import numpy as np
    from PIL import Image

    image = np.asarray(image)
    mode = "L" if image.shape[-1] == 1 else "RGB"
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if mode == "L" else image, mode).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
