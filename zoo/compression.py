"""`zoo compress RUN --quantize int8|int4|float8 [--prune SPARSITY [--prune-block N]]`: a smaller run.

Quantization is Keras 3's `model.quantize(mode)` (`Task.quantize`), which in
Keras 3.15 covers `Dense`, `EinsumDense` and `Embedding` layers only:
convolutions, normalization layers and position embeddings stay float32,
and the report lists what stayed float and how many parameters that is.

Pruning is zoo's own, since no maintained pruning library supports Keras 3
(tensorflow-model-optimization works with Keras 2 only,
tensorflow/model-optimization#1119): magnitude pruning of every `Dense`,
`EinsumDense` and convolution kernel, each layer to the same sparsity, in
blocks of `prune_block` consecutive weights along the kernel's last axis
(contiguous in memory; ranked by the block's L2 norm; a kernel whose last
axis is not a multiple of the block is pruned weight by weight, and the
report says which), on
the polynomial ramp of Zhu & Gupta (2017), `s(t) = s * (1 - (1 - t / T)**3)`
over the first `RAMP` of the fine-tuning steps, masks recomputed every
`T / MASK_UPDATES` steps and applied after every step, then removed: the
compressed model is a plain Keras model whose pruned kernels hold zeros
(which gzip, not the file format, turns into bytes saved). Pruning comes
first, then quantization, so the zeros stay exact zeros.

The compressed run directory (`RUN-int8`, `RUN-int8-pruned50`, ... by
default) holds what `zoo generate` and `zoo export` read: `config.json` (with
a `compression` entry), `model.keras`, `metrics.json` (the compressed
model's own evaluation), the task's exports (a keras-hub preset for GPT-2),
and `compress.json`, the report: weights file and gzip size, parameter
memory, latency at batch 1 and 32 and the run's own quality metrics, of the
original and the compressed model measured side by side in one process.

```python
report = zoo.compress("runs/mlp_regressor/20260101-120000", quantize="int8")
report["rows"]["test_mse"]["ratio"]
```
"""

import dataclasses
import gzip
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
import warnings

from zoo import config as config_lib
from zoo import exports
from zoo import quiet
from zoo import runs
from zoo import task as task_lib
from zoo.files import TMP_PREFIX, atomic_path, read_json, write_json

MODES = ("int8", "int4", "float8")
RAMP = 0.75
MASK_UPDATES = 16
FINE_TUNE_LR_FACTOR = 0.1
LATENCY_BATCHES = (1, 32)
LATENCY_SECONDS = 1.5


