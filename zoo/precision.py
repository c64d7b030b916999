"""Chooses the dtype policy, and the XLA setting that goes with it, for the hardware.

`--mixed-precision auto` (the default) reads the machine, not the model's
name:

- GPUs of compute capability 8.0 or later (Ampere, Hopper): `mixed_bfloat16`,
  which their tensor cores run natively and which needs no loss scaling;
- GPUs of compute capability 7.x (Volta, Turing): `mixed_float16`, with
  Keras' dynamic loss scaling (`keras.optimizers.LossScaleOptimizer`);
- older GPUs: `float32` (no tensor cores: TensorFlow's mixed precision
  guide measures no gain there);
- CPUs with AMX (`amx_bf16` in /proc/cpuinfo): `mixed_bfloat16`, which
  oneDNN runs on the matrix units;
- CPUs with AVX512_BF16 but no AMX: `mixed_bfloat16` only if a bfloat16
  matmul measures at least `BF16_MIN_SPEEDUP` times faster than float32 on
  this machine (measured once, cached in zoo's cache directory);
- other CPUs: `float32`. TensorFlow emulates bfloat16 there: a matmul ran
  60x slower than float32 on an AVX2-only AMD EPYC.

A model too small to gain (`count_params` under `MIN_PARAMS`) stays in
float32: its matrices are too small for the matrix units to pay for the
casts around every layer (docs/precision.md).

A resumed run keeps the policy it started with (`resume`): its
checkpoint's optimizer state, and under `mixed_float16` its loss scale,
belong to that policy. Moved to a machine where "auto" would pick another
one, it trains on in its own, and `env.json` and the summary say what
"auto" would have picked; forcing a policy other than the run's is an
error that names both.

XLA: on a CPU, `jit_compile="auto"` means no XLA under `mixed_bfloat16`,
because XLA's CPU backend does not reach oneDNN's bfloat16 kernels (a
2048² matmul: 48 GFLOP/s under XLA against 253 without, on the AMX Xeon).
Otherwise "auto" is left to the model's task and Keras. A user forces
either with `--mixed-precision` and `--jit-compile`.

Nothing here imports TensorFlow at module level; GPU detection imports it.
"""

import dataclasses
import functools
import hashlib
import json
import os
import platform
import time

from zoo import config as config_lib
from zoo import files

POLICIES = config_lib.MIXED_PRECISION
check_policy = config_lib.check_mixed_precision
# An AVX512_BF16 CPU without AMX gets bfloat16 only if its bfloat16 matmul
# beats float32 by this much: the matmul is most, not all, of a step, and
# every layer adds casts.
BF16_MIN_SPEEDUP = 1.3
# Models with fewer parameters stay in float32 under "auto" (see the module
# docstring). Measured on the AMX Xeon (benchmarks/precision.py, load 6-15):
# the default GPT-2 (4.3M) trained 2.5-3x faster in mixed_bfloat16 in every
# run; the default DCGAN (134k) 0.72x, then 2.91x the float32 step time,
# and the MLP (18k) within noise: not reliably faster, so float32.
MIN_PARAMS = 1_000_000
# The matmul of the AVX512_BF16 check: large enough for the vector units
# to reach their rate, small enough for the check to take well under 1 s.
CHECK_SIZE = 512


