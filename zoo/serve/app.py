"""The FastAPI app of `zoo serve`: TF Serving's REST shapes, a page, probes.

Routes:

- `GET /`: the page (`page.html`), no key needed (it holds no data).
- `GET /healthz`: 200 while the process serves. `GET /readyz`: 200 once
  every model is loaded and warmed up, 503 before (or after a load failed).
- `GET /v1/models`: the served models. `GET /v1/models/NAME`: TF Serving's
  status. `GET /v1/models/NAME/metadata`: inputs, outputs and limits.
- `POST /v1/models/NAME:predict` (`mlp_regressor`, `image_classifier`) with
  `{"instances": [...]}` or `{"inputs": ...}`, answered with
  `{"predictions": ...}` or `{"outputs": ...}`.
- `POST /v1/models/NAME:generate` (`gpt2_textgen`, `dcgan`); for GPT-2
  `"stream": true` answers with Server-Sent Events, one per token.

With an API key, every `/v1/` call needs `Authorization: Bearer KEY`
(compared in constant time); otherwise 401. Errors are `{"error": "..."}`
with a 4xx status for the client's mistakes and 500 for zoo's own bugs,
which are logged with their traceback; neither stops the server. Models
load on a background thread after the port opens, so `/readyz` can say
"not yet".
"""

import asyncio
import hmac
import json
import logging
import os
import threading
import time
import traceback

from zoo import config as config_lib
from zoo.serve import batching
from zoo.serve.validation import RequestError, parse_body, too_large

LOG = logging.getLogger("zoo.serve")
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")


class Models:
    """The served models, their batchers and their loading state."""

    def __init__(self, servables, limits):
        self.servables = {s.name: s for s in servables}
        self.limits = limits
        self.state = {name: "LOADING" for name in self.servables}
        self.errors = {}
        self.batchers = {}
        self.started = time.monotonic()
        self.loaded = threading.Event()
        self.closing = False

    def load(self):
        """Loads and warms up each model in turn (the loading thread)."""
        for name, servable in self.servables.items():
            began = time.monotonic()
            try:
                servable.load()
                servable.warm_up()
            except Exception as error:  # noqa: BLE001  Reported by /readyz and the status route.
                self.state[name] = "FAILED"
                self.errors[name] = f"{type(error).__name__}: {error}"
                LOG.error("Loading '%s' from %s failed:\n%s", name, servable.run_dir, traceback.format_exc())
                continue
            self.batchers[name] = batching.Batcher(
                servable.run_batch, self.limits.max_batch_size, self.limits.batch_timeout_ms / 1000,
                name=f"batcher-{name}")
            self.state[name] = "AVAILABLE"
            LOG.warning("Loaded '%s' (%s) in %.1f s", name, servable.model_name, time.monotonic() - began)
        self.loaded.set()

    def start_loading(self):
        threading.Thread(target=self.load, name="zoo-serve-loader", daemon=True).start()

    def close(self):
        self.closing = True
        for batcher in self.batchers.values():
            batcher.close()

    def ready(self):
        return self.loaded.is_set() and not self.closing and all(s == "AVAILABLE" for s in self.state.values())

    def get(self, name):
        if name not in self.servables:
            raise RequestError(404, f"Unknown model '{name}'.{config_lib.did_you_mean(name, self.servables)} "
                                    f"Served: {', '.join(self.servables)}.")
        return self.servables[name]

    def usable(self, name):
        servable = self.get(name)
        state = self.state[name]
        if state == "LOADING":
            raise RequestError(503, f"Model '{name}' is still loading; GET /readyz says when all models are ready.")
        if state == "FAILED":
            raise RequestError(503, f"Model '{name}' failed to load: {self.errors[name]}")
        return servable, self.batchers[name]

    def status(self, name):
        self.get(name)
        state = self.state[name]
        code = {"AVAILABLE": "OK", "LOADING": "UNAVAILABLE", "FAILED": "UNKNOWN"}[state]
        return {"model_version_status": [{
            "version": "1", "state": state,
            "status": {"error_code": code, "error_message": self.errors.get(name, "")},
        }]}