def compress(run_dir, *, quantize=None, prune=None, prune_block=None, fine_tune_epochs=None, out=None,
             verbose="auto"):
    """Quantizes and/or prunes a finished run into a new run directory.

    Args:
        run_dir: str. A finished run of `zoo train`.
        quantize: str or None. "int8", "int4" or "float8". Defaults to None
            (no quantization).
        prune: float or None. Target sparsity of every prunable kernel, in
            [0, 1). Defaults to None (no pruning).
        prune_block: int or None. Pruning removes blocks of this many
            consecutive weights along each kernel's last axis, the
            blocks of smallest L2 norm; 1 prunes weight by weight. A
            kernel whose last axis is not a multiple of it is pruned
            weight by weight (listed in the report's
            `prune_block_fallback`). Only with `prune`. Defaults to the
            task's `prune_block` (4 for `mlp_regressor`, whose dense
            kernels lose nothing to blocks; 1, weight by weight, for the
            convolutional models, whose quality blocks cost).
        fine_tune_epochs: int or None. Epochs of fine-tuning while the
            sparsity ramps up. Defaults to a tenth of the recipe's epochs
            (at least 1) when pruning, else 0; 0 prunes in one shot.
        out: str. The new run's directory; it must not exist. Defaults to
            `RUN-int8`, `RUN-pruned50`, `RUN-int8-pruned50` and the like.
        verbose: "auto", 0, 1 or 2. Keras' progress output while fine-tuning.

    Returns:
        The report, also written to `<out>/compress.json`.

    Raises:
        ValueError: an unknown mode (with the closest), a sparsity outside
            [0, 1), a block that is not an int >= 1 (or one without
            `prune`, or one that divides no kernel's last axis), nothing
            to do, or a run that is compressed already.
        FileNotFoundError: no finished run at `run_dir`.
        FileExistsError: `out` exists.
    """
    run_dir = os.fspath(run_dir).rstrip(os.sep) or os.sep
    quantize, prune, prune_block, fine_tune_epochs = _check_options(quantize, prune, prune_block,
                                                                    fine_tune_epochs)
    saved, entry, model_config, train_config = exports.open_run(run_dir)
    if saved.get("compression"):
        raise ValueError(
            f"Run '{run_dir}' is compressed already ({saved['compression']['method']}); "
            "compress the original run instead.")
    task = entry.task
    if prune and prune_block is None:
        prune_block = task.prune_block
    if fine_tune_epochs is None:
        fine_tune_epochs = max(1, task.train_defaults["epochs"] // 10) if prune else 0
    method = "-".join(p for p in (quantize, prune and f"pruned{round(prune * 100)}",
                                  prune and prune_block > 1 and f"block{prune_block}") if p)
    out = os.fspath(out) if out else f"{run_dir}-{method}"
    if os.path.exists(out):
        raise FileExistsError(
            f"Output directory '{out}' already exists; `zoo compress` never overwrites one. "
            "Remove it or give another --out.")
    quiet.import_tensorflow()
    import keras

    from zoo import workarounds

    workarounds.apply_all()
    keras.utils.set_random_seed(train_config.seed)
    data = exports.load_run_data(run_dir, entry, model_config, train_config)
    original = exports.load_trained_model(run_dir)
    model = exports.load_trained_model(run_dir)
    history, sparsity, fallback = {}, None, None
    if prune:
        kernels = prunable_kernels(model)
        blocks, fallback = kernel_blocks(kernels, prune_block)
        history = _prune(model, kernels, blocks, prune, fine_tune_epochs, entry, model_config,
                         train_config, data, verbose)
        sparsity = measured_sparsity(kernels)
    if quantize:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # One "has no quantize method" per other layer.
            task.quantize(model, quantize)
    task_lib.compile_model(task, model, model_config, train_config)
    compression = {
        "method": method, "quantize": quantize, "prune": prune,
        "prune_block": prune_block if prune else None, "prune_block_fallback": fallback,
        "fine_tune_epochs": fine_tune_epochs, "source": os.path.abspath(run_dir), "sparsity": sparsity,
    }
    metrics = {k: float(v) for k, v in task.evaluate(model, data, train_config).items()}
    report = {
        "model_name": entry.name,
        "dir": os.path.abspath(out),
        **compression,
        "fine_tune_learning_rate": train_config.learning_rate * FINE_TUNE_LR_FACTOR if prune else None,
        "kept_in_float": kept_in_float(task.serving_model(model)),
        "rows": measure(task, original, model, model_config, data, train_config, metrics),
        "conditions": _conditions(),
    }
    _write_run(out, saved, compression, history, metrics, report, model, task, data, run_dir)
    return report


def _check_options(quantize, prune, prune_block, fine_tune_epochs):
    if quantize is not None and quantize not in MODES:
        raise ValueError(
            f"Unknown quantization mode '{quantize}'.{config_lib.did_you_mean(str(quantize), MODES)} "
            f"Accepted: {', '.join(MODES)}.")
    if prune is not None:
        if isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0 <= prune < 1:
            raise ValueError(
                f"Invalid value for `prune`: the sparsity must be a number in [0, 1). "
                f"Received: prune={prune!r}.")
        prune = float(prune) or None
    if prune_block is not None:
        if isinstance(prune_block, bool) or not isinstance(prune_block, int) or prune_block < 1:
            raise ValueError(
                f"Invalid value for `prune_block`: the block must be an int >= 1 (weights in a "
                f"block along the kernel's last axis; 1 prunes weight by weight). "
                f"Received: prune_block={prune_block!r}.")
        if prune is None:
            raise ValueError(
                f"`prune_block` applies to pruning only: give a sparsity too (prune in (0, 1)). "
                f"Received: prune_block={prune_block!r} without prune.")
    if fine_tune_epochs is not None and (isinstance(fine_tune_epochs, bool) or not isinstance(
            fine_tune_epochs, int) or fine_tune_epochs < 0):
        raise ValueError(
            f"Invalid value for `fine_tune_epochs`: must be an int >= 0. "
            f"Received: fine_tune_epochs={fine_tune_epochs!r}.")
    if quantize is None and prune is None:
        raise ValueError(
            "Nothing to compress: give a quantization mode (quantize=int8, int4 or float8) "
            "and/or a sparsity (prune in (0, 1)).")
    return quantize, prune, prune_block, fine_tune_epochs


# ---- pruning ---------------------------------------------------------------

def prunable_kernels(model):
    """The kernels pruning thins: of every Dense, EinsumDense and convolution."""
    import keras

    kinds = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Conv1D, keras.layers.Conv2D,
             keras.layers.Conv3D, keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
             keras.layers.Conv3DTranspose)
    seen, kernels = set(), []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, kinds) and id(layer) not in seen:
            seen.add(id(layer))
            kernels.append(layer.kernel)
    return kernels


