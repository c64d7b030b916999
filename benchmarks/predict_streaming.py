"""Peak memory of `zoo predict` on a CSV file: streamed in chunks vs read whole.

Both contenders predict the same rows with the same trained `mlp_regressor`
in one process, alternately; the peak is Python's traced allocations
(`tracemalloc`, which NumPy reports to), measured per call. The baseline
reads the whole file with `numpy.loadtxt`, predicts and writes the output
with `numpy.savetxt`, as a script without streaming would.

```
python benchmarks/predict_streaming.py --rows 200000
```
"""

import argparse
import os
import sys
import tempfile
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _write_rows(path, rows, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        f.write(",".join(f"x{i}" for i in range(10)) + "\n")
        for start in range(0, rows, 50_000):
            block = rng.uniform(0, 1, (min(50_000, rows - start), 10))
            np.savetxt(f, block, fmt="%.5f", delimiter=",")


def _traced(call):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    import numpy as np

    import zoo

    with tempfile.TemporaryDirectory() as tmp:
        run = zoo.train("mlp_regressor", epochs=2, data_options={"num_train": 500}, hidden_units=(32,),
                        run_dir=os.path.join(tmp, "run"), verbose=0)
        data = os.path.join(tmp, "rows.csv")
        _write_rows(data, args.rows)
        model = run.model
        run.predict(np.zeros((2, 10)))  # Traces the model before measuring.

        def streamed():
            run.predict(data, out=os.path.join(tmp, "streamed.csv"))

        def whole():
            x = np.loadtxt(data, delimiter=",", skiprows=1, dtype="float32")
            y = model.predict(x, batch_size=8192, verbose=0)
            np.savetxt(os.path.join(tmp, "whole.csv"), y, header="y_predicted", comments="")

        results = {"streamed": [], "whole": []}
        for i in range(args.repeats):
            for name, call in (("streamed", streamed), ("whole", whole))[:: 1 if i % 2 == 0 else -1]:
                results[name].append(_traced(call))
        size = os.path.getsize(data)
    peak = {k: min(p for p, _ in v) for k, v in results.items()}
    seconds = {k: min(s for _, s in v) for k, v in results.items()}
    print(f"{args.rows} rows, {size / 2**20:.1f} MiB of CSV")
    for name in ("streamed", "whole"):
        print(f"  {name:<8}  peak traced memory {peak[name] / 2**20:7.2f} MiB   {seconds[name]:6.2f} s (traced)")
    print(f"  whole / streamed peak memory: {peak['whole'] / peak['streamed']:.1f}x")


if __name__ == "__main__":
    main()
