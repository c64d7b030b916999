"""Tuning experiments: each knob measured before and after, side by side.

Nothing here changes zoo's defaults; the numbers say which change helps:
- `gpt2_tuning`: XLA (`jit_compile`), `steps_per_execution` and
  `mixed_bfloat16` with and without XLA, on keras-hub's GPT-2;
- `mlp_tuning`: `steps_per_execution` and XLA through `zoo.train`, and the
  tf.data pipeline (`cache`, `prefetch`, NumPy arrays) of the plain MLP;
- `input_wait`: the fraction of step time `fit` waits for zoo's own input
  pipelines, measured as the slowdown against the same batches held in
  memory, beside the pipeline's standalone time per batch;
- `retracing`: traces of the train and test functions after each epoch of
  `zoo.train` (they must not grow after the first epoch);
- `strategy_auto`: what `--strategy auto` picks on one device, and on two
  logical CPU devices (never MirroredStrategy).
"""

import os
import shutil
import tempfile
import time

from benchmarks import classifier, common, training


def _bf16_is_slow(n=512):
    """Whether TF's bfloat16 matmul runs at under half of float32 here."""
    from benchmarks import hardware

    f32 = hardware._timed(hardware._tf_matmul(n, "float32", False), 2 * n**3)()["gflops"]
    bf16 = hardware._timed(hardware._tf_matmul(n, "bfloat16", False), 2 * n**3)()["gflops"]
    return bf16 < 0.5 * f32, f32, bf16


def gpt2_tuning(size="full", only=None):
    """keras-hub GPT-2 under XLA, steps_per_execution and mixed_bfloat16."""
    import numpy as np

    cfg = dict(training.GPT2_SIZES[size])
    if size == "full":
        # The architecture at a quarter of the tokens per step, so
        # that six variants fit in one run of the suite on two cores.
        cfg.update(batch_size=8, sequence_length=128, repeats=2)
    spe = 4 if size != "tiny" else 2
    steps = 2 * spe
    tmp = tempfile.mkdtemp(prefix="zoo-bench-tune-")
    _, windows = training.gpt2_corpus(cfg, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    variants = {
        "float32": {},
        "float32_xla": {"jit_compile": True},
        f"float32_xla_spe{spe}": {"jit_compile": True, "steps_per_execution": spe},
        f"float32_spe{spe}": {"steps_per_execution": spe},
    }
    slow, f32, bf16 = _bf16_is_slow()
    bf16_variants = {"mixed_bfloat16": {"dtype_policy": "mixed_bfloat16"},
                     "mixed_bfloat16_xla": {"dtype_policy": "mixed_bfloat16", "jit_compile": True}}
    notes = []
    if not slow:
        variants.update(bf16_variants)
    losses = {}

    def contender(name, kwargs, config=cfg, n_steps=steps):
        def run():
            timer = common.step_timer()
            start = time.perf_counter()
            model = training.plain_keras_gpt2(config, windows, [timer], epochs=2, steps=n_steps, **kwargs)
            total = time.perf_counter() - start
            import tensorflow as tf

            x = {"token_ids": windows[:4, :-1], "padding_mask": np.ones_like(windows[:4, :-1], bool)}
            logits = tf.cast(model(x, training=False), tf.float32)
            losses[name] = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(windows[:4, 1:], tf.int32), logits=logits)))
            result = timer.summary()
            result.update(total_s=total, peak_rss_mb=common.peak_rss_mb())
            return result

        return run

    contenders = {name: contender(name, kw) for name, kw in variants.items()}
    if only:
        contenders = {only: contenders[only]}
    samples = common.alternate(contenders, max(1, cfg["repeats"] - 1))
    if slow and not only:
        # One batch-1 run each, after the alternation: a full bfloat16 step
        # takes minutes on a CPU without native bfloat16 matmuls.
        small = dict(cfg, batch_size=1)
        for name, kw in bf16_variants.items():
            samples[name] = [contender(name, kw, small, 2)()]
            samples[name][0]["step_s"] *= cfg["batch_size"]
        notes.append(
            f"mixed_bfloat16 variants ran once at batch 1 (time scaled to batch {cfg['batch_size']}), "
            f"not alternated: TF's bfloat16 matmul runs at {bf16:.1f} GFLOP/s against {f32:.1f} in "
            "float32 on this CPU (512x512).")
    results = training._report(samples, cfg["batch_size"], cfg["sequence_length"])
    for name, loss in losses.items():
        if name in results:
            results[name]["loss_after"] = round(loss, 6)
    base = results.get("float32", {}).get("step_s")
    ratios = {f"{name}/float32 step_s": common.ratio(r.get("step_s"), base) for name, r in results.items()}
    return {"unit": "tokens/s", "config": dict(cfg, steps_per_execution=spe, steps=steps),
            "contenders": results, "ratios": ratios, "notes": notes, "bars": []}


