"""Smoke test of `benchmarks/`: the code paths run on tiny configs.

No timing is asserted: the test checks that the benchmarks run, skip the
PyTorch contenders cleanly without torch, and write a results file of the
documented structure.
"""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import common  # noqa: E402
from benchmarks import run as bench  # noqa: E402


def test_alternate_rotates_order_and_drops_warmup():
    calls = []
    samples = common.alternate(
        {"a": lambda: calls.append("a") or {"x": len(calls)},
         "b": lambda: calls.append("b") or {"x": len(calls)}},
        repeats=2, warmup=1,
    )
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert [s["x"] for s in samples["a"]] == [4, 5]
    assert [s["x"] for s in samples["b"]] == [3, 6]
    assert common.summarize(samples, "x") == {"a": 4.5, "b": 4.5}
    assert common.ratio(3.0, 2.0) == 1.5 and common.ratio(1.0, None) is None


def test_step_timer_counts_the_steps_each_execution_ran(monkeypatch):
    import types

    # 22 steps an epoch at 8 steps per execution: Keras calls the batch hook
    # with batch 7, 15 and 23 (keras#20861), the last execution ran 6 steps.
    clock = iter([0.0, 0.5, 1.0, 1.8, 2.4, 2.5, 3.0, 3.9, 4.7, 5.3, 5.4, 5.5])
    monkeypatch.setattr(common, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    timer = common.step_timer()
    timer.set_params({"steps": 22, "epochs": 2})
    timer.on_train_begin()
    for epoch in range(2):
        timer.on_epoch_begin(epoch)
        for batch in (7, 15, 23):
            timer.on_train_batch_end(batch)
        timer.on_epoch_end(epoch)
    timer.on_train_end()
    summary = timer.summary()
    # Epoch 2's executions after its first: 0.8 s for 8 steps, 0.6 s for 6.
    assert summary["step_s"] == pytest.approx(0.1)
    assert (summary["steps_per_epoch"], summary["steps_per_execution"]) == (22, 8)
    assert summary["epoch_s"] == pytest.approx(2.9) and summary["epoch_mean_s"] == pytest.approx(2.9)


def test_unknown_benchmark_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'mlp_train'"):
        bench.run(["mlp_trian"], size="tiny", out_dir=str(tmp_path))
    assert not os.listdir(tmp_path)


def test_benchmarks_run_without_torch_and_write_results(tmp_path, tmp_cache, monkeypatch):
    real = common.has_module
    # CI installs only `.[test]`: the torch and transformers contenders must
    # drop out cleanly, wherever they are installed.
    monkeypatch.setattr(common, "has_module",
                        lambda name: False if name in ("torch", "transformers") else real(name))
    path, document = bench.run(["mlp_train"], size="tiny", out_dir=str(tmp_path),
                               in_process=True, rss=False, say=lambda *a, **k: None)
    with open(path) as f:
        assert json.load(f) == json.loads(json.dumps(document))
    assert os.path.basename(path).endswith(".json")
    machine = document["machine"]
    assert machine["cores"] >= 1 and "tensorflow" in machine["versions"]

    mlp = document["benchmarks"]["mlp_train"]
    assert set(mlp["contenders"]) == {"zoo", "keras"}
    for entry in mlp["contenders"].values():
        assert entry["step_s"] > 0 and entry["examples_per_s"] > 0 and entry["fit_s"] > 0
        assert entry["end_tail_s"] >= 0 and entry["peak_rss_mb"] > 0
    assert mlp["ratios"]["zoo/keras step_s"] > 0
    assert [b["name"] for b in mlp["bars"]] == ["mlp_regressor zoo/keras step time",
                                               "mlp_regressor zoo/keras epoch time (mean)"]
    assert all(b["met"] in (True, False) for b in mlp["bars"])
    assert mlp["size"] == "tiny" and mlp["wall_s"] > 0 and mlp["process_peak_rss_mb"] > 0

    # A second run the same day keeps the benchmarks it did not rerun.
    path2, document2 = bench.run(["matmul_peak"], size="tiny", out_dir=str(tmp_path),
                                 in_process=True, rss=False, say=lambda *a, **k: None)
    assert path2 == path and set(document2["benchmarks"]) == {"mlp_train", "matmul_peak"}
    peak = document2["benchmarks"]["matmul_peak"]
    assert set(peak["contenders"]) == {"tf_float32", "tf_float32_xla", "tf_bfloat16", "tf_bfloat16_xla"}
    assert all(c["gflops"] > 0 for c in peak["contenders"].values())

    table = bench.render(document2)
    assert "== mlp_train" in table and "zoo/keras step_s" in table and "== matmul_peak" in table
    assert "| contender |" in bench.render(document2, markdown=True)


def test_one_contender_alone_for_its_memory():
    result = bench.run_benchmark("mlp_train", "tiny", only="keras")
    assert set(result["contenders"]) == {"keras"} and result["process_peak_rss_mb"] > 0
    assert "bars" not in result


def test_gpt2_small_contenders_also_run_alone(tmp_path, tmp_cache, monkeypatch):
    real = common.has_module
    monkeypatch.setattr(common, "has_module",
                        lambda name: False if name in ("torch", "transformers") else real(name))
    _, document = bench.run(["gpt2_small"], size="tiny", out_dir=str(tmp_path), in_process=True,
                            say=lambda *a, **k: None)
    contenders = document["benchmarks"]["gpt2_small"]["contenders"]
    assert "zoo_float32" in contenders and not any(c.startswith("matmul_") for c in contenders)
    for name, entry in contenders.items():
        # Its time in a process of its own, beside its time alternated with the others.
        assert entry["alone_step_s"] > 0 and entry["alone_tokens_per_s"] > 0, name
        assert entry["step_s"] > 0 and entry["process_peak_rss_mb"] > 0, name
    assert "alone_step_s" in bench.render(document)


@pytest.mark.slow
def test_gpu_check_script_runs_through_on_a_cpu(tmp_path):
    """benchmarks/gpu_check.sh, the one script for a lent GPU machine, with
    tiny models (ZOO_GPU_CHECK_SMOKE=1): every step runs and records."""
    import glob
    import subprocess

    out = tmp_path / "gpu-check"
    env = dict(os.environ, OUT=str(out), ZOO_GPU_CHECK_SMOKE="1")
    env.pop("TF_CONFIG", None)
    proc = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "tensorflow" in (out / "devices.txt").read_text()
    runs = {line.split()[0]: line.split() for line in (out / "strategies.txt").read_text().splitlines()}
    assert set(runs) == {"mlp_regressor", "dcgan", "gpt2_textgen", "gpt2_textgen_mixed_float16", "dcgan_mirrored"}
    assert runs["gpt2_textgen_mixed_float16"][3] == "mixed_float16"  # Forced, and recorded in env.json.
    assert runs["dcgan_mirrored"][1] == "MirroredStrategy"
    assert runs["mlp_regressor"][1] != "MirroredStrategy"  # One device: never mirrored.
    [results] = glob.glob(str(out / "results" / "*.json"))
    with open(results) as f:
        assert "matmul_peak" in json.load(f)["benchmarks"]
