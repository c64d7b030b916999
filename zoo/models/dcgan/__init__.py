"""`dcgan`: a deep convolutional GAN (Radford et al., 2015) for small images.

Data: `digits` (the default, scikit-learn's bundled 8x8 digits), tfds
`mnist`, `fashion_mnist` and `cifar10`, or a folder of PNG/JPEG files. The
score is a Fréchet distance in the feature space of a small classifier
trained on the same data (`zoo.metrics.fid`), reported beside its floor
(held-out real images) and ceiling (the untrained generator). The parts:
`task.py` (data, samples, FID, the trainer's hooks) and `network.py` (the
networks and the `DCGAN` Keras model).

This module only declares the config and registers the builder; it imports
no TensorFlow.
"""

import dataclasses

from zoo import config as config_lib
from zoo import registry
from zoo.models.dcgan.task import DCGANTask

TINY = dict(latent_dim=8, generator_filters=8, discriminator_filters=8)


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
        config_lib.require_positive(self, "latent_dim", "generator_filters", "discriminator_filters")
        config_lib.require(
            0.0 <= self.leaky_relu_slope < 1.0, "leaky_relu_slope", self.leaky_relu_slope, "must be in [0, 1)"
        )


@registry.register("dcgan", config=DCGANConfig, task=DCGANTask(), tiny=TINY)
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
    from zoo.models.dcgan import network

    return network.build(config, seed=seed)