def mlp_tuning(size="full", only=None):
    """zoo.train's steps_per_execution and XLA; the plain MLP's tf.data."""
    import keras
    import tensorflow as tf

    import zoo

    cfg = training.MLP_SIZES[size]
    arrays = training.friedman1(cfg["num_train"])
    tmp = tempfile.mkdtemp(prefix="zoo-bench-mlptune-")
    counter = iter(range(10_000))

    def zoo_variant(async_callbacks=False, **kwargs):
        def run():
            from zoo import callbacks as zoo_callbacks
            from zoo import tensorboard as zoo_tensorboard

            # A control: marking NaNGuard and TensorBoardLogger `async_safe`
            # changes nothing on TensorFlow, whose backend says it is not
            # thread-safe (keras.src.backend.IS_THREAD_SAFE is False), so
            # Keras 3.15 never dispatches batch hooks asynchronously there.
            patched = (zoo_callbacks.NaNGuard, zoo_tensorboard.TensorBoardLogger) if async_callbacks else ()
            for cls in patched:
                cls.async_safe = True
            timer = common.step_timer()
            run_dir = os.path.join(tmp, f"run{next(counter)}")
            try:
                zoo.train("mlp_regressor", epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                          data_options={"num_train": cfg["num_train"]}, hidden_units=cfg["hidden_units"],
                          run_dir=run_dir, verbose=0, callbacks=[timer], **kwargs)
            finally:
                for cls in patched:
                    del cls.async_safe
            shutil.rmtree(run_dir, ignore_errors=True)
            return timer.summary()

        return run

    def pipeline_variant(cache, prefetch, numpy=False, gather=False):
        x, y = arrays["train"]

        def run():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((x.shape[1],)),
                                      *[keras.layers.Dense(u, activation="relu") for u in cfg["hidden_units"]],
                                      keras.layers.Dense(1)])
            model.compile(optimizer="adam", loss="mse")
            timer = common.step_timer()
            if numpy:
                model.fit(x, y, batch_size=cfg["batch_size"], epochs=cfg["epochs"], verbose=0,
                          callbacks=[timer])
            elif gather:
                # Vectorized: shuffle indices, then one gather per batch
                # instead of tf.data work per example.
                xt, yt = tf.constant(x), tf.constant(y)
                ds = (tf.data.Dataset.range(len(x)).shuffle(len(x), seed=0)
                      .batch(cfg["batch_size"], drop_remainder=True)
                      .map(lambda i: (tf.gather(xt, i), tf.gather(yt, i)))
                      .prefetch(tf.data.AUTOTUNE))
                model.fit(ds, epochs=cfg["epochs"], verbose=0, callbacks=[timer])
            else:
                ds = tf.data.Dataset.from_tensor_slices((x, y))
                ds = ds.cache() if cache else ds
                ds = ds.shuffle(len(x), seed=0).batch(cfg["batch_size"], drop_remainder=True)
                ds = ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds
                model.fit(ds, epochs=cfg["epochs"], verbose=0, callbacks=[timer])
            return timer.summary()

        return run

    contenders = {
        "zoo_default": zoo_variant(),
        "zoo_async_callbacks": zoo_variant(async_callbacks=True),
        "zoo_spe8": zoo_variant(steps_per_execution=8),
        "zoo_spe32": zoo_variant(steps_per_execution=32),
        "zoo_xla": zoo_variant(jit_compile=True),
        "zoo_xla_spe32": zoo_variant(jit_compile=True, steps_per_execution=32),
        "tfdata_cache_prefetch": pipeline_variant(True, True),
        "tfdata_no_cache": pipeline_variant(False, True),
        "tfdata_no_prefetch": pipeline_variant(True, False),
        "numpy_arrays": pipeline_variant(False, False, numpy=True),
        "tfdata_index_gather": pipeline_variant(False, True, gather=True),
    }
    if only:
        contenders = {only: contenders[only]}
    samples = common.alternate(contenders, cfg["repeats"])
    shutil.rmtree(tmp, ignore_errors=True)
    results = training._report(samples, cfg["batch_size"])
    ratios = {}
    for name, entry in results.items():
        base = "zoo_default" if name.startswith("zoo") else "tfdata_cache_prefetch"
        ratios[f"{name}/{base} step_s"] = common.ratio(entry.get("step_s"), results.get(base, {}).get("step_s"))
        ratios[f"{name}/{base} epoch_s"] = common.ratio(entry.get("epoch_s"), results.get(base, {}).get("epoch_s"))
    return {"unit": "examples/s", "config": cfg, "contenders": results, "ratios": ratios, "bars": []}


