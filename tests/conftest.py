"""Test setup: 2 logical CPU devices, so the distributed paths run on a CPU.

The logical devices must be configured before TensorFlow initializes its
runtime, so this runs at collection time, before any test builds a model.
"""

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _two_logical_cpus():
    from zoo import quiet

    # Without the start-up noise a pytest-xdist worker would print (its
    # stderr is the terminal's while the conftest imports TensorFlow).
    tf = quiet.import_tensorflow()

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    except RuntimeError:
        pass  # Already initialized by an earlier import; tests check the count.


_two_logical_cpus()


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A fresh zoo cache dir (tokenizers, classifiers) for one test."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def layers_built(monkeypatch, action):
    """The class names of the Keras layers that `action()` constructs."""
    from keras.src.layers.layer import Layer

    built, original = [], Layer.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Layer, "__init__", counting)
    try:
        action()
    finally:
        monkeypatch.setattr(Layer, "__init__", original)
    return built


def zoo_env(**extra):
    """The environment for a `zoo` subprocess of a test: 1 CPU thread pool."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


ZOO = [sys.executable, "-m", "zoo.cli"]
