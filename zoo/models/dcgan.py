"""`dcgan`: a deep convolutional GAN (Radford et al., 2015) for small images.

Data: `digits` (the default, scikit-learn's bundled 8x8 digits), tfds
`mnist`, `fashion_mnist` and `cifar10`, or a folder of PNG/JPEG files. The
score is a Fréchet distance in the feature space of a small classifier
trained on the same data (`zoo.fid`), reported beside its floor (held-out
real images) and ceiling (the untrained generator).
"""

import dataclasses
import os

from zoo import config as config_lib
from zoo import registry
from zoo.task import Data, Task

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


@dataclasses.dataclass(frozen=True)
class DCGANConfig:
    """Config of `dcgan`.

    Attributes:
        image_height: int. Height of the generated images; a multiple of
            2**num_upsamples. Defaults to 8, the scikit-learn digits.
        image_width: int. Width of the generated images; a multiple of
            2**num_upsamples. Defaults to 8.
        channels: int. 1 for grayscale, 3 for colour. Defaults to 1.
        latent_dim: int. Size of the generator's noise vector. Defaults to 64.
        num_upsamples: int. Strided transposed convolutions in the generator
            (and strided convolutions in the discriminator); each doubles
            the image size. Defaults to 2.
        generator_filters: int. Filters of the generator's last upsampling
            block; earlier blocks double it. Defaults to 32 (the digits
            need no more; try 64 for MNIST or CIFAR-10).
        discriminator_filters: int. Filters of the discriminator's first
            block; later blocks double it. Defaults to 32.
        leaky_relu_slope: float. Negative slope of the LeakyReLU layers.
            Defaults to 0.2.
    """

    image_height: int = 8
    image_width: int = 8
    channels: int = 1
    latent_dim: int = 64
    num_upsamples: int = 2
    generator_filters: int = 32
    discriminator_filters: int = 32
    leaky_relu_slope: float = 0.2

    def __post_init__(self):
        config_lib.require(self.num_upsamples >= 1, "num_upsamples", self.num_upsamples, "must be at least 1")
        factor = 2**self.num_upsamples
        for field in ("image_height", "image_width"):
            size = getattr(self, field)
            config_lib.require(
                size >= factor and size % factor == 0, field, size,
                f"the DCGAN reaches only multiples of {factor} (2**num_upsamples, "
                f"num_upsamples={self.num_upsamples}), such as {factor * max(1, size // factor)} "
                f"or {factor * (size // factor + 1)}; resize the data or change num_upsamples",
            )
        config_lib.require(self.channels in (1, 3), "channels", self.channels, "must be 1 or 3")
        for field in ("latent_dim", "generator_filters", "discriminator_filters"):
            config_lib.require(getattr(self, field) >= 1, field, getattr(self, field), "must be at least 1")
        config_lib.require(
            0.0 <= self.leaky_relu_slope < 1.0, "leaky_relu_slope", self.leaky_relu_slope, "must be in [0, 1)"
        )


