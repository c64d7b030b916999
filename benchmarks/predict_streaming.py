"""Peak memory of `zoo predict` on a CSV file: streamed in chunks vs read whole.

Both contenders predict the same rows with the same trained `mlp_regressor`
in one process, alternately; the peak is Python's traced allocations
(`tracemalloc`, which NumPy reports to), measured per call. The baseline
reads the whole file with `numpy.loadtxt`, predicts and writes the output
with `numpy.savetxt`, as a script without streaming would.

```
python benchmarks/predict_streaming.py --rows 25000,100000
```

The streamed peak stays flat as the file grows; the whole-file peak grows
with it.
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
    parser.add_argument("--rows", default="25000,100000", help="comma-separated row counts")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    import numpy as np

    import zoo

    with tempfile.TemporaryDirectory() as tmp:
        run = zoo.train("mlp_regressor", epochs=2, data_options={"num_train": 500}, hidden_units=(32,),
                        run_dir=os.path.join(tmp, "run"), verbose=0)
        model = run.model
        run.predict(np.zeros((2, 10)))  # Traces the model before measuring.
        for rows in (int(r) for r in args.rows.split(",")):
            data = os.path.join(tmp, "rows.csv")
            _write_rows(data, rows)

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
            peak = {k: min(p for p, _ in v) for k, v in results.items()}
            print(f"{rows} rows, {os.path.getsize(data) / 2**20:.1f} MiB of CSV")
            for name in ("streamed", "whole"):
                print(f"  {name:<8}  peak traced memory {peak[name] / 2**20:7.2f} MiB")
            print(f"  whole / streamed peak memory: {peak['whole'] / peak['streamed']:.1f}x", flush=True)


if __name__ == "__main__":
    main()