def kernel_blocks(kernels, block):
    """The block each kernel is pruned in: `block`, or 1 where its last axis
    is not a multiple of it.

    Returns:
        `(blocks, fallback)`: a block size per kernel, and the paths of the
        kernels that fell back to 1 (None when `block` is 1).

    Raises:
        ValueError: `block` divides no kernel's last axis.
    """
    if block == 1:
        return [1] * len(kernels), None
    blocks = [block if k.shape[-1] % block == 0 else 1 for k in kernels]
    if kernels and all(b == 1 for b in blocks):
        axes = sorted({int(k.shape[-1]) for k in kernels})
        raise ValueError(
            f"Invalid value for `prune_block`: {block} divides the last axis of none of the model's "
            f"prunable kernels (their last axes: {', '.join(map(str, axes))}). "
            f"Received: prune_block={block}; give a divisor of one of those, or 1.")
    return blocks, [k.path for k, b in zip(kernels, blocks) if b != block]


def sparsity_at(step, total_steps, target):
    """The polynomial ramp: 0 at step 0, `target` from `RAMP * total_steps` on."""
    end = max(1, math.ceil(RAMP * total_steps))
    progress = min(1.0, step / end)
    return target * (1.0 - (1.0 - progress) ** 3)


def magnitude_mask(values, sparsity, block=1):
    """A 0/1 mask zeroing the `round(sparsity * size / block)` blocks of
    smallest L2 norm, a block being `block` consecutive values along the
    last axis (which must be a multiple of it); `block=1`: the smallest
    |values|."""
    import numpy as np

    if values.shape[-1] % block:
        raise ValueError(f"The last axis of shape {values.shape} is not a multiple of block={block}.")
    norms = np.abs(values).ravel() if block == 1 else np.linalg.norm(values.reshape(-1, block), axis=1)
    k = int(round(sparsity * norms.size))
    mask = np.ones(norms.size, values.dtype)
    if k:
        mask[np.argpartition(norms, k - 1)[:k]] = 0
    return np.repeat(mask, block).reshape(values.shape)


def measured_sparsity(kernels):
    """The share of exact zeros over all `kernels`."""
    import numpy as np

    values = [np.asarray(k) for k in kernels]
    return float(sum(int(np.sum(v == 0)) for v in values) / max(1, sum(v.size for v in values)))


