"""Training throughput: `zoo.train` against plain Keras and PyTorch.

For each model, the plain-Keras contender is the same architecture, data,
batch, optimizer, loss and metrics written the way the Keras guides write
it, without zoo: a `tf.data` pipeline and one `model.fit`. The zoo
contender is `zoo.train` with its defaults (NaN guard, TensorBoard logger,
checkpoint each epoch, the task's callbacks and end-of-run evaluation and
export). Both build a fresh model every repeat, as a user's script does.

Three times are compared, all medians over the alternating repeats:
- `step_s`: one training step in epochs after the first (timestamps of
  `on_train_batch_end`, divided by the steps each execution ran: zoo's
  recipes run 8 steps per execution), the throughput the issue's bars are
  about;
- `epoch_s`: between consecutive epoch ends, so validation and every
  callback's per-epoch work is in;
- `fit_s`: the whole `fit` call, from its entry to its return, recorded by
  wrapping Keras' `fit` for the duration of the benchmark, so the time
  after the last step (iterator teardown, `on_train_end`) is visible as
  `end_tail_s` (last epoch end to `fit` returning).

The issue's epoch bar is on `epoch_mean_s`, the mean of the epochs after
the first: zoo's periodic work (a checkpoint when a second has passed, the
DCGAN's FID every fifth epoch) is in it, spread over the epochs, where the
median `epoch_s` leaves it out. The MLP and the DCGAN run 10 epochs, so
that the last epoch's checkpoint, which zoo always writes, weighs as little
in that mean as a per-run cost should; `fit_s` holds every cost of the run.
"""

import contextlib
import json
import os
import shutil
import tempfile
import time

from benchmarks import common


# ---------------------------------------------------------------------------
# Helpers.


