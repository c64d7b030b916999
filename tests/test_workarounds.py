"""Each fix in `zoo.workarounds` is needed: a real 2-worker cluster fails without it.

One launch of two local worker processes (`zoo.launch.run`) runs a probe
script that trains a tiny Keras model under MultiWorkerMirroredStrategy,
first with a fix turned off (`zoo.workarounds.disabled`) and then on, and
writes what happened to a JSON file per worker. Both workers run the same
sequence, so their collectives stay paired even when a fit fails (the
failures happen while tracing, before any collective runs).
"""

import io
import json
import os
import sys

import pytest

from zoo import launch, workarounds

PROBE = r'''
import json, os, sys
from zoo import quiet
quiet.quiet_tensorflow()
import numpy as np
import keras
import tensorflow as tf
from zoo import distribute, workarounds

out_dir, shared = sys.argv[1], sys.argv[2]
index = distribute.tf_config()["task"]["index"]
workarounds.apply_all()
strategy = distribute.get_strategy("multi_worker")
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)
saved = []  # Every path this worker's BackupAndRestore saved weights to.
original_save = keras.Model.save_weights
def spy_save(self, filepath, *args, **kwargs):
    saved.append(os.path.abspath(str(filepath)))
    return original_save(self, filepath, *args, **kwargs)
keras.Model.save_weights = spy_save

def fit(epochs=1, callbacks=()):
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.01), "mse")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    return model.fit(ds, epochs=epochs, callbacks=list(callbacks), verbose=0)

def outcome(epochs=1, callbacks=()):
    try:
        return {"ok": True, "epochs_run": len(fit(epochs, callbacks).history["loss"])}
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}

result = {}
for name in ("symbolic_build", "scalar_reduce"):
    with workarounds.disabled(name):
        result[f"{name}_off"] = outcome()
result["all_on"] = outcome()

# BackupAndRestore: train 2 epochs, then resume to 3 with a new callback.
cb = keras.callbacks.BackupAndRestore(os.path.join(shared, "fixed"), delete_checkpoint=False)
own_dir = cb.backup_dir
del saved[:]
result["backup_first"] = outcome(2, [cb])
result["backup_saved"] = list(saved)
result["backup_own_dir_left"] = os.path.exists(own_dir) and own_dir != os.path.join(shared, "fixed")
cb = keras.callbacks.BackupAndRestore(os.path.join(shared, "fixed"), delete_checkpoint=False)
result["backup_resumed"] = outcome(3, [cb])
with workarounds.disabled("backup_and_restore"):
    cb = keras.callbacks.BackupAndRestore(os.path.join(shared, "stock"), delete_checkpoint=False)
    del saved[:]
    result["stock_first"] = outcome(1, [cb])
    result["stock_saved"] = list(saved)
with open(os.path.join(out_dir, f"result-{index}.json"), "w") as f:
    json.dump(result, f)
'''


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """Runs the probe on 2 local workers; returns their results by index."""
    tmp = tmp_path_factory.mktemp("workarounds")
    script = tmp / "probe.py"
    script.write_text(PROBE)
    shared = tmp / "shared"
    shared.mkdir()
    out = io.StringIO()
    env_before = os.environ.pop(workarounds.DISABLE_ENV, None)
    try:
        status = launch.run(
            [sys.executable, str(script), str(tmp), str(shared)], 2, timeout=60, out=out
        )
    finally:
        if env_before is not None:
            os.environ[workarounds.DISABLE_ENV] = env_before
    assert status == 0, out.getvalue()[-3000:]
    results = {}
    for i in range(2):
        with open(tmp / f"result-{i}.json") as f:
            results[i] = json.load(f)
    return {"results": results, "shared": str(shared)}


@pytest.mark.slow
def test_fit_works_with_every_fix(probe):
    for result in probe["results"].values():
        assert result["all_on"] == {"ok": True, "epochs_run": 1}


@pytest.mark.slow
def test_symbolic_build_fix_is_needed(probe):
    # keras#20585 / tensorflow#72388: the stock build reduces a PerReplica batch.
    for result in probe["results"].values():
        off = result["symbolic_build_off"]
        assert not off["ok"]
        assert "PerReplica" in off["error"]


