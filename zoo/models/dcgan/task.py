"""The shared trainer's hooks for `dcgan`: image data, samples and FID."""

import dataclasses
import os
import typing

from zoo import config as config_lib
from zoo import inference
from zoo.data import images as images_lib
from zoo.data import splits, tfds
from zoo.metrics import fid as fid_lib
from zoo.task import Data, Evaluation, Task

TFDS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = ("digits",) + TFDS_DATASETS
# FID every this many epochs (and after the first): a few hundred samples
# through the small classifier, well under a second on the digits.
FID_EVERY = 5
# At most this many held-out images (and as many generated ones) per FID;
# the FID's bias depends on the count, so floor, ceiling and score share it.
MAX_FID_SAMPLES = 2000
MAX_REFERENCE_IMAGES = 10_000
COVERAGE_SAMPLES = 1000
FIXED_NOISE_SEED, FID_NOISE_SEED, COVERAGE_SEED, SPLIT_SEED = 1234, 2345, 3456, 0
GRID_IMAGES = 64



@dataclasses.dataclass
class ImageData(Data):
    """Training images, and the fixed real features every FID compares with.

    Attributes:
        class_names: list of str. Class names; empty for unlabelled images.
        classifier: `keras.Model` or None. The FID classifier; None when
            the data has no labels (no FID then).
        held_out: array or None. Held-out real images in [-1, 1].
        held_out_features: array or None. Their classifier features (the
            FID floor compares them with the reference).
        reference_features: array or None. Features of training images,
            which every FID compares with.
        initial_generator_weights: list or None. The untrained generator,
            kept by `prepare` for the FID ceiling.
        last_fid_epoch: int. The epoch of the last FID in TensorBoard; 0
            before the first.
    """

    class_names: list = dataclasses.field(default_factory=list)
    classifier: typing.Any = None
    held_out: typing.Any = None
    held_out_features: typing.Any = None
    reference_features: typing.Any = None
    initial_generator_weights: typing.Any = None
    last_fid_epoch: int = 0


