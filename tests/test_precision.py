"""`zoo.precision`: the policy "auto" picks per hardware, and every model
training under every policy with finite losses and float32 outputs."""

import dataclasses
import json
import os
import subprocess

import numpy as np
import pytest

import zoo
from conftest import ZOO, zoo_env
from zoo import precision, registry
from zoo.precision import GPU, Hardware

AMX = Hardware("Intel Xeon (AMX)", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}))
AVX512_BF16 = Hardware("Intel Xeon (Cooper Lake)", frozenset({"avx2", "avx512f", "avx512_bf16"}))
AVX2 = Hardware("AMD EPYC", frozenset({"avx2", "fma"}))
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def _gpus(*capabilities):
    return dataclasses.replace(AVX2, gpus=tuple(GPU(f"GPU {c}", c) for c in capabilities))


def _never():
    raise AssertionError("the matmul check ran, though its result was cached or not needed")


@pytest.mark.parametrize("hardware, policy, jit, words", [
    (AMX, "mixed_bfloat16", False, ["AMX", "XLA off"]),
    (AVX2, "float32", "auto", ["no native bfloat16"]),
    (_gpus((9, 0)), "mixed_bfloat16", "auto", ["compute capability 9.0", "bfloat16 tensor cores"]),
    (_gpus((8, 0), (8, 6)), "mixed_bfloat16", "auto", ["compute capability 8.0"]),
    (_gpus((7, 5)), "mixed_float16", "auto", ["7.5", "scales the loss"]),
    # A strategy over several GPUs runs at the pace of the oldest one.
    (_gpus((8, 0), (7, 0)), "mixed_float16", "auto", ["7.0"]),
    (_gpus((6, 1)), "float32", "auto", ["no tensor cores"]),
    (_gpus(None), "float32", "auto", ["unknown compute capability"]),
])
def test_auto_per_hardware(hardware, policy, jit, words):
    choice = precision.choose("auto", hardware=hardware, measure=_never)
    assert (choice.policy, choice.jit_compile) == (policy, jit)
    assert all(w in choice.reason for w in words), choice.reason
    assert choice.describe()["hardware"] == hardware.describe()
    json.dumps(choice.describe())


def test_avx512_bf16_without_amx_is_measured_once(tmp_cache):
    fast = precision.choose("auto", hardware=AVX512_BF16, measure=lambda: 2.4)
    assert fast.policy == "mixed_bfloat16" and "measured 2.40x" in fast.reason
    # Cached per CPU: the same CPU reads the file and does not measure again.
    assert precision.choose("auto", hardware=AVX512_BF16, measure=_never).policy == "mixed_bfloat16"
    slower = dataclasses.replace(AVX512_BF16, cpu_model="Another AVX512_BF16 CPU")
    slow = precision.choose("auto", hardware=slower, measure=lambda: 1.1)
    assert slow.policy == "float32" and "only 1.10x" in slow.reason and slow.jit_compile == "auto"
    assert len(os.listdir(tmp_cache / "precision")) == 2


def test_the_real_matmul_check_measures_this_cpu(tmp_cache):
    speedup = precision.bf16_matmul_speedup(precision.detect())
    assert speedup > 0
    assert precision.bf16_matmul_speedup(precision.detect(), measure=_never) == speedup


def test_forced_policies_and_xla_are_kept():
    forced = precision.choose("mixed_float16", hardware=AVX2)
    assert (forced.policy, forced.jit_compile, forced.reason) == ("mixed_float16", "auto", "forced by --mixed-precision")
    assert precision.choose(None, hardware=AMX).policy == "float32"
    # bfloat16 on a CPU turns XLA off only when XLA was left to "auto".
    assert precision.choose("mixed_bfloat16", False, hardware=AVX2).jit_compile is False
    assert precision.choose("mixed_bfloat16", True, hardware=AMX).jit_compile is True
    assert precision.choose("mixed_bfloat16", hardware=_gpus((9, 0))).jit_compile == "auto"


def test_small_models_stay_in_float32():
    small = precision.choose("auto", hardware=AMX, num_params=18_073)
    assert small.policy == "float32" and "18,073 parameters" in small.reason
    assert precision.choose("auto", hardware=AMX, num_params=precision.MIN_PARAMS).policy == "mixed_bfloat16"


def test_unknown_policy_names_the_choices():
    with pytest.raises(ValueError, match="Did you mean 'mixed_bfloat16'.*Accepted: auto, float32"):
        precision.choose("mixed_bfloat61")
    with pytest.raises(ValueError, match="mixed_precision"):
        zoo.TrainConfig(mixed_precision="bf16")


