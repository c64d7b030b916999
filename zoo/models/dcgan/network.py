"""The DCGAN networks and the `DCGAN` Keras model that trains them.

Imported only when a DCGAN is built or loaded, so it imports Keras and
TensorFlow at the top. The class is registered with Keras as `zoo>DCGAN`,
the name saved in every `model.keras` of a dcgan run.
"""

import keras
import tensorflow as tf


def build_generator(config):
    """Noise to a tanh image: a projection, then strided transposed convolutions."""
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
    # float32 under a mixed policy: the images are the model's output.
    images = keras.layers.Conv2DTranspose(
        config.channels, 4, strides=2, padding="same", activation="tanh", name="to_image",
        dtype="float32",
    )(x)
    return keras.Model(noise, images, name="generator")


def build_discriminator(config):
    """An image to one logit: strided convolutions, then a dense layer."""
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
    # float32 under a mixed policy: the losses are taken of these logits.
    logits = keras.layers.Dense(1, name="logit", dtype="float32")(x)
    return keras.Model(images, logits, name="discriminator")


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

    Mixed precision: the discriminator's logit and the generator's image
    layers compute in float32, so the losses and outputs are float32 (batch
    normalization computes in float32 by itself). Under `mixed_float16`,
    `compile` wraps both optimizers in `keras.optimizers.LossScaleOptimizer`
    (Keras does that only for the optimizer it compiles with, and this
    `train_step` applies its own two), and `train_step` scales each loss
    with its optimizer's `scale_loss`, which leaves the loss as it is under
    any other policy; `apply` unscales the gradients and skips a step whose
    gradients overflowed.
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
        if self.dtype_policy.name == "mixed_float16":
            scaled = keras.optimizers.LossScaleOptimizer
            d_optimizer = d_optimizer if isinstance(d_optimizer, scaled) else scaled(d_optimizer)
            g_optimizer = g_optimizer if isinstance(g_optimizer, scaled) else scaled(g_optimizer)
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
            scaled = self.d_optimizer.scale_loss(d_loss)
        grads = tape.gradient(scaled, self.discriminator.trainable_variables)
        self.d_optimizer.apply(grads, self.discriminator.trainable_variables)

        with tf.GradientTape() as tape:
            fake_logits = self.discriminator(self.generator(noise, training=True), training=True)
            g_loss = mean_loss(tf.ones_like(fake_logits), fake_logits)
            scaled = self.g_optimizer.scale_loss(g_loss)
        grads = tape.gradient(scaled, self.generator.trainable_variables)
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


def build(config, seed=None):
    """A built `DCGAN` of `config` (see `zoo.models.dcgan.dcgan`)."""
    import numpy as np

    model = DCGAN(build_generator(config), build_discriminator(config), config.latent_dim, seed=seed)
    model(np.zeros((1, config.latent_dim), "float32"))  # Builds the model's variables.
    return model
