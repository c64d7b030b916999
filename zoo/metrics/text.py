"""Text metrics: perplexity, bits per byte, and the `xz -9` baseline.

Bits per byte compare models with different tokenizers, and with a
general-purpose compressor on the same bytes: a language model that does not
beat `xz -9` has learned less about the text than Lempel-Ziv has.
"""

import math


def text_metrics(total_nll, num_tokens, num_bytes):
    """Perplexity and bits per byte from a summed negative log-likelihood.

    Args:
        total_nll: float. The summed cross-entropy in nats.
        num_tokens: int. The tokens it was summed over.
        num_bytes: int. The bytes those tokens spell.

    Returns:
        `{"perplexity": exp(nll / tokens), "bits_per_byte": nll / ln 2 / bytes}`.

    ```python
    text_metrics(4 * math.log(2), 4, 2)  # perplexity 2.0, bits_per_byte 2.0
    ```
    """
    if num_tokens <= 0 or num_bytes <= 0:
        raise ValueError(f"Need tokens and bytes to score. Received: {num_tokens} tokens, {num_bytes} bytes.")
    return {
        "perplexity": math.exp(total_nll / num_tokens),
        "bits_per_byte": total_nll / math.log(2) / num_bytes,
    }


def xz_bits_per_byte(data):
    """Bits per byte that `xz -9` (Python's `lzma`, preset 9) needs for `data`."""
    import lzma

    return 8 * len(lzma.compress(data, format=lzma.FORMAT_XZ, preset=9)) / len(data)


def summed_nll(model, dataset):
    """The summed token cross-entropy (nats) of `model` on batches of
    `(x, y, sample_weight)`, and the number of weighted tokens."""
    import numpy as np
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(x, y, w):
        logits = tf.cast(model(x, training=False), tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=logits)
        w = tf.cast(w, tf.float32)
        return tf.reduce_sum(tf.cast(ce, tf.float64) * tf.cast(w, tf.float64)), tf.reduce_sum(w)

    total, count = 0.0, 0.0
    for x, y, w in dataset:
        nll, n = step(x, y, w)
        total += float(nll)
        count += float(n)
    return float(np.float64(total)), int(round(count))
