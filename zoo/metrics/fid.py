"""Fréchet distance in the feature space of a small, dataset-specific classifier.

This is the standard way to score GANs on MNIST-like data (TF-GAN's
`mnist_frechet_distance`): a small CNN classifier trained on the real
training images embeds real and generated images, each set is summarised
by the mean and covariance of its embeddings, and the Fréchet distance

    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))

compares the two Gaussians. The classifier also labels generated images,
which measures mode coverage: a collapsed generator makes one class.

Limits: the numbers are only comparable between runs that use the same
classifier (same dataset, same `CLASSIFIER_VERSION`) and the same sample
count (the estimate is biased upwards for small samples). They are not
comparable with Inception-based FID scores from papers.

The classifier is trained once per dataset, with fixed seeds, and cached in
`$ZOO_CACHE_DIR/fid_classifiers/` (default `~/.cache/zoo`).

```python
classifier = zoo.metrics.fid.get_classifier("digits", images, labels, num_classes=10)
fid = zoo.metrics.fid.frechet_distance(
    zoo.metrics.fid.embed(classifier, real), zoo.metrics.fid.embed(classifier, fake))
```
"""

import hashlib
import os

# Bump when the classifier's architecture or recipe changes: old cached
# classifiers (and FID values made with them) stop being reused.
CLASSIFIER_VERSION = 1
FEATURES_LAYER = "features"


def frechet_distance(features_a, features_b):
    """The Fréchet distance between Gaussians fitted to two feature sets.

    Args:
        features_a: array of shape `(n, d)`.
        features_b: array of shape `(m, d)`.

    Returns:
        A float >= 0; about 0 for two samples of one distribution.

    ```python
    frechet_distance(x, x)        # 0.0
    frechet_distance(x, x + 1.0)  # d, the squared mean shift
    ```
    """
    import numpy as np

    a = np.asarray(features_a, dtype="float64")
    b = np.asarray(features_b, dtype="float64")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            "Invalid feature arrays: expected two 2-D arrays with the same number of "
            f"columns and at least 2 rows each. Received shapes {a.shape} and {b.shape}."
        )
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((S_a S_b)^(1/2)) = sum of sqrt(eig(S_a^(1/2) S_b S_a^(1/2))), a
    # symmetric PSD matrix: no complex square roots, unlike `sqrtm(S_a @ S_b)`.
    eigenvalues, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    distance = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    return float(max(distance, 0.0))


def cache_dir():
    """Where classifiers are cached: `$ZOO_CACHE_DIR/fid_classifiers`."""
    from zoo import files

    return files.cache_dir("fid_classifiers")


def build_classifier(input_shape, num_classes, seed=0):
    """A small CNN whose 64-unit `features` layer is the FID embedding.

    Every initializer and the dropout carry their own seed, so building and
    training it leaves Keras' global random state alone (a run's weights do
    not depend on whether the classifier was cached).
    """
    import keras

    init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer=init(0))(inputs)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", kernel_initializer=init(1))(x)
    size = max(input_shape[0], input_shape[1])
    for i in range(2, 5):
        if size <= 8:
            break
        x = keras.layers.Conv2D(
            64, 3, strides=2, padding="same", activation="relu", kernel_initializer=init(i)
        )(x)
        size //= 2
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu", name=FEATURES_LAYER, kernel_initializer=init(5))(x)
    x = keras.layers.Dropout(0.3, seed=seed)(x)
    outputs = keras.layers.Dense(num_classes, name="logits", kernel_initializer=init(6))(x)
    return keras.Model(inputs, outputs, name="fid_classifier")


def train_classifier(images, labels, num_classes, seed=0, epochs=None):
    """Trains `build_classifier` on images in [-1, 1] and int labels.

    Returns:
        `(model, accuracy)`: the model and its accuracy on a held-back 10%.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    images, labels = np.asarray(images, "float32"), np.asarray(labels, "int64")
    order = np.random.default_rng(seed).permutation(len(images))
    cut = max(1, len(images) // 10)
    val, train = order[:cut], order[cut:]
    model = build_classifier(images.shape[1:], num_classes, seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    # About 10,000 examples seen in all, at least 3 passes: 7 passes and
    # about 98% held-back accuracy on the digits in seconds, 3 passes
    # (about 99%) in a few minutes for MNIST on two CPU cores.
    epochs = epochs or max(3, min(40, 10_000 // max(1, len(train))))
    # Shuffled by tf.data with its own seed, not `fit(shuffle=True)`, which
    # draws from the global random state.
    dataset = (
        tf.data.Dataset.from_tensor_slices((images[train], labels[train]))
        .shuffle(len(train), seed=seed + 1, reshuffle_each_iteration=True)
        .batch(64)
        .prefetch(tf.data.AUTOTUNE)
    )
    model.fit(dataset, epochs=epochs, shuffle=False, verbose=0)
    accuracy = float(np.mean(np.argmax(predict(model, images[val]), -1) == labels[val]))
    return model, accuracy


def get_classifier(dataset, images, labels, num_classes):
    """The cached classifier of a dataset, trained on first use.

    Args:
        dataset: str. A name for the cache file, such as "digits".
        images: array. Real training images in [-1, 1].
        labels: array. Their int labels.
        num_classes: int. The number of classes.

    Returns:
        A `keras.Model` that maps images to class logits; `embed` reads its
        `features` layer.
    """
    import keras
    import numpy as np

    from zoo.files import atomic_path, write_json

    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images, "float32").tobytes())
    digest.update(np.ascontiguousarray(labels, "int64").tobytes())
    key = f"{dataset.replace(os.sep, '_')}-v{CLASSIFIER_VERSION}-{digest.hexdigest()[:12]}"
    path = os.path.join(cache_dir(), f"{key}.keras")
    if os.path.exists(path):
        try:
            return keras.models.load_model(path, compile=False)
        except Exception:  # A corrupt cache entry: train again and replace it.
            pass
    print(f"Training the FID classifier for '{dataset}' (once; cached in {path}).", flush=True)
    model, accuracy = train_classifier(images, labels, num_classes)
    with atomic_path(path) as tmp:
        model.save(tmp)
    write_json(path[: -len(".keras")] + ".json", {"dataset": dataset, "accuracy": accuracy,
                                                  "num_train": len(images)})
    return model


def predict(model, inputs, batch_size=512):
    """Runs `model` eagerly in inference mode, in batches; a NumPy array.

    Eager calls, unlike `model.predict`, build no `tf.function` per model,
    which matters for the few hundred rows scored each epoch.
    """
    import numpy as np

    out = [np.asarray(model(inputs[i : i + batch_size], training=False))
           for i in range(0, len(inputs), batch_size)]
    return np.concatenate(out)


def embed(classifier, images):
    """The `features` layer activations of `images`, shape `(n, 64)`."""
    import keras

    extractor = keras.Model(classifier.input, classifier.get_layer(FEATURES_LAYER).output)
    return predict(extractor, images)


def class_shares(classifier, images, num_classes):
    """The share of `images` that `classifier` puts in each class."""
    import numpy as np

    predicted = np.argmax(predict(classifier, images), axis=-1)
    return np.bincount(predicted, minlength=num_classes) / len(predicted)
