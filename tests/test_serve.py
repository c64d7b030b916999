"""`zoo serve` through real uvicorn servers on 127.0.0.1, as clients see it.

Tiny runs of every model are trained once for the module; three servers
start together in subprocesses (`zoo serve ... --port 0`): one with every
run and no key, which the last test stops with SIGTERM, and one with
`--api-key-file`. Answers are checked against the same models loaded in this
process (`zoo.load_run`), so a batched answer must equal the model's own.
"""

import asyncio
import base64
import concurrent.futures
import io
import json
import os
import re
import shutil
import sys
import signal
import subprocess
import tempfile
import threading
import time

import httpx
import numpy as np
import pytest

import zoo
from conftest import ROOT, ZOO, zoo_env

GPT2 = dict(vocabulary_size=300, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
            max_sequence_length=32, sequence_length=16)
pytestmark = pytest.mark.slow  # Servers in subprocesses; the batcher and key checks are quick.
KEY = "test-key-5f1c"
MAX_BATCH = 8


def _text_dir(root):
    words = ("the quick brown fox jumps over a lazy dog while the list of items grows "
             "and python keeps every value in order so that code reads well").split()
    folder = root / "texts"
    folder.mkdir()
    for k in range(3):
        lines = [" ".join(words[(i * 7 + k * 3 + j) % len(words)] for j in range(9)).capitalize() + "."
                 for i in range(24)]
        (folder / f"doc{k}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _image_dir(root, classes=()):
    """8x8 PNGs: a bright square at a place that depends on the class."""
    from PIL import Image

    folder = root / ("labelled" if classes else "images")
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes or ["."]):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(24):
            image = rng.integers(0, 60, (8, 8)).astype("uint8")
            image[(c * 4) % 8:(c * 4) % 8 + 4, 2:6] = 255
            Image.fromarray(image, "L").save(folder / name / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny finished runs: {kind: zoo.runs.Run}."""
    root = tmp_path_factory.mktemp("serve")
    old = os.environ.get("ZOO_CACHE_DIR")
    os.environ["ZOO_CACHE_DIR"] = str(root / "cache")
    out = {
        "mlp": zoo.train("mlp_regressor", epochs=2, run_dir=str(root / "mlp"), verbose=0,
                         data_options={"num_train": 200}, hidden_units=(16, 16)),
        "gan": zoo.train("dcgan", data=str(_image_dir(root)), epochs=1, batch_size=8,
                         run_dir=str(root / "gan"), verbose=0, latent_dim=8, generator_filters=8,
                         discriminator_filters=8),
        "gpt": zoo.train("gpt2_textgen", data=str(_text_dir(root)), epochs=2, batch_size=8, learning_rate=3e-3,
                         strategy="default", run_dir=str(root / "gpt"), verbose=0, **GPT2),
    }
    if "image_classifier" in zoo.list_models():
        out["img"] = zoo.train("image_classifier", data=str(_image_dir(root, ("top", "bottom"))), epochs=1,
                               batch_size=8, run_dir=str(root / "img"), verbose=0,
                               **zoo.registry.get_entry("image_classifier").tiny)
    yield out
    if old is None:
        os.environ.pop("ZOO_CACHE_DIR", None)
    else:
        os.environ["ZOO_CACHE_DIR"] = old


class Server:
    """A `zoo serve` subprocess on a free loopback port."""

    def __init__(self, args, tmp, **env):
        self.log = open(tmp / f"serve-{len(os.listdir(tmp))}.log", "w+")
        self.proc = subprocess.Popen(ZOO + ["serve", *map(str, args), "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env=zoo_env(**env), cwd=ROOT)
        self.url = None
        self._lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._lines.append(line)

    def stderr(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"zoo serve exited {self.proc.returncode}:\n{self.stderr()}")
            if self.url is None:
                for line in self._lines:
                    if "listening on http://" in line:
                        self.url = line.split("listening on ")[1].split()[0]
            if self.url is not None:
                try:
                    if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
            time.sleep(0.5)
        raise AssertionError(f"zoo serve not ready in {timeout} s:\n{self.stderr()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def servers(runs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("servers")
    names = ["mlp", "gan", "gpt"] + (["img"] if "img" in runs else [])
    args = [runs[n].dir for n in names] + [f"--name={n}" for n in names]
    key_file = tmp / "key.txt"
    key_file.write_text(KEY + "\n")
    started = {
        "open": Server(args + ["--max-batch-size", MAX_BATCH, "--batch-timeout-ms", 20, "--max-body-bytes",
                               65536, "--max-instances", 64, "--max-images", 64], tmp),
        "keyed": Server([runs["mlp"].dir, "--name", "mlp", "--api-key-file", key_file], tmp),
    }
    try:
        yield {name: server.wait_ready() for name, server in started.items()}
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def server(servers):
    return servers["open"].url


def post(url, body, **kwargs):
    return httpx.post(url, content=body if isinstance(body, (bytes, str)) else json.dumps(body),
                      headers={"Content-Type": "application/json", **kwargs.pop("headers", {})},
                      timeout=120, **kwargs)


def events(response):
    """The (event, data, arrival time) of a Server-Sent Events response."""
    out, buffer = [], ""
    for text in response.iter_text():
        buffer += text
        while "\n\n" in buffer:
            chunk, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in chunk.splitlines())
            out.append((fields["event"], json.loads(fields["data"]), time.monotonic()))
    return out


# Probes, status and metadata


def test_health_ready_status_and_metadata(server, runs):
    assert httpx.get(server + "/healthz").json()["status"] == "ok"
    ready = httpx.get(server + "/readyz").json()
    assert ready["status"] == "ready" and set(ready["models"].values()) == {"AVAILABLE"}
    listed = {m["name"]: m for m in httpx.get(server + "/v1/models").json()["models"]}
    assert listed["gpt"]["model"] == "gpt2_textgen" and listed["gan"]["verbs"] == ["generate"]
    status = httpx.get(server + "/v1/models/mlp").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert status["model_version_status"][0]["status"]["error_code"] == "OK"
    meta = httpx.get(server + "/v1/models/mlp/metadata").json()
    assert meta["model_spec"]["name"] == "mlp"
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["features"]["tensor_shape"]["dim"][1]["size"] == "10"
    assert meta["zoo"]["features"] == runs["mlp"].config["data"]["features"]
    assert meta["zoo"]["targets"] == ["y"]
    assert meta["zoo"]["run"] == os.path.abspath(runs["mlp"].dir)
    gpt = httpx.get(server + "/v1/models/gpt/metadata").json()["zoo"]
    assert gpt["max_length_cap"] == 32 and "top_p" in gpt["samplers"]
    missing = httpx.get(server + "/v1/models/mpl")
    assert missing.status_code == 404 and "Did you mean 'mlp'?" in missing.json()["error"]


def test_page_is_served_and_needs_no_network(server):
    page = httpx.get(server + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="prompt"' in page.text and 'id="new-images"' in page.text and 'id="csv"' in page.text
    assert "http://" not in page.text and "https://" not in page.text and "src=\"//" not in page.text


# mlp_regressor


@pytest.fixture(scope="module")
def mlp(runs):
    return runs["mlp"].model


def _expected(model, rows):
    return model.predict(np.asarray(rows, "float32"), verbose=0)


def test_predict_rows_by_position_and_by_name(server, runs, mlp):
    features = runs["mlp"].config["data"]["features"]
    rows = np.random.default_rng(1).uniform(0, 1, (5, 10)).round(4).tolist()
    expected = _expected(mlp, rows)
    url = server + "/v1/models/mlp:predict"
    by_position = post(url, {"instances": rows})
    assert by_position.status_code == 200
    np.testing.assert_allclose(by_position.json()["predictions"], expected, rtol=1e-5)
    named = [dict(reversed(list(zip(features, row)))) for row in rows]  # Any key order.
    np.testing.assert_allclose(post(url, {"instances": named}).json()["predictions"], expected, rtol=1e-5)
    tensor_rows = [{"features": row} for row in rows]
    np.testing.assert_allclose(post(url, {"instances": tensor_rows}).json()["predictions"], expected, rtol=1e-5)
    columnar = post(url, {"inputs": {f: [row[i] for row in rows] for i, f in enumerate(features)}})
    np.testing.assert_allclose(columnar.json()["outputs"], expected, rtol=1e-5)
    named_tensor = post(url, {"inputs": {"features": rows}, "signature_name": "serving_default"})
    np.testing.assert_allclose(named_tensor.json()["outputs"], expected, rtol=1e-5)


def _overflow_row(server):
    """A row of float32-range values whose prediction overflows to inf."""
    for j in range(10):
        for value in (3e38, -3e38):
            row = [0.5] * 10
            row[j] = value
            if post(server + "/v1/models/mlp:predict", {"instances": [row]}).status_code == 422:
                return row
    raise AssertionError("no row overflows the model")


ROW = [0.5] * 10


@pytest.mark.parametrize("body, status, message", [
    ({"instances": [[1, 2]]}, 400, r"Invalid shape for `instances\[0\]`: expected 10 feature values .* a list of 2"),
    ({"instances": [ROW[:9] + ["7"]]}, 400, r"`instances\[0\]\[9\]`: expected a number. Received: '7'"),
    ({"instances": [ROW[:9] + [True]]}, 400, r"`instances\[0\]\[9\]`: expected a number. Received: true"),
    ({"instances": [ROW[:9] + [4e38]]}, 400, r"`instances\[0\]\[9\]`: expected a number of magnitude at most"),
    ({"instances": [ROW[:9] + [None]]}, 400, r"`instances\[0\]\[9\]`: expected a number. Received: null"),
    ({"instances": [{"x0": 1}]}, 400, r"Missing features in `instances\[0\]`: x1, x2"),
    ({"instances": [dict({f"x{i}": 1 for i in range(9)}, x99=1)]}, 400,
     r"Unknown feature `x99` in `instances\[0\]`. Did you mean 'x9'\?"),
    ({"instances": []}, 400, r"`instances`: expected a non-empty list"),
    ({"instances": "rows"}, 400, r"`instances`: expected a list. Received: 'rows'"),
    ({"instances": [7]}, 400, r"`instances\[0\]`: expected a row"),
    ({"instancs": [ROW]}, 400, r"Unknown field `instancs` in the request. Did you mean 'instances'\?"),
    ({"instances": [ROW], "inputs": [ROW]}, 400, r"exactly one of `instances` .* or `inputs`"),
    ({}, 400, r"exactly one of `instances`"),
    ({"inputs": {"x0": [1, 2], "x1": [1]}}, 400, r"Missing features in `inputs`: x2"),
    ({"instances": [ROW] * 65}, 400, r"Too many items in `instances`: 65; the cap is max_instances=64"),
    ({"instances": [ROW], "signature_name": "other"}, 400, r"`signature_name`: expected \"serving_default\""),
])
def test_predict_bad_requests(server, body, status, message):
    response = post(server + "/v1/models/mlp:predict", body)
    assert response.status_code == status
    assert re.search(message, response.json()["error"]), response.json()["error"]


@pytest.mark.parametrize("raw, status, message", [
    (b'{"instances": [[1, 2, 3, 4, 5, 6, 7, 8, 9, NaN]]}', 400, r"`instances\[0\]\[9\]`: expected a finite number .* NaN"),
    (b'{"instances": [[1, 2, 3, 4, 5, 6, 7, 8, 9, -Infinity]]}', 400, r"`instances\[0\]\[9\]`: .* -Infinity"),
    (b'{"instances": [[1, 2,', 400, r"Malformed JSON: .* at line 1 column"),
    (b"", 400, r"The request body is empty"),
    (b"[1, 2]", 400, r"The request body must be a JSON object. Received: a list of 2"),
    (b"\xff\xfe", 400, r"Malformed JSON: the body is not UTF-8"),
    (b" " * 70_000, 413, r"Request body too large: 70,000 bytes; the cap is max_body_bytes=65,536"),
])
def test_predict_malformed_bodies(server, raw, status, message):
    response = post(server + "/v1/models/mlp:predict", raw)
    assert response.status_code == status
    assert re.search(message, response.json()["error"]), response.json()["error"]


def test_body_cap_holds_without_content_length(server):
    chunks = (b" " * 10_000 for _ in range(8))  # Chunked: no Content-Length header.
    response = httpx.post(server + "/v1/models/mlp:predict", content=chunks, timeout=60)
    assert response.status_code == 413 and "max_body_bytes=65,536" in response.json()["error"]


def test_routes_models_and_verbs_errors(server):
    cases = [
        (post(server + "/v1/models/nope:predict", {}), 404, "Unknown model 'nope'"),
        (post(server + "/v1/models/mlp:predikt", {}), 400, "Unknown verb `:predikt`. Did you mean 'predict'?"),
        (post(server + "/v1/models/gpt:predict", {"instances": []}), 400, "does not take `:predict`. It takes: :generate"),
        (post(server + "/v1/models/mlp:generate", {}), 400, "does not take `:generate`. It takes: :predict"),
        (httpx.get(server + "/v1/models/mlp:predict"), 404, "Unknown model 'mlp:predict'"),
        (httpx.get(server + "/v2/anything"), 404, "No route GET /v2/anything"),
        (httpx.delete(server + "/v1/models/mlp"), 405, "Method DELETE is not allowed"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["error"], response.json()["error"]


def test_concurrent_predicts_are_batched_answered_in_order_and_isolated(server, mlp):
    """32 clients at once: each gets its own rows' answers in its order,
    bad requests fail alone, and the batcher made fewer calls than requests."""
    url = server + "/v1/models/mlp:predict"
    bad_row = _overflow_row(server)
    before = httpx.get(server + "/v1/models/mlp/metadata").json()["zoo"]["batching"]
    rng = np.random.default_rng(7)
    requests = [rng.uniform(0, 1, (int(rng.integers(1, 4)), 10)).round(4).tolist() for _ in range(96)]

    def send(i):
        if i % 16 == 5:
            return i, post(url, {"instances": [ROW, bad_row]})
        if i % 16 == 11:
            return i, post(url, {"instances": [ROW[:3]]})
        return i, post(url, {"instances": requests[i]})

    expected = np.split(_expected(mlp, np.concatenate(requests)), np.cumsum([len(r) for r in requests])[:-1])
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = dict(pool.map(send, range(len(requests))))
    for i, response in answers.items():
        if i % 16 == 5:
            assert response.status_code == 422 and "not finite" in response.json()["error"]
        elif i % 16 == 11:
            assert response.status_code == 400 and "Invalid shape" in response.json()["error"]
        else:
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()["predictions"], expected[i], rtol=1e-5)
    after = httpx.get(server + "/v1/models/mlp/metadata").json()["zoo"]["batching"]
    calls, handled = after["batches"] - before["batches"], after["requests"] - before["requests"]
    assert handled == 96 - 6  # The 6 malformed ones never reached the model.
    assert calls < handled and 1 < after["largest_batch"] <= MAX_BATCH
    assert httpx.get(server + "/readyz").status_code == 200


# dcgan


def _png(text):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def test_dcgan_images_and_grid_are_the_models_own(server, runs):
    from zoo.data import images as images_lib

    model = runs["gan"].model
    answer = post(server + "/v1/models/gan:generate", {"count": 5, "seed": 11}).json()
    assert answer["seed"] == 11 and answer["count"] == 5 and answer["image_size"] == [8, 8, 1]
    expected = np.round(model.generate(5, seed=11) * 255).astype("uint8")[..., 0]
    np.testing.assert_allclose(np.stack([_png(p) for p in answer["images"]]).astype(int), expected.astype(int),
                               atol=1)
    grid = post(server + "/v1/models/gan:generate", {"count": 5, "seed": 11, "format": "grid"}).json()
    assert _png(grid["grid"]).shape == images_lib.make_grid(model.generate(5, seed=11))[..., 0].shape
    again = post(server + "/v1/models/gan:generate", {"count": 2}).json()
    assert isinstance(again["seed"], int) and len(again["images"]) == 2


@pytest.mark.parametrize("body, message", [
    ({"count": 0}, r"`count`: expected an integer in \[1, 64\]"),
    ({"count": 65}, r"`count`: expected an integer in \[1, 64\] \(the cap is max_images=64\)"),
    ({"count": 2.5}, r"`count`: expected an integer. Received: 2.5"),
    ({"format": "gif"}, r"Unknown format 'gif'. Did you mean 'grid'\? Accepted: images, grid."),
    ({"seed": -1}, r"`seed`: expected an integer in \[0, 2147483647\]"),
    ({"cuont": 3}, r"Unknown field `cuont` .* Did you mean 'count'\?"),
])
def test_dcgan_bad_requests(server, body, message):
    response = post(server + "/v1/models/gan:generate", body)
    assert response.status_code == 400 and re.search(message, response.json()["error"]), response.text


# gpt2_textgen


@pytest.fixture(scope="module")
def lm(runs):
    import keras_hub

    from zoo.models.gpt2_textgen import generation

    model = generation.load_preset(os.path.join(runs["gpt"].dir, "preset"))
    model.compile(sampler=keras_hub.samplers.GreedySampler())
    return model


def test_greedy_generation_is_keras_hubs(server, lm):
    from zoo.models.gpt2_textgen import generation

    prompts = ["The quick", "A list of"]
    answer = post(server + "/v1/models/gpt:generate", {"prompts": prompts, "max_length": 16, "sampler": "greedy"})
    assert answer.status_code == 200, answer.text
    got = answer.json()["predictions"]
    assert [p["text"] for p in got] == generation.generate_text(lm, prompts, 16)
    assert all(p["prompt"] == q and p["text"] == q + p["completion"] for p, q in zip(got, prompts))
    assert all(p["stop"] in ("max_length", "end_token") for p in got)


def test_streamed_tokens_arrive_before_the_end_and_add_up(server):
    url = server + "/v1/models/gpt:generate"
    body = {"prompt": "The quick", "max_length": 16, "sampler": "top_p", "seed": 3, "temperature": 1.5}
    whole = post(url, body).json()
    with httpx.stream("POST", url, json=dict(body, stream=True), timeout=120) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        received = events(response)
    tokens = [data for kind, data, _ in received if kind == "token"]
    kind, done, finished = received[-1]
    assert kind == "done" and done == whole and len(tokens) == whole["predictions"][0]["tokens"] >= 2
    assert "".join(t["text"] for t in tokens) == whole["predictions"][0]["completion"]
    assert all(t["index"] == 0 for t in tokens)
    assert received[0][2] < finished  # The first token came before the whole answer.


def test_seeded_requests_give_their_own_text_alone_or_batched(server, servers):
    """Different prompts, samplers and seeds at once: each answer is the one
    the request gets alone, and the step compiled once per bucket."""
    url = server + "/v1/models/gpt:generate"
    bodies = [{"prompt": p, "max_length": 16, "sampler": s, "seed": seed, "temperature": t, "top_k": 5}
              for p, s, seed, t in [("The", "top_p", 1, 2.0), ("A list", "top_k", 2, 0.7), ("", "greedy", 0, 1.0),
                                    ("and python", "top_p", 4, 2.0), ("The", "top_p", 5, 2.0),
                                    ("code", "top_k", 6, 1.0), ("while the", "top_p", 7, 0.5), ("The", "top_p", 1, 2.0)]]
    alone = [post(url, b).json() for b in bodies]
    assert alone[0] == alone[-1] and alone[0] != alone[4]  # Same seed, same text; another seed, another.
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(lambda b: post(url, b).json(), bodies))
    assert together == alone
    stats = httpx.get(server + "/v1/models/gpt/metadata").json()["zoo"]
    assert stats["batching"]["largest_batch"] > 1
    assert stats["compiled"] and all(line.endswith(": 1 trace(s)") for line in stats["compiled"])


def test_beam_search_is_deterministic_and_not_streamed(server):
    url = server + "/v1/models/gpt:generate"
    body = {"prompt": "The", "max_length": 12, "sampler": "beam", "num_beams": 2}
    first, second = post(url, body).json(), post(url, body).json()
    assert first["predictions"] == second["predictions"] and first["predictions"][0]["text"].startswith("The")
    refused = post(url, dict(body, stream=True))
    assert refused.status_code == 400 and "beam search cannot stream" in refused.json()["error"]


@pytest.mark.parametrize("body, message", [
    ({"prompt": "a", "sampler": "top_z"}, r"Unknown sampler 'top_z'. Did you mean 'top_p'\?"),
    ({"prompt": "a", "max_length": 33}, r"`max_length`: expected an integer in \[2, 32\] \(the cap is max_length=32"),
    ({"prompt": "the quick brown fox jumps over the lazy dog " * 3, "max_length": 32},
     r"the prompt `prompt` .* tokens with the start token, so nothing is left"),
    ({"prompt": "a", "temperature": 0}, r"`temperature`: expected a number in \(0.0, 100.0\]"),
    ({"prompt": "a", "top_p": 1.5}, r"`top_p`: expected a number in \(0.0, 1.0\]"),
    ({"prompt": "a", "top_k": 0}, r"`top_k`: expected an integer in \[1, "),
    ({"promt": "a"}, r"Unknown field `promt` .* Did you mean 'prompt'\?"),
    ({"prompt": "a", "prompts": ["b"]}, r"exactly one of `prompt` .* or `prompts`"),
    ({"prompts": ["a", 3]}, r"`prompts\[1\]`: expected a string. Received: 3"),
    ({"prompt": "a", "stream": "yes"}, r"`stream`: expected true or false"),
    ({"prompts": ["a"] * 65}, r"Too many items in `prompts`: 65; the cap is max_instances=64"),
])
def test_generate_bad_requests(server, body, message):
    response = post(server + "/v1/models/gpt:generate", body)
    assert response.status_code == 400 and re.search(message, response.json()["error"]), response.text


# image_classifier


def test_image_classifier_predicts_from_base64(server, runs, tmp_path):
    if "img" not in runs:
        pytest.skip("image_classifier is not registered in this tree")
    from PIL import Image

    from zoo.data import images as images_lib

    folder = _image_dir(tmp_path, ("top", "bottom"))
    paths = [folder / "top" / "0.png", folder / "bottom" / "1.png"]
    instances = [{"b64": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    answer = post(server + "/v1/models/img:predict", {"instances": instances})
    assert answer.status_code == 200, answer.text
    model = runs["img"].model
    shape = model.input_shape[1:]
    expected = model.predict(np.stack([images_lib.read_image(str(p), *shape) for p in paths]), verbose=0)
    np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-4, atol=1e-6)
    big = io.BytesIO()
    Image.new("L", (3000, 2000)).save(big, format="PNG")
    for body, status, message in [
        ({"instances": [{"b64": "not base64!"}]}, 400, "`instances[0].b64`: expected base64 text"),
        ({"instances": [{"b64": base64.b64encode(b"GIF89a...").decode()}]}, 400, "not a readable PNG or JPEG"),
        ({"instances": ["abc"]}, 400, 'expected an image as {"b64"'),
        ({"instances": [{"b64": base64.b64encode(big.getvalue()).decode()}]}, 400,
         "Image too large in `instances[0]`: 3000x2000 = 6,000,000 pixels; the cap is max_image_pixels"),
    ]:
        response = post(server + "/v1/models/img:predict", body)
        assert response.status_code == status and message in response.json()["error"], response.text


# Keys, shutdown and the command line


def test_api_key_from_file(servers):
    url = servers["keyed"].url
    missing = httpx.get(url + "/v1/models")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Missing API key" in missing.json()["error"]
    wrong = post(url + "/v1/models/mlp:predict", {"instances": [ROW]}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "Wrong API key" in wrong.json()["error"]
    right = post(url + "/v1/models/mlp:predict", {"instances": [ROW]}, headers={"Authorization": f"Bearer {KEY}"})
    assert right.status_code == 200 and len(right.json()["predictions"]) == 1
    for path in ("/", "/healthz", "/readyz"):  # The page and the probes hold no data.
        assert httpx.get(url + path).status_code == 200


def test_key_is_compared_in_constant_time(monkeypatch):
    """The guard compares the whole header with `hmac.compare_digest`."""
    import hmac

    from zoo.serve import app as app_lib
    from zoo.serve.validation import Limits

    seen = []
    real = hmac.compare_digest
    monkeypatch.setattr(app_lib.hmac, "compare_digest", lambda a, b: seen.append((a, b)) or real(a, b))
    app = app_lib.create_app(app_lib.Models([], Limits()), api_key="s3cret")

    async def calls():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [(await client.get("/v1/models", headers=h)).status_code
                    for h in ({"Authorization": "Bearer s3cret"}, {"Authorization": "Bearer s3cre"}, {})]

    assert asyncio.run(calls()) == [200, 401, 401]
    assert seen == [(b"Bearer s3cret", b"Bearer s3cret"), (b"Bearer s3cre", b"Bearer s3cret"), (b"", b"Bearer s3cret")]


def test_key_from_the_environment(monkeypatch, tmp_path):
    from zoo.serve import server

    monkeypatch.setenv("ZOO_API_KEY", " k3y\n")
    assert server.read_api_key(None) == "k3y"
    (tmp_path / "key").write_text("from-file\n")
    assert server.read_api_key(str(tmp_path / "key")) == "from-file"  # The file wins.
    monkeypatch.delenv("ZOO_API_KEY")
    assert server.read_api_key(None) is None
    assert server.host_warning("127.0.0.1", None) is None and server.host_warning("::1", None) is None
    assert server.host_warning("localhost", None) is None and server.host_warning("0.0.0.0", "k") is None
    assert "without an API key" in server.host_warning("0.0.0.0", None)
    assert "without an API key" in server.host_warning("::", None)


@pytest.mark.parametrize("args, env, message", [
    (["{tmp}/nowhere"], {}, "Run directory '{tmp}/nowhere' not found"),
    (["{tmp}"], {}, "is not a zoo run directory: it has no config.json"),
    (["{mlp}", "{mlp}"], {}, "Two runs would be served as 'mlp_regressor-mlp'"),
    (["{mlp}", "--name", "a:b"], {}, "Invalid value for `--name`: 'a:b'"),
    (["{mlp}", "--name", "a", "--name", "b"], {}, "2 names for 1 runs"),
    (["{mlp}", "--api-key-file", "{tmp}/none.txt"], {}, "Invalid value for `--api-key-file`: no file"),
    (["{mlp}", "--api-key-file", "{tmp}/empty.txt"], {}, "is empty; it should hold the key"),
    (["{mlp}"], {"ZOO_API_KEY": " "}, "`ZOO_API_KEY`: it is set but empty"),
    (["{mlp}", "--max-batch-size", "0"], {}, "Invalid value for `max_batch_size`: must be a positive int"),
    (["{mlp}", "--host", "0.0.0.0", "--port", "70000"], {},
     "warning: serving on 0.0.0.0 without an API key"),
])
def test_command_line_mistakes(runs, tmp_path, args, env, message):
    (tmp_path / "empty.txt").write_text("\n")
    fill = dict(tmp=str(tmp_path), mlp=runs["mlp"].dir)
    out = subprocess.run(ZOO + ["serve", *[a.format(**fill) for a in args]], capture_output=True, text=True,
                         env=zoo_env(**env), timeout=120)
    assert out.returncode == 2, out.stderr
    assert message.format(**fill) in out.stderr and "Traceback" not in out.stderr
    if "--port" in args:
        assert "Invalid value for `--port`: must be in [0, 65535]. Received: 70000." in out.stderr


def test_batcher_bounds_its_wait_and_size_and_isolates_failures():
    from zoo.serve.batching import Batcher

    sizes = []

    def run(key, items, sinks):
        sizes.append(len(items))
        if "poison" in items:
            raise ValueError("poisoned batch")
        return [RuntimeError("odd") if item == "odd" else item.upper() for item in items]

    batcher = Batcher(run, max_batch_size=4, timeout_s=0.05)

    async def scenario():
        began = time.monotonic()
        alone = await batcher.submit("k", ["solo"])
        waited = time.monotonic() - began
        jobs = [batcher.submit("k", [f"a{i}", f"b{i}"]) for i in range(5)]
        jobs += [batcher.submit("k", ["poison"]), batcher.submit("k", ["odd"]), batcher.submit("other", ["x"])]
        return alone, waited, await asyncio.gather(*jobs, return_exceptions=True)

    alone, waited, results = asyncio.run(scenario())
    batcher.close()
    assert alone == ["SOLO"] and 0.04 <= waited < 1.0
    assert results[:5] == [[f"A{i}", f"B{i}"] for i in range(5)]
    assert isinstance(results[5], ValueError) and isinstance(results[6], RuntimeError) and results[7] == ["X"]
    assert max(sizes) <= 4 and sizes.count(4) >= 2


# The page in a real browser


def _chrome():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1100,1000"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="zoo-chrome-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    return driver, profile


@pytest.mark.browser
def test_page_streams_text_and_draws_a_grid_in_chromium(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver, profile = _chrome()
    try:
        driver.get(server + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) >= 3)
        Select(driver.find_element(By.ID, "model")).select_by_value("gpt")
        wait.until(ec.visibility_of_element_located((By.ID, "prompt")))
        driver.find_element(By.ID, "prompt").send_keys("The quick")
        driver.find_element(By.ID, "max-length").clear()
        driver.find_element(By.ID, "max-length").send_keys("24")
        driver.find_element(By.ID, "text-seed").send_keys("9")
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.find_element(By.ID, "output").get_attribute("data-done") == "true")
        shown = driver.execute_script("return document.getElementById('output').textContent;")
        tokens = int(driver.find_element(By.ID, "output").get_attribute("data-tokens"))
        expected = post(server + "/v1/models/gpt:generate",
                        {"prompt": "The quick", "max_length": 24, "sampler": "top_p", "temperature": 1.0,
                         "seed": 9}).json()["predictions"][0]
        assert tokens == expected["tokens"] >= 2  # The text came as token events.
        assert shown == expected["text"]
        assert driver.find_element(By.ID, "message").text == ""

        Select(driver.find_element(By.ID, "model")).select_by_value("mlp")
        wait.until(ec.visibility_of_element_located((By.ID, "csv")))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#feature-inputs input")) == 10)
        rows = np.random.default_rng(3).uniform(0, 1, (3, 10)).round(3)
        csv = tmp_path / "rows.csv"
        csv.write_text(",".join(f"x{i}" for i in reversed(range(10))) + "\n"
                       + "".join(",".join(str(v) for v in row[::-1]) + "\n" for row in rows))
        driver.find_element(By.ID, "csv").send_keys(str(csv))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#csv-result tr")) == 4)
        cells = driver.find_elements(By.CSS_SELECTOR, "#csv-result tr td:last-child")
        expected_rows = post(server + "/v1/models/mlp:predict", {"instances": rows.tolist()}).json()["predictions"]
        np.testing.assert_allclose([float(c.text) for c in cells], [r[0] for r in expected_rows], rtol=1e-5)

        Select(driver.find_element(By.ID, "model")).select_by_value("gan")
        wait.until(ec.visibility_of_element_located((By.ID, "new-images")))
        driver.find_element(By.ID, "new-images").click()
        wait.until(lambda d: d.execute_script("const g = document.getElementById('grid');"
                                              "return g.complete && g.naturalWidth > 0;"))
        width = driver.execute_script("return document.getElementById('grid').naturalWidth;")
        assert width >= 6 * 32  # 36 images of 8x8, enlarged to 32-pixel cells, 6 a row.
        assert "36 images" in driver.find_element(By.ID, "image-meta").text
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_serving_benchmark_reports_both_modes_and_the_bars(runs, tmp_path):
    """`benchmarks/serving.py --size tiny` on this module's runs: bounded
    load on loopback against a batching and a non-batching server."""
    out = tmp_path / "serving.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "serving.py"), "--size",
                           "tiny", "--runs", runs["mlp"].dir, runs["gpt"].dir, "--out", str(out)],
                          capture_output=True, text=True, env=zoo_env(), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert set(document["results"]) == {f"{w}/{c}/{m}" for w in ("predict", "generate") for c in (1, 4)
                                        for m in ("on", "off")}
    for row in document["results"].values():
        assert row["requests"] > 0 and row["errors"] == 0 and row["p50_ms"] <= row["p99_ms"]
    assert document["results"]["generate/4/on"]["tokens_per_s"] > 0
    assert len(document["bars"]) == 3 and "| predict | 4 | on |" in done.stdout
    assert document["mlp_model_call"]["rows_per_s_at_batch_32"] > 0


def test_sigterm_finishes_the_stream_in_flight(servers):
    """SIGTERM mid-stream stops new connections, the stream runs to its
    end, and the server exits 0. The last test: it stops the shared server."""
    server = servers["open"]
    url = server.url + "/v1/models/gpt:generate"
    headers = {}
    body = {"prompts": ["The", "A list", "code"] * 20, "max_length": 32, "sampler": "greedy", "stream": True}
    with httpx.stream("POST", url, json=body, headers=headers, timeout=120) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == "event: token"
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/healthz", timeout=5)
        rest = "\n".join(lines)
    done = json.loads(rest.rsplit("event: done\ndata: ", 1)[1])
    assert len(done["predictions"]) == 60 and all(p["tokens"] >= 1 for p in done["predictions"])
    assert server.proc.wait(60) == 0
    assert "stopped on SIGTERM, after finishing the requests in flight" in "".join(server._lines)
