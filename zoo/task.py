"""What the shared trainer needs from a model: data, compile, evaluation.

A `Task` holds the model-specific hooks of a registry entry. `zoo.trainer`
calls them in this order, each with typed values:

1. `load_data(data, config, options, seed, preset) -> Data`, before anything
   is written, so bad input leaves nothing behind;
2. `default_batch_size(num_train) -> int` when the user gives none, then
   `batch(dataset, batch_size, training=..., seed=...)` for each split;
3. inside the strategy scope: `build(build_model, config, preset, data) ->
   keras.Model`, `prepare(model, data)` (for example to adapt a
   `Normalization` layer), and `compile(model, config, train_config,
   steps_per_epoch)`, which `compile_model` wraps;
4. `callbacks(model, data, train_config, run_dir) -> list`, then `fit` runs
   inside `fitting(model, data)`, with `summaries(model, data, epoch)` at
   each epoch's end;
5. `evaluate(model, data, train_config) -> dict` and `export(model, data,
   run_dir)`.

With `zoo train NAME --folds K`, `fold_data(data, num_folds, fold, seed)`
re-splits the `Data` of step 1 for one fold, right after `load_data`.

A finished run is used through three more hooks, each given the opened
`zoo.runs.Run`: `predict(run, data, ...) -> Predictions` (`zoo predict`) and
`evaluate_data(run, data, options, own_data, batch_size) -> Evaluation`
(`zoo evaluate`).

Hooks that need to share state (DCGAN's untrained generator weights, GPT-2's
tokenizer files) do it through fields of their own `Data` subclass. Nothing
here imports TensorFlow at module level.
"""

import contextlib

# The typed values the hooks take and return, importable from here too.
from zoo.task_types import Data, Evaluation, Predictions, ServingSignature  # noqa: F401

# Training rows gathered at once by `Task.batch`: whole epochs of small
# tables, a few dozen batches of images.
GATHER_BYTES = 32 * 2**20