class DCGANTask(Task):
    """Adversarial training with Adam(beta_1=0.5) for both networks.

    Data (`load_data`): `digits` (the default, scikit-learn's 1,797 8x8
    handwritten digits), the tfds datasets `mnist`, `fashion_mnist` and
    `cifar10` read from the tfds data dir (data option `tfds_data_dir`), or a
    folder of PNG/JPEG files. A named dataset sets the image shape
    (`image_height`, `image_width`, `channels`); a folder is resized to the
    config's shape. Every dataset keeps a fixed held-out split (the same for
    every seed) for the Fréchet distance, see `zoo.fid`.

    Pictures: `summaries` writes a grid of samples from a fixed noise batch
    to TensorBoard (each epoch, or as spaced by the logger's
    `summaries_max_share`), and the FID at the first of them and then at
    the first at least `FID_EVERY` epochs after the last FID;
    `export` saves the final grid as `samples.png`; `generate` serves
    `zoo generate RUN --out grid.png`.
    """

    default_data = "digits"
    data_help = (
        "digits (default), mnist, fashion_mnist, cifar10 (tfds; option tfds_data_dir), "
        "or a folder of PNG/JPEG images (resized to the config's size; class subfolders enable FID)"
    )
    data_options = {"tfds_data_dir": (str, "where tensorflow-datasets keeps downloaded data")}
    data_flags = ("tfds_data_dir",)
    # The per-class shares and the FID's floor, ceiling and sample count are
    # in run_summary; one HParams column each would be 14 more one-point charts.
    headline_metrics = ("fid", "fid_progress", "min_class_share")
    # 8 steps per execution: 1.18x faster epochs (docs/tuning.md).
    train_defaults = {"epochs": 100, "batch_size": 64, "learning_rate": 2e-4, "steps_per_execution": 8}

    def load_data(self, data, config, options, seed, preset=None):
        return load_images(data or self.default_data, config, options)

    def prepare(self, model, data):
        # The untrained generator is the FID ceiling; keep its weights.
        data.initial_generator_weights = model.generator.get_weights()

    def summaries(self, model, data, epoch):
        import tensorflow as tf

        samples = _sample(model.generator, fixed_noise(model.latent_dim))
        tf.summary.image("samples", images_lib.make_grid(samples)[None])
        if data.classifier is not None and (not data.last_fid_epoch or epoch - data.last_fid_epoch >= FID_EVERY):
            tf.summary.scalar("fid", _fid(model.generator, data))
            data.last_fid_epoch = epoch

    def evaluate(self, model, data, train_config):
        import numpy as np

        if data.classifier is None:
            return {}
        metrics = {
            "fid": _fid(model.generator, data),
            "fid_real_floor": _frechet_distance(data.held_out_features, data.reference_features),
            "fid_num_samples": len(data.held_out),
        }
        trained = model.generator.get_weights()
        initial = data.initial_generator_weights
        if initial is not None:
            model.generator.set_weights(initial)
            metrics["fid_untrained_ceiling"] = _fid(model.generator, data)
            model.generator.set_weights(trained)
            span = metrics["fid_untrained_ceiling"] - metrics["fid_real_floor"]
            metrics["fid_progress"] = (metrics["fid_untrained_ceiling"] - metrics["fid"]) / span if span > 0 else 0.0
        samples = _sample(model.generator, np.random.default_rng(COVERAGE_SEED).standard_normal(
            (COVERAGE_SAMPLES, model.latent_dim)).astype("float32"))
        shares = fid_lib.class_shares(data.classifier, samples * 2 - 1, len(data.class_names))
        for name, share in zip(data.class_names, shares):
            metrics[f"class_share_{name}"] = float(share)
        metrics["min_class_share"] = float(shares.min())
        return metrics

    def evaluate_data(self, run, data, options, own_data, batch_size=None):
        """FID with the run's floor and ceiling method, against an image
        folder (resized to the run's image size) or a tfds split
        (`mnist`, `mnist:train`; `test` by default) of the run's image size.

        The feature space is the run's FID classifier (trained on its own
        data), so the numbers compare with the run's. On other data, a
        seeded fifth of the images (at most `MAX_FID_SAMPLES`) is the
        held-out set of the floor, the rest the reference; the ceiling is
        the untrained generator, rebuilt from the run's seed. On the run's
        own data its own splits are used, which reproduces its metrics.
        """
        import keras
        import numpy as np

        from zoo.models.dcgan import network

        config, train_config = run.model_config, run.train_config
        run_data = run.config["train"].get("data") or self.default_data
        run_options = dict(run.config["train"].get("data_options") or [])
        scored = load_images(run_data, config, run_options)
        if scored.classifier is None:
            raise ValueError(
                f"Run '{run.dir}' has no FID: its training images '{run_data}' had no class "
                "sub-folders, which the FID classifier is trained on.")
        name, split = scored.name, "held-out"
        if not own_data:
            images, name = _evaluation_images(data, config, options)
            order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
            cut = min(MAX_FID_SAMPLES, max(2, len(images) // 5))
            held_out = images[order[:cut]]
            reference = images[order[cut:][:MAX_REFERENCE_IMAGES]]
            scored.held_out = held_out
            scored.held_out_features = fid_lib.embed(scored.classifier, held_out)
            scored.reference_features = fid_lib.embed(scored.classifier, reference)
            split = "all"
        # The generator training started from: the run's seed, as the trainer drew it.
        keras.utils.set_random_seed(train_config.seed)
        scored.initial_generator_weights = network.build(config).generator.get_weights()
        metrics = self.evaluate(run.model, scored, train_config)
        return Evaluation(metrics, name, split, len(scored.held_out))

    def export(self, model, data, run_dir):
        samples = _sample(model.generator, fixed_noise(model.latent_dim))
        images_lib.save_png(images_lib.make_grid(samples), os.path.join(run_dir, "samples.png"))

    def generate(self, run_dir, args):
        import keras

        self.register_keras_classes()

        num_images = args.num_images
        if not isinstance(num_images, int) or num_images < 1:
            raise ValueError(
                f"Invalid value for `--num-images`: must be a positive int. Received: {num_images!r}."
            )
        out = args.out or os.path.join(run_dir, "generated.png")
        if not out.lower().endswith(".png"):
            raise ValueError(f"Invalid value for `--out`: dcgan writes a PNG file. Received: {out!r}.")
        model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
        images_lib.save_png(images_lib.make_grid(model.generate(num_images, seed=args.seed)), out)
        print(f"Wrote {num_images} images to {out}")
        return 0

    def register_keras_classes(self):
        from zoo.models.dcgan import network  # noqa: F401  Registers `zoo>DCGAN`.

    def compile(self, model, config, train_config, steps_per_epoch=None):
        import keras

        learning_rate = train_config.learning_rate
        model.compile(
            d_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5),
            g_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5),
            **self.execution_options(train_config),
        )

    def serving_model(self, model):
        """Latent noise `(batch, latent_dim)` to images in [0, 1]: the
        generator, rescaled (its tanh is in [-1, 1]); no discriminator."""
        import keras

        generator = model.generator
        images = keras.layers.Rescaling(0.5, offset=0.5, name="to_unit_interval")(generator.output)
        return keras.Model(generator.input, images, name="dcgan_generator")

    def serving_examples(self, config, load_data, count):
        return fixed_noise(config.latent_dim, count), f"{count} rows of the sample grid's fixed noise"

    def example_input(self, config, batch_size=2):
        import numpy as np

        return np.random.default_rng(0).normal(size=(batch_size, config.latent_dim)).astype("float32")

    def expected_output_shape(self, config, batch_size=2):
        return (batch_size, config.image_height, config.image_width, config.channels)

    def count_params(self, config):
        n = config.num_upsamples
        h, w = config.image_height >> n, config.image_width >> n
        # Generator: Dense to h*w*f0, BN, then n transposed convs (4x4), BN
        # after each but the last, which outputs `channels` with tanh.
        widths = [config.generator_filters * 2 ** (n - 1 - i) for i in range(n)]
        f0 = widths[0] * 2 if n > 1 else widths[0]
        total = config.latent_dim * h * w * f0 + h * w * f0 + 4 * f0
        prev = f0
        for i, f in enumerate(widths[1:] + [config.channels]):
            total += 16 * prev * f + f
            if i < n - 1:
                total += 4 * f
            prev = f
        # Discriminator: n strided 4x4 convs, BN after all but the first.
        prev = config.channels
        for i in range(n):
            f = config.discriminator_filters * 2**i
            total += 16 * prev * f + f + (4 * f if i else 0)
            prev = f
        return total + h * w * prev + 1


