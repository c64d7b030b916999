"""Keeps TensorFlow's start-up noise off the user's terminal.

Two layers:

- `quiet_tensorflow()` sets `TF_CPP_MIN_LOG_LEVEL=2` (unless the user set
  it), which drops TensorFlow's C++ INFO and WARNING lines once its logging
  is initialized, and keeps ERROR lines.
- `import_tensorflow()` imports TensorFlow and initializes its devices with
  the process' stderr captured, because some lines are printed before
  TensorFlow's logging reads that variable ("All log messages before
  absl::InitializeLog() ...", the CUDA stub and CPU feature notes). It then
  writes back every captured line except that known noise. Error lines pass,
  except the failed `cuInit` of a machine that has no NVIDIA device at all.

The `zoo` command and the recipes go one step further with
`filter_stderr()`: for the whole process, stderr passes through the same
filter line by line, since TensorFlow logs the failed `cuInit` of a
CPU-only machine later, when its runtime starts. The filter runs in a
child process of its own, not a thread, so what a dying process writes
last (faulthandler's report of a segfault, "Fatal Python error", an abort
message) still reaches the terminal after the process is gone.

Python exceptions and fatal-error output are never touched, and
`ZOO_VERBOSE_TF=1` turns the filters off.
"""

import atexit
import logging
import os
import re
import sys
import tempfile
import threading
import time

_GLOG = re.compile(r"^([IWEF])\d{4} ")
_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "Could not find cuda drivers on your machine",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "oneDNN custom operations are on",
)
_imported = []


def quiet_tensorflow():
    """Sets the log levels before TensorFlow is first imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)


def _no_nvidia_device():
    return not any(name.startswith("nvidia") for name in os.listdir("/dev")) if os.path.isdir("/dev") else True


def filter_noise(text):
    """Returns `text` without TensorFlow's known start-up noise lines."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _GLOG.match(line)
        if match or line.startswith("WARNING: All log messages before absl"):
            severity = match.group(1) if match else "W"
            noise = severity in "IW" or any(n in line for n in _NOISE)
            if severity == "E" and "cuInit" in line and _no_nvidia_device():
                noise = True
            dropping = noise
        elif line.startswith("To enable the following instructions"):
            dropping = True
        if not dropping:
            kept.append(line)
    return "".join(kept)


def import_tensorflow():
    """Imports and returns `tensorflow` without its start-up noise."""
    quiet_tensorflow()
    if _imported or "tensorflow" in sys.modules or os.environ.get("ZOO_VERBOSE_TF"):
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # Initializes CUDA, which logs.
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(filter_noise(capture.read().decode(errors="replace")))
            sys.stderr.flush()
    _imported.append(True)
    return tf


def filter_stderr():
    """Filters TensorFlow's noise out of this process' stderr until exit.

    File descriptor 2 is pointed at a pipe; a forked child process copies
    each line to the real stderr unless `filter_noise` drops it, and exits
    when the pipe closes: when this process exits, however it dies. So
    everything else, tracebacks and fatal-error reports included, passes
    unchanged, even from a process that crashed. Call it early, before
    TensorFlow starts its threads: once TensorFlow is imported or other
    threads run, it does nothing (a fork then is not safe).
    """
    if os.environ.get("ZOO_VERBOSE_TF") or getattr(filter_stderr, "active", False):
        return
    if "tensorflow" in sys.modules or threading.active_count() > 1 or not hasattr(os, "fork"):
        return
    filter_stderr.active = True
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # The filter.
        try:
            os.close(write_end)
            _pump(read_end)
        finally:
            os._exit(0)
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    import faulthandler

    if faulthandler.is_enabled():
        faulthandler.enable()  # Re-binds to the new fd 2, which the filter drains.

    def restore():
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)  # Closes this process' end of the pipe.
        os.close(devnull)
        # Wait (briefly) for the filter to write the last lines, so they
        # come before the shell's next prompt.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return
            time.sleep(0.01)

    atexit.register(restore)


def _pump(read_end):
    """The filter child: pipe in, filtered lines out to the real stderr."""
    import signal

    # Ctrl-C reaches the whole process group; the filter must outlive the
    # process it serves to pass on its last words.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # Do not hold the parent's stdout open.
    with os.fdopen(read_end, "rb") as pipe:
        for line in pipe:
            text = filter_noise(line.decode(errors="replace"))
            if text:
                os.write(2, text.encode())