def prefetch_fixed(dataset):
    """`dataset` with two batches prefetched and tf.data's autotuning off.

    The producers here are cheap, and the autotuner, torn down when `fit`
    returns, can leave the process idle for seconds (docs/tuning.md,
    "The idle end of `fit`").
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(2).with_options(options)


class Task:
    """Hooks of a model for the shared trainer; subclass per model.

    The defaults train a compiled Keras model on `data=(x, y)` arrays with a
    seeded 90/10 train/validation split. See the module docstring for the
    order in which the trainer calls the hooks.

    Attributes:
        default_data: str or None. The embedded dataset used when `data` is
            not given.
        data_help: str. What `data=` accepts, for `zoo info`.
        train_defaults: dict. Default `epochs`, `batch_size` and
            `learning_rate` of the recipe, and optionally
            `steps_per_execution` (1 when absent).
        has_presets: bool. Whether the builder takes `preset=`.
        data_options: dict. Dataset options the task accepts: name to
            `(type, help)`. The CLI parses `--data-option K=V` with the type.
        data_flags: tuple of str. Options that get a flag of their own in
            `zoo train NAME` (`target` -> `--target`).
        headline_metrics: tuple of str. Shell-style patterns of the
            metrics of `evaluate` that TensorBoard shows as HParams columns
            (and so as `evaluation/<name>` scalars, which the HParams plugin
            reads them from); the others, such as per-class scores and
            counts, are in `metrics.json` and the `run_summary` text only.
            Defaults to every metric.
        prune_block: int. The block `zoo compress --prune` removes weights
            in by default: that many consecutive weights along a kernel's
            last axis (1: weight by weight). Defaults to 1.
    """

    default_data = None
    data_help = "data=(x, y) NumPy arrays"
    train_defaults = {"epochs": 10, "batch_size": 32, "learning_rate": 1e-3}
    has_presets = False
    data_options = {}
    data_flags = ()
    headline_metrics = ("*",)
    prune_block = 1

    def load_data(self, data, config, options, seed, preset=None):
        """Returns a `Data` for `data` (a name, path or arrays).

        `preset` (str or None) is the preset the model starts from, for
        tasks whose data depends on it (a preset's tokenizer).
        """
        if not (isinstance(data, tuple) and len(data) == 2):
            raise ValueError(
                f"This model needs data=(x, y) arrays. Received: data={data!r}."
            )
        import numpy as np
        import tensorflow as tf

        x, y = (np.asarray(a) for a in data)
        order = np.random.default_rng(seed).permutation(len(x))
        cut = max(1, len(x) // 10)
        val, train = order[:cut], order[cut:]
        return Data(
            train=tf.data.Dataset.from_tensor_slices((x[train], y[train])),
            validation=tf.data.Dataset.from_tensor_slices((x[val], y[val])),
            num_train=len(train),
            name="arrays",
        )

    def default_batch_size(self, num_train):
        """The batch size when the user gives none, for `num_train` examples."""
        return self.train_defaults["batch_size"]

    def batch(self, dataset, batch_size, *, training, seed=0):
        """Batches an unbatched dataset for `fit` or `evaluate`.

        For training, the examples are held in memory as whole tensors (the
        built-in datasets fit in memory) and every epoch draws a new seeded
        permutation of their indices. The rows of up to `GATHER_BYTES` of
        batches are then gathered at once and handed out as batches, so
        tf.data does next to no work per example or per batch, and on a
        small CPU the pipeline hardly takes time from the training step.
        Evaluation examples are cached after their first pass. Two batches
        are prefetched with tf.data's autotuning off: the producer is cheap,
        and the autotuner, torn down when `fit` returns, can leave the
        process idle for seconds (docs/tuning.md, "The idle end of
        `fit`").
        """
        import numpy as np
        import tensorflow as tf

        size = int(dataset.cardinality())
        if not training or size < batch_size:
            # Also datasets of unknown size (cardinality < 0).
            dataset = dataset.cache()
            if training:
                dataset = dataset.shuffle(100_000, seed=seed, reshuffle_each_iteration=True)
            return prefetch_fixed(dataset.batch(batch_size, drop_remainder=training))
        rows = dataset.batch(size).get_single_element()
        steps = size // batch_size
        row_bytes = sum(t.dtype.size * int(np.prod(t.shape[1:])) for t in tf.nest.flatten(rows))
        chunk = int(max(1, min(steps, GATHER_BYTES // max(1, row_bytes * batch_size))))

        def epoch(draw):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(size, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), draw]))
            order = tf.reshape(order[: steps * batch_size], [steps, batch_size])
            chunks = tf.data.Dataset.range(0, steps, chunk)
            return chunks.map(lambda start: tf.nest.map_structure(
                lambda tensor: tf.gather(tensor, order[start:start + chunk]), rows)).unbatch()

        # One seeded draw per pass over the data: each epoch gets its own
        # permutation, and the same seed gives the same epochs. (Shuffling
        # a dataset of the indices instead costs 3-5x the CPU per batch.)
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        # flat_map hides the length, which Keras and tf.distribute use.
        batches = draws.flat_map(epoch).apply(tf.data.experimental.assert_cardinality(steps))
        return prefetch_fixed(batches)

    def execution_options(self, train_config):
        """`steps_per_execution` and `jit_compile` for `model.compile`.

        Every `compile` passes these on, so the training flags reach Keras
        whatever the model; `compile_model` checks that they did. Under the
        dtype policy in force, `jit_compile="auto"` first goes through
        `zoo.precision.xla_for` (no XLA under bfloat16 on a CPU), then
        through the task's `resolve_jit_compile`.
        """
        import keras

        from zoo import precision

        jit_compile = precision.xla_for(keras.config.dtype_policy().name, train_config.jit_compile)
        return {
            "steps_per_execution": train_config.steps_per_execution,
            "jit_compile": self.resolve_jit_compile(jit_compile),
        }

    def resolve_jit_compile(self, jit_compile):
        """What `jit_compile="auto"` means for this model; Keras decides by default."""
        return jit_compile

    def compile(self, model, config, train_config, steps_per_epoch=None):
        """Compiles `model` with the task's optimizer and loss.

        Args:
            model: `keras.Model`. The model `build` returned.
            config: the model's config dataclass.
            train_config: `zoo.config.TrainConfig`. `zoo.get` passes the
                recipe's defaults.
            steps_per_epoch: int or None. None when `zoo.get` compiles a
                model outside a run (no learning-rate schedule to size).
        """
        import keras

        model.compile(
            optimizer=keras.optimizers.Adam(train_config.learning_rate),
            loss="mse",
            **self.execution_options(train_config),
        )

    def build(self, build_model, config, preset, data):
        """Builds the model (runs inside the strategy scope).

        Args:
            build_model: callable. `build_model(config, preset=None,
                **kwargs)` calls the registered builder.
            config: the model's config dataclass.
            preset: str or None.
            data: the `Data` of `load_data`.

        Override to pass the builder what the data made, such as a
        tokenizer trained on the training split.
        """
        return build_model(config, preset=preset)

    def prepare(self, model, data):
        """Fits data-dependent layers (runs inside the strategy scope)."""

    @contextlib.contextmanager
    def fitting(self, model, data):
        """A context the trainer holds `fit` in, to change the model for
        training only (and undo it whatever happens)."""
        yield

    def callbacks(self, model, data, train_config, run_dir):
        """Returns extra Keras callbacks for `fit`."""
        return []

    def summaries(self, model, data, epoch):
        """Writes extra TensorBoard summaries (images, text) for `epoch`.

        Runs inside a default summary writer, so `tf.summary.image(...)`
        needs no writer or step.
        """

    def evaluate(self, model, data, train_config):
        """Returns the final metrics as a flat dict of floats."""
        return {}

    def export(self, model, data, run_dir):
        """Writes extra artifacts (a preset, a sample grid) into `run_dir`."""

    def register_keras_classes(self):
        """Registers the model's own Keras classes, so that its `.keras`
        file loads (`zoo.load_model`). None by default."""

    def generate(self, run_dir, args):
        """Runs `zoo generate` on a finished run; returns the exit status."""
        raise ValueError(
            f"`zoo generate` makes images or text; this run's model has no "
            f"generator. Received: {run_dir}."
        )

    def serving_model(self, model):
        """The model that `zoo export` writes and `zoo compress` times: what
        a user has in, what they want out. Defaults to `model` itself.

        Args:
            model: `keras.Model`. The run's trained (or compressed) model.

        Returns:
            A `keras.Model` of plain Keras layers (an export holds no
            Python), its inputs named as the export's signature names them.
        """
        return model

    def serving_examples(self, config, load_data, count):
        """Real inputs of the serving model, to check exports and time models.

        Args:
            config: the model's config dataclass.
            load_data: callable. Returns the run's `Data` again (loaded as
                the trainer did); call it only when the inputs come from it.
            count: int. How many examples.

        Returns:
            `(inputs, description)`: a NumPy array (or a dict of them by
            input name) with `count` rows, and a few words on where they
            come from. Defaults to `example_input(config, count)`.
        """
        return self.example_input(config, count), "example_input (random)"

    def saved_model_signatures(self, model, config, run_dir, load_data):
        """`ServingSignature`s for `zoo export --format saved_model` beside
        `serving_default` (GPT-2's text-in, text-out `generate`), using the
        variables of `model` (the run's model); `load_data()` returns the
        run's `Data`. Each is checked in the fresh process. None by default."""
        return []

    def quantize(self, model, mode):
        """Quantizes `model` in place with Keras 3's `model.quantize(mode)`
        ("int8", "int4" or "float8"), for `zoo compress`."""
        model.quantize(mode)

    def predict(self, run, data, *, keep=(), batch_size=1024, top_k=None):
        """Predictions of a finished run on new data, for `zoo predict`.

        Args:
            run: `zoo.runs.Run`. The finished run (`run.model`,
                `run.config` as in `config.json`, `run.model_config`).
            data: what the model's `zoo predict --data` takes (a path, a
                DataFrame, arrays).
            keep: sequence of str. Input columns to pass through.
            batch_size: int. Rows per chunk and model call.
            top_k: int or None. For classifiers: the classes to list.

        Returns:
            A `Predictions`. Bad input raises (`ValueError`,
            `FileNotFoundError`) before it is returned, or while its
            chunks are read, naming the column and row.
        """
        if type(self).generate is not Task.generate:
            raise ValueError(
                "`zoo predict` does not apply to this run: its model generates images or text "
                "and takes no input rows. Use `zoo generate RUN` instead. "
                f"Received: {run.dir} ({run.config.get('model_name')})."
            )
        raise ValueError(
            f"`zoo predict` is not defined for model '{run.config.get('model_name')}': its task "
            f"has no predict hook. Received: {run.dir}."
        )

    def evaluate_data(self, run, data, options, own_data, batch_size=None):
        """The run's own metrics on other data, for `zoo evaluate`.

        Args:
            run: `zoo.runs.Run`. The finished run.
            data: str or arrays. The data to score, as `zoo train --data`
                takes it.
            options: dict. Dataset options: the run's own, updated with
                those given.
            own_data: bool. Whether `data` and `options` are the run's own
                training data; then the split its metrics were measured on
                is scored, so the numbers reproduce `metrics.json`.
            batch_size: int or None. Examples per model call; None for the
                run's batch size.

        Returns:
            An `Evaluation`.
        """
        raise ValueError(
            f"`zoo evaluate` is not defined for model '{run.config.get('model_name')}': its task "
            f"has no evaluate_data hook. Received: {run.dir}."
        )

    def fold_data(self, data, num_folds, fold, seed):
        """The `Data` of one cross-validation fold (`zoo train --folds K`).

        Args:
            data: `Data`. What `load_data` returned for the whole dataset.
            num_folds: int. K, at least 2.
            fold: int. The fold held out for testing, in [0, K).
            seed: int. Seeds the assignment of examples to folds; the same
                seed gives the same folds.

        Returns:
            A `Data` whose test examples are fold `fold` and whose training
            and validation examples come from the other folds.

        Raises:
            ValueError: the data cannot be cut into `num_folds` folds, or
                the model has no held-out metrics to cross-validate.
        """
        raise ValueError(
            f"Cross-validation (`folds`) applies to supervised models scored on held-out "
            f"examples; {type(self).__name__} does not define fold_data. Received: folds={num_folds}."
        )

    def example_input(self, config, batch_size=2):
        """A NumPy batch the model of `config` takes, for smoke tests and
        export checks. Override per model."""
        raise NotImplementedError(f"{type(self).__name__} defines no example_input.")

    def expected_output_shape(self, config, batch_size=2):
        """The output shape of `model(example_input(config, batch_size))`."""
        raise NotImplementedError(f"{type(self).__name__} defines no expected_output_shape.")

    def count_params(self, config):
        """The parameter count of `config`, computed without TensorFlow."""
        return None

    def tokens_per_example(self, config):
        """Tokens in one example, for tokens/s; None for non-text models."""
        return None


def compile_model(task, model, config, train_config, steps_per_epoch=None):
    """Compiles `model` through `task.compile`, then builds its optimizer.

    The one place a model is compiled, for `zoo.get` and the trainer alike.
    A built optimizer saves its slots with the model (a `.keras` file then
    reloads without optimizer-mismatch warnings), and building it here, in
    the strategy scope, avoids keras#23085 (an optimizer first built inside
    `fit` under a strategy can fail).

    Raises:
        RuntimeError: the task's `compile` dropped an execution option of
            `train_config`; it must pass `task.execution_options(...)` on.
    """
    task.compile(model, config, train_config, steps_per_epoch)
    expected = task.execution_options(train_config)
    dropped = [k for k in ("steps_per_execution",)
               if getattr(model, k, expected[k]) != expected[k]]
    if isinstance(expected["jit_compile"], bool) and model.jit_compile != expected["jit_compile"]:
        dropped.append("jit_compile")
    if dropped:
        raise RuntimeError(
            f"{type(task).__name__}.compile dropped {', '.join(dropped)} of the training "
            f"config ({', '.join(f'{k}={expected[k]!r}' for k in dropped)}); pass "
            "**self.execution_options(train_config) to model.compile."
        )
    if getattr(model, "optimizer", None) is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
