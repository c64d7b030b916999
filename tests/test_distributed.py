"""Multi-worker training: strategy choice, `zoo launch`, real 2-worker runs.

The slow tests start two local worker processes with `zoo launch` (CPU,
tiny configs): training to completion gives the chief and the worker the
same weights and the same model as a single-process run with the same
global batch and seed; killing a worker mid-run stops the launch cleanly
and rerunning it resumes from the last checkpoint.
"""

import io
import json
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from conftest import ZOO, zoo_env
from zoo import distribute, launch

TINY = dict(epochs=2, batch_size=32, data_options={"num_train": 256}, hidden_units=(8,))
TINY_FLAGS = [
    "--batch-size", "32", "--data-option", "num_train=256", "--set", "hidden_units=[8]",
]
# dcgan and gpt2_textgen as small as they go, without XLA (compiling costs
# more than these runs).
TINY_DCGAN = dict(epochs=1, batch_size=64, generator_filters=8, discriminator_filters=8,
                  latent_dim=16, jit_compile=False)
TINY_GPT2 = dict(epochs=1, batch_size=8, vocabulary_size=300, num_layers=1, num_heads=2, hidden_dim=16,
                 intermediate_dim=32, max_sequence_length=32, sequence_length=16, jit_compile=False)

# Each worker trains each model through the public API, one after the
# other in one process (one TensorFlow start-up), and saves the weights of
# each final model, so the test compares what every process ended with.
DRIVER = r'''
import json, os, sys
import numpy as np
import zoo
from zoo import distribute
out = sys.argv[1]
for name, kwargs in json.loads(sys.argv[2]).items():
    run = zoo.train(name, run_dir=os.path.join(out, name), verbose=0, **kwargs)
    np.savez(os.path.join(out, f"{name}-{distribute.task_id()}.npz"), *run.model.get_weights())
'''


