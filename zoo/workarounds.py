"""Workarounds for upstream bugs, each in one place with its issue number.

Keras 3's `fit` does not work under `MultiWorkerMirroredStrategy` as
released (keras#20585, tensorflow#72388). Each fix below patches one Keras
function or method, names the upstream issue and has a test in
`tests/test_workarounds.py` that runs a real 2-worker cluster and shows the
failure with the fix turned off. Remove a fix once the Keras release that
`setup.cfg` requires carries the upstream fix and its test then reports no
failure with the fix off.

Two fixes are not about multi-worker training: `saving_skipsets` (Keras
3.15's saving recomputes its attribute skip sets for every object of every
save; no upstream issue found on 2026-12-02) and `saved_model_variables`
(a SavedModel from `ExportArchive` stores every weight twice,
keras#23553), each with a test in the same file that shows the cost with
the fix off.

To turn fixes off, for a bug report or to check a new Keras release:
`ZOO_DISABLE_WORKAROUNDS=symbolic_build,scalar_reduce` (or `all`) in the
environment, or `with zoo.workarounds.disabled("scalar_reduce"): ...`.
"""

import contextlib
import functools
import os
import shutil
import tempfile

# Names of fixes to leave out, comma-separated, or "all".
DISABLE_ENV = "ZOO_DISABLE_WORKAROUNDS"
FIXES = ("symbolic_build", "scalar_reduce", "backup_and_restore", "saving_skipsets", "saved_model_variables")

# The object types Keras' saving computes attribute skip sets for
# (`saving_lib.get_attr_skipset`), all computed by `warm_saving_skipsets`.
SKIPSET_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss", "Cross",
                 "Feature")

# obj_type -> its skip set, kept by the `saving_skipsets` fix.
_SKIPSETS = {}

# name -> [(owner, attribute, original, patched)] for each applied fix.
_APPLIED = {}


def _skip(name):
    """Whether fix `name` is applied already or turned off by the env var."""
    disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",")}
    return name in _APPLIED or name in disabled or "all" in disabled


def _install(name, changes):
    """Sets each `(owner, attribute, patched)` and remembers the original."""
    _APPLIED[name] = [(o, a, getattr(o, a), new) for o, a, new in changes]
    for owner, attr, _, new in _APPLIED[name]:
        setattr(owner, attr, new)


@contextlib.contextmanager
def disabled(*names):
    """Turns applied fixes off inside the block, to show what they fix.

    Args:
        *names: str. Fix names from `FIXES`.

    ```python
    with zoo.workarounds.disabled("scalar_reduce"):
        model.fit(...)  # Fails under MultiWorkerMirroredStrategy.
    ```
    """
    for name in names:
        if name not in FIXES:
            raise ValueError(f"Unknown fix '{name}'. Accepted: {', '.join(FIXES)}.")
    changes = [c for n in names for c in _APPLIED.get(n, [])]
    for owner, attr, original, _ in changes:
        setattr(owner, attr, original)
    try:
        yield
    finally:
        for owner, attr, _, patched in changes:
            setattr(owner, attr, patched)