class DCGANTask(Task):
    """Adversarial training with Adam(beta_1=0.5) for both networks.

    Data (`load_data`): `digits` (the default, scikit-learn's 1,797 8x8
    handwritten digits), the tfds datasets `mnist`, `fashion_mnist` and
    `cifar10` read from the tfds data dir (data option `tfds_data_dir`), or a
    folder of PNG/JPEG files. A named dataset sets the image shape
    (`image_height`, `image_width`, `channels`); a folder is resized to the
    config's shape. Every dataset keeps a fixed held-out split (the same for
    every seed) for the Fréchet distance, see `zoo.fid`.

    Pictures: each epoch `summaries` writes a grid of samples from a fixed
    noise batch to TensorBoard, and every `FID_EVERY` epochs the FID;
    `export` saves the final grid as `samples.png`; `generate` serves
    `zoo generate RUN --out grid.png`.
    """

    default_data = "digits"
    data_help = (
        "digits (default), mnist, fashion_mnist, cifar10 (tfds; option tfds_data_dir), "
        "or a folder of PNG/JPEG images (resized to the config's size; class subfolders enable FID)"
    )
    # 8 steps per execution: 1.18x faster epochs (docs/performance.md).
    train_defaults = {"epochs": 100, "batch_size": 64, "learning_rate": 2e-4, "steps_per_execution": 8}

    def load_data(self, data, config, options, seed):
        return load_images(data or self.default_data, config, options)

    def prepare(self, model, data):
        # The untrained generator is the FID ceiling; keep its weights.
        data.extras["initial_generator_weights"] = model.generator.get_weights()

    def summaries(self, model, data, epoch):
        import tensorflow as tf

        from zoo import images as images_lib

        samples = _sample(model.generator, fixed_noise(model.latent_dim))
        tf.summary.image("samples", images_lib.make_grid(samples)[None])
        if data.extras.get("classifier") is not None and (epoch == 1 or epoch % FID_EVERY == 0):
            tf.summary.scalar("fid", _fid(model.generator, data))

    def evaluate(self, model, data, train_config):
        import numpy as np

        extras = data.extras
        if extras.get("classifier") is None:
            return {}
        from zoo import fid as fid_lib

        metrics = {
            "fid": _fid(model.generator, data),
            "fid_real_floor": fid_lib.frechet_distance(extras["held_out_features"], extras["reference_features"]),
            "fid_num_samples": len(extras["held_out"]),
        }
        trained = model.generator.get_weights()
        initial = extras.get("initial_generator_weights")
        if initial is not None:
            model.generator.set_weights(initial)
            metrics["fid_untrained_ceiling"] = _fid(model.generator, data)
            model.generator.set_weights(trained)
            span = metrics["fid_untrained_ceiling"] - metrics["fid_real_floor"]
            metrics["fid_progress"] = (metrics["fid_untrained_ceiling"] - metrics["fid"]) / span if span > 0 else 0.0
        samples = _sample(model.generator, np.random.default_rng(COVERAGE_SEED).standard_normal(
            (COVERAGE_SAMPLES, model.latent_dim)).astype("float32"))
        shares = fid_lib.class_shares(extras["classifier"], samples * 2 - 1, len(extras["class_names"]))
        for name, share in zip(extras["class_names"], shares):
            metrics[f"class_share_{name}"] = float(share)
        metrics["min_class_share"] = float(shares.min())
        return metrics

    def export(self, model, data, run_dir):
        import os

        from zoo import images as images_lib

        samples = _sample(model.generator, fixed_noise(model.latent_dim))
        images_lib.save_png(images_lib.make_grid(samples), os.path.join(run_dir, "samples.png"))

    def generate(self, run_dir, args):
        import os

        from zoo import images as images_lib
        from zoo import load_model  # Registers the DCGAN class.

        num_images = args.num_images
        if not isinstance(num_images, int) or num_images < 1:
            raise ValueError(
                f"Invalid value for `--num-images`: must be a positive int. Received: {num_images!r}."
            )
        out = args.out or os.path.join(run_dir, "generated.png")
        if not out.lower().endswith(".png"):
            raise ValueError(f"Invalid value for `--out`: dcgan writes a PNG file. Received: {out!r}.")
        model = load_model(os.path.join(run_dir, "model.keras"))
        images_lib.save_png(images_lib.make_grid(model.generate(num_images, seed=args.seed)), out)
        print(f"Wrote {num_images} images to {out}")
        return 0

    def compile(self, model, config, train_config=None, steps_per_epoch=None):
        import keras

        learning_rate = train_config.learning_rate if train_config else self.train_defaults["learning_rate"]
        extra = {}
        if train_config is not None:
            extra = {"steps_per_execution": train_config.steps_per_execution,
                     "jit_compile": train_config.jit_compile}
        model.compile(
            d_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5),
            g_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5),
            **extra,
        )

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
        A `zoo.Data` whose `extras` hold the FID classifier and features of
        the held-out and reference images (when the data has labels).

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
        train, held_out, class_names = _load_tfds(data, options.get("tfds_data_dir"))
    elif os.path.exists(data) or os.sep in data or data.startswith("."):
        config_lib.check_options(options, (), data)
        from zoo import images as images_lib

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
    extras = {"class_names": class_names, "classifier": None}
    if held_out is not None:
        extras.update(_fid_extras(data, train_images, train_labels, held_out[0], class_names))
    _, height, width, channels = train_images.shape
    return Data(
        train=tf.data.Dataset.from_tensor_slices(train_images),
        num_train=len(train_images),
        name=data,
        config_updates={"image_height": height, "image_width": width, "channels": channels},
        extras=extras,
    )


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
    from sklearn.model_selection import train_test_split

    x_train, x_held, y_train, y_held = train_test_split(
        images, labels, test_size=held_out_share, random_state=SPLIT_SEED, stratify=labels
    )
    return (x_train, y_train), (x_held, y_held)


