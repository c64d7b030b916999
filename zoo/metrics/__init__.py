"""Metrics shared by the models: FID, text (perplexity, bits per byte, the
xz baseline) and regression.

Plain functions of arrays and models; none imports the trainer or a model.
"""