def _pruning_callback(kernels, blocks, target, total_steps):
    import keras
    import tensorflow as tf

    class MagnitudePruning(keras.callbacks.Callback):
        """Recomputes the masks on the ramp and applies them after every step."""

        def __init__(self):
            super().__init__()
            self.step = 0
            self.every = max(1, math.ceil(RAMP * total_steps) // MASK_UPDATES)
            self.masks = [tf.constant(magnitude_mask(k.numpy(), 0.0)) for k in kernels]
            self.blocks = blocks

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step % self.every == 0 or self.step >= total_steps:
                sparsity = sparsity_at(self.step, total_steps, target)
                self.masks = [tf.constant(magnitude_mask(k.numpy(), sparsity, b))
                              for k, b in zip(kernels, self.blocks)]
            for kernel, mask in zip(kernels, self.masks):
                kernel.assign(kernel * mask)

    return MagnitudePruning()


def _prune(model, kernels, blocks, target, epochs, entry, model_config, train_config, data, verbose):
    """Prunes `kernels` to `target` in their `blocks`: in one shot
    (`epochs=0`) or fine-tuned on the run's training data while the sparsity
    ramps up. Returns the fine-tuning history."""
    task = entry.task
    if not epochs:
        for kernel, block in zip(kernels, blocks):
            kernel.assign(kernel * magnitude_mask(kernel.numpy(), target, block))
        return {}
    tune = dataclasses.replace(train_config, epochs=epochs, steps_per_execution=1,
                               learning_rate=train_config.learning_rate * FINE_TUNE_LR_FACTOR)
    steps = max(1, data.num_train // tune.batch_size)
    task_lib.compile_model(task, model, model_config, tune, steps)
    pruning = _pruning_callback(kernels, blocks, target, steps * epochs)
    batches = task.batch(data.train, tune.batch_size, training=True, seed=tune.seed)
    with task.fitting(model, data):
        fit = model.fit(batches, epochs=epochs, callbacks=[pruning], verbose=verbose, shuffle=False)
    # The masks go with the callback; the zeros stay in the kernels.
    for kernel, block in zip(kernels, blocks):
        kernel.assign(kernel * magnitude_mask(kernel.numpy(), target, block))
    return {k: [float(v) for v in values] for k, values in fit.history.items()}


# ---- measuring -------------------------------------------------------------

def kept_in_float(serving):
    """Which layers of the serving model hold float weights after
    quantization, and how many parameters that is."""
    import numpy as np

    quantized, kept = {}, {}
    for layer in serving._flatten_layers(include_self=False, recursive=True):
        if not layer.weights or any(True for _ in layer._flatten_layers(include_self=False)):
            continue  # Counted in the layers it holds.
        size = sum(int(np.prod(w.shape)) for w in layer.weights)
        name = type(layer).__name__
        target = quantized if getattr(layer.dtype_policy, "quantization_mode", None) else kept
        target[name] = target.get(name, 0) + size
    return {"quantized_params": quantized, "float_params": kept}


def weights_bytes(model):
    """Bytes the model's weights take in memory, by their dtypes."""
    import numpy as np

    return int(sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights))


def weights_file_sizes(model, work):
    """`(file bytes, gzip -9 bytes)` of the model's `.weights.h5` file,
    without optimizer slots: saved from an uncompiled copy (the same
    layers), with the optimizer of any compiled model nested in it (the
    image classifier's serving model holds the trained network, Adam's
    two slots per weight and all) detached while it saves."""
    import keras

    path = os.path.join(work, f"{len(os.listdir(work))}.weights.h5")
    nested = [(m, m.optimizer) for m in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(m, keras.Model) and getattr(m, "optimizer", None) is not None]
    try:
        for m, _ in nested:
            m.optimizer = None
        keras.Model(model.inputs, model.outputs).save_weights(path)
    finally:
        for m, optimizer in nested:
            m.optimizer = optimizer
    raw = open(path, "rb").read()
    return len(raw), len(gzip.compress(raw, compresslevel=9))


def latencies(models, inputs, batches=LATENCY_BATCHES, seconds=None):
    """Median milliseconds per call of each model at each batch size.

    The models run in turn, call after call, in the same process, so any
    load on the machine falls on both alike.

    Returns:
        `[{batch: ms} for each model]`.
    """
    import numpy as np
    import tensorflow as tf

    seconds = LATENCY_SECONDS if seconds is None else seconds  # Read here: tests shorten it.
    out = [{} for _ in models]
    for batch in batches:
        x = {k: np.resize(v, (batch, *v.shape[1:])) for k, v in inputs.items()}
        x = x if len(x) > 1 else next(iter(x.values()))
        functions = [tf.function(lambda t, m=m: m(t, training=False)) for m in models]
        for fn in functions:
            for _ in range(3):
                np.asarray(fn(x))
        start = time.perf_counter()
        for fn in functions:
            np.asarray(fn(x))
        per_round = max(1e-4, time.perf_counter() - start)
        rounds = int(min(200, max(5, seconds / per_round)))
        times = [[] for _ in models]
        for _ in range(rounds):
            for i, fn in enumerate(functions):
                start = time.perf_counter()
                np.asarray(fn(x))
                times[i].append(time.perf_counter() - start)
        for i, t in enumerate(times):
            out[i][batch] = 1000 * statistics.median(t)
    return out


def measure(task, original, compressed, model_config, data, train_config, metrics):
    """The report's rows, original and compressed measured side by side."""
    before = {k: float(v) for k, v in task.evaluate(original, data, train_config).items()}
    serving = [task.serving_model(original), task.serving_model(compressed)]
    inputs, _ = task.serving_examples(model_config, lambda: data, 8)
    inputs = exports.named_inputs(serving[0], inputs)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="zoo-compress-") as work:
        sizes = [weights_file_sizes(m, work) for m in serving]
    rows["weights_file_bytes"] = [s[0] for s in sizes]
    rows["weights_gzip_bytes"] = [s[1] for s in sizes]
    rows["param_bytes"] = [weights_bytes(m) for m in serving]
    for batch, (a, b) in zip(LATENCY_BATCHES, zip(*(d.values() for d in latencies(serving, inputs)))):
        rows[f"latency_ms_batch{batch}"] = [a, b]
    for key in before:
        if key in metrics and key != "epochs_trained":
            rows[key] = [before[key], metrics[key]]
    return {k: {"original": a, "compressed": b, "ratio": (b / a) if a else None} for k, (a, b) in rows.items()}


