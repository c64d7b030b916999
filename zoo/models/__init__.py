"""The built-in models; importing this registers them (without TensorFlow)."""

from zoo.models import dcgan, gpt2_textgen, mlp_regressor  # noqa: F401