def load_images(data, config, options=None):
    """Loads a DCGAN dataset as a `zoo.Data` of unbatched images in [-1, 1].

    Args:
        data: str. "digits", "mnist", "fashion_mnist", "cifar10" or a folder.
        config: `DCGANConfig`. A folder is resized to its image shape.
        options: dict. `tfds_data_dir` for the tfds datasets. Defaults to
            None.

    Returns:
        An `ImageData` with the FID classifier and the features of the
        held-out and reference images (when the data has labels).

    ```python
    data = load_images("digits", zoo.get_config("dcgan"))
    ```
    """
    import numpy as np

    options = dict(options or {})
    if not isinstance(data, (str, os.PathLike)):
        raise ValueError(
            f"dcgan takes a dataset name or an image folder. Received: data={data!r} "
            f"({type(data).__name__}). Accepted: {', '.join(DATASETS)} or a folder path."
        )
    data = os.fspath(data)
    if data == "digits":
        config_lib.check_options(options, (), data)
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Pixel values are 0..16.
        images = (digits.images.astype("float32") / 8.0 - 1.0)[..., None]
        train, held_out = _split(images, digits.target)
        class_names = [str(i) for i in range(10)]
    elif data in TFDS_DATASETS:
        config_lib.check_options(options, ("tfds_data_dir",), data)
        train, held_out, class_names = tfds.image_splits(
            data, options.get("tfds_data_dir"), fallback="--data digits")
    elif os.path.exists(data) or os.sep in data or data.startswith("."):
        config_lib.check_options(options, (), data)
        images, labels, class_names = images_lib.read_folder(
            data, config.image_height, config.image_width, config.channels
        )
        if labels is not None and len(images) >= 50 and np.bincount(labels).min() >= 2:
            train, held_out = _split(images, labels)
        else:
            train, held_out, class_names = (images, None), None, []
    else:
        raise ValueError(
            f"Unknown dataset '{data}'.{config_lib.did_you_mean(data, DATASETS)} "
            f"Accepted: {', '.join(DATASETS)}, or a path to a folder of PNG/JPEG images."
        )
    import tensorflow as tf

    train_images, train_labels = train
    _check_reachable(data, train_images.shape[1:3], config.num_upsamples)
    fid = {}
    if held_out is not None:
        fid = _fid_reference(data, train_images, train_labels, held_out[0], class_names)
    _, height, width, channels = train_images.shape
    return ImageData(
        train=tf.data.Dataset.from_tensor_slices(train_images),
        num_train=len(train_images),
        name=data,
        config_updates={"image_height": height, "image_width": width, "channels": channels},
        class_names=class_names,
        **fid,
    )


