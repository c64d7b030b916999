"""What `zoo serve` does with each model, and which run is which model.

`check_run` reads a run's `config.json` without TensorFlow, so a wrong
directory fails before the server starts; `servables` names and checks the
runs of one `zoo serve` and picks each one's adapter (`zoo.serve.servable`
has their base):

- `mlp_regressor` (`predict`): raw feature rows, by position or by column
  name (the run's `config.json` records `data.features` and
  `data.targets`), answered in the targets' raw units.
- `image_classifier` (`predict`): base64 PNG or JPEG images, cropped and
  resized to the model's input as in training.
- `dcgan` (`generate`): `count` images from `seed`, as base64 PNGs or one
  grid; the same images as `zoo generate` for the same seed.
- `gpt2_textgen` (`generate`): see `zoo.serve.textgen`.
"""

import base64
import io
import os
import re

from zoo import config as config_lib
from zoo import registry
from zoo.files import read_json
from zoo.serve import textgen
from zoo.serve import validation as v
from zoo.serve.servable import Call, Servable, png_base64, seed_field, tensor_info
from zoo.serve.validation import RequestError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TableRegressor(Servable):
    """`mlp_regressor`: `predict` from raw feature rows, in raw units."""

    verbs = ("predict",)

    def load(self):
        import tensorflow as tf

        super().load()
        data = self.config.get("data", {})
        width = self.model.input_shape[-1]
        self.features = list(data.get("features") or [f"x{i}" for i in range(width)])
        outputs = self.model.output_shape[-1]
        self.targets = list(data.get("targets") or [f"y{i}" for i in range(outputs)])
        model = self.model
        self._call = tf.function(lambda x: model(x, training=False),
                                 input_signature=[tf.TensorSpec([None, width], tf.float32)])

    def warm_up(self):
        self.run_batch(None, [[0.0] * len(self.features)], [None])

    def signature(self):
        return ({"features": tensor_info("serving_default_features:0", "DT_FLOAT", -1, len(self.features))},
                {"predictions": tensor_info("StatefulPartitionedCall:0", "DT_FLOAT", -1, len(self.targets))})

    def describe(self):
        return {"features": self.features, "targets": self.targets}

    def request(self, verb, body):
        items, field, rows = v.tensor_request(body, self.limits, named=("features",))
        if isinstance(items, dict) and not rows and field == "inputs":
            items = self._columns(items)
        items = v.batch_list(items, field, self.limits)
        parsed = [self._row(item, f"{field}[{i}]") for i, item in enumerate(items)]
        key = "predictions" if rows else "outputs"
        return Call(None, parsed, lambda results: {key: results})

    def _columns(self, columns):
        """Columnar `inputs`: `{feature: [value per row]}` to rows."""
        self._check_names(columns, "inputs")
        lengths = {name: len(values) if isinstance(values, list) else None for name, values in columns.items()}
        for name, length in lengths.items():
            if length is None:
                raise v.invalid(f"inputs.{name}", columns[name], "expected a list of values, one per row")
        if len(set(lengths.values())) != 1:
            raise RequestError(400, "Invalid shape for `inputs`: every column needs one value per row. "
                                    f"Received lengths: {', '.join(f'{k}={n}' for k, n in lengths.items())}.")
        count = next(iter(lengths.values()))
        return [{name: columns[name][i] for name in self.features} for i in range(count)]

    def _check_names(self, item, field):
        for name in item:
            if name not in self.features:
                raise RequestError(
                    400, f"Unknown feature `{name}` in `{field}`.{config_lib.did_you_mean(name, self.features)} "
                         f"The model's features: {', '.join(self.features)}.")
        missing = [name for name in self.features if name not in item]
        if missing:
            raise RequestError(400, f"Missing feature{'s' if len(missing) > 1 else ''} in `{field}`: "
                                    f"{', '.join(missing)}. The model's features: {', '.join(self.features)}.")

    def _row(self, item, field):
        width = len(self.features)
        if isinstance(item, dict):
            if list(item) == ["features"] and "features" not in self.features:
                return self._row(item["features"], f"{field}.features")
            self._check_names(item, field)
            return [v.number(item[name], f"{field}.{name}") for name in self.features]
        if isinstance(item, list):
            if len(item) != width:
                raise RequestError(
                    400, f"Invalid shape for `{field}`: expected {width} feature values "
                         f"({', '.join(self.features)}). Received: a list of {len(item)}.")
            return [v.number(x, f"{field}[{j}]") for j, x in enumerate(item)]
        raise v.invalid(field, item, f"expected a row: a list of {width} numbers, or an object "
                                     f"keyed by feature name ({', '.join(self.features)})")

    def run_batch(self, key, items, sinks):
        import numpy as np

        outputs = self._call(np.asarray(items, dtype="float32")).numpy()
        results = []
        for row, output in zip(items, outputs):
            if np.all(np.isfinite(output)):
                results.append([float(x) for x in output])
            else:
                results.append(RequestError(
                    422, f"The model's output is not finite for the row {row}: its features are "
                         "far outside the range of the training data."))
        return results


