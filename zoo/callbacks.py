"""The trainer's Keras callbacks: NaN guard and checkpoints.

`zoo.trainer` adds them to every `fit`, in the order `NaNGuard`,
`zoo.tensorboard.TensorBoardLogger`, the task's own callbacks,
`Checkpoint`, then the user's. Defining them needs Keras, so importing
this module imports TensorFlow.
"""

import glob
import math
import os

from zoo import quiet
from zoo.files import atomic_path, read_json, write_json

CHECKPOINT_STATE = "state.json"


def _callback_base():
    quiet.import_tensorflow()
    import keras

    return keras.callbacks.Callback


class NaNGuard(_callback_base()):
    """Stops training at the first NaN or Inf loss and remembers where."""

    def __init__(self):
        super().__init__()
        self.diverged = False
        self.epoch = self.step = 0
        self.value = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged, self.step, self.value = True, batch, float(loss)
            self.model.stop_training = True


# Callback attributes that `Checkpoint` saves and restores, so early stopping
# and learning-rate plateaus continue across a resume.
_STATEFUL_ATTRS = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")


class Checkpoint(_callback_base()):
    """Saves weights, optimizer and callback state at each epoch's end.

    Each epoch's weights go to a new `epoch-NNNN.weights.h5`; only then
    does `state.json` (epoch, step, history, callback state) switch to it,
    atomically, and older files are removed. A kill at any point leaves
    the previous complete checkpoint.
    """

    def __init__(self, directory, stateful_callbacks=(), *, restore_dir=None):
        super().__init__()
        self.directory = directory
        self.restore_dir = restore_dir or directory
        self.stateful = list(stateful_callbacks)
        self.guard = None
        self.state = read_json(os.path.join(self.restore_dir, CHECKPOINT_STATE), {}) or {}

    def restore(self, model):
        """Loads the last checkpoint into `model`; returns the next epoch."""
        if not self.state:
            return 0
        model.load_weights(os.path.join(self.restore_dir, self.state["weights"]))
        for key, cb in self._keyed():
            for attr, value in self._saved(key).items():
                setattr(cb, attr, value)
            best = os.path.join(self.restore_dir, f"best-{key}.npz")
            if hasattr(cb, "best_weights") and os.path.exists(best):
                import numpy as np

                with np.load(best) as f:
                    cb.best_weights = [f[f"arr_{j}"] for j in range(len(f.files))]
        return int(self.state["epoch"])

    def _keyed(self):
        """`(key, callback)` pairs: the class name, `-2`, `-3` for repeats.

        A name, not a list position, so that a task that adds a callback
        does not hand another callback's state to the wrong one.
        """
        seen, keyed = {}, []
        for cb in self.stateful:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            keyed.append((name if seen[name] == 1 else f"{name}-{seen[name]}", cb))
        return keyed

    def _saved(self, key):
        saved = self.state.get("callbacks", {})
        if key in saved:
            return saved[key]
        # Runs checkpointed before callbacks were saved by name used their index.
        index = [k for k, _ in self._keyed()].index(key)
        return saved.get(str(index), {})

    def on_train_begin(self, logs=None):
        for key, cb in self._keyed():
            # Keras callbacks reset their counters in on_train_begin, which
            # runs before this one; put the saved state back.
            for attr, value in self._saved(key).items():
                setattr(cb, attr, value)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.diverged:
            return
        import numpy as np

        os.makedirs(self.directory, exist_ok=True)
        weights = f"epoch-{epoch + 1:04d}.weights.h5"
        with atomic_path(os.path.join(self.directory, weights)) as tmp:
            self.model.save_weights(tmp)
        history = self.state.get("history", {})
        for key, value in (logs or {}).items():
            history.setdefault(key, []).append(float(value))
        callbacks = {}
        for key, cb in self._keyed():
            callbacks[key] = {
                a: getattr(cb, a) for a in _STATEFUL_ATTRS if hasattr(cb, a)
            }
            if getattr(cb, "best_weights", None) is not None:
                with atomic_path(os.path.join(self.directory, f"best-{key}.npz")) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, *cb.best_weights)
        self.state = {
            "epoch": epoch + 1,
            "step": int(self.model.optimizer.iterations.numpy()) if self.model.optimizer else 0,
            "weights": weights,
            "history": history,
            "callbacks": callbacks,
            "stopped_early": bool(self.model.stop_training),
        }
        write_json(os.path.join(self.directory, CHECKPOINT_STATE), self.state)
        for old in glob.glob(os.path.join(self.directory, "epoch-*.weights.h5")):
            if os.path.basename(old) != weights:
                os.remove(old)
