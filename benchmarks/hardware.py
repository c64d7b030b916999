"""The hardware limit and start-up: matmul peak, `import zoo`, `zoo list`.

The matmul peak is what MFU is measured against: a square `tf.matmul` in
float32 and bfloat16, with and without XLA, measured in the same run as the
training it judges (not a datasheet constant). PyTorch's matmul is measured
beside it because it explains PyTorch's training speed.
"""

import time

from benchmarks import common

SIZES = {"tiny": 256, "quick": 1024, "full": 2048}
REPEATS = {"tiny": 1, "quick": 3, "full": 5}
# A single matmul slower than this is timed once per round, not in a loop:
# bfloat16 without native support (no AVX512_BF16 or AMX) can run 50x slower
# than float32, and the benchmark must still finish.
SLOW_CALL_S = 2.0


def _tf_matmul(n, dtype, xla):
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype="float32")
    b = tf.random.normal((n, n), dtype="float32")
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    fn = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=xla)
    fn(a, b).numpy()  # Traces (and compiles with XLA) outside the timing.

    def call():
        fn(a, b).numpy()

    return call


def _torch_matmul(n, dtype):
    import torch

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)

    def call():
        torch.mm(a, b)

    return call


def _timed(call, flops):
    """Returns a measure function: GFLOP/s of `call`, looped for ~1 s."""

    def measure():
        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
        if first > SLOW_CALL_S:
            return {"gflops": flops / first / 1e9, "calls": 1}
        times = [first]
        while sum(times) < 1.0 or len(times) < 3:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return {"gflops": flops / common.median(times[1:]) / 1e9, "calls": len(times)}

    return measure


def matmul_peak(size="full"):
    """Measures matmul GFLOP/s of TF (with/without XLA) and PyTorch.

    Args:
        size: str. "tiny", "quick" or "full" (a 2048x2048 matmul).

    Returns:
        The benchmark's result dict.
    """
    n = SIZES[size]
    flops = 2 * n**3
    contenders = {}
    for dtype in ("float32", "bfloat16"):
        for xla in (False, True):
            name = f"tf_{dtype}" + ("_xla" if xla else "")
            contenders[name] = _timed(_tf_matmul(n, dtype, xla), flops)
    if common.has_module("torch"):
        for dtype in ("float32", "bfloat16"):
            contenders[f"torch_{dtype}"] = _timed(_torch_matmul(n, dtype), flops)
    samples = common.alternate(contenders, REPEATS[size], warmup=0)
    gflops = common.summarize(samples, "gflops")
    results = {name: {"gflops": round(v, 2)} for name, v in gflops.items()}
    peak = {
        "float32": max(gflops["tf_float32"], gflops["tf_float32_xla"]),
        "bfloat16": max(gflops["tf_bfloat16"], gflops["tf_bfloat16_xla"]),
    }
    return {
        "unit": "GFLOP/s",
        "config": {"n": n, "dtype_note": "inputs cast from float32 normals"},
        "contenders": results,
        "ratios": {
            "tf_bfloat16/tf_float32": common.ratio(gflops["tf_bfloat16"], gflops["tf_float32"]),
            "tf_bfloat16_xla/tf_bfloat16": common.ratio(gflops["tf_bfloat16_xla"], gflops["tf_bfloat16"]),
            **({"torch_bfloat16/torch_float32": common.ratio(gflops["torch_bfloat16"], gflops["torch_float32"])}
               if "torch_float32" in gflops else {}),
        },
        "peak_gflops": {k: round(v, 2) for k, v in peak.items()},
        "bars": [],
    }


def startup(size="full"):
    """Times `import zoo` and `zoo list` in fresh processes.

    `import zoo` is compared with `python -c pass` (the interpreter's own
    start), and `zoo list` is run as `python -m zoo.cli list`, which is what
    the `zoo` console script does.
    """
    repeats = {"tiny": 1, "quick": 3, "full": 7}[size]

    def timed(args):
        def run():
            seconds, done = common.run_python(args, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"`python {' '.join(args)}` failed:\n{done.stderr[-2000:]}")
            return {"seconds": seconds}

        return run

    samples = common.alternate(
        {
            "python": timed(["-c", "pass"]),
            "import_zoo": timed(["-c", "import zoo"]),
            "zoo_list": timed(["-m", "zoo.cli", "list"]),
            "import_tensorflow": timed(["-c", "import tensorflow"]),
        },
        repeats,
        warmup=1,
    )
    seconds = common.summarize(samples, "seconds")
    _, done = common.run_python(
        ["-c", "import sys, zoo; zoo.list_models(); print('tensorflow' in sys.modules)"]
    )
    return {
        "unit": "s",
        "contenders": {k: {"seconds": round(v, 4)} for k, v in seconds.items()},
        "ratios": {
            "import_zoo_minus_python_s": round(seconds["import_zoo"] - seconds["python"], 4),
            "zoo_list_minus_python_s": round(seconds["zoo_list"] - seconds["python"], 4),
        },
        "notes": [f"`import zoo; zoo.list_models()` imports TensorFlow: {done.stdout.strip()}"],
        "bars": [common.bar("zoo list wall time", round(seconds["zoo_list"], 3), 0.3,
                            higher_is_better=False, unit="s")],
    }
