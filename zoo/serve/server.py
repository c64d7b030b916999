"""`zoo serve`: checks, the API key, then uvicorn until SIGTERM or Ctrl-C.

Everything a user can get wrong (a run directory, a name, a limit, the key
file, a missing `serve` extra) is checked before the port opens, and fails
with one `error:` line. The key comes from `ZOO_API_KEY` or
`--api-key-file`, never from the command line, where process lists would
show it. On SIGTERM uvicorn stops accepting connections, finishes the
requests in flight (streams too, up to `--shutdown-timeout` seconds), then
the batchers finish what they hold and the process exits 0.
"""

import ipaddress
import logging
import os
import signal
import sys

from zoo.serve import models as models_lib
from zoo.serve.validation import Limits

LIMIT_FLAGS = {
    "max_body_bytes": int, "max_instances": int, "max_length": int, "max_image_pixels": int,
    "max_images": int, "max_batch_size": int, "batch_timeout_ms": float,
}


def add_arguments(parser):
    """The flags of `zoo serve`."""
    from zoo import config as config_lib

    add = parser.add_argument
    add("runs", nargs="+", metavar="RUN", help="finished run directories, as made by zoo train")
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    add("--port", type=int, default=8501, help="port (default 8501, TF Serving's REST port); 0 picks a free one")
    add("--name", action="append", default=[], help="the name of a run in /v1/models/NAME; repeat, in the "
                                                    "runs' order (default MODEL-RUNDIR)")
    add("--api-key-file", help="a file holding the API key (else the ZOO_API_KEY environment variable); with "
                               "a key, every /v1/ call needs `Authorization: Bearer KEY`")
    docs = config_lib.field_docs(Limits)
    for field, kind in LIMIT_FLAGS.items():
        text = docs.get(field, "")
        text = text.split(". ", 1)[1] if ". " in text else text
        add(f"--{field.replace('_', '-')}", type=kind, default=getattr(Limits, field), help=text)
    add("--shutdown-timeout", type=float, default=30.0,
        help="seconds to finish requests in flight after SIGTERM (default 30)")
    add("--access-log", action="store_true", help="log every request")


def read_api_key(path):
    """The key of `--api-key-file` or `ZOO_API_KEY`, or None.

    Raises:
        FileNotFoundError: `--api-key-file` names no file.
        ValueError: the file or variable holds an empty key.
    """
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Invalid value for `--api-key-file`: no file '{path}'.")
        with open(path, encoding="utf-8") as f:
            key = f.read().strip()
        if not key:
            raise ValueError(f"Invalid value for `--api-key-file`: '{path}' is empty; it should hold the key.")
        return key
    key = os.environ.get("ZOO_API_KEY")
    if key is None:
        return None
    if not key.strip():
        raise ValueError("Invalid value for `ZOO_API_KEY`: it is set but empty; unset it or set a key.")
    return key.strip()


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_warning(host, key):
    """The warning for listening beyond this machine without a key, or None."""
    if is_loopback(host) or key is not None:
        return None
    return (f"serving on {host} without an API key: anyone who can reach this port can use the models. "
            "Set ZOO_API_KEY or --api-key-file.")


def serve(args):
    """Runs `zoo serve` for parsed flags; returns the exit status."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise ValueError(f"`zoo serve` needs the serve extra ({e.name} is missing): "
                         "pip install -e \".[serve]\"") from None
    from zoo.serve import app as app_lib

    limits = Limits(**{field: getattr(args, field) for field in LIMIT_FLAGS})
    servables = models_lib.servables(args.runs, args.name, limits)
    key = read_api_key(args.api_key_file)
    warning = host_warning(args.host, key)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    models = app_lib.Models(servables, limits)
    app = app_lib.create_app(models, api_key=key)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info" if args.access_log else "warning",
                            access_log=args.access_log, timeout_graceful_shutdown=args.shutdown_timeout)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"zoo serve: listening on http://{host}:{port} ({len(servables)} model(s): "
          f"{', '.join(s.name for s in servables)}; GET /readyz says when they are loaded)", flush=True)
    # Uvicorn restores the handlers it found and raises the signal again
    # once it has shut down gracefully; these make that a plain exit 0.
    stopped = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: stopped.append(signal.Signals(number).name))
    uvicorn.Server(config).run(sockets=[sock])
    print(f"zoo serve: stopped{' on ' + stopped[0] if stopped else ''}, after finishing the requests in flight",
          flush=True)
    return 0


def bind(host, port):
    """A listening socket on `host:port`, so the port is known (and
    connections queue) before uvicorn starts; port 0 picks a free one."""
    import socket

    if not 0 <= port <= 65535:
        raise ValueError(f"Invalid value for `--port`: must be in [0, 65535]. Received: {port}.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConnectionError(f"Cannot listen on {host}:{port}: {e.strerror}. Pick another --port or --host.") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
