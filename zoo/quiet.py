"""Keeps TensorFlow's import-time log noise off the user's terminal.

`TF_CPP_MIN_LOG_LEVEL=2` drops TensorFlow's C++ INFO and WARNING lines (CUDA
stubs, CPU feature notes) but keeps its ERROR lines, and Python exceptions are
never touched. A value the user set wins.
"""

import logging
import os


def quiet_tensorflow():
    """Sets the log levels before TensorFlow is first imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # absl prints "All log messages before absl::InitializeLog()" warnings
    # through Python logging too; errors still pass.
    logging.getLogger("absl").setLevel(logging.ERROR)