def _load_tfds(name, data_dir):
    import tensorflow_datasets as tfds

    data_dir = os.fspath(data_dir or os.environ.get("TFDS_DATA_DIR")
                         or os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"tfds dataset '{name}' has not been downloaded to the tfds data dir "
            f"'{data_dir}' (looked for {builder.data_path}). Download it once where there "
            f"is network access: python -c \"import tensorflow_datasets as tfds; "
            f"tfds.load('{name}', data_dir='{data_dir}')\", then pass that folder with "
            f"--tfds-data-dir (data_options={{'tfds_data_dir': ...}}), or train on "
            f"the embedded default: --data digits."
        )

    def split(which):
        images, labels = tfds.as_numpy(builder.as_dataset(split=which, batch_size=-1, as_supervised=True))
        return images.astype("float32") / 127.5 - 1.0, labels.astype("int64")

    names = list(builder.info.features["label"].names)
    return split("train"), split("test"), names


def _fid_extras(data, train_images, train_labels, held_out, class_names):
    """The classifier and the fixed real features every FID compares with."""
    import numpy as np

    from zoo import fid as fid_lib

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

    out = [np.asarray(generator(noise[i : i + batch_size], training=False))
           for i in range(0, len(noise), batch_size)]
    return (np.clip(np.concatenate(out), -1.0, 1.0) + 1.0) / 2.0


def _fid(generator, data):
    """FID of as many generated images as held-out ones, vs the reference."""
    import numpy as np

    from zoo import fid as fid_lib

    extras = data.extras
    latent_dim = generator.inputs[0].shape[-1]
    noise = np.random.default_rng(FID_NOISE_SEED).standard_normal(
        (len(extras["held_out"]), latent_dim)).astype("float32")
    features = fid_lib.embed(extras["classifier"], _sample(generator, noise) * 2.0 - 1.0)
    return fid_lib.frechet_distance(features, extras["reference_features"])


def _build_generator(config):
    import keras

    n = config.num_upsamples
    h, w = config.image_height >> n, config.image_width >> n
    widths = [config.generator_filters * 2 ** (n - 1 - i) for i in range(n)]
    f0 = widths[0] * 2 if n > 1 else widths[0]
    noise = keras.Input((config.latent_dim,), name="noise")
    x = keras.layers.Dense(h * w * f0, name="project")(noise)
    x = keras.layers.Reshape((h, w, f0))(x)
    x = keras.layers.BatchNormalization(synchronized=True, name="project_bn")(x)
    x = keras.layers.LeakyReLU(config.leaky_relu_slope)(x)
    for i, f in enumerate(widths[1:]):
        x = keras.layers.Conv2DTranspose(f, 4, strides=2, padding="same", name=f"up_{i}")(x)
        x = keras.layers.BatchNormalization(synchronized=True, name=f"up_{i}_bn")(x)
        x = keras.layers.LeakyReLU(config.leaky_relu_slope)(x)
    images = keras.layers.Conv2DTranspose(
        config.channels, 4, strides=2, padding="same", activation="tanh", name="to_image"
    )(x)
    return keras.Model(noise, images, name="generator")