@dataclasses.dataclass(frozen=True)
class GPU:
    """One GPU as TensorFlow sees it.

    Attributes:
        name: str. The device name, such as "NVIDIA H100 80GB HBM3".
        compute_capability: tuple[int, int] | None. Such as (9, 0); None
            when TensorFlow does not report it.
    """

    name: str
    compute_capability: tuple | None = None


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What the policy choice reads of the machine.

    Attributes:
        cpu_model: str. The CPU's model name from /proc/cpuinfo.
        cpu_flags: frozenset of str. Its feature flags (`amx_bf16`,
            `avx512_bf16`, `avx2`, ...).
        gpus: tuple of `GPU`. The GPUs TensorFlow can use.
    """

    cpu_model: str = ""
    cpu_flags: frozenset = frozenset()
    gpus: tuple = ()

    def describe(self):
        """A JSON-ready dict for `env.json`."""
        wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
        return {
            "cpu_model": self.cpu_model,
            "cpu_flags": [f for f in wanted if f in self.cpu_flags],
            "gpus": [{"name": g.name, "compute_capability": list(g.compute_capability)
                      if g.compute_capability else None} for g in self.gpus],
        }


@dataclasses.dataclass(frozen=True)
class Choice:
    """A dtype policy and XLA setting, and why.

    Attributes:
        policy: str. "float32", "mixed_bfloat16" or "mixed_float16".
        jit_compile: str | bool. The XLA setting for `model.compile`: False
            where the policy rules XLA out, else what was asked ("auto"
            stays for the task and Keras to decide).
        reason: str. Why, in a sentence or two, for the summary and
            `env.json`.
        requested: str. What the user asked for ("auto" or a policy).
        hardware: `Hardware`. What the choice read.
        auto_here: `Choice` or None. Set when a resumed run kept its
            policy although "auto" picks another on this machine: that
            other choice.
    """

    policy: str
    jit_compile: object
    reason: str
    requested: str
    hardware: Hardware
    auto_here: object = None

    def describe(self):
        """A JSON-ready dict for `env.json`."""
        described = {"requested": self.requested, "policy": self.policy,
                     "jit_compile": self.jit_compile, "reason": self.reason,
                     "hardware": self.hardware.describe()}
        if self.auto_here is not None:
            described["kept_from_run"] = True
            described["auto_here"] = {"policy": self.auto_here.policy, "reason": self.auto_here.reason}
        return described


def read_cpu(path="/proc/cpuinfo"):
    """`(model name, flags)` of the first CPU in `path`; empty where unreadable."""
    model, flags = "", frozenset()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "model name" and not model:
                    model = value
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    model = model or platform.processor()
    return model, flags


def read_gpus():
    """The GPUs TensorFlow sees, with their compute capability."""
    from zoo import quiet

    tf = quiet.import_tensorflow()
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):
            details = {}
        capability = details.get("compute_capability")
        gpus.append(GPU(details.get("device_name", device.name),
                        tuple(capability) if capability else None))
    return tuple(gpus)


@functools.lru_cache(maxsize=1)
def detect():
    """The `Hardware` of this process, read once."""
    model, flags = read_cpu()
    return Hardware(model, flags, read_gpus())


def bf16_matmul_speedup(hardware, measure=None):
    """How much faster a bfloat16 matmul runs than float32 on this CPU.

    Measured once per CPU model, flags and TensorFlow version, then read
    from `<cache>/precision/`. `measure` (a callable returning the ratio)
    replaces the measurement, for tests.
    """
    key = json.dumps([hardware.cpu_model, sorted(hardware.cpu_flags), _tf_version()])
    path = os.path.join(files.cache_dir("precision"),
                        f"bf16-matmul-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json")
    cached = files.read_json(path)
    if cached is not None and cached.get("key") == key:
        return float(cached["speedup"])
    speedup = float((measure or _measure_bf16_speedup)())
    files.write_json(path, {"key": key, "speedup": speedup, "size": CHECK_SIZE})
    return speedup


def _tf_version():
    from importlib import metadata

    try:
        return metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        return ""


def _measure_bf16_speedup(n=CHECK_SIZE, seconds=0.15):
    """float32 time over bfloat16 time of an `n`² `tf.matmul`, best of a few."""
    from zoo import quiet

    tf = quiet.import_tensorflow()
    with tf.device("/CPU:0"):
        a = tf.random.normal((n, n))
        pairs = {"float32": (a, a), "bfloat16": (tf.cast(a, tf.bfloat16),) * 2}
        best = {}
        for dtype, (x, y) in pairs.items():
            tf.matmul(x, y).numpy()  # Warms up the kernel.
            times = []
            # A bfloat16 matmul without native support can take seconds: at
            # least 2 runs, then as many as fit in `seconds`.
            while len(times) < 2 or (sum(times) < seconds and len(times) < 50):
                start = time.perf_counter()
                tf.matmul(x, y).numpy()
                times.append(time.perf_counter() - start)
            best[dtype] = min(times)
    return best["float32"] / best["bfloat16"]


def xla_for(policy, jit_compile, hardware=None):
    """The XLA setting that goes with `policy`: False for bfloat16 on a CPU.

    A forced `jit_compile` (True or False) is kept; "auto" becomes False
    under `mixed_bfloat16` when no GPU trains, and stays "auto" otherwise.
    """
    if jit_compile != "auto" or policy != "mixed_bfloat16":
        return jit_compile
    hardware = hardware or detect()
    return "auto" if hardware.gpus else False


def choose(mixed_precision="auto", jit_compile="auto", *, hardware=None, num_params=None, measure=None):
    """The dtype policy, its XLA setting and the reason, for this machine.

    Args:
        mixed_precision: str | None. "auto", or a policy to force
            ("float32", "mixed_bfloat16", "mixed_float16"); None means
            "float32". Defaults to "auto".
        jit_compile: str | bool. The XLA setting asked for. Defaults to
            "auto".
        hardware: `Hardware`. Defaults to this machine's (`detect()`).
        num_params: int | None. The model's parameter count, when known;
            under `MIN_PARAMS` "auto" keeps float32.
        measure: callable. Replaces the AVX512_BF16 matmul measurement
            (for tests). Defaults to None.

    Returns:
        A `Choice`.

    ```python
    choice = zoo.precision.choose("auto")
    print(choice.policy, choice.reason)
    ```
    """
    check_policy(mixed_precision)
    requested = mixed_precision or "float32"
    hardware = hardware or detect()
    if requested != "auto":
        policy, reason = requested, "forced by --mixed-precision"
    elif num_params is not None and num_params < MIN_PARAMS:
        policy, reason = "float32", (
            f"the model has {num_params:,} parameters, under {MIN_PARAMS:,}: its matrices are "
            "too small for mixed precision to pay for its casts")
    else:
        policy, reason = _by_hardware(hardware, measure)
    jit = xla_for(policy, jit_compile, hardware)
    if jit is False and jit_compile == "auto":
        reason += "; XLA off: on a CPU, XLA does not reach oneDNN's bfloat16 kernels"
    return Choice(policy, jit, reason, requested, hardware)


def _by_hardware(hardware, measure=None):
    """`(policy, reason)` from the devices that will train."""
    if hardware.gpus:
        capabilities = [g.compute_capability for g in hardware.gpus]
        names = ", ".join(sorted({g.name for g in hardware.gpus}))
        if any(c is None for c in capabilities):
            return "float32", f"GPU ({names}) of unknown compute capability"
        lowest = min(capabilities)
        shown = f"{names}, compute capability {lowest[0]}.{lowest[1]}"
        if lowest >= (8, 0):
            return "mixed_bfloat16", f"GPU ({shown}) has bfloat16 tensor cores"
        if lowest >= (7, 0):
            return "mixed_float16", (
                f"GPU ({shown}) has float16 tensor cores but no bfloat16; Keras scales the loss")
        return "float32", f"GPU ({shown}) has no tensor cores"
    flags, cpu = hardware.cpu_flags, hardware.cpu_model or "this CPU"
    if "amx_bf16" in flags:
        return "mixed_bfloat16", f"CPU ({cpu}) has AMX bfloat16 matrix units (amx_bf16)"
    if "avx512_bf16" in flags:
        speedup = bf16_matmul_speedup(hardware, measure)
        if speedup >= BF16_MIN_SPEEDUP:
            return "mixed_bfloat16", (
                f"CPU ({cpu}) has AVX512_BF16 without AMX; a bfloat16 matmul measured "
                f"{speedup:.2f}x float32 (at least {BF16_MIN_SPEEDUP}x needed)")
        return "float32", (
            f"CPU ({cpu}) has AVX512_BF16 without AMX, but a bfloat16 matmul measured only "
            f"{speedup:.2f}x float32 (at least {BF16_MIN_SPEEDUP}x needed)")
    return "float32", f"CPU ({cpu}) has no native bfloat16 (no AMX or AVX512_BF16)"


def resume(choice, recorded, saved_request, run_dir, *, jit_compile="auto"):
    """The `Choice` for a run that resumes from its checkpoint.

    The run keeps the policy it trained in: "auto" (now) keeps it, with
    the reason it was picked and what "auto" picks on this machine when
    that differs; a forced policy must be the run's.

    Args:
        choice: `Choice`. What `choose` picks now for this machine.
        recorded: dict or None. The run's `env.json` "precision" (the
            policy it trained in); None when the run recorded none.
        saved_request: str or None. The run's `config.json`
            `train.mixed_precision` ("auto" or a policy; None meant
            float32).
        run_dir: str. The run directory, for the messages.
        jit_compile: str | bool. The XLA setting asked for now. Defaults
            to "auto".

    Returns:
        A `Choice`: `choice` itself when it is the run's policy.

    Raises:
        ValueError: a policy forced now is not the run's.

    ```python
    choice = zoo.precision.resume(zoo.precision.choose("auto"), env["precision"], "auto", run_dir)
    ```
    """
    saved_request = saved_request or "float32"
    recorded = recorded if isinstance(recorded, dict) else {}
    run_policy = recorded.get("policy") or (saved_request if saved_request != "auto" else None)
    if run_policy not in POLICIES or run_policy == "auto":
        # No record of what it trained in (an env.json deleted by hand): the
        # choice of this machine stands, and says so.
        if choice.requested != "auto":
            return choice
        return dataclasses.replace(
            choice, reason=f"{choice.reason}; the run recorded no policy in env.json to keep")
    if choice.policy == run_policy:
        return choice
    if saved_request != "auto":
        how = f"--mixed-precision {saved_request} when it started"
    else:
        how = "chosen by \"auto\" where it started" + (
            f": {recorded['reason']}" if recorded.get("reason") else "")
    if choice.requested != "auto":
        state = ("optimizer state and loss scale belong" if "mixed_float16" in (run_policy, choice.policy)
                 else "optimizer state belongs")
        raise ValueError(
            f"Invalid value for `mixed_precision`: run {run_dir} trains in {run_policy} ({how}); "
            f"its checkpoint's {state} to that policy, so it cannot resume in {choice.policy}. Resume it with "
            f"--mixed-precision auto or {run_policy} (both keep {run_policy}), or train in "
            f"{choice.policy} in another --run-dir. Received: mixed_precision='{choice.requested}'.")
    jit = xla_for(run_policy, jit_compile, choice.hardware)
    reason = (f"kept from the run, whose checkpoint belongs to it ({how}); on this machine "
              f"\"auto\" would pick {choice.policy}: {choice.reason}")
    if jit is False and jit_compile == "auto" and "XLA off" not in how:
        reason += "; XLA off: on a CPU, XLA does not reach oneDNN's bfloat16 kernels"
    return Choice(run_policy, jit, reason, choice.requested, choice.hardware, auto_here=choice)
