"""The TensorBoard logger's cost per epoch, before and after issue 18.

`logger_epoch` drives `zoo.tensorboard.TensorBoardLogger` through the
hooks `fit` calls in one epoch (begin, the batch ends, the end) on a small
compiled `mlp_regressor`, with no training in between (the global step is
advanced between the hooks, untimed), so what is timed is the logger
alone: its scalars, its event-file writes and flushes, and closing the
writers at the end of the last epoch. "before"
is the logger as it was up to commit f9e4461, which opened new event-file
writers for each epoch and closed them at its end (`_ReopeningLogger`
below keeps exactly that difference); "after" is today's, which keeps one
writer per run directory open for the whole `fit` and flushes it each
epoch. Both run alternately in one process (`common.alternate`), and the
result is the ratio of their medians.
"""

import os
import shutil
import tempfile
import time

from benchmarks import common

SIZES = {
    # epochs per measured block, batches per epoch, logged every n steps, repeats
    "full": dict(epochs=20, batches=50, every=10, repeats=7),
    "quick": dict(epochs=10, batches=50, every=10, repeats=3),
    "tiny": dict(epochs=3, batches=8, every=4, repeats=1),
}


def _reopening_logger():
    from zoo import tensorboard as tb_lib

    class _ReopeningLogger(tb_lib.TensorBoardLogger):
        """The logger before issue 18: new writers every epoch, tagged
        `.epochNNNN`, closed at the epoch's end."""

        def _writer(self, kind):
            import tensorflow as tf

            if kind not in self.writers:
                path = os.path.join(self.logdir, kind) if kind else self.logdir
                self.writers[kind] = tf.summary.create_file_writer(
                    path, filename_suffix=f".epoch{self.epoch + 1:04d}")
            return self.writers[kind]

        def _flush(self):
            self.close()

    return _ReopeningLogger


def logger_epoch(size="full", only=None):
    """Milliseconds of logger hooks per epoch, before and after."""
    import zoo
    from zoo import tensorboard as tb_lib

    cfg = SIZES[size]
    entry = zoo.registry.get_entry("mlp_regressor")
    model = zoo.get("mlp_regressor", hidden_units=(16,))
    model.optimizer.build(model.trainable_variables)
    train_config = zoo.config.TrainConfig(batch_size=32, log_every_n_steps=cfg["every"],
                                          steps_per_execution=1)
    root = tempfile.mkdtemp(prefix="zoo-bench-tb-")
    classes = {"before": _reopening_logger(), "after": tb_lib.TensorBoardLogger}
    if only:
        classes = {only: classes[only]}
    logs = {"loss": 1.0, "mae": 0.5, "val_loss": 1.1, "val_mae": 0.6}

    def contender(name):
        def block():
            logdir = os.path.join(root, name)
            shutil.rmtree(logdir, ignore_errors=True)
            logger = classes[name](logdir, entry.task, None, train_config)
            logger.set_model(model)
            logger.set_params({"steps": cfg["batches"], "epochs": cfg["epochs"], "verbose": 0})
            seconds = 0.0
            for epoch in range(cfg["epochs"]):
                start = time.perf_counter()
                logger.on_epoch_begin(epoch)
                for batch in range(cfg["batches"]):
                    logger.on_train_batch_begin(batch)
                    logger.on_train_batch_end(batch, {"loss": 1.0})
                    # The step the training would have done (not timed).
                    seconds += time.perf_counter() - start
                    model.optimizer.iterations.assign_add(1)
                    start = time.perf_counter()
                logger.on_epoch_end(epoch, logs)
                if epoch == cfg["epochs"] - 1:
                    logger.on_train_end()
                seconds += time.perf_counter() - start
            files = sum(len([f for f in fs if f.startswith("events.")]) for _, _, fs in os.walk(logdir))
            return {"epoch_ms": 1000 * seconds / cfg["epochs"], "event_files": files}
        return block

    try:
        samples = common.alternate({name: contender(name) for name in classes},
                                   repeats=cfg["repeats"], warmup=1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    epoch_ms = common.summarize(samples, "epoch_ms")
    files = common.summarize(samples, "event_files")
    return {
        "what": "TensorBoardLogger hooks of one epoch (no training): before = new writers each "
                "epoch (up to f9e4461), after = writers kept open for the fit",
        "unit": "ms of logger hooks per epoch",
        "config": cfg,
        "contenders": {name: {"epoch_ms": round(epoch_ms[name], 3), "event_files": files[name]}
                       for name in classes},
        "ratios": {"before/after epoch_ms": common.ratio(epoch_ms.get("before"), epoch_ms.get("after"))},
    }