def _build_discriminator(config):
    import keras

    images = keras.Input((config.image_height, config.image_width, config.channels), name="images")
    x = images
    for i in range(config.num_upsamples):
        x = keras.layers.Conv2D(
            config.discriminator_filters * 2**i, 4, strides=2, padding="same", name=f"down_{i}"
        )(x)
        if i:
            x = keras.layers.BatchNormalization(synchronized=True, name=f"down_{i}_bn")(x)
        x = keras.layers.LeakyReLU(config.leaky_relu_slope)(x)
    x = keras.layers.Flatten()(x)
    logits = keras.layers.Dense(1, name="logit")(x)
    return keras.Model(images, logits, name="discriminator")


def _dcgan_class():
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="zoo")
    class DCGAN(keras.Model):
        """A generator and a discriminator trained against each other.

        Calling the model on noise of shape `(batch, latent_dim)` runs the
        generator and returns images in [-1, 1]. `train_step` follows the
        Keras 3 guide "Customizing what happens in fit() with TensorFlow":
        one discriminator update on real and generated images, then one
        generator update, with per-example binary cross-entropy averaged
        over the global batch (so MirroredStrategy gives the same update as
        one device) and loss trackers returned by `metrics`. Noise comes
        from a `keras.random.SeedGenerator`; each replica draws the whole
        global batch's noise and keeps its own slice, so the noise does not
        depend on the number of replicas.
        """

        def __init__(self, generator, discriminator, latent_dim, seed=None, **kwargs):
            super().__init__(**kwargs)
            self.generator = generator
            self.discriminator = discriminator
            self.latent_dim = latent_dim
            self.seed = seed
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
            self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

        def compile(self, d_optimizer, g_optimizer, **kwargs):
            super().compile(**kwargs)
            self.d_optimizer = d_optimizer
            self.g_optimizer = g_optimizer
            self.d_optimizer.build(self.discriminator.trainable_variables)
            self.g_optimizer.build(self.generator.trainable_variables)
            # `fit` reads `self.optimizer.iterations` as the global step.
            self.optimizer = self.g_optimizer

        @property
        def metrics(self):
            return [self.d_loss_tracker, self.g_loss_tracker]

        def call(self, noise, training=False):
            return self.generator(noise, training=training)

        def _noise(self, local_batch):
            context = tf.distribute.get_replica_context()
            replicas = context.num_replicas_in_sync if context else 1
            replica = context.replica_id_in_sync_group if context else 0
            noise = keras.random.normal(
                (local_batch * replicas, self.latent_dim), seed=self.seed_generator
            )
            return noise[replica * local_batch : (replica + 1) * local_batch], replicas

        def train_step(self, data):
            real = data[0] if isinstance(data, tuple) else data
            local_batch = tf.shape(real)[0]
            noise, replicas = self._noise(local_batch)
            global_batch = local_batch * replicas

            def mean_loss(labels, logits):
                per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels, logits)
                per_example = tf.reduce_mean(per_example, axis=-1)
                return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)

            fake = self.generator(noise, training=True)
            with tf.GradientTape() as tape:
                real_logits = self.discriminator(real, training=True)
                fake_logits = self.discriminator(fake, training=True)
                d_loss = mean_loss(tf.ones_like(real_logits), real_logits) + mean_loss(
                    tf.zeros_like(fake_logits), fake_logits
                )
            grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
            self.d_optimizer.apply(grads, self.discriminator.trainable_variables)

            with tf.GradientTape() as tape:
                fake_logits = self.discriminator(self.generator(noise, training=True), training=True)
                g_loss = mean_loss(tf.ones_like(fake_logits), fake_logits)
            grads = tape.gradient(g_loss, self.generator.trainable_variables)
            self.g_optimizer.apply(grads, self.generator.trainable_variables)

            # Trackers average over replicas, so give each the replica mean.
            scale = tf.cast(replicas, d_loss.dtype)
            self.d_loss_tracker.update_state(d_loss * scale)
            self.g_loss_tracker.update_state(g_loss * scale)
            return {"loss": self.d_loss_tracker.result() + self.g_loss_tracker.result(),
                    "d_loss": self.d_loss_tracker.result(),
                    "g_loss": self.g_loss_tracker.result()}

        def test_step(self, data):
            real = data[0] if isinstance(data, tuple) else data
            local_batch = tf.shape(real)[0]
            noise = keras.random.normal((local_batch, self.latent_dim), seed=self.seed_generator)
            real_logits = self.discriminator(real, training=False)
            fake_logits = self.discriminator(self.generator(noise, training=False), training=False)
            bce = keras.losses.binary_crossentropy
            d_loss = tf.reduce_mean(bce(tf.ones_like(real_logits), real_logits, from_logits=True)) + \
                tf.reduce_mean(bce(tf.zeros_like(fake_logits), fake_logits, from_logits=True))
            g_loss = tf.reduce_mean(bce(tf.ones_like(fake_logits), fake_logits, from_logits=True))
            self.d_loss_tracker.update_state(d_loss)
            self.g_loss_tracker.update_state(g_loss)
            return {"loss": self.d_loss_tracker.result() + self.g_loss_tracker.result(),
                    "d_loss": self.d_loss_tracker.result(),
                    "g_loss": self.g_loss_tracker.result()}

        def generate(self, num_images, seed=None):
            """Returns `num_images` generated images as floats in [0, 1].

            Args:
                num_images: int. How many images.
                seed: int. Makes the images reproducible. Defaults to None.

            Returns:
                A NumPy array of shape `(num_images, height, width, channels)`.
            """
            import numpy as np

            if not isinstance(num_images, int) or num_images < 1:
                raise ValueError(
                    f"Invalid value for `num_images`: must be a positive int. "
                    f"Received: num_images={num_images!r}."
                )
            rng = np.random.default_rng(seed)
            noise = rng.standard_normal((num_images, self.latent_dim)).astype("float32")
            images = self.generator.predict(noise, batch_size=256, verbose=0)
            return (np.clip(images, -1.0, 1.0) + 1.0) / 2.0

        def get_config(self):
            return {
                **super().get_config(),
                "generator": keras.saving.serialize_keras_object(self.generator),
                "discriminator": keras.saving.serialize_keras_object(self.discriminator),
                "latent_dim": self.latent_dim,
                "seed": self.seed,
            }

        def get_compile_config(self):
            return {
                "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
                "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
            }

        def compile_from_config(self, config):
            self.compile(
                d_optimizer=keras.saving.deserialize_keras_object(config["d_optimizer"]),
                g_optimizer=keras.saving.deserialize_keras_object(config["g_optimizer"]),
            )

        @classmethod
        def from_config(cls, config):
            config = dict(config)
            config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
            config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
            return cls(**config)

    DCGAN.__qualname__ = "DCGAN"
    return DCGAN


