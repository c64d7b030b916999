"""Workarounds for upstream bugs, each in one place with its issue number.

Each fix has a test in `tests/test_workarounds.py` that fails without it.
Remove a fix once the Keras release that `setup.cfg` requires carries the
upstream fix, and its test then passes with the fix turned off.
"""

import functools

_APPLIED = set()


def patch_symbolic_build():
    """keras#20585, tensorflow#72388: `fit` under a strategy averages a batch.

    Before the first step, Keras 3's TensorFlow trainer builds the model
    symbolically from one data batch, and to get a single batch from a
    distributed one it runs `strategy.reduce("MEAN", batch)`. That is a
    collective across workers under MultiWorkerMirroredStrategy, where
    workers may disagree on shapes, and it fails on bool and string tensors
    under MirroredStrategy ("Value for attr 'T' of bool is not in the
    list", as keras-hub's GPT-2 preprocessor yields a bool `padding_mask`).
    The build only needs shapes and dtypes, so this takes the first local
    replica's batch instead: no collective, any dtype.
    """
    if "symbolic_build" in _APPLIED:
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda x: self.distribute_strategy.experimental_local_results(x)[0]
                    if isinstance(x, tf.distribute.DistributedValues)
                    else x,
                    batch,
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    _APPLIED.add("symbolic_build")


def patch_scalar_reduce():
    """keras#20585: logged scalars fail to reduce under multi-worker `fit`.

    `reduce_per_replica(..., "mean")` calls `strategy.reduce("MEAN", v,
    axis=0)` for every logged value under MultiWorkerMirroredStrategy; a
    0-d loss or metric has no axis 0 and the step fails. Scalars are
    reduced with `axis=None` instead, which is the same mean.
    """
    if "scalar_reduce" in _APPLIED:
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    @functools.wraps(original)
    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):

            def _reduce(v):
                if v.shape.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)

            return tree.map_structure(_reduce, values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    _APPLIED.add("scalar_reduce")


def apply_multi_worker_fixes():
    """Applies every fix that `fit` under MultiWorkerMirroredStrategy needs."""
    patch_symbolic_build()
    patch_scalar_reduce()


def apply_all():
    """Applies every fix; the trainer calls this before building a model."""
    apply_multi_worker_fixes()