@contextlib.contextmanager
def fit_calls():
    """Records `(start, end)` of every Keras `fit` call made in the block."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    calls = []
    original = tf_trainer.TensorFlowTrainer.fit

    def fit(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            calls.append((start, time.perf_counter()))

    tf_trainer.TensorFlowTrainer.fit = fit
    try:
        yield calls
    finally:
        tf_trainer.TensorFlowTrainer.fit = original


def _timed_fit(calls, timer, run):
    """Runs `run()` (which calls `fit` once) and summarizes its timings."""
    before = len(calls)
    start = time.perf_counter()
    run()
    total = time.perf_counter() - start
    result = timer.summary()
    result["total_s"] = total
    if len(calls) > before:
        fit_start, fit_end = calls[before]
        result["fit_s"] = fit_end - fit_start
        result["fit_setup_s"] = timer.train_begin - fit_start
        result["end_tail_s"] = fit_end - timer.epoch_ends[-1] if timer.epoch_ends else None
        result["after_train_end_s"] = fit_end - timer.train_end
    result["peak_rss_mb"] = common.peak_rss_mb()
    return result


def _report(samples, batch_size, tokens_per_example=None):
    """Medians of each contender's timings and its throughput."""
    out = {}
    keys = ("step_s", "epoch_s", "epoch_mean_s", "fit_s", "total_s", "first_epoch_s", "end_tail_s",
            "after_train_end_s", "fit_setup_s", "wait_fraction")
    for name, runs in samples.items():
        entry = {}
        for key in keys:
            value = common.median([r.get(key) for r in runs])
            if value is not None:
                entry[key] = round(value, 5)
        entry["samples"] = {k: [round(r[k], 4) for r in runs if r.get(k) is not None]
                            for k in ("step_s", "epoch_s", "epoch_mean_s", "fit_s", "end_tail_s")}
        if entry.get("step_s"):
            entry["examples_per_s"] = round(batch_size / entry["step_s"], 2)
            if tokens_per_example:
                entry["tokens_per_s"] = round(batch_size * tokens_per_example / entry["step_s"], 2)
        rss = [r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb")]
        if rss:
            entry["peak_rss_mb"] = max(rss)
        out[name] = entry
    return out


def _epoch_bar(model, ratios):
    """The issue's bar: zoo's (mean) epoch time at most 1.05x plain Keras'."""
    return common.bar(f"{model} zoo/keras epoch time (mean)", ratios["zoo/keras epoch_mean_s"], 1.05,
                      higher_is_better=False)


def _keras_ratios(results, zoo="zoo", keras_name="keras"):
    ratios = {}
    for key in ("step_s", "epoch_s", "epoch_mean_s", "fit_s", "total_s"):
        ratios[f"zoo/keras {key}"] = common.ratio(results[zoo].get(key), results[keras_name].get(key))
    return ratios


# ---------------------------------------------------------------------------
# mlp_regressor.

MLP_SIZES = {
    "tiny": {"num_train": 256, "batch_size": 64, "epochs": 2, "repeats": 1, "hidden_units": (16, 16)},
    "quick": {"num_train": 10_000, "batch_size": 64, "epochs": 10, "repeats": 3, "hidden_units": (128, 128)},
    "full": {"num_train": 10_000, "batch_size": 64, "epochs": 10, "repeats": 5, "hidden_units": (128, 128)},
}


def friedman1(num_train, seed=0):
    """The arrays `zoo.train("mlp_regressor")` trains on, made without zoo."""
    from sklearn.datasets import make_friedman1

    n_val = max(20, num_train // 5)
    x, y = make_friedman1(n_samples=num_train + 2 * n_val, n_features=10, noise=1.0, random_state=seed)
    x, y = x.astype("float32"), y.astype("float32").reshape(-1, 1)
    cut = [num_train, num_train + n_val]
    return {"train": (x[:cut[0]], y[:cut[0]]), "validation": (x[cut[0]:cut[1]], y[cut[0]:cut[1]]),
            "test": (x[cut[1]:], y[cut[1]:])}


def plain_keras_mlp(arrays, hidden_units, batch_size, epochs, callbacks, seed=0, **compile_kwargs):
    """The MLP recipe written with Keras alone; returns the fitted model."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    x, y = arrays["train"]
    inputs = keras.Input((x.shape[1],))
    norm = keras.layers.Normalization()
    h = norm(inputs)
    for units in hidden_units:
        h = keras.layers.Dense(units, activation="relu")(h)
    denorm = keras.layers.Normalization(invert=True)
    outputs = denorm(keras.layers.Dense(y.shape[1])(h))
    model = keras.Model(inputs, outputs)
    norm.adapt(x)
    denorm.adapt(y)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse",
                  metrics=[keras.metrics.MeanAbsoluteError(name="mae")], **compile_kwargs)
    train = (tf.data.Dataset.from_tensor_slices((x, y)).cache().shuffle(len(x), seed=seed)
             .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    val = tf.data.Dataset.from_tensor_slices(arrays["validation"]).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    model.fit(train, validation_data=val, epochs=epochs, verbose=0, callbacks=[
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=8, min_lr=1e-5),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=25, restore_best_weights=True),
        *callbacks,
    ])
    return model


def mlp_train(size="full", only=None):
    """`mlp_regressor`: zoo.train vs plain Keras vs a PyTorch loop."""
    import zoo

    cfg = MLP_SIZES[size]
    arrays = friedman1(cfg["num_train"])
    tmp = tempfile.mkdtemp(prefix="zoo-bench-mlp-")
    counter = iter(range(10_000))
    contenders = {}
    with fit_calls() as calls:

        def zoo_run():
            timer = common.step_timer()
            run_dir = os.path.join(tmp, f"run{next(counter)}")
            result = _timed_fit(calls, timer, lambda: zoo.train(
                "mlp_regressor", epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                data_options={"num_train": cfg["num_train"]}, hidden_units=cfg["hidden_units"],
                run_dir=run_dir, verbose=0, callbacks=[timer], log_every_n_steps=50,
            ))
            shutil.rmtree(run_dir, ignore_errors=True)
            return result

        def keras_run():
            timer = common.step_timer()
            return _timed_fit(calls, timer, lambda: plain_keras_mlp(
                arrays, cfg["hidden_units"], cfg["batch_size"], cfg["epochs"], [timer]))

        contenders["zoo"] = zoo_run
        contenders["keras"] = keras_run
        if common.has_module("torch"):
            from benchmarks import torch_models

            epoch = torch_models.mlp_trainer(arrays, cfg["batch_size"], cfg["hidden_units"])

            def torch_run():
                epochs = [epoch() for _ in range(cfg["epochs"])]
                steady = epochs[1:] or epochs
                step = common.median([e["seconds"] / e["steps"] for e in steady])
                return {"step_s": step, "epoch_s": common.median([e["seconds"] for e in steady]),
                        "peak_rss_mb": common.peak_rss_mb()}

            contenders["torch"] = torch_run
        if only:
            contenders = {only: contenders[only]}
        samples = common.alternate(contenders, cfg["repeats"])
    shutil.rmtree(tmp, ignore_errors=True)
    results = _report(samples, cfg["batch_size"])
    out = {"unit": "examples/s", "config": {k: v for k, v in cfg.items()}, "contenders": results}
    if only:
        return out
    ratios = _keras_ratios(results)
    bars = [common.bar("mlp_regressor zoo/keras step time", ratios["zoo/keras step_s"], 1.03,
                       higher_is_better=False), _epoch_bar("mlp_regressor", ratios)]
    if "torch" in results:
        ratios["zoo/torch examples_per_s"] = common.ratio(
            results["zoo"].get("examples_per_s"), results["torch"].get("examples_per_s"))
    out.update(ratios=ratios, bars=bars)
    return out


# ---------------------------------------------------------------------------
# dcgan.

DCGAN_SIZES = {
    "tiny": {"batch_size": 32, "epochs": 2, "repeats": 1, "generator_filters": 8, "discriminator_filters": 8},
    "quick": {"batch_size": 64, "epochs": 10, "repeats": 3, "generator_filters": 32, "discriminator_filters": 32},
    "full": {"batch_size": 64, "epochs": 10, "repeats": 3, "generator_filters": 32, "discriminator_filters": 32},
}


def digits_images():
    """The 8x8 digits `dcgan` trains on: scikit-learn's, scaled to [-1, 1],
    without the stratified fifth it holds out for the FID (the same split,
    `zoo.data.splits.stratified_split` with seed 0), so both contenders run
    the same steps per epoch."""
    import numpy as np
    from sklearn.datasets import load_digits

    from zoo.data import splits

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0 * 2.0 - 1.0).reshape(-1, 8, 8, 1)
    (train, _), _ = splits.stratified_split(images, digits.target, 0.2, seed=0)
    return train


def plain_keras_dcgan(images, cfg, callbacks, seed=0):
    """The DCGAN of the Keras guide, with zoo's architecture, without zoo."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    latent, slope = 64, 0.2
    gf, df = cfg["generator_filters"], cfg["discriminator_filters"]
    noise = keras.Input((latent,))
    # zoo's dcgan with num_upsamples=2 projects to 4x the last block's filters.
    x = keras.layers.Dense(2 * 2 * gf * 4)(noise)
    x = keras.layers.Reshape((2, 2, gf * 4))(x)
    x = keras.layers.LeakyReLU(slope)(keras.layers.BatchNormalization()(x))
    x = keras.layers.Conv2DTranspose(gf, 4, strides=2, padding="same")(x)
    x = keras.layers.LeakyReLU(slope)(keras.layers.BatchNormalization()(x))
    out = keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh")(x)
    generator = keras.Model(noise, out)
    image = keras.Input((8, 8, 1))
    y = keras.layers.LeakyReLU(slope)(keras.layers.Conv2D(df, 4, strides=2, padding="same")(image))
    y = keras.layers.Conv2D(df * 2, 4, strides=2, padding="same")(y)
    y = keras.layers.LeakyReLU(slope)(keras.layers.BatchNormalization()(y))
    discriminator = keras.Model(image, keras.layers.Dense(1)(keras.layers.Flatten()(y)))

    class GAN(keras.Model):
        def __init__(self):
            super().__init__()
            self.generator, self.discriminator = generator, discriminator
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.d_tracker = keras.metrics.Mean(name="d_loss")
            self.g_tracker = keras.metrics.Mean(name="g_loss")

        def compile(self, d_optimizer, g_optimizer):
            super().compile()
            self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
            self.d_optimizer.build(discriminator.trainable_variables)
            self.g_optimizer.build(generator.trainable_variables)

        @property
        def metrics(self):
            return [self.d_tracker, self.g_tracker]

        def call(self, z, training=False):
            return self.generator(z, training=training)

        def train_step(self, real):
            batch = tf.shape(real)[0]
            z = keras.random.normal((batch, latent), seed=self.seed_generator)
            bce = lambda labels, logits: tf.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
            fake = self.generator(z, training=True)
            with tf.GradientTape() as tape:
                r, f = self.discriminator(real, training=True), self.discriminator(fake, training=True)
                d_loss = bce(tf.ones_like(r), r) + bce(tf.zeros_like(f), f)
            self.d_optimizer.apply(tape.gradient(d_loss, discriminator.trainable_variables),
                                   discriminator.trainable_variables)
            with tf.GradientTape() as tape:
                f = self.discriminator(self.generator(z, training=True), training=True)
                g_loss = bce(tf.ones_like(f), f)
            self.g_optimizer.apply(tape.gradient(g_loss, generator.trainable_variables),
                                   generator.trainable_variables)
            self.d_tracker.update_state(d_loss)
            self.g_tracker.update_state(g_loss)
            return {"d_loss": self.d_tracker.result(), "g_loss": self.g_tracker.result()}

    gan = GAN()
    gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    data = (tf.data.Dataset.from_tensor_slices(images).cache().shuffle(len(images), seed=seed)
            .batch(cfg["batch_size"], drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    gan.fit(data, epochs=cfg["epochs"], verbose=0, callbacks=callbacks)
    return gan


def dcgan_train(size="full", only=None):
    """`dcgan`: zoo.train vs the Keras guide's GAN loop on the same data."""
    import zoo

    cfg = DCGAN_SIZES[size]
    images = digits_images()
    tmp = tempfile.mkdtemp(prefix="zoo-bench-dcgan-")
    counter = iter(range(10_000))
    with fit_calls() as calls:

        def zoo_run():
            timer = common.step_timer()
            run_dir = os.path.join(tmp, f"run{next(counter)}")
            result = _timed_fit(calls, timer, lambda: zoo.train(
                "dcgan", epochs=cfg["epochs"], batch_size=cfg["batch_size"], run_dir=run_dir,
                verbose=0, callbacks=[timer], generator_filters=cfg["generator_filters"],
                discriminator_filters=cfg["discriminator_filters"],
            ))
            shutil.rmtree(run_dir, ignore_errors=True)
            return result

        def keras_run():
            timer = common.step_timer()
            return _timed_fit(calls, timer, lambda: plain_keras_dcgan(images, cfg, [timer]))

        contenders = {"zoo": zoo_run, "keras": keras_run}
        if only:
            contenders = {only: contenders[only]}
        samples = common.alternate(contenders, cfg["repeats"])
    shutil.rmtree(tmp, ignore_errors=True)
    results = _report(samples, cfg["batch_size"])
    out = {"unit": "examples/s", "config": cfg, "contenders": results}
    if only:
        return out
    ratios = _keras_ratios(results)
    out.update(ratios=ratios, bars=[common.bar(
        "dcgan zoo/keras step time", ratios["zoo/keras step_s"], 1.03, higher_is_better=False),
        _epoch_bar("dcgan", ratios)],
        notes=["Both train on the same 80% of the digits (zoo's dcgan holds out a stratified fifth "
               "for its FID). zoo also writes a sample grid (with an FID at least 5 epochs apart) at the first, "
               "the last and the epochs between that --summaries-max-share allows, and "
               "checkpoints; the plain loop does none of that."])
    return out


# ---------------------------------------------------------------------------
# gpt2_textgen.

GPT2_SIZES = {
    "tiny": {"vocabulary_size": 512, "num_layers": 1, "num_heads": 2, "hidden_dim": 32,
             "intermediate_dim": 64, "max_sequence_length": 32, "sequence_length": 32,
             "batch_size": 4, "steps": 3, "repeats": 1, "chars": 20_000, "epochs": 2},
    "quick": {"vocabulary_size": 4096, "num_layers": 2, "num_heads": 4, "hidden_dim": 256,
              "intermediate_dim": 1024, "max_sequence_length": 128, "sequence_length": 128,
              "batch_size": 8, "steps": 4, "repeats": 2, "chars": 60_000, "epochs": 4},
    # The reference config: 13.9M parameters.
    "full": {"vocabulary_size": 8192, "num_layers": 6, "num_heads": 6, "hidden_dim": 384,
             "intermediate_dim": 1536, "max_sequence_length": 256, "sequence_length": 256,
             "batch_size": 16, "steps": 3, "repeats": 1, "chars": 60_000, "epochs": 3},
}
ARCH = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
        "max_sequence_length")


def gpt2_corpus(cfg, directory):
    """Writes a slice of the embedded corpus for a fixed number of steps.

    Returns `(text_path, windows)`: the `.txt` file `zoo.train` reads and
    the same text's token windows `(n, sequence_length + 1)` for the
    plain contenders, tokenized with the same BPE.
    """
    import numpy as np
    from tokenizers import Tokenizer, models, pre_tokenizers

    from zoo.data import text as corpus
    from zoo.models.gpt2_textgen import tokenizer as tokenizer_lib

    text = "\n\n".join(corpus.embedded_corpus().values())[: cfg["chars"]]
    path = os.path.join(directory, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    files = tokenizer_lib.default_tokenizer_files(cfg["vocabulary_size"])
    with open(files[0], encoding="utf-8") as f:
        vocab = json.load(f)
    with open(files[1], encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().splitlines()[1:] if line.strip()]
    tokenizer = Tokenizer(models.BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    ids = np.asarray(tokenizer.encode(text).ids, "int32")
    length = cfg["sequence_length"] + 1
    n = len(ids) // length
    return path, ids[: n * length].reshape(n, length)


def plain_keras_gpt2(cfg, windows, callbacks, *, epochs, steps, seed=0, jit_compile="auto",
                     steps_per_execution=1, dtype_policy="float32", fit=True, validation_windows=None):
    """keras-hub's GPT-2 trained on token windows, without zoo.

    Returns the `GPT2CausalLM`. The data is `(x, y, sample_weight)` as
    keras-hub's preprocessor makes it, batched by `tf.data`.
    """
    import keras
    import keras_hub
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_dtype_policy(dtype_policy)
    try:
        backbone = keras_hub.models.GPT2Backbone(**{k: cfg[k] for k in ARCH}, dropout=0.0)
        model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            sampler="greedy", jit_compile=jit_compile, steps_per_execution=steps_per_execution,
        )
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    if not fit:
        return model
    length = cfg["sequence_length"]

    def split(w):
        x = {"token_ids": w[:-1], "padding_mask": tf.ones([length], tf.bool)}
        return x, w[1:], tf.ones([length], tf.float32)

    n_val = validation_windows or max(1, len(windows) // 10)
    train = (tf.data.Dataset.from_tensor_slices(windows[n_val:]).shuffle(len(windows), seed=seed)
             .repeat().map(split).batch(cfg["batch_size"], drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    val = tf.data.Dataset.from_tensor_slices(windows[:n_val]).map(split).batch(cfg["batch_size"])
    model.fit(train, validation_data=val, epochs=epochs, steps_per_epoch=steps, verbose=0,
              callbacks=callbacks)
    return model


def model_flops_per_token(model, cfg):
    """6N + 12·L·H·T with N all parameters but the position embedding."""
    n = model.backbone.count_params() - cfg["max_sequence_length"] * cfg["hidden_dim"]
    return n, 6 * n + 12 * cfg["num_layers"] * cfg["hidden_dim"] * cfg["sequence_length"]


def _matmul_contender(n, dtype="float32"):
    from benchmarks import hardware

    measure = hardware._timed(hardware._tf_matmul(n, dtype, xla=False), 2 * n**3)
    return lambda: {"gflops": measure()["gflops"]}


def gpt2_train(size="full", only=None):
    """`gpt2_textgen`: zoo.train vs keras-hub vs PyTorch (float32, bfloat16).

    Also reports model FLOPs per token and MFU against the matmul peak of
    each contender's dtype (zoo's is its "auto" policy), measured
    alternating with the training contenders in this run.
    """
    import zoo

    cfg = GPT2_SIZES[size]
    tmp = tempfile.mkdtemp(prefix="zoo-bench-gpt2-")
    text_path, windows = gpt2_corpus(cfg, tmp)
    tokens = cfg["sequence_length"]
    counter = iter(range(10_000))
    notes = []
    # Alone, for its peak memory only, one epoch is enough.
    epochs = 1 if common.ALONE else cfg["epochs"]
    # zoo.train's epoch is its whole training split; the text was cut so
    # that it has about `steps` batches, and both Keras contenders run as
    # many epochs, with validation.
    zoo_overrides = {k: cfg[k] for k in ARCH + ("sequence_length",)}
    # The plain contender runs as many steps per epoch, and validates on as
    # many windows, as zoo's epoch over the same text.
    from zoo import registry

    task = registry.get_entry("gpt2_textgen").task
    from zoo import precision

    zoo_policy = precision.choose(
        "auto", num_params=task.count_params(registry.get_config("gpt2_textgen", **zoo_overrides))).policy
    zoo_dtype = "bfloat16" if zoo_policy == "mixed_bfloat16" else "float32"
    zoo_data = task.load_data(text_path, registry.get_config("gpt2_textgen", **zoo_overrides), {}, 0,
                              preset=None)
    steps = max(2, zoo_data.num_train // cfg["batch_size"])
    val_windows = int(zoo_data.validation.cardinality())
    del zoo_data
    with fit_calls() as calls:

        def zoo_run():
            timer = common.step_timer()
            run_dir = os.path.join(tmp, f"run{next(counter)}")
            result = _timed_fit(calls, timer, lambda: zoo.train(
                "gpt2_textgen", data=text_path, epochs=epochs, batch_size=cfg["batch_size"],
                run_dir=run_dir, verbose=0, callbacks=[timer], dropout=0.0, **zoo_overrides,
            ))
            shutil.rmtree(run_dir, ignore_errors=True)
            return result

        def keras_run():
            timer = common.step_timer()
            return _timed_fit(calls, timer, lambda: plain_keras_gpt2(
                cfg, windows, [timer], epochs=epochs, steps=steps, validation_windows=val_windows))

        contenders = {"zoo": zoo_run, "keras": keras_run}
        torch_bf16_reduced = None
        if common.has_module("torch"):
            from benchmarks import hardware, torch_models

            torch_cfg = {k: cfg[k] for k in ARCH}
            torch_cfg["dropout"] = 0.0
            _, run_f32 = torch_models.gpt_trainer(windows, torch_cfg, cfg["batch_size"])
            contenders["torch_float32"] = lambda: run_f32(steps)
            # bfloat16 on a CPU without AVX512_BF16 or AMX runs matmuls at a
            # small fraction of float32 speed: measure it at batch 1, once,
            # rather than let one repeat take an hour.
            f32 = hardware._timed(hardware._torch_matmul(512, "float32"), 2 * 512**3)()["gflops"]
            bf16 = hardware._timed(hardware._torch_matmul(512, "bfloat16"), 2 * 512**3)()["gflops"]
            _, run_bf16 = torch_models.gpt_trainer(windows, torch_cfg, cfg["batch_size"], bfloat16=True)
            if bf16 >= 0.5 * f32:
                contenders["torch_bfloat16"] = lambda: run_bf16(steps)
            else:
                torch_bf16_reduced = (f32, bf16)
        else:
            notes.append("torch is not installed: PyTorch contenders skipped (pip install -e .[bench]).")
        n = {"tiny": 256, "quick": 1024, "full": 2048}[size]
        contenders["matmul_float32"] = _matmul_contender(n)
        if zoo_dtype == "bfloat16":
            contenders["matmul_bfloat16"] = _matmul_contender(n, "bfloat16")
        if only:
            contenders = {only: contenders[only]}
        samples = common.alternate(contenders, cfg["repeats"])
        if torch_bf16_reduced and not only:
            _, run_bf16_1 = torch_models.gpt_trainer(windows, torch_cfg, 1, bfloat16=True)
            one = run_bf16_1(1)
            samples["torch_bfloat16"] = [{"step_s": one["step_s"] * cfg["batch_size"],
                                          "peak_rss_mb": common.peak_rss_mb()}]
            notes.append(
                f"torch_bfloat16 ran one step at batch 1 (reported per batch of {cfg['batch_size']}), "
                f"not alternated: this CPU's bfloat16 matmul runs at {torch_bf16_reduced[1]:.1f} "
                f"GFLOP/s against {torch_bf16_reduced[0]:.1f} in float32 (no AVX512_BF16 or AMX), "
                "so a full step would take minutes.")
    peaks = {d: common.median([s["gflops"] for s in samples.pop(f"matmul_{d}", [])]) for d in ("float32", "bfloat16")}
    shutil.rmtree(tmp, ignore_errors=True)
    results = _report(samples, cfg["batch_size"], tokens)
    if "zoo" in results:
        results["zoo"]["policy"] = zoo_policy
    notes.append(f"zoo trains under its \"auto\" policy here, {zoo_policy}; keras and torch_float32 in float32.")
    out = {"unit": "tokens/s", "config": dict(cfg, steps_per_epoch=steps, validation_windows=val_windows),
           "contenders": results, "notes": notes,
           "matmul_peak_gflops": {k: round(v, 2) if v else None for k, v in peaks.items()}}
    if only:
        return out
    probe = plain_keras_gpt2(cfg, windows[:4], [], epochs=1, steps=1, fit=False)
    n_params, flops = model_flops_per_token(probe, cfg)
    out["flops_per_token"] = flops
    out["params_without_position_embedding"] = n_params
    mfu = {}
    for name, entry in results.items():
        dtype = zoo_dtype if name == "zoo" else ("bfloat16" if "bfloat16" in name else "float32")
        if entry.get("tokens_per_s"):
            entry["model_gflops"] = round(entry["tokens_per_s"] * flops / 1e9, 2)
            # PyTorch's bfloat16 against TensorFlow's bfloat16 peak says little: left out.
            if peaks.get(dtype) and not (name.startswith("torch") and dtype == "bfloat16"):
                entry["mfu_vs_measured_peak"] = round(entry["model_gflops"] / peaks[dtype], 3)
                mfu[name] = entry["mfu_vs_measured_peak"]
    ratios = _keras_ratios(results)
    torch_names = [n for n in ("torch_float32", "torch_bfloat16") if results.get(n, {}).get("tokens_per_s")]
    bars = [common.bar("gpt2_textgen zoo/keras step time", ratios["zoo/keras step_s"], 1.03,
                       higher_is_better=False), _epoch_bar("gpt2_textgen", ratios)]
    if torch_names:
        best = max(torch_names, key=lambda n: results[n]["tokens_per_s"])
        ratios[f"zoo/{best} tokens_per_s"] = common.ratio(
            results["zoo"].get("tokens_per_s"), results[best]["tokens_per_s"])
        bars.append(common.bar(f"gpt2 tokens/s vs faster PyTorch ({best})",
                               ratios[f"zoo/{best} tokens_per_s"], 1.0, higher_is_better=True))
    bars.append(common.bar(f"gpt2 MFU (zoo, {zoo_policy}) vs measured {zoo_dtype} matmul peak", mfu.get("zoo"),
                           0.70, higher_is_better=True))
    out.update(ratios=ratios, bars=bars, mfu=mfu)
    return out