def _zoo_pipeline(name, overrides, batch_size, data=None, options=None):
    """A model and batched training data made by zoo's own task hooks."""
    from zoo import registry

    entry = registry.get_entry(name)
    task = entry.task
    config = registry.get_config(name, **overrides)
    kwargs = {"preset": None} if task.has_presets else {}
    dataset = task.load_data(data, config, dict(options or {}), 0, **kwargs)
    if dataset.config_updates:
        config = registry.get_config(name, **{**overrides, **dataset.config_updates})
    model = task.build(entry.builder, config, None, dataset)
    task.prepare(model, dataset)
    task.compile(model, config)
    return model, task.batch(dataset.train, batch_size, training=True, seed=0)


def input_wait(size="full", only=None):
    """Fraction of step time spent waiting for zoo's input pipelines."""
    import tensorflow as tf

    gpt = training.GPT2_SIZES[size]
    tmp = tempfile.mkdtemp(prefix="zoo-bench-wait-")
    text_path, _ = training.gpt2_corpus(dict(gpt, chars=gpt["chars"] * 2), tmp)
    models = {
        "mlp_regressor": ({"hidden_units": training.MLP_SIZES[size]["hidden_units"]}, 64, None,
                          {"num_train": training.MLP_SIZES[size]["num_train"]}),
        "dcgan": ({"generator_filters": training.DCGAN_SIZES[size]["generator_filters"],
                   "discriminator_filters": training.DCGAN_SIZES[size]["discriminator_filters"]}, 64, None, None),
        "gpt2_textgen": ({k: gpt[k] for k in training.ARCH + ("sequence_length",)} | {"dropout": 0.0},
                         gpt["batch_size"], text_path, None),
    }
    if only:
        models = {only: models[only]}
    steps = {"tiny": 4, "quick": 6, "full": 8}[size]
    repeats = {"tiny": 1, "quick": 3, "full": 5}[size]
    results, bars = {}, []
    for name, (overrides, batch, data, options) in models.items():
        model, pipeline = _zoo_pipeline(name, overrides, batch, data, options)
        if name == "gpt2_textgen":
            steps_here, repeats_here = max(2, steps // 2), max(1, repeats - 2)
        else:
            steps_here, repeats_here = steps * 10, repeats
        real = pipeline.repeat()
        held = list(pipeline.take(steps_here).as_numpy_iterator())
        memory = tf.data.Dataset.from_tensor_slices(
            tf.nest.map_structure(lambda *xs: tf.stack(xs), *held)).cache().repeat()
        for _ in memory.take(steps_here):
            pass  # Fills the cache outside the timing.

        def fit_on(ds, model=model):  # This iteration's model, bound now.
            def run():
                timer = common.step_timer()
                model.fit(ds, epochs=2, steps_per_epoch=steps_here, verbose=0, callbacks=[timer])
                return timer.summary()

            return run

        def produce():
            iterator = iter(real)
            next(iterator)
            start = time.perf_counter()
            for _ in range(steps_here):
                next(iterator)
            return {"step_s": (time.perf_counter() - start) / steps_here}

        samples = common.alternate({"pipeline": fit_on(real), "in_memory": fit_on(memory),
                                    "producer_only": produce}, repeats_here)
        pairs = zip(samples["pipeline"], samples["in_memory"])
        fractions = [max(0.0, (a["step_s"] - b["step_s"]) / a["step_s"]) for a, b in pairs]
        step = common.median([s["step_s"] for s in samples["pipeline"]])
        producer = common.median([s["step_s"] for s in samples["producer_only"]])
        results[name] = {
            "step_s": round(step, 5),
            "in_memory_step_s": round(common.median([s["step_s"] for s in samples["in_memory"]]), 5),
            "producer_s_per_batch": round(producer, 6),
            "producer/step": round(producer / step, 4),
            "wait_fraction": round(common.median(fractions), 4),
            "wait_fraction_samples": [round(f, 4) for f in fractions],
        }
        bars.append(common.bar(f"{name} input wait fraction", results[name]["wait_fraction"], 0.05,
                               higher_is_better=False, unit="fraction"))
        del model
    shutil.rmtree(tmp, ignore_errors=True)
    return {"unit": "fraction of step time", "contenders": results, "bars": bars,
            "notes": ["wait_fraction = max(0, (step with zoo's pipeline - step with the same "
                      "batches held in memory) / step), median over alternating repeats; "
                      "producer/step is the pipeline's own time per batch over the step time."]}


def _trace_count(fn, seen=None):
    """Sum of tracing counts of the tf.functions a Keras step function holds."""
    seen = set() if seen is None else seen
    if fn is None or id(fn) in seen:
        return 0
    seen.add(id(fn))
    total = 0
    if hasattr(fn, "experimental_get_tracing_count"):
        total += fn.experimental_get_tracing_count()
        fn = getattr(fn, "_python_function", None) or getattr(fn, "python_function", None)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if callable(value) and (hasattr(value, "experimental_get_tracing_count") or hasattr(value, "__closure__")):
            total += _trace_count(value, seen)
    return total


def retracing(size="full", only=None):
    """Traces of the train and test functions after each `zoo.train` epoch."""
    import keras

    import zoo

    class Traces(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.train, self.test, self.generate = [], [], []

        def on_epoch_end(self, epoch, logs=None):
            # Runs after zoo's logger, whose task summaries may generate.
            self.train.append(_trace_count(self.model.train_function))
            self.test.append(_trace_count(self.model.test_function))
            self.generate.append(_trace_count(getattr(self.model, "generate_function", None)))

    epochs = 3
    tmp = tempfile.mkdtemp(prefix="zoo-bench-trace-")
    gpt = training.GPT2_SIZES["tiny"]
    text_path, _ = training.gpt2_corpus(gpt, tmp)
    runs = {
        "mlp_regressor": dict(data_options={"num_train": 500}, hidden_units=(16,), batch_size=64),
        "dcgan": dict(generator_filters=8, discriminator_filters=8, batch_size=64),
        "gpt2_textgen": dict(data=text_path, batch_size=4, dropout=0.0,
                             **{k: gpt[k] for k in training.ARCH + ("sequence_length",)}),
    }
    if only:
        runs = {only: runs[only]}
    results, bars = {}, []
    for name, kwargs in runs.items():
        traces = Traces()
        zoo.train(name, epochs=epochs, run_dir=os.path.join(tmp, name), verbose=0,
                  callbacks=[traces], **kwargs)
        retraced = any(t[-1] > t[0] for t in (traces.train, traces.test, traces.generate))
        results[name] = {"train_traces_per_epoch": traces.train, "test_traces_per_epoch": traces.test,
                         "generate_traces_per_epoch": traces.generate,
                         "retraced_after_epoch_1": retraced}
        bars.append(common.bar(f"{name} no retracing after epoch 1", not retraced, True,
                               higher_is_better=True, unit="bool"))
    shutil.rmtree(tmp, ignore_errors=True)
    return {"unit": "traces", "contenders": results, "bars": bars}


def strategy_auto(size="full", only=None):
    """What "auto" resolves to here, with one and with two logical CPUs."""
    script = (
        "import sys, tensorflow as tf\n"
        "n = int(sys.argv[1])\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "if n > 1: tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)\n"
        "from zoo import distribute\n"
        "s = distribute.get_strategy('auto')\n"
        "print(distribute.resolve_name('auto'), type(s).__name__, s.num_replicas_in_sync)\n"
    )
    results, bars = {}, []
    for devices in (1, 2):
        _, done = common.run_python(["-c", script, str(devices)], timeout=120)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        name, cls, replicas = done.stdout.split()[-3:]
        results[f"{devices}_logical_cpu"] = {"resolved": name, "class": cls, "replicas": int(replicas)}
        bars.append(common.bar(f"auto on {devices} logical CPU device(s) is not MirroredStrategy",
                               "Mirrored" not in cls, True, higher_is_better=True, unit="bool"))
    return {"unit": "strategy", "contenders": results, "bars": bars}


def fit_tail(size="full", only=None):
    """The idle time at the end of `fit`, as keras-hub users train GPT-2.

    The issue saw plain keras-hub `fit` calls sit idle for 15-24 s after the
    last step. This fits keras-hub's `GPT2CausalLM` with its string
    preprocessor on a `tf.data` of raw documents (keras-hub maps the
    preprocessor over it with `num_parallel_calls=AUTOTUNE`), several
    times, and splits each call's wall time into setup, steps, the time
    from the last epoch's end to `on_train_end`, and the time from
    `on_train_end` to `fit` returning (iterator teardown). The same is done
    for pre-tokenized windows, the pipeline `zoo.train` uses.
    """
    import keras
    import keras_hub
    import tensorflow as tf

    from zoo.data import text as corpus
    from zoo.models.gpt2_textgen import tokenizer as tokenizer_lib

    # The tail does not depend on the model's size: the quick config serves.
    cfg = training.GPT2_SIZES["tiny" if size == "tiny" else "quick"]
    repeats = {"tiny": 1, "quick": 3, "full": 6}[size]
    steps = {"tiny": 2, "quick": 2, "full": 2}[size]
    documents = list(corpus.embedded_corpus().values())
    tokenizer = tokenizer_lib.make_tokenizer(*tokenizer_lib.default_tokenizer_files(cfg["vocabulary_size"]))
    tmp = tempfile.mkdtemp(prefix="zoo-bench-tail-")
    _, windows = training.gpt2_corpus(cfg, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    backbone = keras_hub.models.GPT2Backbone(**{k: cfg[k] for k in training.ARCH}, dropout=0.0)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=cfg["sequence_length"])
    strings_model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)
    strings_model.compile(optimizer=keras.optimizers.AdamW(1e-3), sampler="greedy")
    strings = tf.data.Dataset.from_tensor_slices(documents).shuffle(len(documents), seed=0)
    strings = strings.batch(cfg["batch_size"], drop_remainder=True)

    with training.fit_calls() as calls:

        def on_strings(autotune=True):
            def fit():
                timer = common.step_timer()
                data = strings.take(steps)
                if not autotune:
                    # keras-hub maps the preprocessor with AUTOTUNE; turning
                    # tf.data's autotuner off for this dataset tests whether
                    # the idle tail is its teardown.
                    options = tf.data.Options()
                    options.autotune.enabled = False
                    data = data.with_options(options)
                run = lambda: strings_model.fit(data, epochs=1, verbose=0, callbacks=[timer])
                return training._timed_fit(calls, timer, run)

            return fit

        def on_windows():
            timer = common.step_timer()
            return training._timed_fit(calls, timer, lambda: training.plain_keras_gpt2(
                cfg, windows, [timer], epochs=1, steps=steps))

        contenders = {"keras_hub_strings": on_strings(), "keras_hub_strings_no_autotune": on_strings(False),
                      "token_windows": on_windows}
        if only:
            contenders = {only: contenders[only]}
        samples = common.alternate(contenders, repeats)
    results = {}
    for name, runs in samples.items():
        results[name] = {
            "fit_s": [round(r["fit_s"], 3) for r in runs],
            "fit_setup_s": [round(r["fit_setup_s"], 3) for r in runs],
            "end_tail_s": [round(r["end_tail_s"], 3) for r in runs],
            "after_train_end_s": [round(r["after_train_end_s"], 3) for r in runs],
            "max_end_tail_s": round(max(r["end_tail_s"] for r in runs), 3),
        }
    return {"unit": "s", "config": dict(cfg, steps=steps, repeats=repeats), "contenders": results,
            "bars": [], "notes": []}


