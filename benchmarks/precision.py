"""Precision: does "auto" help on the machine at hand?

- `precision_train`: `zoo.train` of every registered model under
  `mixed_precision="float32"` and under "auto", alternating, the same
  seed, data and steps: step and epoch time, their ratio, and the loss
  after the same steps. Where "auto" kept float32 although the CPU or GPU
  has bfloat16, forced `mixed_bfloat16` runs beside them, to show what
  "auto" avoided. `gpt2_textgen` also runs against the PyTorch GPT-2 of
  `benchmarks/torch_models.py` in float32 and under bfloat16 autocast.
- `gpt2_small`: keras-hub's GPT-2, as `gpt2_textgen` builds it, at GPT-2
  small's width (12 layers, 768 hidden, 12 heads, context 1024; zoo's
  8192-token BPE), for a few steps: float32 with XLA (zoo's float32
  choice) and the policy and XLA setting "auto" picks, against PyTorch's
  bfloat16 autocast (and float32) of the same architecture, with MFU
  against matmul peaks of each dtype measured in the same run.
"""

import os
import shutil
import tempfile

from benchmarks import common, training

# Per model: what one `zoo.train` of the benchmark runs, by size.
RUNS = {
    "mlp_regressor": {
        # The tiny config but its input_dim, which the data sets.
        "tiny": dict(epochs=2, data_options={"num_train": 256}, batch_size=64, hidden_units=(8, 4)),
        "quick": dict(epochs=3, data_options={"num_train": 10_000}),
        "full": dict(epochs=4, data_options={"num_train": 10_000}),
    },
    "dcgan": {
        "tiny": dict(epochs=2, batch_size=128, tiny=True),
        "quick": dict(epochs=2),
        "full": dict(epochs=3),
    },
    "image_classifier": {
        "tiny": dict(epochs=2, tiny=True),
        "quick": dict(epochs=2),
        "full": dict(epochs=3),
    },
    "gpt2_textgen": {
        # `chars` of the embedded corpus: about 8 steps an epoch at the
        # default config (batch 16, 128 tokens), 2 at the tiny one.
        "tiny": dict(epochs=2, batch_size=4, tiny=True, chars=4_000),
        "quick": dict(epochs=2, chars=40_000),
        "full": dict(epochs=3, chars=70_000),
    },
}
REPEATS = {"tiny": 1, "quick": 1, "full": 2}
# Each zoo.train builds a fresh model and its first epoch is not timed, so
# the quick size skips the warm-up round (a shared 2-core machine).
WARMUP = {"tiny": 0, "quick": 0, "full": 1}
GPT2_SMALL = {
    "tiny": dict(vocabulary_size=512, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64,
                 max_sequence_length=64, sequence_length=64, batch_size=2, steps=2, chars=8_000),
    "quick": dict(vocabulary_size=8192, num_layers=12, num_heads=12, hidden_dim=768,
                  intermediate_dim=3072, max_sequence_length=1024, sequence_length=512,
                  batch_size=1, steps=2, chars=60_000),
    "full": dict(vocabulary_size=8192, num_layers=12, num_heads=12, hidden_dim=768,
                 intermediate_dim=3072, max_sequence_length=1024, sequence_length=1024,
                 batch_size=1, steps=2, chars=60_000),
}


def _loss_after(history, key):
    values = history.get(key) or []
    return float(values[-1]) if values else None


def _zoo_contender(name, policy, kwargs, run_root, counter):
    """One `zoo.train` of `name` under `policy`, timed by epoch and step."""
    import zoo
    from zoo.files import read_json

    def run():
        timer = common.step_timer()
        run_dir = os.path.join(run_root, f"{name}-{policy}-{next(counter)}")
        result = zoo.train(name, run_dir=run_dir, verbose=0, callbacks=[timer], strategy="default",
                           mixed_precision=policy, **kwargs)
        summary = timer.summary()
        chosen = read_json(os.path.join(run_dir, "env.json"))["precision"]
        summary.update(
            loss_after=_loss_after(result.history, "loss"),
            val_loss_after=_loss_after(result.history, "val_loss"),
            policy=chosen["policy"], xla=chosen["jit_compile"], reason=chosen["reason"],
            peak_rss_mb=common.peak_rss_mb())
        shutil.rmtree(run_dir, ignore_errors=True)
        return summary

    return run


