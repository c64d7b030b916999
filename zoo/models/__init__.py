"""The built-in models; importing this registers them (without TensorFlow).

A new model is one module (or package) here and one name in this import.
"""

from zoo.models import dcgan, gpt2_textgen, image_classifier, mlp_regressor  # noqa: F401
