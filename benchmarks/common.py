"""Shared helpers of the benchmarks: alternation, timing, RSS and machine facts.

Every benchmark measures its contenders in one process, alternating them
(A B A B ...; the order rotates each repeat so neither always runs first),
after one warm-up round that is not recorded, and quotes the median of the
repeats. Results are ratios of medians measured side by side, so that they
hold on a shared, noisy machine.
"""

import contextlib
import datetime
import importlib
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Set while one contender runs alone for its peak memory: one round is
# enough for that, and the timing of that process is not used.
ALONE = False


def median(values):
    """The median of `values`, or None for an empty list."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def alternate(contenders, repeats, warmup=1):
    """Runs each contender `warmup + repeats` times, interleaved.

    Args:
        contenders: dict of name -> callable. Each call runs one measured
            block and returns a dict of numbers (such as
            `{"seconds": 1.2, "examples": 640}`).
        repeats: int. Recorded rounds.
        warmup: int. Leading rounds that run but are not recorded (tracing,
            caches, thread pools). Defaults to 1.

    Returns:
        dict of name -> list of the recorded dicts, in round order.

    ```python
    samples = alternate({"a": run_a, "b": run_b}, repeats=5)
    ```
    """
    names = list(contenders)
    if ALONE:
        repeats, warmup = 1, 0
    samples = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            result = contenders[name]()
            if round_index >= warmup:
                samples[name].append(result)
    return samples


def summarize(samples, key):
    """Median of `key` over each contender's recorded dicts."""
    return {name: median([s.get(key) for s in runs]) for name, runs in samples.items()}


def ratio(a, b):
    """a / b rounded to 3 places, or None when either is missing."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def bar(name, value, target, *, higher_is_better, unit="x"):
    """A bar of the issue: its measured value, target and whether it is met."""
    met = None if value is None else (value >= target if higher_is_better else value <= target)
    return {"name": name, "value": value, "target": target, "unit": unit,
            "higher_is_better": higher_is_better, "met": met}


def peak_rss_mb():
    """This process's peak resident set size so far, in MiB (Linux: KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def has_module(name):
    """Whether `name` imports (used to skip torch/transformers contenders)."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def stopwatch(out, key):
    """Stores the wall time of the block, in seconds, as `out[key]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        out[key] = time.perf_counter() - start


def step_timer():
    """A Keras callback that timestamps batches, epochs and the fit call.

    Its `summary()` gives the steady step time (the median, over the
    executions of every epoch but the first, of an execution's time divided
    by the steps it ran; the first execution of an epoch also pays for a new
    iterator, and the first epoch for tracing), the steady epoch time
    (between consecutive epoch ends, so validation and every other
    callback's epoch-end work are in) and their mean (`epoch_mean_s`: what
    an epoch costs with the periodic work, a checkpoint every few epochs or
    an FID every fifth, spread over the epochs), the first epoch, and the
    tail from the last epoch's end to `on_train_end`.

    Steps are counted as they ran, not as batch hooks: with
    `steps_per_execution=8` Keras calls `on_train_batch_end` once per 8
    steps, passing the last step index (`zoo.tensorboard.real_steps`, which
    also handles the shorter last execution of an epoch).

    It is `async_safe`: a callback with a batch hook that is not turns off
    Keras' asynchronous dispatch of batch callbacks, and the timer must not
    change the plain-Keras contender it times. On a CPU the step function
    returns when the step is done, so the hook still runs at the step's end.
    """
    import keras

    from zoo.tensorboard import real_steps

    class StepTimer(keras.callbacks.Callback):
        async_safe = True

        def __init__(self):
            super().__init__()
            # Per epoch: [(time, steps done in the epoch so far), ...].
            self.batch_ends, self.epoch_begins, self.epoch_ends = [], [], []
            self.train_begin = self.train_end = None

        def on_train_begin(self, logs=None):
            self.train_begin = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_begins.append(time.perf_counter())
            self.batch_ends.append([])

        def on_train_batch_end(self, batch, logs=None):
            self.batch_ends[-1].append((time.perf_counter(), real_steps(batch, self.params)))

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_ends.append(time.perf_counter())

        def on_train_end(self, logs=None):
            self.train_end = time.perf_counter()

        def summary(self):
            steady_steps = []
            for begin, ends in zip(self.epoch_begins[1:], self.batch_ends[1:]):
                per_step = [(t - t0) / (n - n0) for (t0, n0), (t, n) in zip([(begin, 0)] + ends[:-1], ends)
                            if n > n0]
                steady_steps.extend(per_step[1:] if len(per_step) > 1 else per_step)
            epochs = [b - a for a, b in zip(self.epoch_ends[:-1], self.epoch_ends[1:])]
            first = self.batch_ends[0] if self.batch_ends else []
            return {
                "step_s": median(steady_steps),
                "epoch_s": median(epochs),
                "epoch_mean_s": (sum(epochs) / len(epochs)) if epochs else None,
                "first_epoch_s": (self.epoch_ends[0] - self.train_begin) if self.epoch_ends else None,
                "first_step_s": (first[0][0] - self.epoch_begins[0]) if first else None,
                "steps_per_epoch": first[-1][1] if first else 0,
                "steps_per_execution": first[0][1] if first else 0,
                "epochs": len(self.epoch_ends),
                "end_tail_s": (self.train_end - self.epoch_ends[-1]) if self.epoch_ends else None,
            }

    return StepTimer()


def _read(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info():
    """Host, CPU model and cores, load, and package versions, as a dict."""
    model = ""
    for line in _read(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        pass
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f" {f}" in flags]
    versions = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "keras_hub", "numpy", "torch", "transformers"):
        try:
            from importlib import metadata

            versions[name] = metadata.version(name.replace("_", "-"))
        except Exception:
            versions[name] = None
    return {
        "host": platform.node(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": model or platform.processor(),
        "cores": os.cpu_count(),
        "simd": simd,
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def load_average():
    """The 1-minute load average, to store next to each benchmark."""
    return round(os.getloadavg()[0], 2)


def python_env():
    """The environment of benchmark subprocesses: the repo on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("TF_CONFIG", None)
    return env


def run_python(args, timeout=600):
    """Runs `python ARGS` from the repo root; returns (seconds, completed)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
        env=python_env(), timeout=timeout,
    )
    return time.perf_counter() - start, done