def _kwargs(name, size, tmp):
    """`zoo.train` keywords of `name` at `size`, and the GPT-2 windows."""
    from zoo import registry

    entry = registry.get_entry(name)
    spec = dict(RUNS.get(name, {}).get(size) or dict(epochs=2, tiny=True))
    kwargs = dict(entry.tiny) if spec.pop("tiny", False) else {}
    windows = None
    chars = spec.pop("chars", None)
    if name == "gpt2_textgen":
        config = registry.get_config(name, **kwargs)
        cfg = {k: getattr(config, k) for k in training.ARCH + ("sequence_length",)}
        cfg["chars"] = chars
        text_path, windows = training.gpt2_corpus(cfg, tmp)
        kwargs["data"] = text_path
    return {**kwargs, **spec}, windows


def _torch_gpt2(name, kwargs, windows, steps, notes):
    """PyTorch float32 and bfloat16-autocast contenders of the same GPT-2."""
    from zoo import registry

    batch = kwargs.get("batch_size") or registry.get_entry(name).task.train_defaults["batch_size"]
    if not common.has_module("torch"):
        notes.append("torch is not installed: PyTorch contenders skipped (pip install -e .[bench]).")
        return {}, batch
    from benchmarks import torch_models

    fields = training.ARCH + ("dropout",)
    config = registry.get_config(name, **{k: v for k, v in kwargs.items()
                                          if k in fields + ("sequence_length",)})
    torch_cfg = {k: getattr(config, k) for k in fields}
    contenders = {}
    for dtype in ("float32", "bfloat16"):
        _, run = torch_models.gpt_trainer(windows, torch_cfg, batch, bfloat16=dtype == "bfloat16")

        def timed(run=run):
            run(1)  # The first step allocates and warms the kernels.
            result = run(steps)
            return {"step_s": result["step_s"], "loss_after": result["loss"],
                    "peak_rss_mb": common.peak_rss_mb()}

        contenders[f"{name}/torch_{dtype}"] = timed
    return contenders, batch


