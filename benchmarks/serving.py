"""`zoo serve` under load on loopback: dynamic batching on against off.

Two `zoo serve` processes hold the same runs, one batching
(`--max-batch-size 32`) and one not (`--max-batch-size 1`, every request its
own model call). N concurrent clients (`httpx.AsyncClient` tasks in this
process, each sending its next request when the last is answered) load one
server for a fixed time; rounds alternate between the two servers (the
order rotates each repeat; the idle one uses no CPU) after a warm-up that
compiles every batch bucket, and the medians of the repeats are quoted.
Every request loop is bounded in time and stops by itself; only
127.0.0.1 is ever addressed.

Workloads: `mlp_regressor` `:predict` of one raw row, and `gpt2_textgen`
`:generate` of one prompt, greedy, to `max_length`. Reported: requests/s,
generated tokens/s, p50 and p99 latency, for 1 and N clients. The issue's
bars, at 32 clients: predict throughput at least 5x the batching-off
figure, GPT-2 tokens/s at least 3x, and predict p99 latency at most 2x the
single-client figure.

```
python benchmarks/serving.py                 # trains small runs, then measures (full)
python benchmarks/serving.py --size tiny     # seconds, for the tests
python benchmarks/serving.py --runs MLP_RUN GPT2_RUN --out results.json
```
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SIZES = {
    "tiny": {"clients": (1, 4), "seconds": 0.5, "repeats": 1, "max_length": 16,
             "gpt2": dict(num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=32,
                          sequence_length=16, vocabulary_size=300), "epochs": 1},
    "full": {"clients": (1, 32), "seconds": 8.0, "repeats": 3, "max_length": 64,
             "gpt2": dict(num_layers=2, num_heads=4, hidden_dim=128, intermediate_dim=512, max_sequence_length=128,
                          sequence_length=64, vocabulary_size=1024), "epochs": 1},
}
BATCHING = {"on": 32, "off": 1}
ROW = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.4, 0.8, 0.6, 0.5]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def train_runs(root, size):
    """Small finished runs of `mlp_regressor` and `gpt2_textgen` under `root`."""
    zoo = [sys.executable, "-m", "zoo.cli"]
    mlp, gpt = os.path.join(root, "mlp"), os.path.join(root, "gpt2")
    subprocess.run(zoo + ["train", "mlp_regressor", "--epochs", "3", "--run-dir", mlp, "--quiet",
                          "--data-option", "num_train=2000"], check=True, env=_env())
    sets = [f"--set={k}={v}" for k, v in SIZES[size]["gpt2"].items()]
    subprocess.run(zoo + ["train", "gpt2_textgen", "--epochs", str(SIZES[size]["epochs"]), "--run-dir", gpt,
                          "--quiet", "--data", os.path.join(ROOT, "README.md"), *sets], check=True, env=_env())
    return mlp, gpt


class Server:
    """One `zoo serve` subprocess on a free 127.0.0.1 port."""

    def __init__(self, runs, max_batch_size, log, timeout_ms=None):
        cmd = [sys.executable, "-m", "zoo.cli", "serve", *runs, "--name", "mlp", "--name", "gpt",
               "--host", "127.0.0.1", "--port", "0", "--max-batch-size", str(max_batch_size)]
        if timeout_ms is not None:
            cmd += ["--batch-timeout-ms", str(timeout_ms)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=_env())
        self.url = None
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(self.proc.stdout), daemon=True)
        reader.start()
        self._lines = lines

    def wait_ready(self, timeout=600):
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"zoo serve exited with {self.proc.returncode}")
            for line in list(self._lines):
                if "listening on http://" in line:
                    self.url = line.split("listening on ")[1].split()[0]
            if self.url:
                try:
                    if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
            time.sleep(0.5)
        raise RuntimeError("zoo serve did not get ready in time")

    def compiled(self):
        import httpx

        return httpx.get(self.url + "/v1/models/gpt/metadata", timeout=30).json()["zoo"]["compiled"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


WORKLOADS = {
    "predict": lambda size: ("/v1/models/mlp:predict", {"instances": [ROW]}),
    "generate": lambda size: ("/v1/models/gpt:generate",
                              {"prompt": "The", "max_length": SIZES[size]["max_length"], "sampler": "greedy"}),
}


async def _load(url, body, clients, seconds):
    """`clients` closed-loop clients for `seconds`; latencies and tokens."""
    import httpx

    latencies, tokens, errors = [], 0, 0
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        began = time.perf_counter()
        deadline = began + seconds

        async def one_client():
            nonlocal tokens, errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.post(url, content=payload, headers=headers)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1
                    continue
                answer = response.json()
                tokens += sum(p.get("tokens", 0) for p in answer.get("predictions", []) if isinstance(p, dict))

        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - began
    return {"requests": len(latencies), "seconds": wall, "latencies": latencies, "tokens": tokens, "errors": errors}


def measure(url, body, clients, seconds):
    import numpy as np

    result = asyncio.run(_load(url, body, clients, seconds))
    latencies = np.asarray(result["latencies"]) * 1000
    return {
        "requests_per_s": result["requests"] / result["seconds"],
        "tokens_per_s": result["tokens"] / result["seconds"],
        "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else None,
        "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else None,
        "requests": result["requests"], "errors": result["errors"],
    }


def warm_up(servers, size, config):
    """Runs every workload at every client count until no new bucket compiles."""
    for server in servers.values():
        for _ in range(6):
            before = server.compiled()
            for name, workload in WORKLOADS.items():
                path, body = workload(size)
                for clients in config["clients"]:
                    measure(server.url + path, body, clients, min(2.0, config["seconds"]))
            if server.compiled() == before:
                break


def model_only(mlp_run, seconds):
    """Rows/s of the MLP's own batched call (no HTTP), 1 row against 32 a call.

    The same `run_batch` the server's worker calls, in this process: what
    batching saves inside the model call, beside what a request costs.
    """
    from zoo.serve import models as models_lib
    from zoo.serve.validation import Limits

    servable = models_lib.servables([mlp_run], ["mlp"], Limits())[0]
    servable.load()
    out = {}
    for _ in range(2):  # The first round warms up.
        for rows in (1, 32):
            items, sinks = [ROW] * rows, [None] * rows
            calls, began = 0, time.perf_counter()
            while time.perf_counter() - began < seconds:
                servable.run_batch(None, items, sinks)
                calls += 1
            wall = time.perf_counter() - began
            out[f"rows_per_s_at_batch_{rows}"] = calls * rows / wall
            out[f"ms_per_call_at_batch_{rows}"] = wall / calls * 1000
    return out


def _median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def run(size="full", runs=None, log_path=None, timeout_ms=None, seconds=None):
    """Measures both servers; returns the results document."""
    config = dict(SIZES[size])
    if seconds:
        config["seconds"] = seconds
    with tempfile.TemporaryDirectory(prefix="zoo-serving-bench-") as root:
        if runs is None:
            runs = train_runs(root, size)
        log = open(log_path or os.devnull, "a")
        servers = {mode: Server(runs, batch, log, timeout_ms) for mode, batch in BATCHING.items()}
        try:
            for server in servers.values():
                server.wait_ready()
            warm_up(servers, size, config)
            samples = {}
            modes = list(servers)
            for repeat in range(config["repeats"]):
                for name, workload in WORKLOADS.items():
                    path, body = workload(size)
                    for clients in config["clients"]:
                        shift = repeat % len(modes)
                        for mode in modes[shift:] + modes[:shift]:
                            result = measure(servers[mode].url + path, body, clients, config["seconds"])
                            samples.setdefault((name, clients, mode), []).append(result)
        finally:
            for server in servers.values():
                server.stop()
            log.close()
        inside = model_only(runs[0], min(2.0, config["seconds"]))
    table = {}
    for (name, clients, mode), results in samples.items():
        table[f"{name}/{clients}/{mode}"] = {key: _median([r[key] for r in results])
                                             for key in results[0]}
    config["batch_timeout_ms"] = timeout_ms
    return {"size": size, "config": config, "machine": machine(),
            "results": table, "mlp_model_call": inside, "bars": bars(table, config)}


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "python": platform.python_version()}


def bars(table, config):
    """The issue's three bars at the largest client count."""
    n = max(config["clients"])

    def get(name, clients, mode, key):
        return table.get(f"{name}/{clients}/{mode}", {}).get(key)

    predict_ratio = get("predict", n, "on", "requests_per_s") / get("predict", n, "off", "requests_per_s")
    tokens_ratio = get("generate", n, "on", "tokens_per_s") / get("generate", n, "off", "tokens_per_s")
    p99_ratio = get("predict", n, "on", "p99_ms") / get("predict", 1, "on", "p99_ms")
    return {
        f"predict_throughput_on_vs_off_at_{n}": {"value": predict_ratio, "bar": ">= 5", "met": predict_ratio >= 5},
        f"generate_tokens_per_s_on_vs_off_at_{n}": {"value": tokens_ratio, "bar": ">= 3", "met": tokens_ratio >= 3},
        f"predict_p99_at_{n}_vs_1_client": {"value": p99_ratio, "bar": "<= 2", "met": p99_ratio <= 2},
    }


