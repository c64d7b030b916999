"""The shared trainer's hooks for `gpt2_textgen`: data, compile, samples, scores."""

import contextlib
import dataclasses
import html
import os

from zoo.data import text as text_data
from zoo.files import atomic_path
from zoo.metrics import text as text_metrics_lib
from zoo.models.gpt2_textgen import generation, tokenizer as tokenizer_lib
from zoo.task import Data, Evaluation, Task, prefetch_fixed

NUM_SAMPLE_PROMPTS = 3


@dataclasses.dataclass
class TextData(Data):
    """Token windows of a corpus, and what the other hooks need of it.

    Attributes:
        tokenizer_files: tuple[str, str] or None. The run's BPE files
            (`vocabulary.json`, `merges.txt`); None for a preset's tokenizer.
        validation_bytes: bytes. The bytes the validation stream spells,
            which bits per byte and `xz -9` are measured on.
        train_tokens: int. Tokens in the training stream.
        validation_tokens: int. Targets in the validation windows.
        prompts: list of str. The first words of validation documents,
            for the samples.
    """

    tokenizer_files: tuple | None = None
    validation_bytes: bytes = b""
    train_tokens: int = 0
    validation_tokens: int = 0
    prompts: list = dataclasses.field(default_factory=list)


class GPT2TextGenTask(Task):
    """Causal language modelling with AdamW and a warmup-then-decay schedule.

    `load_data` reads the corpus, trains the run's BPE on the training
    split (or takes the preset's tokenizer) and cuts both splits into token
    windows; `build` hands those tokenizer files to the builder. The windows
    are already what keras-hub's preprocessor would make, so while `fit`
    runs (`fitting`) the model passes them through.
    `summaries` writes greedy samples from fixed prompts each epoch;
    `evaluate` scores the validation split against `xz -9`; `export` saves
    the keras-hub preset and greedy samples in `samples.txt`.
    """

    default_data = text_data.EMBEDDED_DATA
    has_presets = True
    data_help = ("pydoc (default: Python's documentation), .txt files, folders or globs, "
                 "tfds imdb_reviews or tiny_shakespeare (data options: tfds_data_dir, "
                 "validation_fraction)")
    train_defaults = {"epochs": 10, "batch_size": 16, "learning_rate": 1e-3}
    data_options = {
        "tfds_data_dir": (str, "where tensorflow-datasets keeps downloaded data"),
        "validation_fraction": (float, "share of the text held out for validation (0.1)"),
    }
    data_flags = ("tfds_data_dir",)
    headline_metrics = ("val_perplexity", "val_bits_per_byte", "bits_per_byte_vs_xz")

    def load_data(self, data, config, options, seed, preset=None):
        import numpy as np
        import tensorflow as tf

        train_docs, val_docs, name = text_data.read_corpus(data, options)
        updates, files = {}, None
        if preset is None:
            files = tokenizer_lib.tokenizer_files_for(train_docs, config.vocabulary_size)
            tokenizer = tokenizer_lib.make_tokenizer(*files)
        else:
            tokenizer = generation.load_tokenizer(preset)
            updates = generation.preset_architecture(preset)
        length = config.sequence_length
        limit = updates.get("max_sequence_length", config.max_sequence_length)
        if length > limit:
            raise ValueError(
                f"Invalid value for `sequence_length`: must be at most {limit}, the model's "
                f"max_sequence_length. Received: sequence_length={length}."
            )
        train_stream = tokenizer_lib.token_stream(tokenizer, train_docs)
        val_stream = tokenizer_lib.token_stream(tokenizer, val_docs)
        num_windows = (len(train_stream) - length) // length
        if num_windows < 1:
            raise ValueError(
                f"'{name}' is too short: its training split has {len(train_stream)} tokens, "
                f"fewer than 2 * sequence_length + 1 = {2 * length + 1}. Give more text or a "
                f"smaller sequence_length. Received: sequence_length={length}."
            )
        x, y, w = tokenizer_lib.validation_windows(val_stream, length)
        prompts = [" ".join(d.split()[:3]) for d in val_docs[:NUM_SAMPLE_PROMPTS]]
        return TextData(
            train=tokenizer_lib.training_windows(train_stream, length, num_windows, seed),
            validation=tf.data.Dataset.from_tensor_slices((x, y, w)),
            num_train=num_windows,
            name=name,
            config_updates=updates,
            tokenizer_files=files,
            validation_bytes=tokenizer_lib.stream_bytes(val_docs),
            train_tokens=int(len(train_stream)),
            validation_tokens=int(np.sum(w)),
            prompts=prompts,
        )

    def batch(self, dataset, batch_size, *, training, seed=0):
        # No `cache()`: it would freeze the first epoch's random window
        # offsets, and a window is only a slice of the token stream.
        if training:
            dataset = dataset.shuffle(100_000, seed=seed, reshuffle_each_iteration=True)
        return prefetch_fixed(dataset.batch(batch_size, drop_remainder=training))

    def build(self, build_model, config, preset, data):
        return build_model(config, preset=preset, tokenizer_files=data.tokenizer_files)

    @contextlib.contextmanager
    def fitting(self, model, data):
        # keras-hub's `fit` runs the string preprocessor over every batch;
        # these batches are token windows already (cut once, not re-tokenized
        # each epoch), so pass them through while `fit` runs.
        model.preprocess_samples = tokenizer_lib.pretokenized
        try:
            yield
        finally:
            vars(model).pop("preprocess_samples", None)

    def resolve_jit_compile(self, jit_compile):
        """XLA for training: "auto" means on, with one replica.

        Keras' own "auto" turns XLA off on CPU-only machines and under any
        `tf.distribute` strategy; for this model XLA steps are faster on CPU
        too (see docs/models/gpt2_textgen.md), so zoo turns it on wherever a
        single replica trains. Under several replicas "auto" stays Keras' call.
        """
        import tensorflow as tf

        if jit_compile != "auto":
            return jit_compile
        return True if tf.distribute.get_strategy().num_replicas_in_sync == 1 else "auto"

    def compile(self, model, config, train_config, steps_per_epoch=None):
        import keras

        learning_rate = train_config.learning_rate
        if steps_per_epoch:
            total = max(2, steps_per_epoch * train_config.epochs)
            warmup = max(1, total // 20)
            learning_rate = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=0.0, decay_steps=total - warmup, alpha=0.1,
                warmup_target=learning_rate, warmup_steps=warmup,
            )
        model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            sampler="greedy",
            **self.execution_options(train_config),
        )

    def summaries(self, model, data, epoch):
        import tensorflow as tf

        prompts = data.prompts or [""]
        length = min(generation.SAMPLE_MAX_LENGTH, model.backbone.max_sequence_length)
        outputs = generation.generate_text(model, prompts, length)
        tf.summary.text("samples/greedy", samples_markdown(prompts, outputs))

    def evaluate(self, model, data, train_config):
        dataset = data.validation.batch(train_config.batch_size)
        nll, tokens = text_metrics_lib.summed_nll(model, dataset)
        raw = data.validation_bytes
        scores = text_metrics_lib.text_metrics(nll, tokens, len(raw))
        xz = text_metrics_lib.xz_bits_per_byte(raw)
        return {
            "val_perplexity": scores["perplexity"],
            "val_bits_per_byte": scores["bits_per_byte"],
            "xz_bits_per_byte": xz,
            "bits_per_byte_vs_xz": scores["bits_per_byte"] / xz,
            "val_tokens": tokens,
            "val_bytes": len(raw),
        }

    def evaluate_data(self, run, data, options, own_data, batch_size=None):
        """Perplexity, bits per byte and `xz -9` on a text file, folder or
        glob (all of it), under the run's metric names (`val_*`); the
        validation split for the run's own corpus. The model and tokenizer
        are the run's preset."""
        import tensorflow as tf

        preset = os.path.join(run.dir, "preset")
        if not os.path.isdir(preset):
            raise FileNotFoundError(
                f"Run '{run.dir}' has no preset directory; it was saved by an older zoo. "
                "Retrain it to get <run>/preset.")
        if own_data:
            _, documents, name = text_data.read_corpus(data, options)
            split = "validation"
        else:
            documents, name, split = text_data.read_documents(data, options)
        model = generation.load_preset(preset)
        length = run.model_config.sequence_length
        stream = tokenizer_lib.token_stream(model.preprocessor.tokenizer, documents)
        if len(stream) < 2:
            raise ValueError(f"'{name}' is too short to score: {len(stream)} token(s); at least 2 are needed.")
        x, y, w = tokenizer_lib.validation_windows(stream, length)
        scored = TextData(train=None, validation=tf.data.Dataset.from_tensor_slices((x, y, w)),
                          validation_bytes=tokenizer_lib.stream_bytes(documents))
        train_config = run.train_config
        if batch_size:
            import dataclasses as dc

            train_config = dc.replace(train_config, batch_size=batch_size)
        metrics = self.evaluate(model, scored, train_config)
        return Evaluation(metrics, name, split, metrics["val_tokens"])

    def export(self, model, data, run_dir):
        with atomic_path(os.path.join(run_dir, "preset")) as tmp:
            model.save_to_preset(tmp)
        prompts = data.prompts or [""]
        length = min(generation.SAMPLE_MAX_LENGTH, model.backbone.max_sequence_length)
        # Greedy only: the compiled sampler, so no new trace. Sample with
        # `zoo generate RUN --sampler top_p --seed 1`.
        text = [f"{p!r} -> {o!r}\n" for p, o in zip(prompts, generation.generate_text(model, prompts, length))]
        with atomic_path(os.path.join(run_dir, "samples.txt")) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("# Greedy samples from the first words of validation documents\n\n")
                f.write("\n".join(text))

    def generate(self, run_dir, args):
        import keras

        prompts = list(args.prompt or [""])
        sampler = generation.make_sampler(
            args.sampler, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            num_beams=args.num_beams, seed=args.seed,
        )
        preset = os.path.join(run_dir, "preset")
        if not os.path.isdir(preset):
            raise FileNotFoundError(
                f"Run '{run_dir}' has no preset directory; it was saved by an older zoo. "
                "Retrain it to get <run>/preset."
            )
        if args.seed is not None:
            keras.utils.set_random_seed(args.seed)
        model = generation.load_preset(preset)
        model.compile(sampler=sampler)
        outputs = generation.generate_text(model, prompts, args.max_length)
        text = "\n\n".join(outputs) + "\n"
        if args.out:
            with atomic_path(args.out) as tmp:
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)
            print(f"Wrote {len(outputs)} text(s) to {args.out}")
        else:
            for i, output in enumerate(outputs):
                if i:
                    print("\n---\n")
                print(output)
        return 0

    def serving_model(self, model):
        """Token ids and a padding mask `(batch, length)` to next-token
        logits `(batch, length, vocabulary)`: keras-hub's `GPT2CausalLM`
        without its string preprocessor (tokenize with the run's preset),
        whose lookup tables neither LiteRT nor ONNX can hold."""
        import keras

        return keras.Model(model.inputs, model.outputs, name="gpt2_next_token_logits")

    def saved_model_signatures(self, model, config, run_dir, load_data):
        """`generate` (prompts to text, the run's greedy length) and
        `generate_max_length` (with a `max_length`): tokenizer, greedy
        loop and detokenizer in the graph (`export_generate.py`)."""
        from zoo.models.gpt2_textgen import export_generate

        return export_generate.signatures(model, run_dir, load_data().prompts)

    def serving_examples(self, config, load_data, count):
        import numpy as np

        data = load_data()
        x, _, _ = next(iter(data.validation.batch(count)))
        inputs = {k: np.asarray(v) for k, v in x.items()}
        return inputs, f"the first {len(inputs['token_ids'])} validation windows"

    def quantize(self, model, mode):
        # The backbone holds every weight; the preprocessor (a tokenizer,
        # never built) would make `GPT2CausalLM.quantize` fail.
        model.backbone.quantize(mode)

    def example_input(self, config, batch_size=2):
        import numpy as np

        tokens = np.random.default_rng(0).integers(2, config.vocabulary_size, size=(batch_size, config.sequence_length))
        return {"token_ids": tokens.astype("int32"), "padding_mask": np.ones_like(tokens, dtype=bool)}

    def expected_output_shape(self, config, batch_size=2):
        return (batch_size, config.sequence_length, config.vocabulary_size)

    def count_params(self, config):
        h, v, p, i, n = (config.hidden_dim, config.vocabulary_size, config.max_sequence_length,
                         config.intermediate_dim, config.num_layers)
        layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h  # attention, MLP, 2 layer norms
        return v * h + p * h + n * layer + 2 * h

    def tokens_per_example(self, config):
        return config.sequence_length


def samples_markdown(prompts, outputs):
    """The samples as Markdown that TensorBoard's Text tab shows as written.

    TensorBoard renders a text summary as Markdown, which would eat the
    model's `*`, `_`, `#`, line breaks and indentation, and a fenced code
    block would still turn tabs into spaces. Each sample (its prompt, then
    the continuation, as `generate_text` returns it) goes in a raw `<pre>`
    block instead, HTML-escaped, with tabs as `&#9;`: Markdown passes it
    through and the browser shows every character as the model wrote it.

    Args:
        prompts: list of str. The prompts.
        outputs: list of str. Each prompt followed by its continuation.
    """
    blocks = []
    for i, (prompt, output) in enumerate(zip(prompts, outputs), 1):
        where = (f"the prompt is its first {len(prompt)} characters" if prompt
                 else "from an empty prompt")
        text = html.escape(output, quote=False).replace("\t", "&#9;")
        blocks.append(f"**Sample {i}** (greedy; {where}):\n\n<pre>{text}</pre>")
    return "\n\n".join(blocks)