def _evaluation_images(data, config, options):
    """Real images to score a run against: a folder (resized to the run's
    size) or a tfds split `NAME[:SPLIT]` of exactly the run's image shape."""
    options = dict(options or {})
    if not isinstance(data, (str, os.PathLike)):
        raise ValueError(
            f"dcgan evaluates against an image folder or a dataset name. Received: data={data!r} "
            f"({type(data).__name__}). Accepted: {', '.join(DATASETS)} (tfds NAME:SPLIT too) or a folder.")
    data = os.fspath(data)
    name, _, which = data.partition(":")
    shape = (config.image_height, config.image_width, config.channels)
    if name == "digits" or name in TFDS_DATASETS:
        if which not in ("", "train", "test"):
            raise ValueError(f"Unknown split '{which}' of '{name}'. Accepted: train, test. Received: data={data!r}.")
        if name == "digits":
            config_lib.check_options(options, (), name)
            from sklearn.datasets import load_digits

            images = (load_digits().images.astype("float32") / 8.0 - 1.0)[..., None]
        else:
            config_lib.check_options(options, ("tfds_data_dir",), name)
            train, test, _ = tfds.image_splits(name, options.get("tfds_data_dir"))
            images = (train if which == "train" else test)[0]
        if images.shape[1:] != shape:
            raise ValueError(
                f"The images of '{data}' are {'x'.join(map(str, images.shape[1:]))} (height x width x "
                f"channels); this run's generator makes {'x'.join(map(str, shape))} images. Evaluate "
                "against images of the run's size (a folder is resized to it).")
        return images, data
    config_lib.check_options(options, (), data)
    images, _, _ = images_lib.read_folder(data, *shape)
    if len(images) < 10:
        raise ValueError(
            f"Image folder '{data}' holds {len(images)} images; the FID needs at least 10 "
            "(a held-out fifth and a reference).")
    return images, data


def _check_reachable(data, size, num_upsamples):
    """Raises if the data's image size is not a multiple of 2**num_upsamples."""
    height, width = size
    factor = 2**num_upsamples
    if height % factor or width % factor:
        fits = max(n for n in range(1, 8) if height % 2**n == 0 and width % 2**n == 0) \
            if height % 2 == 0 and width % 2 == 0 else 0
        hint = f"use num_upsamples={fits} or fewer" if fits else "resize the images to even sides"
        raise ValueError(
            f"Invalid value for `num_upsamples`: the images of '{data}' are {height}x{width}, "
            f"which the DCGAN cannot reach with {num_upsamples} upsamplings (sides must be "
            f"multiples of {factor}); {hint}. Received: num_upsamples={num_upsamples}."
        )


def _split(images, labels, held_out_share=0.2):
    """A stratified split, the same for every training seed."""
    return splits.stratified_split(images, labels, held_out_share, seed=SPLIT_SEED)


def _fid_reference(data, train_images, train_labels, held_out, class_names):
    """The classifier and the fixed real features every FID compares with."""
    import numpy as np

    rng = np.random.default_rng(SPLIT_SEED)
    held_out = held_out[rng.permutation(len(held_out))[:MAX_FID_SAMPLES]]
    reference = train_images[rng.permutation(len(train_images))[:MAX_REFERENCE_IMAGES]]
    name = data if data in DATASETS else "folder-" + os.path.basename(os.path.normpath(data))
    classifier = fid_lib.get_classifier(name, train_images, train_labels, len(class_names))
    return {
        "classifier": classifier,
        "held_out": held_out,
        "held_out_features": fid_lib.embed(classifier, held_out),
        "reference_features": fid_lib.embed(classifier, reference),
    }


def fixed_noise(latent_dim, num_images=GRID_IMAGES):
    """The noise batch of every epoch's sample grid, the same each epoch."""
    import numpy as np

    return np.random.default_rng(FIXED_NOISE_SEED).standard_normal((num_images, latent_dim)).astype("float32")


def _sample(generator, noise, batch_size=500):
    """Generated images in [0, 1] (inference mode), as a NumPy array."""
    import numpy as np

    # Every epoch's grid, each FID and the export share one traced generator.
    images = inference.predict(generator, noise, batch_size)
    return (np.clip(images, -1.0, 1.0) + 1.0) / 2.0


def _frechet_distance(features_a, features_b):
    """`fid.frechet_distance` on one BLAS thread.

    Its matrices are 64x64 (the classifier's features): more threads only
    wait for each other, and on a busy 2-core machine OpenBLAS' spinning
    threads made it 100x slower (0.12 s against 1 ms).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        return fid_lib.frechet_distance(features_a, features_b)


def _fid(generator, data):
    """FID of as many generated images as held-out ones, vs the reference."""
    import numpy as np

    latent_dim = generator.inputs[0].shape[-1]
    noise = np.random.default_rng(FID_NOISE_SEED).standard_normal(
        (len(data.held_out), latent_dim)).astype("float32")
    features = fid_lib.embed(data.classifier, _sample(generator, noise) * 2.0 - 1.0)
    return _frechet_distance(features, data.reference_features)