def markdown(document):
    lines = ["| workload | clients | batching | requests/s | tokens/s | p50 ms | p99 ms |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for key, row in document["results"].items():
        name, clients, mode = key.split("/")
        tokens = f"{row['tokens_per_s']:.0f}" if name == "generate" else ""
        lines.append(f"| {name} | {clients} | {mode} | {row['requests_per_s']:.1f} | {tokens} | "
                     f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} |")
    inside = document["mlp_model_call"]
    lines.append("")
    lines.append(f"MLP model call alone (no HTTP): {inside['ms_per_call_at_batch_1']:.3f} ms for 1 row, "
                 f"{inside['ms_per_call_at_batch_32']:.3f} ms for 32 rows: "
                 f"{inside['rows_per_s_at_batch_32'] / inside['rows_per_s_at_batch_1']:.1f}x the rows/s.")
    lines.append("")
    for name, bar in document["bars"].items():
        lines.append(f"- {name}: {bar['value']:.2f} (bar {bar['bar']}: {'met' if bar['met'] else 'NOT met'})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--runs", nargs=2, metavar=("MLP_RUN", "GPT2_RUN"),
                        help="finished runs to serve; by default small ones are trained first")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--log", help="append the servers' stderr here")
    parser.add_argument("--batch-timeout-ms", type=float, help="the servers' --batch-timeout-ms (zoo's default)")
    parser.add_argument("--seconds", type=float, help="seconds of load per measurement (the size's)")
    args = parser.parse_args(argv)
    document = run(args.size, args.runs, args.log, args.batch_timeout_ms, args.seconds)
    print(markdown(document))
    print(f"\n{document['machine']['cpu']}, {document['machine']['cores']} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in document['machine']['load_average'])} at the end")
    if args.out:
        from zoo.files import atomic_path

        with atomic_path(args.out) as tmp:
            with open(tmp, "w") as f:
                json.dump(document, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
