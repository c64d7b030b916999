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
CPU-only machine later, when its runtime starts.

Python exceptions are never touched, and `ZOO_VERBOSE_TF=1` turns the
filters off.
"""

import atexit
import logging
import os
import re
import sys
import tempfile
import threading

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

    File descriptor 2 is pointed at a pipe; a thread copies each line to
    the real stderr unless `filter_noise` drops it. Everything else,
    tracebacks included, passes unchanged.
    """
    if os.environ.get("ZOO_VERBOSE_TF") or getattr(filter_stderr, "active", False):
        return
    filter_stderr.active = True
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with os.fdopen(read_end, "rb") as pipe, os.fdopen(real, "wb", buffering=0) as out:
            for line in pipe:
                text = filter_noise(line.decode(errors="replace"))
                if text:
                    out.write(text.encode())

    thread = threading.Thread(target=pump, name="zoo-stderr-filter", daemon=True)
    thread.start()

    def restore():
        sys.stderr.flush()
        os.close(2)  # Closes the pipe's last writer, so the pump drains and ends.
        thread.join(timeout=5)

    atexit.register(restore)
