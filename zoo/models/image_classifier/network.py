"""The `image_classifier` networks, and their parameter count without TensorFlow.

Both backbones are built from `keras.layers` for small images: a stride-1
3x3 stem (an 8x8 digit has no pixels to spare for the stride-2 stems of
ImageNet networks), then `stage_widths` stages of `blocks_per_stage` blocks,
each stage after the first starting with a stride-2 block.

- "resnet": He et al.'s basic block, two 3x3 convolutions with batch
  normalization and ReLU around an identity shortcut (a 1x1 projection when
  the shape changes), as in ResNet-18 and the CIFAR ResNets.
- "mobilenet": MobileNetV2's inverted residual (Sandler et al., 2018), a 1x1
  expansion by `expansion_ratio`, a depthwise 3x3 convolution and a linear
  1x1 projection, ReLU6, with a shortcut where the shape allows; then a 1x1
  convolution to twice the last width before pooling, as MobileNetV2 ends.

`keras.applications.MobileNetV2` does not fit here: it needs inputs of at
least 32x32 and halves the resolution five times.
"""

BACKBONES = ("resnet", "mobilenet")
# MobileNetV2 ends with a 1x1 convolution wider than its last stage.
MOBILENET_HEAD_FACTOR = 2
# Batch normalization holds gamma, beta, moving mean and moving variance.
BN = 4
# PyTorch's default rather than Keras' 0.99: a small dataset gives few steps
# (20 an epoch on the digits), and with 0.99 the moving statistics that
# inference uses still lag the weights after several epochs.
BN_MOMENTUM = 0.9


def build(config):
    """Builds the `keras.Model` of an `ImageClassifierConfig`."""
    import keras

    images = keras.Input((config.image_height, config.image_width, config.channels), name="images")
    x = images
    if config.random_shift > 0:
        x = keras.layers.RandomTranslation(
            config.random_shift / config.image_height, config.random_shift / config.image_width,
            fill_mode="constant", fill_value=-1.0, name="random_shift",
        )(x)
    x = (_resnet if config.backbone == "resnet" else _mobilenet)(x, config)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    # float32 probabilities under a mixed-precision policy too.
    probabilities = keras.layers.Dense(
        config.num_classes, activation="softmax", dtype="float32", name="probabilities"
    )(x)
    return keras.Model(images, probabilities, name=f"image_classifier_{config.backbone}")


def _conv_bn(x, filters, kernel_size, name, *, strides=1, activation="relu"):
    import keras

    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    if activation == "relu6":
        return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x)
    if activation:
        return keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _blocks(config):
    """`(stage, block, width, stride)` of every block."""
    for stage, width in enumerate(config.stage_widths):
        for block in range(config.blocks_per_stage):
            yield stage, block, width, 2 if stage and not block else 1


def _resnet(x, config):
    import keras

    x = _conv_bn(x, config.stage_widths[0], 3, "stem")
    for stage, block, width, stride in _blocks(config):
        name = f"stage{stage}_block{block}"
        shortcut = x
        if stride != 1 or x.shape[-1] != width:
            shortcut = _conv_bn(x, width, 1, f"{name}_shortcut", strides=stride, activation=None)
        x = _conv_bn(x, width, 3, f"{name}_1", strides=stride)
        x = _conv_bn(x, width, 3, f"{name}_2", activation=None)
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
        x = keras.layers.ReLU(name=f"{name}_out")(x)
    return x


def _mobilenet(x, config):
    import keras

    x = _conv_bn(x, config.stage_widths[0], 3, "stem", activation="relu6")
    for stage, block, width, stride in _blocks(config):
        name = f"stage{stage}_block{block}"
        inputs = x
        hidden = x.shape[-1] * config.expansion_ratio
        if config.expansion_ratio != 1:
            x = _conv_bn(x, hidden, 1, f"{name}_expand", activation="relu6")
        x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                         name=f"{name}_depthwise")(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_depthwise_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"{name}_depthwise_relu6")(x)
        x = _conv_bn(x, width, 1, f"{name}_project", activation=None)
        if stride == 1 and inputs.shape[-1] == width:
            x = keras.layers.Add(name=f"{name}_add")([inputs, x])
    return _conv_bn(x, config.stage_widths[-1] * MOBILENET_HEAD_FACTOR, 1, "head", activation="relu6")


def count_params(config):
    """The parameter count of `build(config)`, trainable or not, without TensorFlow."""
    width = config.stage_widths[0]
    total = 9 * config.channels * width + BN * width  # The stem.
    for _, _, out, stride in _blocks(config):
        if config.backbone == "resnet":
            total += 9 * width * out + BN * out + 9 * out * out + BN * out
            if stride != 1 or width != out:
                total += width * out + BN * out
        else:
            hidden = width * config.expansion_ratio
            if config.expansion_ratio != 1:
                total += width * hidden + BN * hidden
            total += 9 * hidden + BN * hidden + hidden * out + BN * out
        width = out
    if config.backbone == "mobilenet":
        head = width * MOBILENET_HEAD_FACTOR
        total += width * head + BN * head
        width = head
    return total + width * config.num_classes + config.num_classes
