"""TensorBoard as a user sees it: a real TensorBoard server's HTTP API with
its default loader, over runs of every model in one logdir, and a browser.

One module-scoped logdir holds a run of every registered model, a second
`mlp_regressor` run, a fast 30-epoch run and a few hand-written runs (a
killed run's leftovers, tricky text, many images); one server reads it.
"""

import contextlib
import glob
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

import zoo
from zoo import tensorboard as zoo_tensorboard
from conftest import ROOT, ZOO, zoo_env

# Small data for each model's tiny config; a model not listed trains on its
# default data with its registry entry's tiny config.
SMALL = {
    "mlp_regressor": dict(data_options={"num_train": 256}, batch_size=32, hidden_units=(8, 4)),
    "dcgan": dict(batch_size=128),
    "gpt2_textgen": dict(batch_size=8, jit_compile=False),
    "image_classifier": dict(batch_size=128),
}
# The config field of each model that no other model has: its own column.
OWN_HPARAM = {"mlp_regressor": "model.hidden_units", "dcgan": "model.latent_dim",
              "gpt2_textgen": "model.num_layers", "image_classifier": "model.stage_widths"}
TRICKY = ("def f(x):\n    return x * 2  # **not bold**, __not__ _italic_\n\n"
          "    indented <b>not html</b> & ``` a fence ```\n# not a heading\ttab")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    """A TensorBoard server on 127.0.0.1, with its default loader."""

    def __init__(self, base):
        self.base = base

    def get(self, path, **query):
        url = self.base + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path, body):
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def scalar_steps(self, run, tag):
        return [p[1] for p in self.get("/data/plugin/scalars/scalars", run=run, tag=tag)]


@contextlib.contextmanager
def tensorboard(logdir, runs, *flags):
    """Serves `logdir` until every run in `runs` has its scalars loaded."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port),
         "--host", "127.0.0.1", "--reload_interval", "1", *flags],
        env=zoo_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    client = Server(f"http://127.0.0.1:{port}")

    def loaded():
        if server.poll() is not None:
            raise AssertionError(f"tensorboard exited: {server.stderr.read()[-2000:]}")
        try:
            tags = client.get("/data/plugin/scalars/tags")
        except OSError:
            return False
        return all(run in tags for run in runs)

    try:
        _wait_for(loaded, 120, f"tensorboard to load {runs}")
        # The default loader reads in the background; let it finish a pass.
        time.sleep(2)
        yield client
    finally:
        server.terminate()
        server.wait(timeout=20)


def _write_events(directory, points, text=None):
    """One event file of `(tag, step, value)` scalars, as a writer leaves it."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(directory))
    with writer.as_default():
        for tag, step, value in points:
            tf.summary.scalar(tag, value, step=step)
        if text is not None:
            tf.summary.text("samples/greedy", text, step=1)
    writer.close()