OVERHEAD_EPOCHS = {"tiny": 2, "quick": 5, "full": 5}


def zoo_overhead(size="full", only=None):
    """Where `zoo.train`'s time goes beyond the steps: a profile by hook.

    Wraps the hooks of zoo's callbacks (and the task's) for one run of each
    model after a warm-up run, and sums the seconds each spends: per step
    (`on_train_batch_end`), per epoch (`on_epoch_end`: checkpoint, event
    files, task summaries) and once (`on_train_end`); inside those, the
    checkpoint writes (`Checkpoint.save`) and the task's `summaries`
    (pictures, samples, FID) are timed apart. The time outside `fit` (data,
    build, evaluation, saving) comes from the `fit` wrapper.
    """
    import keras

    import zoo
    from zoo import callbacks as zoo_callbacks
    from zoo import registry
    from zoo import tensorboard as zoo_tensorboard

    gpt = training.GPT2_SIZES[size]
    tmp = tempfile.mkdtemp(prefix="zoo-bench-overhead-")
    text_path, _ = training.gpt2_corpus(gpt, tmp)
    runs = {
        "mlp_regressor": dict(data_options={"num_train": training.MLP_SIZES[size]["num_train"]},
                              hidden_units=training.MLP_SIZES[size]["hidden_units"], batch_size=64),
        "dcgan": dict(generator_filters=training.DCGAN_SIZES[size]["generator_filters"],
                      discriminator_filters=training.DCGAN_SIZES[size]["discriminator_filters"], batch_size=64),
        "gpt2_textgen": dict(data=text_path, batch_size=gpt["batch_size"], dropout=0.0,
                             **{k: gpt[k] for k in training.ARCH + ("sequence_length",)}),
        "image_classifier": dict(batch_size=64, **classifier.CLASSIFIER_SIZES[size]["model"]),
    }
    epochs = OVERHEAD_EPOCHS[size]
    if only:
        runs = {only: runs[only]}
    hooks = ("on_train_batch_end", "on_epoch_end", "on_train_end", "on_train_begin", "on_epoch_begin")
    classes = [zoo_callbacks.NaNGuard, zoo_tensorboard.TensorBoardLogger, zoo_callbacks.Checkpoint,
               keras.callbacks.ReduceLROnPlateau, keras.callbacks.EarlyStopping]
    spent = {}
    originals = []

    def wrap(cls, hook):
        original = cls.__dict__.get(hook)
        if original is None:
            return

        def timed(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                key = f"{type(self).__name__}.{hook}"
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - start

        originals.append((cls, hook, original))
        setattr(cls, hook, timed)

    results = {}
    try:
        for cls in classes:
            for hook in hooks:
                wrap(cls, hook)
        wrap(zoo_callbacks.Checkpoint, "save")
        for name in runs:
            wrap(type(registry.get_entry(name).task), "summaries")
        with training.fit_calls() as calls:
            for name, kwargs in runs.items():
                for attempt in range(2):  # The first run warms up.
                    spent.clear()
                    timer = common.step_timer()
                    before = len(calls)
                    start = time.perf_counter()
                    zoo.train(name, epochs=epochs, run_dir=os.path.join(tmp, f"{name}{attempt}"),
                              verbose=0, callbacks=[timer], **kwargs)
                    total = time.perf_counter() - start
                fit_start, fit_end = calls[before]
                steps = sum(b[-1][1] for b in timer.batch_ends if b)
                executions = sum(len(b) for b in timer.batch_ends)
                summary = timer.summary()
                results[name] = {
                    "total_s": round(total, 3),
                    "outside_fit_s": round(total - (fit_end - fit_start), 3),
                    "fit_s": round(fit_end - fit_start, 3),
                    "steps": steps,
                    "executions": executions,
                    "step_s": round(summary["step_s"], 5),
                    "epoch_s": round(summary["epoch_s"], 4),
                    "hooks_s": {k: round(v, 4) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])},
                    "batch_hooks_per_step_ms": round(1000 * sum(
                        v for k, v in spent.items() if k.endswith("on_train_batch_end")) / max(1, steps), 4),
                    "batch_hooks_per_execution_ms": round(1000 * sum(
                        v for k, v in spent.items() if k.endswith("on_train_batch_end")) / max(1, executions), 4),
                    "epoch_hooks_per_epoch_s": round(sum(
                        v for k, v in spent.items() if k.endswith("on_epoch_end")) / epochs, 4),
                }
    finally:
        for cls, hook, original in originals:
            setattr(cls, hook, original)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"unit": "s", "contenders": results, "bars": [],
            "notes": [f"hooks_s sums each zoo callback hook over one {epochs}-epoch run (after a warm-up "
                      "run); Checkpoint.save and <Task>.summaries are inside the on_epoch_end hooks."]}
