"""`zoo launch`: runs one command as N local workers of one cluster.

Each worker is a process with its own `TF_CONFIG`, naming every worker at
a free localhost port and its own index, exactly what each host of a real
cluster would set. Worker 0 is the chief. Their output is streamed with a
`[worker-N]` prefix. The launcher:

- returns the chief's exit status, or the status of the worker that failed
  first when the chief had to be stopped because of it;
- stops every worker as soon as one fails (a collective op would otherwise
  wait forever for the lost peer), and on Ctrl-C or SIGTERM;
- waits at most `--timeout` seconds (default 60) for the others once one
  worker has exited, then stops them, so a launch never hangs.

Each worker runs in its own process group (and on Linux dies with the
launcher), so stopping it also stops whatever it started: no process is
left behind.

```
zoo launch --workers 2 -- zoo train mlp_regressor --epochs 3 --run-dir runs/a
```
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

DEFAULT_TIMEOUT = 60.0
# Seconds a worker gets to exit after SIGINT/SIGTERM before SIGKILL.
GRACE_SECONDS = 5.0


def free_ports(n, host="localhost"):
    """Returns `n` distinct free TCP ports on `host`.

    All sockets are held open until every port is chosen, so the ports are
    distinct; another program could still take one before a worker binds
    it, which the launch would report as a failed worker.
    """
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_configs(num_workers, host="localhost"):
    """Returns one `TF_CONFIG` dict per worker of a local cluster.

    Args:
        num_workers: int. Number of workers; worker 0 is the chief.
        host: str. The host name in the cluster spec. Defaults to "localhost".

    ```python
    configs = zoo.launch.cluster_configs(2)
    configs[1]["task"]  # {"type": "worker", "index": 1}
    ```
    """
    workers = [f"{host}:{port}" for port in free_ports(num_workers, host)]
    return [
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        for i in range(num_workers)
    ]


def _command(cmd):
    """Strips the `--` separator; `zoo` runs as this interpreter's zoo."""
    cmd = list(cmd or [])
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if not cmd:
        raise ValueError(
            "`zoo launch` needs a command after `--`, such as "
            "`zoo launch --workers 2 -- zoo train mlp_regressor`. Received: no command."
        )
    if cmd[0] == "zoo":
        # The same interpreter and package as the launcher, whatever PATH says.
        cmd = [sys.executable, "-m", "zoo.cli", *cmd[1:]]
    return cmd


def _die_with_parent():
    """Runs in each child before exec: a session of its own, and on Linux
    SIGKILL when the launcher dies, even by SIGKILL."""
    os.setsid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


class _Worker:
    def __init__(self, index, cmd, tf_config, out, lock):
        self.index = index
        self.name = f"worker-{index}"
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )
        self.out, self.lock = out, lock
        self.thread = threading.Thread(target=self._pump, daemon=True)

    def _pump(self):
        # Reads bytes so a worker's partial lines and odd encodings never
        # break the stream; a progress bar's `\r` updates become lines.
        for raw in iter(self.proc.stdout.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\n")
            for part in text.split("\r"):
                if part.strip():
                    with self.lock:
                        self.out.write(f"[{self.name}] {part}\n")
                        self.out.flush()
        self.proc.stdout.close()

    def signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _stop(workers, sig=signal.SIGTERM):
    """Signals every running worker's group; SIGKILL after a grace period."""
    running = [w for w in workers if w.proc.poll() is None]
    for w in running:
        w.signal(sig)
    deadline = time.monotonic() + GRACE_SECONDS
    for w in running:
        try:
            w.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for w in workers:
        # Also kills what a worker started and left behind in its group.
        w.signal(signal.SIGKILL)
    for w in workers:
        w.proc.wait()


def run(cmd, num_workers=2, *, timeout=None, out=None):
    """Runs `cmd` as `num_workers` local workers; returns an exit status.

    Args:
        cmd: list of str. The command each worker runs; a leading `--` is
            dropped and a leading `zoo` runs this interpreter's `zoo.cli`.
        num_workers: int. Number of worker processes. Defaults to 2.
        timeout: float or None. Seconds to wait for the other workers once
            one has exited before stopping them. Defaults to 60.
        out: file. Where the prefixed output goes. Defaults to stdout.

    Returns:
        The chief's exit status; if a worker failed and the chief had to be
        stopped, that worker's status (or 1). 130 on Ctrl-C.

    ```python
    status = zoo.launch.run(["zoo", "train", "mlp_regressor", "--epochs", "2"], 2)
    ```
    """
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(
            f"Invalid value for `--workers`: must be a positive integer. "
            f"Received: workers={num_workers!r}."
        )
    if timeout is not None and not timeout > 0:
        raise ValueError(
            f"Invalid value for `--timeout`: must be a positive number of seconds. "
            f"Received: timeout={timeout!r}."
        )
    timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
    cmd = _command(cmd)
    out = out or sys.stdout
    lock = threading.Lock()
    say = lambda msg: (lock.acquire(), out.write(f"[launch] {msg}\n"), out.flush(), lock.release())

    interrupted = []

    def _on_signal(signum, frame):
        interrupted.append(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)

    workers = []
    try:
        configs = cluster_configs(num_workers)
        # All processes start before any reader thread, so no thread is
        # running while a child forks.
        workers = [_Worker(i, cmd, c, out, lock) for i, c in enumerate(configs)]
        for w in workers:
            w.thread.start()
        say(f"started {num_workers} workers on "
            f"{', '.join(configs[0]['cluster']['worker'])}: {' '.join(cmd)}")
        first_exit = None
        failed = None  # (worker, status) of the first worker that failed.
        while True:
            if interrupted:
                say("interrupted; stopping every worker.")
                _stop(workers, signal.SIGINT)
                return 130
            codes = [w.proc.poll() for w in workers]
            for w, code in zip(workers, codes):
                if code not in (None, 0) and failed is None:
                    failed = (w, code)
            still = [w.name for w, c in zip(workers, codes) if c is None]
            if failed is not None or not still:
                if still:
                    say(f"{failed[0].name} exited with status {failed[1]}; stopping "
                        f"{', '.join(still)}. Once the cause is fixed, the same command "
                        "resumes from the last checkpoint.")
                break
            if first_exit is None and len(still) < num_workers:
                first_exit = time.monotonic()
            if first_exit is not None and time.monotonic() - first_exit > timeout:
                say(f"{', '.join(still)} still running {timeout:g} s after another "
                    "worker finished; stopping them.")
                break
            time.sleep(0.1)
        chief = codes[0]  # None: the chief was still running and is stopped.
    finally:
        if workers:
            _stop(workers)
            for w in workers:
                w.thread.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if chief is None:
        chief = failed[1] if failed is not None else 1
    # A negative status is a signal; report it as a shell would.
    return chief if chief >= 0 else 128 - chief


def main(args):
    """Runs `zoo launch` for parsed arguments; returns the exit status."""
    try:
        return run(args.cmd, args.workers, timeout=args.timeout)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