_CLASS = []


def dcgan_class():
    """Returns the `DCGAN` Keras class, defining and registering it once.

    It is defined on first use so that importing zoo needs no TensorFlow.
    """
    if not _CLASS:
        _CLASS.append(_dcgan_class())
    return _CLASS[0]


def DCGAN(*args, **kwargs):
    """Creates a `DCGAN` model; see `dcgan_class()`."""
    return dcgan_class()(*args, **kwargs)


@registry.register("dcgan", config=DCGANConfig, task=DCGANTask())
def dcgan(config, seed=None):
    """A DCGAN that generates small grayscale or colour images.

    The generator projects noise, then upsamples with strided transposed
    convolutions, batch normalization and LeakyReLU to a tanh image; the
    discriminator mirrors it with strided convolutions. Image height, width
    and channels come from the config, so 8x8 digits, 28x28 MNIST and 32x32
    colour images all fit.

    Args:
        config: `DCGANConfig`. The architecture.
        seed: int. Seeds the training noise. Defaults to None.

    ```python
    gan = zoo.get("dcgan")
    images = gan.generate(16, seed=0)  # (16, 8, 8, 1), in [0, 1]
    ```
    """
    model = DCGAN(_build_generator(config), _build_discriminator(config), config.latent_dim, seed=seed)
    model(_zeros(config))  # Builds the model's variables.
    return model


def _zeros(config):
    import numpy as np

    return np.zeros((1, config.latent_dim), "float32")