def patch_symbolic_build():
    """keras#20585, tensorflow#72388: `fit` under a strategy averages a batch.

    Before the first step, Keras 3's TensorFlow trainer builds the model
    symbolically from one data batch, and to get a single batch from a
    distributed one it runs `strategy.reduce("MEAN", batch)`. Under
    MultiWorkerMirroredStrategy that fails on any `(x, y)` batch ("Attempt
    to convert a value (PerReplica...) to a Tensor"), and under
    MirroredStrategy it fails on bool and string tensors ("Value for attr
    'T' of bool is not in the list", as keras-hub's GPT-2 preprocessor
    yields a bool `padding_mask`). Drawing that batch also starts one extra
    pass over the data, which moves a seeded `shuffle` on by one
    permutation, so the same seed gives other batches under a strategy
    than without one. The build only needs shapes and dtypes, so this
    takes them from the distributed dataset's `element_spec` (one local
    replica's, batch size left open): no collective, any dtype, no data
    read. Data it cannot describe falls back to the first local replica's
    batch.
    """
    if _skip("symbolic_build"):
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def _local_spec(spec):
        spec = getattr(spec, "_value_specs", (spec,))[0]  # PerReplicaSpec
        if not isinstance(spec, tf.TensorSpec) or spec.shape.rank is None:
            raise TypeError(spec)
        shape = [None, *spec.shape[1:]] if spec.shape.rank else []
        return tf.TensorSpec(shape, spec.dtype)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            try:
                specs = iterator._distributed_dataset.element_spec
                data_batch = tf.nest.map_structure(_local_spec, specs)
            except (AttributeError, TypeError):
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

    _install("symbolic_build", [
        (tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build", _maybe_symbolic_build),
    ])


def patch_scalar_reduce():
    """keras#20585: logged scalars fail to reduce under multi-worker `fit`.

    `reduce_per_replica(..., "mean")` calls `strategy.reduce("MEAN", v,
    axis=0)` for every logged value under MultiWorkerMirroredStrategy; a
    0-d loss or metric has no axis 0 and tracing the train step fails
    ("Invalid reduction dimension 0 for input with 0 dimensions"). Scalars
    are reduced with `axis=None` instead, which is the same mean.
    """
    if _skip("scalar_reduce"):
        return
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

    _install("scalar_reduce", [(tf_trainer, "reduce_per_replica", reduce_per_replica)])


def patch_backup_and_restore():
    """keras#20585: `BackupAndRestore` on every worker writes one directory.

    Keras 3's `BackupAndRestore` has no notion of a chief: every worker of
    a MultiWorkerMirroredStrategy cluster writes `latest.weights.h5` and
    `training_metadata.json` into the same `backup_dir` and at the end
    deletes it, racing with the others (Keras 2 wrote non-chief backups to
    temporary directories). With this fix, on a non-chief worker of a
    cluster the callback restores from `backup_dir`, read-only, so every
    worker resumes the same epoch, but saves into a temporary directory of
    its own and deletes only that one. The chief keeps the stock
    behaviour. zoo's own trainer does not use `BackupAndRestore`: its
    `Checkpoint` already writes this way, so this fix is for callbacks that
    users pass to `zoo.train(callbacks=...)` or to their own `fit`.
    """
    if _skip("backup_and_restore"):
        return
    from keras.src.callbacks import backup_and_restore as bar
    from keras.src.utils import file_utils

    from zoo import distribute

    cls = bar.BackupAndRestore
    original_init, original_load = cls.__init__, cls._load_model
    original_begin, original_end = cls.on_train_begin, cls.on_train_end

    @functools.wraps(original_init)
    def __init__(self, backup_dir, *args, **kwargs):
        original_init(self, backup_dir, *args, **kwargs)
        self._zoo_restore_from = None
        if distribute.cluster_workers() >= 2 and not distribute.is_chief():
            self._zoo_restore_from = (
                (self._weights_path, self._training_metadata_path),
                (self._prev_weights_path, self._prev_training_metadata_path),
            )
            own = tempfile.mkdtemp(prefix=f"zoo-backup-{distribute.task_id()}-")
            self.backup_dir = own
            self._weights_path = file_utils.join(own, "latest.weights.h5")
            self._training_metadata_path = file_utils.join(own, "training_metadata.json")
            self._prev_weights_path = f"{self._weights_path}.bkp"
            self._prev_training_metadata_path = f"{self._training_metadata_path}.bkp"

    def on_train_begin(self, logs=None):
        if getattr(self, "_zoo_restore_from", None) is None:
            return original_begin(self, logs)
        # The chief's latest backup, or its previous one if the latest
        # cannot be read; never written to from here.
        own = self._weights_path, self._training_metadata_path
        (latest, previous) = self._zoo_restore_from
        for paths in (latest, previous):
            self._weights_path, self._training_metadata_path = paths
            try:
                return original_load(self)
            except OSError:
                if paths is previous:
                    raise
            finally:
                self._weights_path, self._training_metadata_path = own

    def on_train_end(self, logs=None):
        if getattr(self, "_zoo_restore_from", None) is None:
            return original_end(self, logs)
        shutil.rmtree(self.backup_dir, ignore_errors=True)

    _install("backup_and_restore", [
        (cls, "__init__", __init__),
        (cls, "on_train_begin", on_train_begin),
        (cls, "on_train_end", on_train_end),
    ])


def patch_saving_skipsets():
    """Makes Keras' saving compute each attribute skip set once.

    Keras 3.15's `saving_lib.get_attr_skipset` stores each object type's
    set under `saving_attr_skipset_<type>` but looks it up under
    `saving_attr_skiplist_<type>`, so every save builds a reference
    `Layer`, `Optimizer` (with its variables) or `Metric` for each object it
    visits: 25-45% of the time of a DCGAN's checkpoint. A set depends only
    on the Keras classes, so the patched function keeps each one. No
    upstream issue found (searched 2026-12-02); harmless once Keras reads
    the key it writes. `warm_saving_skipsets` computes them all at once.
    """
    if _skip("saving_skipsets"):
        return
    try:
        from keras.src.saving import saving_lib
    except ImportError:  # Keras' internals moved.
        return
    original = saving_lib.get_attr_skipset

    @functools.wraps(original)
    def get_attr_skipset(obj_type):
        if obj_type not in _SKIPSETS:
            _SKIPSETS[obj_type] = original(obj_type)
        return _SKIPSETS[obj_type]

    _install("saving_skipsets", [(saving_lib, "get_attr_skipset", get_attr_skipset)])


def warm_saving_skipsets():
    """Computes the skip set of every type the `saving_skipsets` fix keeps.

    `Checkpoint` calls this at each save, so every worker computes them all
    at its first checkpoint, not each at the first save that needs it: a
    reference `Optimizer` creates variables, under
    `MultiWorkerMirroredStrategy` creating a variable is a collective that
    every worker must join, and some saves (`model.keras`) run on the chief
    alone. Not when the fix is applied: that comes before the strategy, and
    creating a variable then would start TensorFlow before
    `MultiWorkerMirroredStrategy` can configure its collectives. Once they
    are kept, a call costs a few dictionary lookups.
    """
    if "saving_skipsets" not in _APPLIED:
        return
    kept_skipset = _APPLIED["saving_skipsets"][0][3]  # The patched function, also inside `disabled`.
    for obj_type in SKIPSET_TYPES:
        if obj_type not in _SKIPSETS:
            with contextlib.suppress(ValueError):  # A type this Keras does not know.
                kept_skipset(obj_type)


def patch_saved_model_variables():
    """Makes a SavedModel written by `keras.export.ExportArchive` store each
    weight once (keras#23553; the fix proposed in keras#23563).

    On the TensorFlow backend, `ExportArchive.track(model)` lists the
    model's `keras.Variable` wrappers, while the endpoints capture the
    `tf.Variable`s inside them, which the archive lists again
    (`_all_variables`). Two trackable objects per weight defeat TensorFlow's
    de-duplication, so the checkpoint holds every value twice, and every
    process that loads the export (TF Serving too) restores two buffers per
    weight: 33 MB for GPT-2's 17 MB of float32 weights. Tracking the
    `tf.Variable`s themselves leaves one object per weight.
    """
    if _skip("saved_model_variables"):
        return
    try:
        import tensorflow as tf
        from keras.src.backend.tensorflow import export as tf_export
    except ImportError:  # Keras' internals moved.
        return
    cls = tf_export.TFExportArchive

    def unwrapped(variables):
        return [v.value if isinstance(getattr(v, "value", None), tf.Variable) else v for v in variables]

    def _backend_track_layer(self, layer):
        self._tf_trackable.variables += unwrapped(layer.variables)
        self._tf_trackable.trainable_variables += unwrapped(layer.trainable_variables)
        self._tf_trackable.non_trainable_variables += unwrapped(layer.non_trainable_variables)

    _install("saved_model_variables", [(cls, "_backend_track_layer", _backend_track_layer)])


def apply_multi_worker_fixes():
    """Applies every fix that `fit` under MultiWorkerMirroredStrategy needs."""
    patch_symbolic_build()
    patch_scalar_reduce()
    patch_backup_and_restore()


def apply_all():
    """Applies every fix; the trainer calls this before building a model."""
    apply_multi_worker_fixes()
    patch_saving_skipsets()
    patch_saved_model_variables()