def precision_train(size="full", only=None, models=None):
    """Every model: `zoo.train` under float32 and under "auto", side by side.

    `models` (list of str) limits the run to some models; defaults to all.
    """
    import zoo
    from zoo import config as config_lib
    from zoo import precision, registry

    tmp = tempfile.mkdtemp(prefix="zoo-bench-precision-")
    counter = iter(range(10_000))
    hardware = precision.detect()
    native_bf16 = precision.choose("auto", hardware=hardware).policy != "float32"
    results, ratios, bars, notes = {}, {}, [], []
    for name in models or zoo.list_models():
        entry = registry.get_entry(name)
        kwargs, windows = _kwargs(name, size, tmp)
        config = registry.get_config(name, **{k: v for k, v in kwargs.items()
                                              if k not in config_lib.TRAIN_KEYWORDS})
        auto = precision.choose("auto", hardware=hardware, num_params=entry.task.count_params(config))
        policies = ["float32", "auto"]
        if auto.policy == "float32" and native_bf16:
            policies.append("mixed_bfloat16")
        contenders = {f"{name}/{p}": _zoo_contender(name, p, dict(kwargs), tmp, counter) for p in policies}
        batch = None
        if name == "gpt2_textgen":
            steps = max(2, (len(windows) - max(1, len(windows) // 10)) // (kwargs.get("batch_size") or 16))
            torch_contenders, batch = _torch_gpt2(name, kwargs, windows, min(steps, 8), notes)
            contenders.update(torch_contenders)
        if only:
            contenders = {k: v for k, v in contenders.items() if k == only}
            if not contenders:
                continue
        samples = common.alternate(contenders, REPEATS[size], warmup=WARMUP[size])
        tokens = entry.task.tokens_per_example(config)
        batch = batch or kwargs.get("batch_size") or entry.task.default_batch_size(
            kwargs.get("data_options", {}).get("num_train", 10_000))
        report = training._report(samples, batch, tokens)
        for cname, runs in samples.items():
            for key in ("loss_after", "val_loss_after"):
                values = [r[key] for r in runs if r.get(key) is not None]
                if values:
                    report[cname][key] = round(common.median(values), 5)
            for key in ("policy", "xla", "reason"):
                if runs and key in runs[-1]:
                    report[cname][key] = runs[-1][key]
        results.update(report)
        if only:
            continue
        f32, chosen = report[f"{name}/float32"], report[f"{name}/auto"]
        step_ratio = common.ratio(chosen.get("step_s"), f32.get("step_s"))
        if chosen.get("policy") == "float32":
            notes.append(f"{name}: auto chose float32, so its two contenders train the same way "
                         "and their ratio is this run's noise.")
        ratios[f"{name} auto/float32 step_s"] = step_ratio
        ratios[f"{name} auto/float32 epoch_s"] = common.ratio(chosen.get("epoch_s"), f32.get("epoch_s"))
        loss_diff = None
        if f32.get("loss_after") and chosen.get("loss_after") is not None:
            loss_diff = round(abs(chosen["loss_after"] - f32["loss_after"]) / abs(f32["loss_after"]), 4)
        ratios[f"{name} |loss auto - float32| / float32"] = loss_diff
        step_bar = common.bar(f"{name} auto/float32 step time", step_ratio, 1.02, higher_is_better=False)
        if chosen.get("policy") == "float32":
            # The same training twice: met by construction, whatever this round's noise says.
            step_bar.update(met=True, why="auto chose float32: the same training as the float32 contender")
        bars.append(step_bar)
        bars.append(common.bar(f"{name} loss after the same steps, auto vs float32", loss_diff, 0.01,
                               higher_is_better=False, unit="relative"))
        if f"{name}/mixed_bfloat16" in report:
            ratios[f"{name} mixed_bfloat16/float32 step_s"] = common.ratio(
                report[f"{name}/mixed_bfloat16"].get("step_s"), f32.get("step_s"))
        if name == "gpt2_textgen":
            if "amx_bf16" in hardware.cpu_flags and not hardware.gpus and size != "tiny":
                bars.append(common.bar("gpt2_textgen float32/auto step time (AMX CPU)",
                                       common.ratio(f32.get("step_s"), chosen.get("step_s")), 1.15,
                                       higher_is_better=True))
            torch_names = [n for n in report if "/torch_" in n and report[n].get("tokens_per_s")]
            if torch_names:
                best = max(torch_names, key=lambda n: report[n]["tokens_per_s"])
                value = common.ratio(chosen.get("tokens_per_s"), report[best]["tokens_per_s"])
                ratios[f"gpt2_textgen auto/{best.split('/')[1]} tokens_per_s"] = value
                bars.append(common.bar(f"gpt2_textgen tokens/s vs faster PyTorch ({best.split('/')[1]})",
                                       value, 1.0, higher_is_better=True))
    shutil.rmtree(tmp, ignore_errors=True)
    out = {"unit": "examples/s", "contenders": results, "hardware": hardware.describe(),
           "config": {n: {k: v for k, v in spec.get(size, {}).items()} for n, spec in RUNS.items()},
           "repeats": REPEATS[size], "notes": notes}
    if not only:
        out.update(ratios=ratios, bars=bars)
    return out


def _gflops_peak(n, dtype):
    from benchmarks import hardware

    return hardware._timed(hardware._tf_matmul(n, dtype, xla=False), 2 * n**3)()["gflops"]


def gpt2_small(size="full", only=None):
    """keras-hub GPT-2 at GPT-2 small's width: float32+XLA, "auto", PyTorch."""
    import keras
    import numpy as np

    from zoo import config as config_lib
    from zoo import precision, registry

    cfg = dict(GPT2_SMALL[size])
    tmp = tempfile.mkdtemp(prefix="zoo-bench-gpt2-small-")
    _, windows = training.gpt2_corpus(cfg, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    steps, tokens = cfg["steps"], cfg["sequence_length"]
    task = registry.get_entry("gpt2_textgen").task
    zoo_config = registry.get_config("gpt2_textgen", **{k: cfg[k] for k in training.ARCH + ("sequence_length",)})
    auto = precision.choose("auto", num_params=task.count_params(zoo_config))
    # The XLA setting zoo's gpt2_textgen compiles with under each policy.
    previous = keras.config.dtype_policy()
    jit = {}
    try:
        for policy in ("float32", auto.policy):
            keras.config.set_dtype_policy(policy)
            jit[policy] = task.execution_options(config_lib.TrainConfig())["jit_compile"]
    finally:
        keras.config.set_dtype_policy(previous)
    losses = {}

    class LastLoss(keras.callbacks.Callback):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def on_epoch_end(self, epoch, logs=None):
            losses[self.name] = float((logs or {}).get("loss", np.nan))

    def keras_contender(name, policy):
        def run():
            timer = common.step_timer()
            training.plain_keras_gpt2(cfg, windows, [timer, LastLoss(name)], epochs=2, steps=steps,
                                      jit_compile=jit[policy], dtype_policy=policy, validation_windows=1)
            result = timer.summary()
            result.update(policy=policy, xla=bool(jit[policy]), peak_rss_mb=common.peak_rss_mb())
            return result

        return run

    contenders = {"zoo_float32": keras_contender("zoo_float32", "float32")}
    if auto.policy != "float32":
        contenders[f"zoo_auto_{auto.policy}"] = keras_contender(f"zoo_auto_{auto.policy}", auto.policy)
    notes = [f"auto: {auto.policy} ({auto.reason})",
             "zoo_* are keras-hub's GPT2CausalLM as gpt2_textgen builds it, compiled with the policy "
             "and XLA setting zoo's gpt2_textgen uses (float32: XLA on; bfloat16 on a CPU: XLA off), "
             "fit for 2 epochs of `steps` steps; the first epoch (tracing) is not timed."]
    if common.has_module("torch"):
        from benchmarks import torch_models

        torch_cfg = {k: cfg[k] for k in training.ARCH}
        torch_cfg["dropout"] = 0.0
        for dtype in ("bfloat16", "float32"):
            _, run = torch_models.gpt_trainer(windows, torch_cfg, cfg["batch_size"], bfloat16=dtype == "bfloat16")

            def timed(run=run, name=f"torch_{dtype}"):
                run(1)
                result = run(steps)
                losses[name] = result["loss"]
                return {"step_s": result["step_s"], "peak_rss_mb": common.peak_rss_mb()}

            contenders[f"torch_{dtype}"] = timed
    else:
        notes.append("torch is not installed: PyTorch contenders skipped (pip install -e .[bench]).")
    n = {"tiny": 256, "quick": 1024, "full": 2048}[size]
    contenders["matmul_float32"] = lambda: {"gflops": _gflops_peak(n, "float32")}
    contenders["matmul_bfloat16"] = lambda: {"gflops": _gflops_peak(n, "bfloat16")}
    if only:
        contenders = {only: contenders[only]}
    # One round: each Keras contender's first epoch is its warm-up, and
    # PyTorch's first step is run apart.
    samples = common.alternate(contenders, 1, warmup=0)
    peaks = {d: common.median([s["gflops"] for s in samples.pop(f"matmul_{d}", [])]) for d in ("float32", "bfloat16")}
    results = training._report(samples, cfg["batch_size"], tokens)
    probe = training.plain_keras_gpt2(cfg, windows[:2], [], epochs=1, steps=1, fit=False)
    n_params, flops = training.model_flops_per_token(probe, cfg)
    del probe
    for name, entry in results.items():
        if name in losses:
            entry["loss_after"] = round(losses[name], 5)
        for key in ("policy", "xla"):
            values = [s.get(key) for s in samples.get(name, []) if s.get(key) is not None]
            if values:
                entry[key] = values[-1]
        if entry.get("tokens_per_s"):
            entry["model_gflops"] = round(entry["tokens_per_s"] * flops / 1e9, 2)
            dtype = "bfloat16" if "bfloat16" in name else "float32"
            if peaks.get(dtype):
                entry["mfu_vs_measured_peak"] = round(entry["model_gflops"] / peaks[dtype], 3)
    out = {"unit": "tokens/s", "config": cfg, "contenders": results, "notes": notes,
           "flops_per_token": flops, "params_without_position_embedding": n_params,
           "matmul_peak_gflops": {k: round(v, 2) if v else None for k, v in peaks.items()}}
    if only:
        return out
    ratios, bars = {}, []
    auto_name = f"zoo_auto_{auto.policy}"
    if auto_name in results:
        speedup = common.ratio(results["zoo_float32"].get("step_s"), results[auto_name].get("step_s"))
        ratios[f"zoo_float32/{auto_name} step_s"] = speedup
        hardware = precision.detect()
        if "amx_bf16" in hardware.cpu_flags and not hardware.gpus:
            bars.append(common.bar("GPT-2 small width: float32/auto step time (AMX CPU)", speedup, 1.5,
                                   higher_is_better=True))
        a, b = losses.get(auto_name), losses.get("zoo_float32")
        if a is not None and b:
            ratios["|loss auto - float32| / float32"] = round(abs(a - b) / abs(b), 4)
            bars.append(common.bar("GPT-2 small width: loss after the same steps, auto vs float32",
                                   ratios["|loss auto - float32| / float32"], 0.01, higher_is_better=False,
                                   unit="relative"))
    zoo_best = auto_name if auto_name in results else "zoo_float32"
    torch_names = [n for n in ("torch_float32", "torch_bfloat16") if results.get(n, {}).get("tokens_per_s")]
    if torch_names:
        best = max(torch_names, key=lambda n: results[n]["tokens_per_s"])
        ratios[f"{zoo_best}/{best} tokens_per_s"] = common.ratio(
            results[zoo_best].get("tokens_per_s"), results[best]["tokens_per_s"])
        bars.append(common.bar(f"GPT-2 small width: tokens/s vs faster PyTorch ({best})",
                               ratios[f"{zoo_best}/{best} tokens_per_s"], 1.0, higher_is_better=True))
    out.update(ratios=ratios, bars=bars)
    return out