class KeyGuard:
    """ASGI middleware: every `/v1/` call needs `Authorization: Bearer KEY`.

    The header is compared with `hmac.compare_digest`, whose time does not
    depend on where the first differing byte is.
    """

    def __init__(self, app, expected):
        self.app = app
        self.expected = expected

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                reason = "Missing" if not given else "Wrong"
                response = error_response(401, f"{reason} API key: this server needs `Authorization: Bearer "
                                               "KEY` on every /v1/ call.", headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def error_response(status, message, headers=None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body(request, limits):
    """The body's bytes, refused with 413 past `max_body_bytes`."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
        raise too_large(int(length), limits)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise too_large(size, limits)
        chunks.append(chunk)
    return b"".join(chunks)


def sse(event, data):
    """One Server-Sent Event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def create_app(models, api_key=None):
    """The FastAPI app serving `models` (a `Models`).

    Args:
        models: `Models`. Loading starts with the app's lifespan.
        api_key: str or None. With a key, `/v1/` calls need
            `Authorization: Bearer KEY`.
    """
    import contextlib

    from fastapi import FastAPI
    from starlette.exceptions import HTTPException

    expected = f"Bearer {api_key}".encode() if api_key else None

    @contextlib.asynccontextmanager
    async def lifespan(app):
        models.start_loading()
        yield
        # Uvicorn has finished the requests in flight by now; let the
        # batchers finish anything still queued, then stop them.
        await asyncio.to_thread(models.close)

    app = FastAPI(title="zoo serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.models = models

    @app.exception_handler(HTTPException)
    async def http_error(request, error):
        message = {404: f"No route {request.method} {request.url.path}. Routes: GET /, /healthz, /readyz, "
                        "/v1/models, /v1/models/NAME, /v1/models/NAME/metadata; POST /v1/models/NAME:predict, "
                        "/v1/models/NAME:generate.",
                   405: f"Method {request.method} is not allowed on {request.url.path}."}.get(error.status_code,
                                                                                            str(error.detail))
        return error_response(error.status_code, message)

    if expected is not None:
        app.add_middleware(KeyGuard, expected=expected)
    _add_status_routes(app, models)
    _add_call_route(app, models)
    return app


def _add_status_routes(app, models):
    """The page and the GET routes: health, readiness, models, metadata."""
    from fastapi.responses import HTMLResponse, JSONResponse

    @app.get("/", response_class=HTMLResponse)
    async def page():
        with open(PAGE, encoding="utf-8") as f:
            return HTMLResponse(f.read(), headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "uptime_s": round(time.monotonic() - models.started, 1)}

    @app.get("/readyz")
    async def readyz():
        body = {"status": "ready" if models.ready() else "not ready", "models": dict(models.state)}
        if models.errors:
            body["errors"] = dict(models.errors)
        return JSONResponse(body, status_code=200 if models.ready() else 503)

    @app.get("/v1/models")
    async def list_models():
        return {"models": [{"name": name, "model": s.model_name, "state": models.state[name],
                            "verbs": list(s.verbs)} for name, s in models.servables.items()]}

    @app.get("/v1/models/{name}")
    async def status(name: str):
        try:
            return models.status(name)
        except RequestError as error:
            return error_response(error.status, error.message)

    @app.get("/v1/models/{name}/metadata")
    async def metadata(name: str):
        try:
            servable, batcher = models.usable(name)
            answer = servable.metadata()
            answer["zoo"]["batching"] = dict(batcher.stats)
            return answer
        except RequestError as error:
            return error_response(error.status, error.message)


def _add_call_route(app, models):
    """`POST /v1/models/NAME:VERB`: checked, batched, answered (or streamed)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, StreamingResponse

    limits = models.limits

    @app.post("/v1/models/{target}")
    async def call(target: str, request: Request):
        try:
            name, verb = _split_target(target)
            servable, batcher = models.usable(name)
            if verb not in servable.verbs:
                raise RequestError(400, f"Model '{name}' ({servable.model_name}) does not take `:{verb}`. "
                                        f"It takes: {', '.join(':' + v for v in servable.verbs)}.")
            body = parse_body(await read_body(request, limits), limits)
            if servable.heavy_checks:  # Tokenizing prompts, decoding images: off the event loop.
                checked = await asyncio.to_thread(servable.request, verb, body)
            else:
                checked = servable.request(verb, body)
            if checked.stream:
                return StreamingResponse(_stream(batcher, checked), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            results = await batcher.submit(checked.key, checked.items)
            return JSONResponse(checked.finish(results))
        except RequestError as error:
            return error_response(error.status, error.message)
        except Exception as error:  # noqa: BLE001  A bug: logged, answered 500, the server stays up.
            LOG.error("Request %s %s failed:\n%s", request.method, request.url.path, traceback.format_exc())
            return error_response(500, f"Internal error ({type(error).__name__}: {error}); the server log "
                                       "has the traceback.")


def _split_target(target):
    name, colon, verb = target.rpartition(":")
    if not colon or not name:
        raise RequestError(404, f"POST /v1/models/{target}: expected /v1/models/NAME:predict or "
                                "/v1/models/NAME:generate.")
    if verb not in ("predict", "generate"):
        raise RequestError(400, f"Unknown verb `:{verb}`.{config_lib.did_you_mean(verb, ('predict', 'generate'))} "
                                "Accepted: :predict, :generate.")
    return name, verb


async def _stream(batcher, checked):
    """Server-Sent Events: `token` events as they are decoded, then `done`
    with the whole answer (or `error`)."""
    queue = asyncio.Queue()
    finished = object()
    task = asyncio.ensure_future(batcher.submit(
        checked.key, checked.items, sink=lambda index, event: queue.put_nowait((index, event))))
    task.add_done_callback(lambda _: queue.put_nowait(finished))
    while True:
        item = await queue.get()
        if item is finished:
            break
        index, event = item
        yield sse("token", {"index": index, **event})
    try:
        yield sse("done", checked.finish(task.result()))
    except RequestError as error:
        yield sse("error", {"error": error.message, "status": error.status})
    except Exception as error:  # noqa: BLE001  A bug: logged; the stream ends with it.
        LOG.error("Streamed request failed:\n%s", traceback.format_exc())
        yield sse("error", {"error": f"Internal error ({type(error).__name__}: {error}).", "status": 500})