def _conditions():
    import os as os_lib

    import tensorflow as tf

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_count": os_lib.cpu_count(), "load_average": list(os_lib.getloadavg()),
            "tensorflow": tf.__version__, "note": "latency: median of interleaved calls in one process"}


# ---- the run directory -----------------------------------------------------

def _write_run(out, saved, compression, history, metrics, report, model, task, data, run_dir):
    """Writes the compressed run into a temporary directory, then renames it."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=parent)
    try:
        write_json(os.path.join(tmp, runs.CONFIG), {**saved, "compression": compression})
        env = read_json(os.path.join(run_dir, "env.json"))
        if env is not None:
            write_json(os.path.join(tmp, "env.json"), env)
        write_json(os.path.join(tmp, "history.json"), history)
        with atomic_path(os.path.join(tmp, "model.keras")) as path:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.save(path)
        task.export(model, data, tmp)
        preset_weights = [os.path.join(d, "preset", "model.weights.h5") for d in (run_dir, tmp)]
        if all(os.path.exists(p) for p in preset_weights):
            # The keras-hub preset's own weights file, as plain keras-hub loads it.
            a, b = (os.path.getsize(p) for p in preset_weights)
            report["rows"]["preset_weights_file_bytes"] = {"original": a, "compressed": b, "ratio": b / a}
        write_json(os.path.join(tmp, "compress.json"), report)
        write_json(os.path.join(tmp, runs.METRICS), {**metrics, "epochs_trained": 0})
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def format_report(report):
    """The report as the table `zoo compress` prints."""
    pruning = ""
    if report.get("sparsity") is not None:
        block = report.get("prune_block") or 1
        fallback = report.get("prune_block_fallback") or []
        pruning = ((f": blocks of {block} along the kernels' last axis" if block > 1 else ": weight by weight")
                   + (f" (weight by weight in {', '.join(fallback)})" if fallback else "")
                   + f", measured sparsity {report['sparsity']:.3f}")
    lines = [f"{report['model_name']} {report['method']}{pruning}",
             f"{'':<26}{'original':>14}{'compressed':>14}{'ratio':>9}"]
    def cell(value):
        return f"{int(value):>14,}" if float(value).is_integer() and abs(value) >= 1000 else f"{value:>14.6g}"

    for key, row in report["rows"].items():
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
        lines.append(f"{key:<26}{cell(row['original'])}{cell(row['compressed'])}{ratio:>9}")
    kept = report["kept_in_float"]["float_params"]
    if kept and report.get("quantize"):  # Unquantized, everything is float.
        lines.append("Kept in float: " + ", ".join(f"{k} ({v:,} params)" for k, v in kept.items()))
    return "\n".join(lines)