def _killed_run(root, merge):
    """The files of a run killed twice, as TensorFlow names them: the one
    written later sorts first (`...pid.10` before `...pid.4`), it rewrote
    epochs 4-5 after a resume, and it holds points past its checkpoint
    (epoch 6, step 12) and a record cut short by the kill. The value of a
    point is 100 x the file it came from + its step."""
    from zoo import tensorboard as tb_lib

    train = root / "logs" / "train"
    train.mkdir(parents=True)
    for index, name, epochs, steps in ((1, "1000000000.host.1.4.v2", range(1, 6), range(1, 11)),
                                       (2, "1000000000.host.1.10.v2", range(4, 8), range(8, 15))):
        _write_events(train, [("epoch_loss", e, 100.0 * index + e) for e in epochs]
                      + [("batch_loss", s, 100.0 * index + s) for s in steps])
        (newest,) = [p for p in glob.glob(str(train / "events.*")) if "1000000000" not in p]
        os.rename(newest, str(train / f"events.out.tfevents.{name}"))
        time.sleep(0.01)
    with open(train / "events.out.tfevents.1000000000.host.1.10.v2", "ab") as f:
        f.write(b"\x20\x00\x00\x00\x00\x00\x00\x00half a record")
    if merge:
        tb_lib.merge_events(str(root / "logs"), 6, 12)
    # The resumed process writes epochs 7 and 8, steps 13 to 16.
    _write_events(train, [("epoch_loss", e, 300.0 + e) for e in (7, 8)]
                  + [("batch_loss", s, 300.0 + s) for s in range(13, 17)])


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Runs of every model, a second mlp_regressor run, a fast 30-epoch run
    and hand-written runs, all in one logdir."""
    import tensorflow as tf

    from zoo.models.gpt2_textgen import task as gpt2_task

    root = tmp_path_factory.mktemp("tb")
    old_cache = os.environ.get("ZOO_CACHE_DIR")
    os.environ["ZOO_CACHE_DIR"] = str(root / "cache")
    text = root / "text"
    text.mkdir()
    words = "the store opened at nine and every shelf held a jar of honey or a loaf".split()
    for k in range(3):
        lines = [" ".join(words[(i * 5 + k + j) % len(words)] for j in range(8)) + "." for i in range(30)]
        (text / f"doc{k}.txt").write_text("\n".join(lines) + "\n")
    runs = {}
    try:
        for name in zoo.list_models():
            kwargs = dict(SMALL.get(name) or zoo.registry.get_entry(name).tiny)
            if name == "gpt2_textgen":
                kwargs = dict(kwargs, data=str(text), **{k: v for k, v in zoo.registry.get_entry(name).tiny.items()})
            if name in ("dcgan", "image_classifier"):
                kwargs.update(zoo.registry.get_entry(name).tiny)
            epochs = 2 if name == "mlp_regressor" else 1
            runs[name] = zoo.train(name, epochs=epochs, run_dir=root / "runs" / name, verbose=0, **kwargs)
        runs["mlp_regressor_wide"] = zoo.train(
            "mlp_regressor", epochs=2, run_dir=root / "runs" / "mlp_regressor_wide", verbose=0,
            **{**SMALL["mlp_regressor"], "hidden_units": (16,)})
        # A finished run, then given more epochs: it continues.
        zoo.train("mlp_regressor", epochs=2, run_dir=root / "runs" / "continued", verbose=0,
                  **SMALL["mlp_regressor"])
        runs["continued"] = zoo.train("mlp_regressor", epochs=3, run_dir=root / "runs" / "continued",
                                      verbose=0, **SMALL["mlp_regressor"])
        runs["fast"] = zoo.train(
            "mlp_regressor", epochs=30, run_dir=root / "runs" / "fast", verbose=0,
            data_options={"num_train": 64}, batch_size=32, hidden_units=(4,), log_every_n_steps=1)
    finally:
        if old_cache is None:
            os.environ.pop("ZOO_CACHE_DIR", None)
        else:
            os.environ["ZOO_CACHE_DIR"] = old_cache
    hand = root / "runs" / "hand"
    _killed_run(hand / "merged", merge=True)
    _killed_run(hand / "unmerged", merge=False)
    (hand / "text").mkdir()
    _write_events(hand / "text", [("x", 1, 0.0)], gpt2_task.samples_markdown(["def f"], [TRICKY]))
    writer = tf.summary.create_file_writer(str(hand / "images"))
    with writer.as_default():
        for step in range(1, 13):
            tf.summary.image("samples", tf.fill([1, 4, 4, 1], step / 12), step=step)
        tf.summary.scalar("x", 0.0, step=1)
    writer.close()
    return root / "runs", runs


@pytest.fixture(scope="module")
def server(logdir):
    root, runs = logdir
    wanted = [f"{name}/logs/train" for name in runs] + ["hand/merged/logs/train", "hand/images"]
    with tensorboard(root, wanted) as client:
        client.root = str(root)
        yield client


def test_every_epoch_of_a_fast_run_comes_back_in_order(server):
    """30 epochs of 2 steps, all within a few seconds: every point, once, in order."""
    assert server.scalar_steps("fast/logs/train", "epoch_loss") == list(range(1, 31))
    assert server.scalar_steps("fast/logs/validation", "epoch_loss") == list(range(1, 31))
    # 8 steps per execution (the recipe's) over 2-step epochs: one point per epoch.
    assert server.scalar_steps("fast/logs/train", "batch_loss") == list(range(2, 61, 2))
    files = glob.glob(os.path.join(server.root, "fast", "logs", "train", "events.*"))
    assert len(files) == 1  # One writer for the whole fit.


def test_a_killed_run_merged_on_resume_reads_whole(server):
    """The leftovers of kills, merged as a resume does, then the resumed
    process's own file: epochs 1-8 and steps 1-16, once each, with the
    resumed values after the checkpoint. Without the merge the default
    loader loses and reorders points."""
    points = server.get("/data/plugin/scalars/scalars", run="hand/merged/logs/train", tag="batch_loss")
    assert [p[1] for p in points] == list(range(1, 17))
    assert [p[2] for p in points] == [101.0 + s for s in range(7)] + [208.0 + s for s in range(5)] + [
        313.0 + s for s in range(4)]
    points = server.get("/data/plugin/scalars/scalars", run="hand/merged/logs/train", tag="epoch_loss")
    assert [(p[1], p[2]) for p in points] == [(1, 101.0), (2, 102.0), (3, 103.0), (4, 204.0), (5, 205.0),
                                              (6, 206.0), (7, 307.0), (8, 308.0)]
    assert len(glob.glob(os.path.join(server.root, "hand", "merged", "logs", "train", "events.*"))) == 2
    unmerged = server.scalar_steps("hand/unmerged/logs/train", "epoch_loss")
    assert unmerged != list(range(1, 9))


def test_hparams_list_every_run_of_every_model_with_its_own_values(server, logdir):
    _, runs = logdir
    experiment = server.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    assert set(infos["model"]["domainDiscrete"]) == set(zoo.list_models())
    for name in zoo.list_models():
        assert OWN_HPARAM.get(name, "model") in infos
    metric_names = {(m["name"].get("group", ""), m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert ("validation", "epoch_loss") in metric_names
    assert ("", "evaluation/test_mse") in metric_names
    assert ("", "evaluation/val_perplexity") in metric_names
    assert not [m for m in metric_names if m[1].startswith("final")]

    groups = server.post("/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 100,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [],
    })["sessionGroups"]
    by_dir = {g["name"]: g for g in groups}
    assert set(by_dir) == {os.path.abspath(run.dir) for run in runs.values()}
    for key, run in runs.items():
        group = by_dir[os.path.abspath(run.dir)]
        assert len(group["sessions"]) == 1
        hparams = group["hparams"]
        assert hparams["model"] == run.config["model_name"]
        for field, value in run.config["model"].items():
            expected = (json.dumps(value).replace('"', "'") if isinstance(value, (list, dict)) or value is None
                        else value)
            assert hparams[f"model.{field}"] == expected, (key, field)
        assert hparams["train.epochs"] == run.config["train"]["epochs"]
        values = {(m["name"].get("group", ""), m["name"]["tag"]): m["value"] for m in group["metricValues"]}
        headline = zoo.registry.get_entry(run.config["model_name"]).task.headline_metrics
        own = zoo_tensorboard.headline_metrics(run.metrics, headline)
        assert own, key
        for metric, value in own.items():
            assert values[("", f"evaluation/{metric}")] == pytest.approx(value, rel=1e-6), (key, metric)
        # Per-class scores and counts are in run_summary, not columns.
        rest = {f"evaluation/{m}" for m in run.metrics} - {f"evaluation/{m}" for m in own}
        assert not rest & {tag for _, tag in values}, key
        if "val_loss" in run.history:  # The last point of an epoch series is a column too.
            assert values[("validation", "epoch_loss")] == pytest.approx(run.history["val_loss"][-1], rel=1e-6)
        # Nothing of another model's evaluation in this row.
        others = {f"evaluation/{m}" for r in runs.values() if r.config["model_name"] != run.config["model_name"]
                  for m in r.metrics} - {f"evaluation/{m}" for m in run.metrics}
        assert not others & {tag for _, tag in values}


def test_final_metrics_are_one_summary_not_one_point_charts(server, logdir):
    _, runs = logdir
    tags = server.get("/data/plugin/scalars/tags")
    assert not [t for run in tags.values() for t in run if t.startswith("final")]
    # The one-point charts left are the HParams columns: a task's few headline
    # metrics (42 before, with every per-class score and count).
    one_point = {t for run in tags.values() for t in run if t.startswith("evaluation/")}
    headlines = {f"evaluation/{m}" for r in runs.values() for m in zoo_tensorboard.headline_metrics(
        r.metrics, zoo.registry.get_entry(r.config["model_name"]).task.headline_metrics)}
    assert one_point == headlines and len(one_point) <= 3 * len(zoo.list_models())
    run = runs["mlp_regressor"]
    texts = server.get("/data/plugin/text/text", run="mlp_regressor/logs", tag="run_summary")
    assert len(texts) == 1
    page = html.unescape(texts[0]["text"])
    assert "<table>" in page and "mlp_regressor" in page
    for key, value in run.metrics.items():
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        assert f"<td>{key}</td>\n<td>{shown}</td>" in page, key


def test_a_continued_run_has_one_session_summary_and_history(server, logdir):
    """A finished run given more epochs: its HParams row, evaluation and
    summary are the new ones, once, and its epochs run on without a gap."""
    _, runs = logdir
    run = runs["continued"]
    assert server.scalar_steps("continued/logs/train", "epoch_loss") == [1, 2, 3]
    points = server.get("/data/plugin/scalars/scalars", run="continued/logs", tag="evaluation/test_mse")
    assert [(p[1], p[2]) for p in points] == [(3, pytest.approx(run.metrics["test_mse"], rel=1e-6))]
    summaries = server.get("/data/plugin/text/text", run="continued/logs", tag="run_summary")
    assert len(summaries) == 1 and "3 epochs" in summaries[0]["text"]


def _code_blocks(page):
    return [html.unescape(b) for b in re.findall(r"<pre>(.*?)</pre>", page, re.S)]


def test_text_plugin_returns_samples_as_written(server, logdir):
    import ast

    _, runs = logdir
    if "gpt2_textgen" not in runs:
        pytest.skip("gpt2_textgen is not registered")
    # A hand-written sample with Markdown, HTML, indentation and fences in it.
    page = server.get("/data/plugin/text/text", run="hand/text", tag="samples/greedy")[0]["text"]
    assert _code_blocks(page) == [TRICKY]
    # The model's own samples at the last epoch: what `samples.txt` holds.
    run = runs["gpt2_textgen"]
    entries = server.get("/data/plugin/text/text", run="gpt2_textgen/logs", tag="samples/greedy")
    assert [e["step"] for e in entries] == [1]
    with open(os.path.join(run.dir, "samples.txt"), encoding="utf-8") as f:
        pairs = [line.split(" -> ", 1) for line in f.read().splitlines() if " -> " in line]
    written = [ast.literal_eval(output) for _, output in pairs]
    prompts = [ast.literal_eval(prompt) for prompt, _ in pairs]
    blocks = _code_blocks(entries[-1]["text"])
    assert blocks == written
    for prompt, block in zip(prompts, blocks):
        assert block.startswith(prompt) and block.count(prompt) >= 1
        assert f"first {len(prompt)} characters" in entries[-1]["text"]


def test_many_images_need_the_samples_flag_that_the_summary_prints(server, logdir, capsys):
    from zoo import runs as runs_lib
    from zoo import tensorboard as tb_lib

    root, _ = logdir
    images = server.get("/data/plugin/images/images", run="hand/images", tag="samples", sample=0)
    assert len(images) == 10  # TensorBoard's default keeps 10 of the 12.
    flags = tb_lib.samples_flags(str(root / "hand" / "images"))
    assert flags == "--samples_per_plugin images=12"
    runs_lib.print_summary("runs/dcgan/x", {"fid": 1.0}, flags)
    assert "TensorBoard: tensorboard --logdir runs/dcgan/x/logs --samples_per_plugin images=12" in capsys.readouterr().out
    assert tb_lib.samples_flags(str(root / "mlp_regressor" / "logs")) == ""


@pytest.mark.slow
def test_kill_9_then_resume_reads_whole_in_tensorboard(tmp_path):
    """A 30-epoch run killed with SIGKILL, then rerun: the default loader
    returns every epoch and every logged step once, in order."""
    run_dir = tmp_path / "runs" / "killed"
    command = [*ZOO, "train", "mlp_regressor", "--epochs", "30", "--run-dir", str(run_dir), "--quiet",
               "--data-option", "num_train=640", "--batch-size", "32", "--log-every-n-steps", "3",
               "--set", "hidden_units=[8]", "--steps-per-execution", "1"]
    state = run_dir / "checkpoints" / "state.json"
    process = subprocess.Popen(command, env=zoo_env(), cwd=tmp_path)
    try:
        _wait_for(lambda: state.exists() and json.loads(state.read_text())["epoch"] >= 4, 180, "epoch 4")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert killed_at < 30 and not (run_dir / "metrics.json").exists()
    out = subprocess.run(command, env=zoo_env(), cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with tensorboard(tmp_path / "runs", ["killed/logs/train", "killed/logs/validation"]) as client:
        assert client.scalar_steps("killed/logs/train", "epoch_loss") == list(range(1, 31))
        assert client.scalar_steps("killed/logs/validation", "epoch_loss") == list(range(1, 31))
        assert client.scalar_steps("killed/logs/train", "batch_loss") == list(range(3, 30 * 20 + 1, 3))
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 30


@pytest.mark.slow
def test_multi_worker_run_reads_whole_in_tensorboard(tmp_path):
    """Two workers of one cluster (`zoo launch`), fast epochs: the chief's
    events, and only the chief's, come back whole and in order."""
    run_dir = tmp_path / "runs" / "mw"
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    out = subprocess.run(
        [*ZOO, "launch", "--workers", "2", "--", *ZOO, "train", "mlp_regressor", "--epochs", "12",
         "--run-dir", str(run_dir), "--quiet", "--data-option", "num_train=64", "--batch-size", "32",
         "--log-every-n-steps", "1", "--set", "hidden_units=[4]"],
        env=zoo_env(TMPDIR=worker_tmp), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert not list(worker_tmp.iterdir())  # The other worker wrote no events of its own.
    with tensorboard(tmp_path / "runs", ["mw/logs/train", "mw/logs/validation"]) as client:
        assert client.scalar_steps("mw/logs/train", "epoch_loss") == list(range(1, 13))
        assert client.scalar_steps("mw/logs/validation", "epoch_loss") == list(range(1, 13))
        assert client.scalar_steps("mw/logs/train", "batch_loss") == list(range(1, 25))


def test_throughput_and_progress_count_the_steps_that_ran(tmp_path, capsys):
    """22 steps an epoch at 8 steps per execution: Keras reports end step
    23 for the last execution; the progress bar and examples/s use 22."""
    import tensorflow as tf

    from zoo import tensorboard as tb_lib

    run = zoo.train("mlp_regressor", epochs=1, run_dir=tmp_path / "r", batch_size=32,
                    data_options={"num_train": 880}, hidden_units=(4,), verbose=1)
    out = capsys.readouterr().out
    steps = run.config["data"]["num_train"] // 32
    assert run.config["train"]["steps_per_execution"] == 8 and steps % 8, steps
    shown = [int(a) for a, b in re.findall(r"(\d+)/(\d+)\b", out) if int(b) == steps]
    assert shown and max(shown) == steps, shown
    # The last execution of a 22-step epoch: Keras passes end step 23.
    import keras

    for progbar, expected in ((keras.callbacks.ProgbarLogger(), "24/22"), (tb_lib.StepProgbar(), "22/22")):
        progbar.set_params({"verbose": 1, "epochs": 1, "steps": 22})
        progbar.on_epoch_begin(0)
        progbar.on_train_batch_end(23, {"loss": 1.0})
        assert expected in capsys.readouterr().out
    assert tb_lib.real_steps(23, {"steps": 22}) == 22 and tb_lib.real_steps(7, {"steps": 22}) == 8

    # The logger's count, with the clock stubbed: 22 steps of 32 in 2 s.
    logger = tb_lib.TensorBoardLogger(str(tmp_path / "l"), zoo.registry.get_entry("mlp_regressor").task,
                                      None, _train_config(run))
    logger.set_model(run.model)
    logger.set_params({"steps": 22, "epochs": 1, "verbose": 0})
    clock = iter([100.0, 102.0])
    real = time.perf_counter
    try:
        tb_lib.time.perf_counter = lambda: next(clock)
        logger.on_epoch_begin(0)
        logger.on_train_batch_end(23, {"loss": 1.0})
    finally:
        tb_lib.time.perf_counter = real
    logger.on_epoch_end(0, {"loss": 1.0})
    logger.on_train_end()
    path = glob.glob(str(tmp_path / "l" / "train" / "events.*"))[0]
    values = {}
    for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
            values[value.tag] = float(tf.make_ndarray(value.tensor))
    assert values["epoch_examples_per_second"] == pytest.approx(22 * 32 / 2.0)


class _PicturingTask(zoo.Task):
    """A task whose summaries take 0.09 s of a stubbed clock."""

    def __init__(self, clock):
        self.clock, self.epochs = clock, []

    def summaries(self, model, data, epoch):
        self.epochs.append(epoch)
        self.clock.now += 0.09


@pytest.mark.parametrize("share, stop_after, pictured", [
    # 1-s epochs, 0.09-s summaries: at 2% the next ones wait 4.5 s; the last epoch always.
    (0.02, None, [1, 6, 10]),
    (0.0, None, list(range(1, 11))),  # 0 writes them every epoch.
    # Stopped after epoch 8 by a callback that runs after the logger: on_train_end writes epoch 8's.
    (0.02, 8, [1, 6, 8]),
])
def test_task_summaries_take_at_most_their_share_of_training(tmp_path, monkeypatch, share, stop_after, pictured):
    import types

    from zoo import config as config_lib
    from zoo import tensorboard as tb_lib

    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(tb_lib, "time", types.SimpleNamespace(perf_counter=lambda: clock.now, time=time.time))
    task = _PicturingTask(clock)
    logger = tb_lib.TensorBoardLogger(str(tmp_path / "logs"), task, None,
                                      config_lib.TrainConfig(summaries_max_share=share))
    optimizer = types.SimpleNamespace(learning_rate=0.1, iterations=types.SimpleNamespace(numpy=lambda: 0))
    logger.set_model(types.SimpleNamespace(stop_training=False, optimizer=optimizer))
    logger.set_params({"epochs": 10, "steps": 4})
    for epoch in range(stop_after or 10):
        logger.on_epoch_begin(epoch)
        clock.now += 1.0
        logger.on_train_batch_end(3, {"loss": 1.0})
        logger.on_epoch_end(epoch, {"loss": 1.0})
    logger.on_train_end()
    assert task.epochs == pictured


def _train_config(run):
    from zoo import config as config_lib

    train = dict(run.config["train"])
    train["data_options"] = tuple(tuple(p) for p in train["data_options"])
    train["profile_batch"] = tuple(train["profile_batch"]) if train["profile_batch"] else None
    return config_lib.apply_overrides(config_lib.TrainConfig, train, what="training")


def _step_markers(run_dir):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(run_dir, "logs", "train", "plugins", "profile", "*", "*.xplane.pb"))
    assert len(paths) == 1
    with open(paths[0], "rb") as f:
        space = xplane_pb2.XSpace.FromString(f.read())
    steps = []
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        stats = {k: v.name for k, v in plane.stat_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                if names.get(event.metadata_id) == "train":
                    values = {stats[s.metadata_id]: s.int64_value or s.uint64_value for s in event.stats}
                    steps.append(values["step_num"])
    return paths, sorted(steps)


@pytest.mark.parametrize("steps_per_execution", [None, 8])
def test_profile_marks_every_step_for_the_profile_tab(tmp_path, steps_per_execution):
    """The profile of global steps 2-6 marks each step (or each execution
    of 8); with one step per call, the default of a profiled run, the
    Profile tab's overview times the steps (not 0.0 ms)."""
    run = zoo.train("mlp_regressor", epochs=1, run_dir=tmp_path / "p", profile_batch=(2, 6),
                    steps_per_execution=steps_per_execution, data_options={"num_train": 512},
                    batch_size=32, hidden_units=(8,), verbose=0)
    paths, steps = _step_markers(run.dir)
    if steps_per_execution is None:
        assert run.config["train"]["steps_per_execution"] == 1
        assert steps == [2, 3, 4, 5, 6]
        raw_to_tool_data = pytest.importorskip(
            "xprof.convert.raw_to_tool_data", reason="the profile extra (tensorboard-plugin-profile)")
        data, _ = raw_to_tool_data.xspace_to_tool_data(paths, "overview_page", {})
        page = json.loads(data)
        step_table = next(t for t in page if "steptime_ms_average" in t.get("p", {}))
        assert float(step_table["p"]["steptime_ms_average"]) > 0
        assert len(step_table["rows"]) == 5
    else:
        assert steps == [1]  # Steps 1-8 run in one execution, the first.


def test_benchmark_of_the_logger_runs():
    sys.path.insert(0, ROOT)
    from benchmarks import tensorboard_logger as bench

    result = bench.logger_epoch(size="tiny")
    for name in ("before", "after"):
        assert result["contenders"][name]["epoch_ms"] > 0
    assert result["ratios"]["before/after epoch_ms"] > 0


# ---------------------------------------------------------------- browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"no headless browser: {', '.join(missing)} missing "
                    "(apt-get install chromium chromium-driver)")
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    import make_tensorboard_screenshots as shots

    driver = shots.start_browser()
    try:
        yield shots, driver
    finally:
        driver.quit()


@pytest.mark.browser
def test_browser_shows_every_run_in_hparams_and_time_series(browser, server, logdir):
    shots, driver = browser
    _, runs = logdir
    driver.get(server.base + "/#hparams")
    table = shots.wait_for_text(driver, [os.path.abspath(r.dir) for r in runs.values()], timeout=90)
    for name in zoo.list_models():
        assert name in table
    assert "evaluation/test_mse" in table and "model.hidden_units" in table
    driver.get(server.base + "/#timeseries")
    page = shots.wait_for_text(driver, ["epoch_loss", "batch_loss"], timeout=90)
    assert "final/" not in page
    assert shots.charts_drawn(driver) > 0