def test_a_run_saved_before_auto_resumes_as_float32():
    from zoo import runs

    saved = {"train": {"mixed_precision": None}}
    assert runs.config_mismatch(saved, {"train": {"mixed_precision": "float32"}}) == []
    assert runs.config_mismatch(saved, {"train": {"mixed_precision": "auto"}}) == [
        "train.mixed_precision: saved 'float32', now 'auto'"]


def test_a_resumed_run_keeps_its_policy_where_auto_now_picks_another():
    started = precision.choose("auto", hardware=AMX).describe()  # mixed_bfloat16, XLA off
    here = precision.choose("auto", hardware=AVX2)  # float32 on this machine
    kept = precision.resume(here, started, "auto", "runs/a")
    assert (kept.policy, kept.jit_compile, kept.requested) == ("mixed_bfloat16", False, "auto")
    assert kept.auto_here is here
    assert "kept from the run" in kept.reason and "AMX" in kept.reason
    assert 'would pick float32: CPU (AMD EPYC) has no native bfloat16' in kept.reason
    described = kept.describe()
    assert described["kept_from_run"] is True
    assert described["auto_here"] == {"policy": "float32", "reason": here.reason}
    json.dumps(described)
    # A policy forced at the start is kept the same way; XLA forced now stays forced.
    forced = precision.resume(here, precision.choose("mixed_float16", hardware=AMX).describe(),
                              "mixed_float16", "runs/a", jit_compile=True)
    assert (forced.policy, forced.jit_compile) == ("mixed_float16", True)
    assert "--mixed-precision mixed_float16 when it started" in forced.reason
    # Where "auto" picks the run's policy, nothing changes.
    same = precision.choose("auto", hardware=AMX)
    assert precision.resume(same, started, "auto", "runs/a") is same


def test_a_resumed_run_refuses_a_forced_policy_other_than_its_own():
    started = precision.choose("auto", hardware=_gpus((7, 5))).describe()  # mixed_float16
    with pytest.raises(ValueError) as error:
        precision.resume(precision.choose("float32", hardware=AVX2), started, "auto", "runs/a")
    message = str(error.value)
    assert "run runs/a trains in mixed_float16 (chosen by \"auto\" where it started: GPU" in message
    assert "optimizer state and loss scale belong to that policy, so it cannot resume in float32" in message
    assert "--mixed-precision auto or mixed_float16" in message
    assert message.endswith("Received: mixed_precision='float32'.")
    # Forcing the policy the run trains in is no conflict.
    own = precision.choose("mixed_float16", hardware=AVX2)
    assert precision.resume(own, started, "auto", "runs/a") is own


def test_a_resumed_run_without_a_record_keeps_what_its_config_says():
    amx_auto = precision.choose("auto", hardware=AMX)
    # Saved before "auto" existed (None meant float32), env.json gone: float32.
    old = precision.resume(amx_auto, None, None, "runs/a")
    assert old.policy == "float32" and "--mixed-precision float32 when it started" in old.reason
    # Started under "auto" with env.json deleted: this machine's choice, said so.
    unknown = precision.resume(amx_auto, {}, "auto", "runs/a")
    assert unknown.policy == "mixed_bfloat16" and "recorded no policy" in unknown.reason
    assert unknown.auto_here is None


def test_read_cpu_takes_the_first_cpus_model_and_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 amx_bf16\n\n"
                    "processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu\n")
    assert precision.read_cpu(str(info)) == ("Test CPU", frozenset({"fpu", "avx2", "amx_bf16"}))
    assert precision.read_cpu(str(tmp_path / "missing"))[1] == frozenset()


def test_this_machine_is_read_from_proc_cpuinfo():
    hardware = precision.detect()
    with open("/proc/cpuinfo") as f:
        text = f.read()
    assert ("amx_bf16" in hardware.cpu_flags) == (" amx_bf16" in text)
    if "amx_bf16" in hardware.cpu_flags and not hardware.gpus:
        assert precision.choose("auto").policy == "mixed_bfloat16"


def test_gpt2_xla_default_is_off_under_bfloat16_on_a_cpu(monkeypatch):
    import keras

    monkeypatch.setattr(precision, "detect", lambda: AMX)
    task = registry.get_entry("gpt2_textgen").task
    config = zoo.TrainConfig()
    previous = keras.config.dtype_policy()
    try:
        for policy, jit in (("float32", True), ("mixed_float16", True), ("mixed_bfloat16", False)):
            keras.config.set_dtype_policy(policy)
            assert task.execution_options(config)["jit_compile"] is jit, policy
        keras.config.set_dtype_policy("mixed_bfloat16")
        assert task.execution_options(zoo.TrainConfig(jit_compile=True))["jit_compile"] is True
    finally:
        keras.config.set_dtype_policy(previous)


