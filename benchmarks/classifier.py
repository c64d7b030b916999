"""Training time of `image_classifier`: `zoo.train` against plain Keras.

The plain-Keras contender trains the same network (built by zoo's builder:
the ResNet's code is not what is compared), compiled as the recipe
compiles it (AdamW, warm-up then cosine decay, label smoothing, accuracy
and top-3 accuracy) but with Keras' defaults otherwise, on the same
training and validation splits of the digits, with a `tf.data` pipeline and
one `model.fit` with `validation_data`. zoo's contender is `zoo.train`
with its defaults (8 steps per execution, a confusion matrix of the
validation split each epoch, checkpoints, the test evaluation and export).
Times as in `benchmarks/training.py`.
"""

import os
import shutil
import tempfile

from benchmarks import common
from benchmarks import training

CLASSIFIER_SIZES = {
    "tiny": {"batch_size": 32, "epochs": 2, "repeats": 1,
             "model": {"stage_widths": (8,), "blocks_per_stage": 1}},
    "quick": {"batch_size": 64, "epochs": 10, "repeats": 3, "model": {}},
    "full": {"batch_size": 64, "epochs": 10, "repeats": 3, "model": {}},
}


def plain_keras_classifier(cfg, callbacks, seed=0):
    """The digits classifier trained with Keras alone; returns the model."""
    import keras
    import tensorflow as tf

    from zoo import registry
    from zoo.models.image_classifier import task as task_lib

    keras.utils.set_random_seed(seed)
    config = registry.get_config("image_classifier", **cfg["model"])
    data = task_lib.load_images("digits", config)
    model = registry.get_entry("image_classifier").build(config)
    steps = data.num_train // cfg["batch_size"]
    total = steps * cfg["epochs"]
    warmup = min(task_lib.WARMUP_EPOCHS * steps, total // 10)
    learning_rate = 3e-3
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else learning_rate, decay_steps=max(1, total - warmup),
        warmup_target=learning_rate if warmup else None, warmup_steps=warmup)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                 keras.metrics.TopKCategoricalAccuracy(3, name="top_3_accuracy")])
    train = (data.train.cache().shuffle(data.num_train, seed=seed)
             .batch(cfg["batch_size"], drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    val = data.validation.batch(cfg["batch_size"]).cache().prefetch(tf.data.AUTOTUNE)
    model.fit(train, validation_data=val, epochs=cfg["epochs"], verbose=0, callbacks=callbacks)
    return model


def classifier_train(size="full", only=None):
    """`image_classifier`: zoo.train vs plain Keras on the same splits."""
    import zoo

    cfg = CLASSIFIER_SIZES[size]
    tmp = tempfile.mkdtemp(prefix="zoo-bench-classifier-")
    counter = iter(range(10_000))
    with training.fit_calls() as calls:

        def zoo_run():
            timer = common.step_timer()
            run_dir = os.path.join(tmp, f"run{next(counter)}")
            result = training._timed_fit(calls, timer, lambda: zoo.train(
                "image_classifier", epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                run_dir=run_dir, verbose=0, callbacks=[timer], **cfg["model"]))
            shutil.rmtree(run_dir, ignore_errors=True)
            return result

        def keras_run():
            timer = common.step_timer()
            return training._timed_fit(calls, timer, lambda: plain_keras_classifier(cfg, [timer]))

        contenders = {"zoo": zoo_run, "keras": keras_run}
        if only:
            contenders = {only: contenders[only]}
        samples = common.alternate(contenders, cfg["repeats"])
    shutil.rmtree(tmp, ignore_errors=True)
    results = training._report(samples, cfg["batch_size"])
    out = {"unit": "examples/s", "config": cfg, "contenders": results}
    if only:
        return out
    ratios = training._keras_ratios(results)
    out.update(ratios=ratios, bars=[
        common.bar("image_classifier zoo/keras step time", ratios["zoo/keras step_s"], 1.03,
                   higher_is_better=False),
        training._epoch_bar("image_classifier", ratios)],
        notes=["Both validate on the same split each epoch; zoo also renders the validation "
               "confusion matrix (at the first, the last and the epochs --summaries-max-share allows) "
               "and checkpoints."])
    return out