@pytest.mark.slow
def test_scalar_reduce_fix_is_needed(probe):
    # keras#20585: the stock reduce asks for axis 0 of a 0-d loss.
    for result in probe["results"].values():
        off = result["scalar_reduce_off"]
        assert not off["ok"]
        assert "reduction dimension 0" in off["error"]


@pytest.mark.slow
def test_backup_and_restore_fix_is_needed(probe):
    shared = probe["shared"]
    chief, worker = probe["results"][0], probe["results"][1]
    # Stock Keras: both workers write the same directory. How that race ends
    # is down to timing: both save there (and may fail on HDF5's "unable to
    # lock file"), or one fails creating it ("FileExistsError: ... stock").
    stock = os.path.join(shared, "stock")
    for result in (chief, worker):
        assert all(p.startswith(stock) for p in result["stock_saved"])
        raced = not result["stock_first"]["ok"] and stock in result["stock_first"]["error"]
        assert result["stock_saved"] or raced, result["stock_first"]
    # Fixed: only the chief writes the shared directory; the worker writes its
    # own temp dir and removes it at the end.
    fixed = os.path.join(shared, "fixed")
    assert chief["backup_first"] == worker["backup_first"] == {"ok": True, "epochs_run": 2}
    assert chief["backup_saved"] and all(p.startswith(fixed) for p in chief["backup_saved"])
    assert worker["backup_saved"]
    assert not any(p.startswith(fixed) for p in worker["backup_saved"])
    assert not worker["backup_own_dir_left"]
    # Both restore the chief's epoch 2 and run only the third epoch.
    assert chief["backup_resumed"] == worker["backup_resumed"] == {"ok": True, "epochs_run": 1}


def test_disabled_restores_the_original_and_rejects_unknown_names():
    workarounds.apply_all()
    from keras.src.backend.tensorflow import trainer as tf_trainer

    patched = tf_trainer.reduce_per_replica
    with workarounds.disabled("scalar_reduce"):
        assert tf_trainer.reduce_per_replica is not patched
    assert tf_trainer.reduce_per_replica is patched
    with pytest.raises(ValueError, match="Unknown fix 'scalar'"):
        with workarounds.disabled("scalar"):
            pass


def test_saving_skipsets_fix_is_needed(tmp_path, monkeypatch):
    """Without the fix every save builds reference objects to compute Keras'
    attribute skip sets again; with it a second save builds none."""
    import keras
    import numpy as np

    from conftest import layers_built
    from zoo import callbacks

    workarounds.patch_saving_skipsets()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((8, 3)), np.zeros((8, 1)), epochs=1, verbose=0)
    callbacks._save_weights(model, str(tmp_path / "first.weights.h5"))
    assert layers_built(monkeypatch, lambda: callbacks._save_weights(model, str(tmp_path / "with.weights.h5"))) == []
    with workarounds.disabled("saving_skipsets"):
        built = layers_built(monkeypatch, lambda: callbacks._save_weights(model, str(tmp_path / "without.weights.h5")))
    assert built, "Keras reads the skip sets it stores: remove the fix"
    with open(tmp_path / "with.weights.h5", "rb") as a, open(tmp_path / "without.weights.h5", "rb") as b:
        assert len(a.read()) == len(b.read())  # The same file either way.


def test_saved_model_variables_fix_is_needed(tmp_path):
    """keras#23553: without the fix a SavedModel stores every weight twice;
    with it once, and it still serves the same outputs."""
    import keras
    import numpy as np
    import tensorflow as tf

    from zoo import exports

    workarounds.patch_saved_model_variables()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    x = np.arange(6, dtype="float32").reshape(2, 3)

    def stored_values(path):
        reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
        shapes = reader.get_variable_to_shape_map()
        return sum(int(np.prod(s)) for k, s in shapes.items() if "VARIABLE_VALUE" in k)

    exports._write_saved_model(model, str(tmp_path / "with"))
    with workarounds.disabled("saved_model_variables"):
        exports._write_saved_model(model, str(tmp_path / "without"))
    assert stored_values(str(tmp_path / "with")) == model.count_params() == 21
    assert stored_values(str(tmp_path / "without")) == 2 * model.count_params(), "Keras stores them once now"
    served = tf.saved_model.load(str(tmp_path / "with")).signatures["serve"]
    np.testing.assert_allclose(next(iter(served(tf.constant(x)).values())).numpy(), model(x).numpy(), rtol=1e-6)