class ImageClassifier(Servable):
    """`image_classifier`: `predict` from base64 PNG or JPEG images."""

    verbs = ("predict",)
    heavy_checks = True

    def load(self):
        import tensorflow as tf

        super().load()
        self.height, self.width, self.channels = self.model.input_shape[1:]
        classes = self.model.output_shape[-1]
        names = self.config.get("data", {}).get("class_names")
        if not names:
            confusion = read_json(os.path.join(self.run_dir, "confusion_matrix.json"), {})
            names = confusion.get("class_names")
        self.class_names = [str(n) for n in (names or range(classes))]
        model = self.model
        self._call = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, self.height, self.width, self.channels], tf.float32)])

    def warm_up(self):
        import numpy as np

        self.run_batch(None, [np.zeros((self.height, self.width, self.channels), "float32")], [None])

    def signature(self):
        return ({"images": tensor_info("serving_default_images:0", "DT_STRING", -1)},
                {"probabilities": tensor_info("StatefulPartitionedCall:0", "DT_FLOAT", -1, len(self.class_names))})

    def describe(self):
        return {"class_names": self.class_names, "image_size": [self.height, self.width, self.channels],
                "input": 'base64 PNG or JPEG images, each {"b64": "..."}'}

    def request(self, verb, body):
        items, field, rows = v.tensor_request(body, self.limits, named=("images",))
        items = v.batch_list(items, field, self.limits)
        images = [self._image(item, f"{field}[{i}]") for i, item in enumerate(items)]
        key = "predictions" if rows else "outputs"

        def finish(results):
            return {key: [r for r in results], "classes": [self.class_names[max(range(len(r)), key=r.__getitem__)]
                                                           for r in results]}

        return Call(None, images, finish)

    def _image(self, item, field):
        import numpy as np
        from PIL import Image

        if isinstance(item, dict) and list(item) == ["images"]:
            item, field = item["images"], f"{field}.images"
        if not (isinstance(item, dict) and list(item) == ["b64"] and isinstance(item["b64"], str)):
            raise v.invalid(field, item, 'expected an image as {"b64": "<base64 PNG or JPEG>"}')
        try:
            raw = base64.b64decode(item["b64"], validate=True)
        except ValueError:
            raise v.invalid(f"{field}.b64", item["b64"], "expected base64 text") from None
        try:
            with Image.open(io.BytesIO(raw)) as image:
                w, h = image.size
                if w * h > self.limits.max_image_pixels:
                    raise RequestError(
                        400, f"Image too large in `{field}`: {w}x{h} = {w * h:,} pixels; the cap is "
                             f"max_image_pixels={self.limits.max_image_pixels:,} (`zoo serve --max-image-pixels`).")
                if image.format not in ("PNG", "JPEG"):
                    raise v.invalid(field, f"a {image.format} image", "expected a PNG or JPEG image")
                image = image.convert("L" if self.channels == 1 else "RGB")
        except (OSError, SyntaxError, Image.DecompressionBombError) as e:
            raise RequestError(400, f"Invalid value for `{field}.b64`: not a readable PNG or JPEG image "
                                    f"({type(e).__name__}: {e}).") from None
        # As `zoo.data.images.read_image`: center-crop to the aspect ratio, then resize.
        target = self.width / self.height
        if w / h > target:
            new_w = max(1, round(h * target))
            box = ((w - new_w) // 2, 0, (w - new_w) // 2 + new_w, h)
        else:
            new_h = max(1, round(w / target))
            box = (0, (h - new_h) // 2, w, (h - new_h) // 2 + new_h)
        image = image.resize((self.width, self.height), Image.Resampling.LANCZOS, box=box)
        array = np.asarray(image, dtype="float32").reshape(self.height, self.width, self.channels)
        return array / 127.5 - 1.0

    def run_batch(self, key, items, sinks):
        import numpy as np

        probabilities = self._call(np.stack(items).astype("float32")).numpy()
        return [[float(p) for p in row] for row in probabilities]


class ImageGenerator(Servable):
    """`dcgan`: `generate` `count` images from `seed`."""

    verbs = ("generate",)
    FIELDS = ("count", "seed", "format", "columns")

    def load(self):
        import tensorflow as tf

        super().load()
        generator = self.model.generator
        self.latent_dim = self.model.latent_dim
        self.image_shape = list(generator.output_shape[1:])
        self._call = tf.function(lambda z: generator(z, training=False),
                                 input_signature=[tf.TensorSpec([None, self.latent_dim], tf.float32)])

    def warm_up(self):
        import numpy as np

        self.run_batch(None, [np.zeros(self.latent_dim, "float32")], [None])

    def signature(self):
        return ({"noise": tensor_info("serving_default_noise:0", "DT_FLOAT", -1, self.latent_dim)},
                {"images": tensor_info("StatefulPartitionedCall:0", "DT_FLOAT", -1, *self.image_shape)})

    def describe(self):
        return {"latent_dim": self.latent_dim, "image_size": self.image_shape,
                "generate": {"count": f"1..{self.limits.max_images}", "seed": "int", "format": ["images", "grid"]}}

    def request(self, verb, body):
        import numpy as np

        v.check_fields(body, self.FIELDS)
        count = v.integer(body.get("count", 16), "count", 1, self.limits.max_images,
                          cap=f"max_images={self.limits.max_images}")
        seed = seed_field(body)
        output = v.choice(body.get("format", "images"), "format", ("images", "grid"))
        columns = body.get("columns")
        if columns is not None:
            columns = v.integer(columns, "columns", 1, count)
        # The noise of `DCGAN.generate(count, seed)`, so `zoo generate` draws the same images.
        noise = np.random.default_rng(seed).standard_normal((count, self.latent_dim)).astype("float32")

        def finish(results):
            from zoo.data import images as images_lib

            images = np.clip(np.stack(results), 0.0, 1.0)
            answer = {"seed": seed, "count": count, "image_size": self.image_shape}
            if output == "grid":
                answer["grid"] = png_base64(images_lib.make_grid(images, columns=columns))
            else:
                answer["images"] = [png_base64(np.round(image * 255).astype("uint8")) for image in images]
            return answer

        return Call(None, list(noise), finish)

    def run_batch(self, key, items, sinks):
        import numpy as np

        images = self._call(np.stack(items)).numpy()
        return list((np.clip(images, -1.0, 1.0) + 1.0) / 2.0)


SERVABLES = {
    "mlp_regressor": TableRegressor,
    "image_classifier": ImageClassifier,
    "dcgan": ImageGenerator,
    "gpt2_textgen": textgen.TextGenerator,
}


def check_run(run_dir):
    """The `config.json` of a finished run that `zoo serve` can serve.

    Raises:
        FileNotFoundError: not a run directory, or not finished.
        ValueError: a model `zoo serve` has no adapter for.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"Run directory '{run_dir}' not found. `zoo serve` takes directories "
                                "made by `zoo train`.")
    config = read_json(os.path.join(run_dir, "config.json"))
    if config is None or "model_name" not in config:
        raise FileNotFoundError(f"'{run_dir}' is not a zoo run directory: it has no config.json. "
                                "`zoo serve` takes directories made by `zoo train`.")
    name = config["model_name"]
    registry.get_entry(name)  # Unknown models fail here with the closest name.
    if name not in SERVABLES:
        raise ValueError(f"`zoo serve` has no adapter for model '{name}' (run '{run_dir}'). "
                         f"Served models: {', '.join(sorted(SERVABLES))}.")
    if not os.path.exists(os.path.join(run_dir, "model.keras")):
        raise FileNotFoundError(f"Run '{run_dir}' has not finished: it has no model.keras yet. Rerun its "
                                "training command with the same --run-dir to finish it.")
    if name == "gpt2_textgen" and not os.path.isdir(os.path.join(run_dir, "preset")):
        raise FileNotFoundError(f"Run '{run_dir}' has no preset directory; it was saved by an older zoo. "
                                "Retrain it to get <run>/preset.")
    return config


def default_name(run_dir, config):
    """`<model>-<run directory name>`, made URL-safe."""
    base = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.") or "run"
    return f"{config['model_name']}-{base}"[:64]


def servables(run_dirs, names, limits):
    """One unloaded `Servable` per run directory, named and checked.

    Args:
        run_dirs: list of str. Finished run directories.
        names: list of str. `--name` values, one per run in order; fewer
            names than runs leave the rest to `default_name`.
        limits: `Limits`.

    Raises:
        ValueError: more names than runs, an invalid or duplicate name.
    """
    names = list(names or [])
    if len(names) > len(run_dirs):
        raise ValueError(f"Invalid value for `--name`: {len(names)} names for {len(run_dirs)} runs; "
                         "give at most one --name per run, in the runs' order.")
    out, seen = [], {}
    for i, run_dir in enumerate(run_dirs):
        config = check_run(run_dir)
        name = names[i] if i < len(names) else default_name(run_dir, config)
        if not NAME_PATTERN.match(name):
            raise ValueError(f"Invalid value for `--name`: {name!r}. A name is 1-64 letters, digits, "
                             "'_', '.' or '-', starting with a letter or digit (it is part of the URL).")
        if name in seen:
            raise ValueError(f"Two runs would be served as '{name}' ('{seen[name]}' and '{run_dir}'). "
                             "Give each its own --name.")
        seen[name] = run_dir
        out.append(SERVABLES[config["model_name"]](name, run_dir, config, limits))
    return out
