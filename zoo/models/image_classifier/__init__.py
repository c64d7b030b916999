"""`image_classifier`: a small ResNet or MobileNet-style classifier for images.

Data: `digits` (the default, scikit-learn's bundled 8x8 digits), tfds
`mnist`, `fashion_mnist` and `cifar10` when prepared locally, a folder with
one sub-folder of PNG/JPEG images per class, or `(images, labels)` arrays.
The metrics are accuracy, top-3 accuracy and per-class accuracy on a held-out
test split, with a confusion matrix in TensorBoard. The parts: `network.py`
(the two backbones and their parameter count), `task.py` (data, compile,
evaluation and the trainer's other hooks) and `metrics.py` (NumPy metrics
and the confusion-matrix picture).

This module only declares the config and registers the builder; it imports
no TensorFlow.
"""

import dataclasses

from zoo import config as config_lib
from zoo import registry
from zoo.models.image_classifier.network import BACKBONES
from zoo.models.image_classifier.task import ImageClassifierTask

TINY = dict(stage_widths=(8,), blocks_per_stage=1, expansion_ratio=2)


@dataclasses.dataclass(frozen=True)
class ImageClassifierConfig:
    """Config of `image_classifier`.

    Attributes:
        image_height: int. Height of the input images; a named dataset sets
            it, a folder is resized to it. Defaults to 8, the scikit-learn
            digits.
        image_width: int. Width of the input images. Defaults to 8.
        channels: int. 1 for grayscale, 3 for colour. Defaults to 1.
        num_classes: int. Number of classes; the trainer sets it from the
            data. Defaults to 10.
        backbone: str. "resnet" (basic residual blocks of two 3x3
            convolutions) or "mobilenet" (MobileNetV2's inverted residuals
            with depthwise 3x3 convolutions). Defaults to "resnet".
        stage_widths: tuple[int, ...]. Channels of each stage; every stage
            after the first starts with a stride-2 block, which halves the
            resolution. Defaults to (32, 64): 8x8 digits end at 4x4. Try
            (32, 64, 128) for 32x32 CIFAR-10.
        blocks_per_stage: int. Residual blocks in each stage. Defaults to 2.
        expansion_ratio: int. The "mobilenet" backbone's expansion: each
            inverted residual widens its input this many times before the
            depthwise convolution. Unused by "resnet". Defaults to 4.
        dropout: float. Dropout rate before the classification layer, in
            [0, 1). Defaults to 0.1.
        random_shift: float. Augmentation: the largest random shift, in
            pixels, of each training image (a `keras.layers.RandomTranslation`
            layer in the model, filled with black); 0 leaves the layer out.
            Off in `predict`, `evaluate` and `model(x, training=False)`.
            Defaults to 1.0.
        label_smoothing: float. Label smoothing of the cross-entropy loss,
            in [0, 1). Defaults to 0.1.
        weight_decay: float. Decoupled weight decay of the AdamW optimizer.
            Defaults to 0.01.
    """

    image_height: int = 8
    image_width: int = 8
    channels: int = 1
    num_classes: int = 10
    backbone: str = "resnet"
    stage_widths: tuple[int, ...] = (32, 64)
    blocks_per_stage: int = 2
    expansion_ratio: int = 4
    dropout: float = 0.1
    random_shift: float = 1.0
    label_smoothing: float = 0.1
    weight_decay: float = 0.01

    def __post_init__(self):
        require = config_lib.require
        config_lib.require_positive(self, "image_height", "image_width")
        require(self.channels in (1, 3), "channels", self.channels, "must be 1 or 3")
        require(self.num_classes >= 2, "num_classes", self.num_classes, "must be at least 2")
        match = config_lib.closest(self.backbone, BACKBONES)
        require(
            self.backbone in BACKBONES, "backbone", self.backbone,
            f"must be one of {', '.join(BACKBONES)}" + (f" (did you mean '{match}'?)" if match else ""),
        )
        require(
            len(self.stage_widths) >= 1 and all(w >= 1 for w in self.stage_widths),
            "stage_widths", self.stage_widths, "must be one or more positive channel counts",
        )
        require(self.blocks_per_stage >= 1, "blocks_per_stage", self.blocks_per_stage, "must be at least 1")
        require(self.expansion_ratio >= 1, "expansion_ratio", self.expansion_ratio, "must be at least 1")
        require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        largest = min(self.image_height, self.image_width) / 2
        require(
            0.0 <= self.random_shift <= largest, "random_shift", self.random_shift,
            f"must be in [0, {largest:g}] pixels (half the smaller image side)",
        )
        require(
            0.0 <= self.label_smoothing < 1.0, "label_smoothing", self.label_smoothing, "must be in [0, 1)"
        )
        require(self.weight_decay >= 0.0, "weight_decay", self.weight_decay, "must be 0 or more")


@registry.register("image_classifier", config=ImageClassifierConfig, task=ImageClassifierTask(), tiny=TINY)
def image_classifier(config):
    """Image classification with a small ResNet or a MobileNet-style network.

    The network takes images in [-1, 1] of the config's shape, shifts them
    at random while training (`random_shift`), runs the backbone
    (`backbone`: "resnet" or "mobilenet", built from `keras.layers`), then
    global average pooling, dropout and a softmax `Dense` layer. It returns
    class probabilities. Only built-in Keras layers, so the saved
    `model.keras` loads with plain `keras.models.load_model`, safe mode on.

    As with any Keras augmentation layer inside a model, the shift is off in
    `predict`, `evaluate` and `export`, but a bare `model(images)` call
    (without `training=False`) applies it.

    Args:
        config: `ImageClassifierConfig`. The architecture.

    ```python
    model = zoo.get("image_classifier", backbone="mobilenet")
    probabilities = model.predict(images)           # images: (n, 8, 8, 1) in [-1, 1]
    probabilities = model(images, training=False)   # the same, eagerly
    ```
    """
    from zoo.models.image_classifier import network

    return network.build(config)
