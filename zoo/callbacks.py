"""The trainer's Keras callbacks: NaN guard and checkpoints.

`zoo.trainer` adds them to every `fit`, in the order `NaNGuard`,
`zoo.tensorboard.TensorBoardLogger`, the task's own callbacks,
`Checkpoint`, then the user's. Defining them needs Keras, so importing
this module imports TensorFlow.
"""

import contextlib
import math
import os
import sys
import time

from zoo import quiet, workarounds
from zoo.files import CorruptFileError, atomic_path, read_json, sha256, write_json

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
# Seconds between checkpoints: epochs shorter than this are not each saved.
DEFAULT_CHECKPOINT_SECONDS = 1.0
# At most this share of the training time goes to writing checkpoints: the
# next one waits at least the last one's write time divided by this.
CHECKPOINT_TIME_SHARE = 0.02


class Checkpoint(_callback_base()):
    """Saves weights, optimizer and callback state at epoch ends.

    An epoch's end saves a checkpoint when `every_seconds` have passed since
    the last one, and at least 50 times as long as the last one took to
    write (`CHECKPOINT_TIME_SHARE`: writing takes at most 2% of training),
    and always at the last epoch of `fit` (or the one where training stops
    early): short epochs are not each written, and a rerun after a kill
    resumes from the last saved epoch, redoing the epoch that was under way
    and at most that long of finished ones (2.5-4 s for the small models,
    whose checkpoints take 50-85 ms to write; 20 s for a 30 MB one that
    takes 0.4 s).
    `every_seconds=0` saves every epoch.

    A checkpoint is `epoch-NNNN.weights.h5` (and `epoch-NNNN.best-KEY.npz`
    for callbacks that keep best weights), written, synced and checksummed
    (SHA-256) before `state.json` (epoch, step, history, callback state,
    checksums) switches to it, atomically. `state.json` also describes the
    checkpoint before it, whose files are kept until the next one is
    complete. A kill at any point leaves a complete checkpoint; a last
    checkpoint whose files were truncated or corrupted afterwards fails its
    checksum, and `restore` falls back to the one before it with a warning.
    """

    def __init__(self, directory, stateful_callbacks=(), *, restore_dir=None,
                 every_seconds=DEFAULT_CHECKPOINT_SECONDS, warn=None):
        super().__init__()
        self.directory = directory
        self.restore_dir = restore_dir or directory
        self.stateful = list(stateful_callbacks)
        self.guard = None
        self.every_seconds = every_seconds
        self.warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
        self.state = self._read_state()
        self.history = {k: list(v) for k, v in self.state.get("history", {}).items()}
        self._last_save = time.monotonic()
        self._save_seconds = 0.0
        self._finished = int(self.state.get("epoch", 0))

    def _read_state(self):
        path = os.path.join(self.restore_dir, CHECKPOINT_STATE)
        what_to_do = (
            "It records the epoch, history and callback state of the checkpoint, so the run "
            f"cannot resume. Delete the folder '{self.restore_dir}' to train this run again "
            "from epoch 0 (same command), or use another --run-dir.")
        state = read_json(path, {}, what_to_do=what_to_do) or {}
        if state and not (isinstance(state, dict) and isinstance(state.get("epoch"), int)
                          and isinstance(state.get("weights"), str)):
            raise CorruptFileError(f"'{path}' is corrupt: it has no epoch and weights file. "
                                   + what_to_do)
        return state

    def _candidates(self):
        return [self.state] + ([self.state["previous"]] if self.state.get("previous") else [])

    def check(self):
        """Checks the saved checkpoints' files without loading them.

        Raises:
            zoo.files.CorruptFileError: no checkpoint in `state.json` has
                all its files with their checksums. Runs before anything is
                written.
        """
        if self.state:
            problems = [self._verify(state) for state in self._candidates()]
            if all(problems):
                self._unusable(problems)

    def _unusable(self, problems):
        raise CorruptFileError(
            f"No checkpoint in {self.restore_dir} can be restored: "
            + "; ".join(f"epoch {s['epoch']}: {p}" for s, p in zip(self._candidates(), problems))
            + f". Delete the folder '{self.restore_dir}' to train this run again from epoch 0 "
            "(same command), or use another --run-dir.")

    def restore(self, model):
        """Loads the last good checkpoint into `model`; returns the next epoch.

        Falls back to the checkpoint before the last one, with a warning,
        when the last one's files are missing, fail their checksum or do
        not load.

        Raises:
            zoo.files.CorruptFileError: no checkpoint in `state.json` loads.
        """
        if not self.state:
            return 0
        problems = []
        for state in self._candidates():
            problem = self._verify(state) or self._load(model, state)
            if problem is None:
                if state is not self.state:
                    self.warn(f"the last checkpoint (epoch {self.state['epoch']}) in "
                              f"{self.restore_dir} is unusable: {problems[0]}. Resuming from the "
                              f"checkpoint before it (epoch {state['epoch']}).")
                    self.state = dict(state)
                    self.history = {k: list(v) for k, v in state.get("history", {}).items()}
                    self._finished = int(state["epoch"])
                return int(self.state["epoch"])
            problems.append(problem)
        self._unusable(problems)

    def _verify(self, state):
        """None if every file of a checkpoint is there with its checksum,
        else what is wrong."""
        checksums = state.get("files", {})
        for name in [state["weights"], *checksums]:
            path = os.path.join(self.restore_dir, name)
            if not os.path.exists(path):
                return f"'{path}' is missing"
            if name in checksums and sha256(path) != checksums[name]:
                return (f"'{path}' fails its checksum ({os.path.getsize(path)} bytes; it was "
                        "truncated or changed after it was written)")
        return None

    def _load(self, model, state):
        """Loads one checkpoint's files; returns None, or what is wrong."""
        path = os.path.join(self.restore_dir, state["weights"])
        try:
            model.load_weights(path)
        except Exception as e:  # h5py and Keras raise many kinds for a bad file.
            first = str(e).splitlines()[0] if str(e) else ""
            return f"'{path}' does not load ({type(e).__name__}: {first})"
        best_files = state.get("best")
        for key, cb in self._keyed():
            for attr, value in self._saved(key, state).items():
                setattr(cb, attr, value)
            if not hasattr(cb, "best_weights"):
                continue
            name = best_files.get(key) if best_files is not None else f"best-{key}.npz"
            best = os.path.join(self.restore_dir, name) if name else None
            if best and os.path.exists(best):
                import numpy as np

                try:
                    with np.load(best) as f:
                        cb.best_weights = [f[f"arr_{j}"] for j in range(len(f.files))]
                except Exception as e:  # A corrupt zip raises several kinds.
                    return f"'{best}' does not load ({type(e).__name__})"
        return None

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

    def _saved(self, key, state=None):
        saved = (self.state if state is None else state).get("callbacks", {})
        if key in saved:
            return saved[key]
        # Runs checkpointed before callbacks were saved by name used their index.
        index = [k for k, _ in self._keyed()].index(key)
        return saved.get(str(index), {})

    def on_train_begin(self, logs=None):
        self._last_save = time.monotonic()
        for key, cb in self._keyed():
            # Keras callbacks reset their counters in on_train_begin, which
            # runs before this one; put the saved state back.
            for attr, value in self._saved(key).items():
                setattr(cb, attr, value)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.diverged:
            return
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self._finished = epoch + 1
        last = epoch + 1 >= self.params.get("epochs", epoch + 1) or self.model.stop_training
        if last or time.monotonic() - self._last_save >= self.interval():
            self.save(epoch + 1)

    def interval(self):
        """Seconds from one checkpoint to the next, `every_seconds` at least."""
        if not self.every_seconds:
            return 0.0
        return max(self.every_seconds, self._save_seconds / CHECKPOINT_TIME_SHARE)

    def on_train_end(self, logs=None):
        # A callback after this one may have stopped training at an epoch
        # that was not saved: the last finished epoch is always saved.
        diverged = self.guard is not None and self.guard.diverged
        if not diverged and self._finished > int(self.state.get("epoch", 0)):
            self.save(self._finished)

    def save(self, epoch):
        """Writes the checkpoint of `epoch` finished epochs (see the class)."""
        started = time.monotonic()
        os.makedirs(self.directory, exist_ok=True)
        weights = f"epoch-{epoch:04d}.weights.h5"
        checksums, best = {}, {}
        with atomic_path(os.path.join(self.directory, weights)) as tmp:
            _save_weights(self.model, tmp)
            checksums[weights] = sha256(tmp)
        callbacks = {}
        for key, cb in self._keyed():
            callbacks[key] = {a: getattr(cb, a) for a in _STATEFUL_ATTRS if hasattr(cb, a)}
            if getattr(cb, "best_weights", None) is not None:
                import numpy as np

                best[key] = f"epoch-{epoch:04d}.best-{key}.npz"
                with atomic_path(os.path.join(self.directory, best[key])) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, *cb.best_weights)
                    checksums[best[key]] = sha256(tmp)
        previous = {k: v for k, v in self.state.items() if k != "previous"} or None
        if previous and previous.get("epoch") == epoch:
            previous = previous.get("previous")  # Saving the same epoch again.
        state = {
            "epoch": epoch,
            "step": int(self.model.optimizer.iterations.numpy()) if self.model.optimizer else 0,
            "weights": weights,
            "files": checksums,
            "best": best,
            "history": {k: list(v) for k, v in self.history.items()},
            "callbacks": callbacks,
            "stopped_early": bool(self.model.stop_training),
            "previous": previous,
        }
        write_json(os.path.join(self.directory, CHECKPOINT_STATE), state)
        self.state, self._last_save = state, time.monotonic()
        keep = {CHECKPOINT_STATE, weights, *checksums}
        if previous:
            keep |= {previous["weights"], *previous.get("files", {})}
            if previous.get("best") is None:
                keep |= {f"best-{key}.npz" for key, _ in self._keyed()}  # An older layout.
        for name in os.listdir(self.directory):
            if name not in keep and (name.startswith("epoch-") or name.startswith("best-")):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(self.directory, name))
        self._save_seconds = time.monotonic() - started


def _save_weights(model, path):
    """`model.save_weights(path)`, with the HDF5 file built in memory.

    Only plain Python then writes to the disk, so a full disk is a clean
    `OSError`; HDF5 writing straight to a full disk leaves its objects
    half-closed, and the process can crash when it exits.
    """
    import io

    try:
        from keras.src.saving import saving_lib

        workarounds.patch_saving_skipsets()
        workarounds.warm_saving_skipsets()
        buffer = io.BytesIO()
        store = saving_lib.H5IOStore(buffer, mode="w")
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                               visited_saveables=set())
        store.close()
    except (ImportError, AttributeError, TypeError):  # Keras' internals moved.
        model.save_weights(path)
        return
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())