def _cluster(n, index):
    workers = [f"localhost:{2222 + i}" for i in range(n)]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def test_auto_picks_multi_worker_for_a_cluster(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", _cluster(2, 1))
    assert distribute.resolve_name("auto") == "multi_worker"
    assert not distribute.is_chief()
    assert distribute.task_id() == "worker-1"
    monkeypatch.setenv("TF_CONFIG", _cluster(2, 0))
    assert distribute.is_chief() and distribute.task_id() == "chief"


def test_steps_per_execution_under_multi_worker(monkeypatch, tmp_path):
    # Keras 3.15's multi-step loop fails under MultiWorkerMirroredStrategy:
    # recipes that default to 8 run 1 there (test_two_workers_train_like_one_process),
    # and an explicit 8 is a clear error before anything is written.
    import zoo

    monkeypatch.setenv("TF_CONFIG", _cluster(2, 0))
    for strategy in ("auto", "multi_worker"):
        with pytest.raises(ValueError, match=r"steps_per_execution > 1 does not work under the "
                                             r"multi_worker strategy.*Received: steps_per_execution=8"):
            zoo.train("mlp_regressor", steps_per_execution=8, strategy=strategy,
                      run_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_auto_never_picks_mirrored_on_one_device(monkeypatch):
    import tensorflow as tf

    # The tests run with 2 logical CPU devices and no GPU: still one device.
    assert len(tf.config.list_logical_devices("CPU")) == 2
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.resolve_name("auto") == "default"
    monkeypatch.setenv("TF_CONFIG", _cluster(1, 0))  # A one-worker "cluster".
    assert distribute.resolve_name("auto") == "default"
    assert distribute.is_chief()


def test_bad_tf_config_names_the_problem(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{cluster: 1}")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribute.resolve_name("auto")


def test_launch_gives_each_worker_its_tf_config():
    out = io.StringIO()
    code = "import os; print(os.environ['TF_CONFIG'])"
    status = launch.run(["--", sys.executable, "-c", code], 3, out=out)
    assert status == 0, out.getvalue()
    lines = [l for l in out.getvalue().splitlines() if not l.startswith("[launch]")]
    configs = {l.split("] ", 1)[0][1:]: json.loads(l.split("] ", 1)[1]) for l in lines}
    assert sorted(configs) == ["worker-0", "worker-1", "worker-2"]
    hosts = configs["worker-0"]["cluster"]["worker"]
    assert len(set(hosts)) == 3 and all(h.startswith("localhost:") for h in hosts)
    for i in range(3):
        assert configs[f"worker-{i}"] == {
            "cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}
        }


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_launch_stops_every_worker_when_one_fails(tmp_path):
    # Worker 0 (the chief) starts a grandchild and waits; worker 1 fails
    # once both are running.
    pids_file = tmp_path / "pids"
    code = (
        "import json, os, subprocess, sys, time\n"
        "i = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
        "if i == 1:\n"
        f"    while not os.path.exists(r'{pids_file}'): time.sleep(0.05)\n"
        "    sys.exit(3)\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open(r'{pids_file}.tmp', 'w').write(f'{{os.getpid()}} {{p.pid}}')\n"
        f"os.replace(r'{pids_file}.tmp', r'{pids_file}')\n"
        "time.sleep(120)\n"
    )
    out = io.StringIO()
    status = launch.run([sys.executable, "-c", code], 2, out=out)
    assert status == 3
    assert "worker-1 exited with status 3; stopping worker-0" in out.getvalue()
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 2 and not any(_alive(p) for p in pids)


def test_launch_stops_a_worker_that_outlives_the_others():
    code = (
        "import json, os, time\n"
        "if json.loads(os.environ['TF_CONFIG'])['task']['index'] == 0: time.sleep(120)\n"
    )
    out = io.StringIO()
    assert launch.run([sys.executable, "-c", code], 2, timeout=1, out=out) == 1
    assert "worker-0 still running 1 s after another worker finished" in out.getvalue()


def test_launch_on_ctrl_c_stops_every_worker(tmp_path):
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(120)"
    proc = subprocess.Popen(
        [*ZOO, "launch", "--workers", "2", "--", sys.executable, "-c", code],
        env=zoo_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    pids = []
    for line in proc.stdout:
        if line.startswith("[worker-"):
            pids.append(int(line.split()[-1]))
        if len(pids) == 2:
            break
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted; stopping every worker" in output
    assert not any(_alive(p) for p in pids)


def test_launch_rejects_bad_arguments():
    with pytest.raises(ValueError, match="needs a command after `--`"):
        launch.run(["--"], 2)
    with pytest.raises(ValueError, match="Received: workers=0"):
        launch.run(["true"], 0)
    result = subprocess.run([*ZOO, "launch", "--workers", "2"], env=zoo_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "needs a command after `--`" in result.stderr


@pytest.mark.slow
def test_two_workers_train_like_one_process(tmp_path, monkeypatch):
    texts = tmp_path / "texts"
    texts.mkdir()
    words = "the list of values grows while python keeps every item in order".split()
    for k in range(2):
        (texts / f"doc{k}.txt").write_text(
            "\n".join(" ".join(words[(i + j + k) % len(words)] for j in range(8)) for i in range(40)))
    configs = {
        "mlp_regressor": dict(TINY, hidden_units=list(TINY["hidden_units"])),
        "dcgan": TINY_DCGAN,
        "gpt2_textgen": dict(TINY_GPT2, data=str(texts)),
    }
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(worker_tmp))  # Where non-chief dirs go.
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", zoo_env()["PYTHONPATH"])
    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = io.StringIO()
    status = launch.run(
        [sys.executable, str(script), str(tmp_path), json.dumps(configs)], 2, out=out
    )
    assert status == 0, out.getvalue()[-3000:]

    for name in configs:
        chief = np.load(tmp_path / f"{name}-chief.npz")
        worker = np.load(tmp_path / f"{name}-worker-1.npz")
        for key in chief.files:
            np.testing.assert_array_equal(chief[key], worker[key], err_msg=name)
        # Only the chief wrote the run dir; the worker cleaned up after itself.
        run_dir = tmp_path / name
        env = json.loads((run_dir / "env.json").read_text())
        # MultiWorkerMirroredStrategy's class is named CollectiveAllReduceStrategy.
        assert env["strategy"]["class"] == "CollectiveAllReduceStrategy"
        assert env["strategy"]["num_replicas_in_sync"] == 2
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["epochs_trained"] == configs[name]["epochs"]
        assert (run_dir / "model.keras").exists()
        assert not list(run_dir.glob("**/.tmp-*"))
    assert not list(worker_tmp.iterdir())

    # One process, the same global batch and seed: the same model.
    monkeypatch.delenv("TMPDIR")
    import zoo

    single = zoo.train("mlp_regressor", run_dir=tmp_path / "single", strategy="default",
                       verbose=0, **TINY)
    chief = np.load(tmp_path / "mlp_regressor-chief.npz")
    multi = json.loads((tmp_path / "mlp_regressor" / "history.json").read_text())
    assert len(multi["loss"]) == len(single.history["loss"]) == TINY["epochs"]
    np.testing.assert_allclose(multi["loss"], single.history["loss"], rtol=1e-4)
    for key, value in zip(chief.files, single.model.get_weights()):
        np.testing.assert_allclose(chief[key], value, rtol=1e-4, atol=1e-5)


def _find_worker(launcher, index):
    """The pid of `launcher`'s child whose TF_CONFIG has task index `index`."""
    for child in launcher.children(recursive=True):
        try:
            config = json.loads(child.environ().get("TF_CONFIG", "{}"))
        except (psutil.Error, json.JSONDecodeError):
            continue
        if config.get("task", {}).get("index") == index:
            return child
    return None


@pytest.mark.slow
def test_killed_worker_stops_the_launch_and_rerun_resumes(tmp_path):
    run_dir = tmp_path / "run"
    command = [*ZOO, "launch", "--workers", "2", "--", "zoo", "train", "mlp_regressor",
               "--epochs", "4", "--run-dir", str(run_dir), *TINY_FLAGS]
    state = run_dir / "checkpoints" / "state.json"
    proc = subprocess.Popen(command, env=zoo_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    launcher = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 120
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = _find_worker(launcher, 1)
        assert victim is not None and state.exists(), proc.communicate(timeout=60)[0][-3000:]
        everyone = launcher.children(recursive=True)
        victim.kill()
        output, _ = proc.communicate(timeout=60)  # Bounded: no hang on a lost peer.
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "worker-1 exited with status -9; stopping worker-0" in output
    assert not any(_alive(p.pid) for p in everyone)
    stopped_at = json.loads(state.read_text())["epoch"]
    assert 1 <= stopped_at < 4 and not (run_dir / "metrics.json").exists()

    rerun = subprocess.run(command, env=zoo_env(), capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert f"Resuming {run_dir} from epoch {stopped_at}" in rerun.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    assert metrics["epochs_trained"] == 4 and len(history["loss"]) == 4


def test_a_lost_peer_becomes_a_clear_error():
    import tensorflow as tf

    # The text TensorFlow 2.21 gave the chief here when worker 1 was killed.
    message = (
        "Graph execution error:\nAdditional GRPC error information from remote target "
        "/job:worker/replica:0/task:1 while calling /tensorflow.WorkerService/RecvBuf:\n"
        ':UNKNOWN:Error received from peer  {grpc_status:14, grpc_message:"failed to '
        "connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:39789: Failed to "
        'connect to remote host: Connection refused"}\n\t [[{{node CollectiveReduceV2}}]]'
    )
    error = tf.errors.UnavailableError(None, None, message)
    converted = distribute.peer_lost_error(error, 3, "runs/a")
    assert isinstance(converted, ConnectionError)
    assert str(converted).startswith("Lost worker-1 of the cluster during training")
    assert "Connection refused" in str(converted)
    assert "epoch 3 in runs/a" in str(converted)
    # Only under MultiWorkerMirroredStrategy is an UnavailableError a lost peer.
    assert not distribute.is_peer_lost(error, tf.distribute.get_strategy())


def test_workers_resuming_different_epochs_is_a_clear_error():
    import tensorflow as tf

    assert distribute.resume_mismatch([3, 3], "runs/a") is None
    message = distribute.resume_mismatch([3, 0], "runs/a")
    assert "worker-0 at epoch 3, worker-1 at epoch 0" in message
    assert "must be the same shared path" in message
    # Outside a cluster there is nothing to compare.
    distribute.check_resume_epoch(tf.distribute.get_strategy(), 5, "runs/a")