# ---------------------------------------------------------------------------
# Every model under every policy, on its tiny config.


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the FID classifier and the BPE build once."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("ZOO_CACHE_DIR")
    os.environ["ZOO_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ZOO_CACHE_DIR", None)
    else:
        os.environ["ZOO_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    words = "the quick brown fox jumps over the lazy dog while a model learns its words".split()
    rng = np.random.default_rng(0)
    for i in range(4):
        (folder / f"doc{i}.txt").write_text(" ".join(rng.choice(words, 600)))
    return str(folder)


# The DCGAN gets a folder of unlabelled images: no FID classifier to train.
DATA = {"mlp_regressor": (None, {"num_train": 256}), "dcgan": ("images", {}), "gpt2_textgen": ("text", {})}
STEPS, BATCH = 3, 16


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from zoo.data import images as images_lib

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(64):
        images_lib.save_png(rng.integers(0, 256, (8, 8, 1), dtype=np.uint8), str(folder / f"{i}.png"))
    return str(folder)


def _fit(name, policy, sources):
    """Builds, compiles and fits tiny `name` for a few steps under `policy`, as
    the trainer does (data in float32, the model under the policy)."""
    import keras

    from zoo import task as task_lib

    entry = registry.get_entry(name)
    task = entry.task
    data_name, options = DATA.get(name, (None, {}))
    config = registry.get_config(name, **entry.tiny)
    data = task.load_data(sources.get(data_name), config, options, 0)
    config = zoo.apply_overrides(config, data.config_updates)
    train_config = zoo.TrainConfig(epochs=1, batch_size=BATCH, mixed_precision=policy)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = task.build(entry.build, config, None, data)
        task.prepare(model, data)
        task_lib.compile_model(task, model, config, train_config, steps_per_epoch=STEPS)
        with task.fitting(model, data):
            history = model.fit(task.batch(data.train, BATCH, training=True).take(STEPS), verbose=0)
    finally:
        keras.config.set_dtype_policy(previous)
    return model, config, history.history


@pytest.fixture(scope="module")
def fitted(cache, text, images):
    """`{(model, policy): (model, config, history)}` for every model and policy."""
    sources = {"text": text, "images": images}
    return {(name, policy): _fit(name, policy, sources) for name in zoo.list_models() for policy in POLICIES}


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", zoo.list_models())
def test_every_model_trains_under_every_policy(fitted, name, policy):
    import keras

    model, config, history = fitted[name, policy]
    losses = [v for k, values in history.items() if k.endswith("loss") for v in values]
    assert losses and np.all(np.isfinite(losses)), history
    assert model.dtype_policy.name == policy
    x = registry.get_entry(name).task.example_input(config)
    outputs = model(x, training=False)
    assert outputs.dtype == "float32"
    if name == "gpt2_textgen":
        # The loss of the logits, too (Keras' losses compute in float32).
        labels = np.zeros(outputs.shape[:2], "int32")
        assert model.loss(labels, outputs).dtype == "float32"
    if name == "dcgan":
        assert model.discriminator(outputs, training=False).dtype == "float32"
    if policy == "mixed_float16":
        # Keras scales the loss for the optimizer it compiles with; DCGAN's
        # own train_step applies two optimizers, which zoo wraps.
        optimizers = [model.d_optimizer, model.g_optimizer] if name == "dcgan" else [model.optimizer]
        for optimizer in optimizers:
            assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            # The steps went through the loss scale: it counted finite
            # steps, or lowered the scale after an overflow.
            assert (int(optimizer.step_counter.numpy()) > 0
                    or float(optimizer.dynamic_scale.numpy()) < optimizer.initial_scale)


@pytest.mark.slow
def test_a_mixed_float16_dcgan_saves_reloads_and_generates(fitted, tmp_path):
    model = fitted["dcgan", "mixed_float16"][0]
    path = str(tmp_path / "model.keras")
    model.save(path)
    again = zoo.load_model(path)
    assert type(again.d_optimizer).__name__ == "LossScaleOptimizer"
    images = again.generate(4, seed=0)
    assert images.dtype == np.float32 and np.all(np.isfinite(images))


@pytest.mark.slow
def test_auto_under_simulated_amx_picks_bfloat16_and_turns_gpt2_xla_off(cache, text, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "detect", lambda: AMX)
    monkeypatch.setattr(precision, "MIN_PARAMS", 0)
    run = zoo.train("gpt2_textgen", data=text, epochs=1, batch_size=8, strategy="default",
                    run_dir=str(tmp_path / "run"), verbose=0, **registry.get_entry("gpt2_textgen").tiny)
    with open(os.path.join(run.dir, "env.json")) as f:
        chosen = json.load(f)["precision"]
    assert (chosen["requested"], chosen["policy"], chosen["jit_compile"]) == ("auto", "mixed_bfloat16", False)
    assert "AMX" in chosen["reason"] and chosen["hardware"]["cpu_flags"][-1] == "amx_bf16"
    assert run.config["train"]["mixed_precision"] == "auto"
    assert np.isfinite(run.history["loss"][-1])


@pytest.mark.slow
def test_a_run_moved_to_other_hardware_resumes_in_its_own_policy(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(precision, "MIN_PARAMS", 0)
    options = dict(data_options={"num_train": 256}, batch_size=32, strategy="default",
                   run_dir=str(tmp_path / "run"), hidden_units=(8, 4))
    monkeypatch.setattr(precision, "detect", lambda: AMX)
    zoo.train("mlp_regressor", epochs=1, verbose=0, **options)
    monkeypatch.setattr(precision, "detect", lambda: AVX2)  # Moved: "auto" now picks float32.
    with pytest.raises(ValueError, match="trains in mixed_bfloat16 .* cannot resume in float32"):
        zoo.train("mlp_regressor", epochs=2, verbose=0, mixed_precision="float32", **options)
    run = zoo.train("mlp_regressor", epochs=2, **options)
    assert "Keeping the run's dtype policy mixed_bfloat16" in capsys.readouterr().out
    assert run.model.dtype_policy.name == "mixed_bfloat16" and len(run.history["loss"]) == 2
    with open(os.path.join(run.dir, "env.json")) as f:
        chosen = json.load(f)["precision"]
    assert (chosen["policy"], chosen["kept_from_run"], chosen["auto_here"]["policy"]) == (
        "mixed_bfloat16", True, "float32")
    assert run.config["train"]["mixed_precision"] == "auto"
    # Forcing the run's own policy is no config change: it continues.
    run = zoo.train("mlp_regressor", epochs=3, verbose=0, mixed_precision="mixed_bfloat16", **options)
    assert len(run.history["loss"]) == 3 and run.config["train"]["mixed_precision"] == "auto"


@pytest.mark.slow
def test_cli_auto_records_the_choice_in_env_json_and_the_summary(cache, tmp_path):
    help_text = subprocess.run([*ZOO, "train", "mlp_regressor", "--help"], capture_output=True,
                               text=True, env=zoo_env(), check=True).stdout
    assert "--mixed-precision {auto,float32,mixed_bfloat16,mixed_float16}" in help_text
    assert "AMX" in help_text and "compute capability" in help_text
    bad = subprocess.run([*ZOO, "train", "mlp_regressor", "--mixed-precision", "bf16"],
                         capture_output=True, text=True, env=zoo_env())
    assert bad.returncode == 2 and "invalid choice: 'bf16'" in bad.stderr
    out = subprocess.run(
        [*ZOO, "train", "mlp_regressor", "--epochs", "1", "--data-option", "num_train=200",
         "--set", "hidden_units=[8]", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, env=zoo_env(ZOO_CACHE_DIR=cache), timeout=300)
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "run" / "env.json") as f:
        chosen = json.load(f)["precision"]
    assert chosen["requested"] == "auto" and chosen["policy"] == "float32"
    assert "parameters, under 1,000,000" in chosen["reason"]
    assert f"Precision: float32, XLA off ({chosen['reason']})" in out.stdout


@pytest.mark.slow
def test_precision_benchmark_runs_float32_against_auto(cache, monkeypatch):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import common
    from benchmarks import precision as bench_precision
    from benchmarks import run as bench

    bench.check_names(["precision_train", "gpt2_small"])
    monkeypatch.setattr(precision, "detect", lambda: AMX)
    real = common.has_module
    monkeypatch.setattr(common, "has_module", lambda name: name != "torch" and real(name))
    result = bench_precision.precision_train("tiny", models=["mlp_regressor"])
    contenders = result["contenders"]
    # "auto" kept float32 (a small model) although the CPU has bfloat16, so
    # the benchmark also runs bfloat16 forced, to show what auto avoided.
    assert set(contenders) == {"mlp_regressor/float32", "mlp_regressor/auto", "mlp_regressor/mixed_bfloat16"}
    assert contenders["mlp_regressor/auto"]["policy"] == "float32"
    assert contenders["mlp_regressor/mixed_bfloat16"]["policy"] == "mixed_bfloat16"
    assert all(c["step_s"] > 0 and np.isfinite(c["loss_after"]) for c in contenders.values())
    assert result["ratios"]["mlp_regressor auto/float32 step_s"] > 0
    assert [b["name"] for b in result["bars"]] == [
        "mlp_regressor auto/float32 step time", "mlp_regressor loss after the same steps, auto vs float32"]
    assert any("noise" in n for n in result["notes"])
    # The same training twice: the step bar is met by construction, and says why.
    step_bar = result["bars"][0]
    assert step_bar["met"] is True and "auto chose float32" in step_bar["why"]
    assert "(auto chose float32" in bench.render({"benchmarks": {"precision_train": result}})
