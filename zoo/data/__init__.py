"""Data readers shared by the models: splits, tfds, CSV tables, images, text.

Each module reads one kind of input into NumPy arrays or lists of str and
raises a clear error (naming the file, column or row) for bad input. None of
them imports the trainer or a model; TensorFlow only where a reader needs it
(`zoo.data.tfds`).
"""
