"""`gpt2_textgen`: GPT-2 text generation on keras-hub's `GPT2CausalLM`.

The tokenizer of a model trained from scratch is a byte-level BPE trained
with the `tokenizers` package on the training text. Its special tokens are
`<|pad|>` (id 0, which keras-hub's GPT-2 pads with) and `<|endoftext|>` (id
1): if the end token had id 0, padding would read as "end" and `generate`
would stop at once and return only the prompt.
"""

import dataclasses
import hashlib
import json
import os

from zoo import config as config_lib
from zoo import registry
from zoo.task import Task

PAD_TOKEN = "<|pad|>"
END_TOKEN = "<|endoftext|>"
BUILTIN_PRESET_HINT = "gpt2_base_en, gpt2_medium_en, gpt2_large_en, gpt2_extra_large_en"


@dataclasses.dataclass(frozen=True)
class GPT2TextGenConfig:
    """Config of `gpt2_textgen`.

    Attributes:
        vocabulary_size: int. Tokens in the byte-level BPE vocabulary,
            including the 256 byte tokens and 2 special tokens. Defaults to
            4096.
        num_layers: int. Transformer decoder layers. Defaults to 4.
        num_heads: int. Attention heads; must divide hidden_dim. Defaults
            to 4.
        hidden_dim: int. Width of the residual stream. Defaults to 256.
        intermediate_dim: int. Width of each feed-forward block. Defaults
            to 1024.
        max_sequence_length: int. Position embeddings, the longest context
            the model can see. Defaults to 256.
        sequence_length: int. Tokens per training example; at most
            max_sequence_length. Defaults to 128.
        dropout: float. Dropout rate, in [0, 1). Defaults to 0.1.
    """

    vocabulary_size: int = 4096
    num_layers: int = 4
    num_heads: int = 4
    hidden_dim: int = 256
    intermediate_dim: int = 1024
    max_sequence_length: int = 256
    sequence_length: int = 128
    dropout: float = 0.1

    def __post_init__(self):
        config_lib.require(
            self.vocabulary_size >= 260, "vocabulary_size", self.vocabulary_size,
            "must be at least 260 (256 byte tokens, 2 special tokens and some merges)",
        )
        for field in ("num_layers", "num_heads", "hidden_dim", "intermediate_dim", "max_sequence_length"):
            config_lib.require(getattr(self, field) >= 1, field, getattr(self, field), "must be at least 1")
        config_lib.require(
            self.hidden_dim % self.num_heads == 0, "num_heads", self.num_heads,
            f"must divide hidden_dim={self.hidden_dim}",
        )
        config_lib.require(
            2 <= self.sequence_length <= self.max_sequence_length, "sequence_length",
            self.sequence_length, f"must be in [2, max_sequence_length={self.max_sequence_length}]",
        )
        config_lib.require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")


def embedded_corpus():
    """Python's own documentation, as `{topic: text}`, from `pydoc_data`.

    It ships with every CPython (about 465,000 characters), so the default
    recipe needs no download.
    """
    from pydoc_data import topics

    return dict(sorted(topics.topics.items()))


def cache_dir():
    """Where zoo caches derived files: `$ZOO_CACHE_DIR` or `~/.cache/zoo`."""
    return os.environ.get("ZOO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "zoo")


def train_tokenizer(texts, vocabulary_size, directory):
    """Trains a byte-level BPE on `texts` and writes keras-hub's files.

    Args:
        texts: iterable of str. The training text.
        vocabulary_size: int. The vocabulary size, special tokens included.
        directory: str. Receives `vocabulary.json` and `merges.txt`, the
            two files `keras_hub.models.GPT2Tokenizer` takes.

    Returns:
        `(vocabulary_path, merges_path)`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocabulary_size,
        special_tokens=[PAD_TOKEN, END_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocabulary, merges = model["vocab"], model["merges"]
    os.makedirs(directory, exist_ok=True)
    vocabulary_path = os.path.join(directory, "vocabulary.json")
    merges_path = os.path.join(directory, "merges.txt")
    from zoo.trainer import atomic_path

    with atomic_path(vocabulary_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(vocabulary, f, ensure_ascii=False)
    with atomic_path(merges_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for merge in merges:
            f.write((merge if isinstance(merge, str) else " ".join(merge)) + "\n")
    return vocabulary_path, merges_path


def default_tokenizer_files(vocabulary_size):
    """The BPE of the embedded corpus at `vocabulary_size`, cached on disk."""
    texts = list(embedded_corpus().values())
    digest = hashlib.sha256("".join(texts).encode()).hexdigest()[:12]
    directory = os.path.join(cache_dir(), "tokenizers", f"pydoc-{digest}-{vocabulary_size}")
    vocabulary_path = os.path.join(directory, "vocabulary.json")
    merges_path = os.path.join(directory, "merges.txt")
    if not (os.path.exists(vocabulary_path) and os.path.exists(merges_path)):
        train_tokenizer(texts, vocabulary_size, directory)
    return vocabulary_path, merges_path


def make_tokenizer(vocabulary_path, merges_path):
    """A keras-hub `GPT2Tokenizer` from BPE files made by `train_tokenizer`."""
    import keras_hub

    return keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary_path, merges=merges_path)


def load_preset(preset):
    """Loads a `GPT2CausalLM` from a keras-hub preset name or directory.

    A built-in name needs the network (keras-hub fetches it from Kaggle);
    offline it fails with a message that says what to do instead.
    """
    import keras_hub

    if os.path.isdir(preset):
        return keras_hub.models.GPT2CausalLM.from_preset(preset)
    if os.path.sep in preset or preset.startswith("."):
        raise FileNotFoundError(
            f"Preset directory '{preset}' not found. `preset` takes a local preset "
            f"directory (as saved by `save_to_preset`) or a keras-hub name such as "
            f"{BUILTIN_PRESET_HINT}."
        )
    try:
        return keras_hub.models.GPT2CausalLM.from_preset(preset)
    except Exception as e:  # keras-hub raises many kinds on a failed download.
        if "Unknown preset" in str(e) or "not found" in str(e).lower() and "kaggle" not in str(e).lower():
            raise ValueError(
                f"Unknown preset '{preset}'. Built-in GPT-2 presets: {BUILTIN_PRESET_HINT}; "
                "or give a local preset directory."
            ) from None
        raise ConnectionError(
            f"Could not download keras-hub preset '{preset}': built-in presets come from "
            f"Kaggle and need the network ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "Download it once on a machine with network access and save it with "
            "`GPT2CausalLM.from_preset(name).save_to_preset(dir)`, then pass "
            "`preset=dir`."
        ) from None


class GPT2TextGenTask(Task):
    """Causal language modelling with AdamW and a warmup-then-decay schedule."""

    default_data = "pydoc"
    has_presets = True
    data_help = "pydoc (default: Python's documentation), .txt files, folders or globs, tfds imdb_reviews or tiny_shakespeare"
    train_defaults = {"epochs": 8, "batch_size": 16, "learning_rate": 1e-3}

    def compile(self, model, config, train_config=None, steps_per_epoch=None):
        import keras

        learning_rate = train_config.learning_rate if train_config else self.train_defaults["learning_rate"]
        if train_config is not None and steps_per_epoch:
            total = max(2, steps_per_epoch * train_config.epochs)
            warmup = max(1, total // 20)
            learning_rate = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=0.0, decay_steps=total - warmup, alpha=0.1,
                warmup_target=learning_rate, warmup_steps=warmup,
            )
        extra = {}
        if train_config is not None:
            extra = {"steps_per_execution": train_config.steps_per_execution,
                     "jit_compile": train_config.jit_compile}
        model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            sampler="greedy",
            **extra,
        )

    def count_params(self, config):
        h, v, p, i, n = (config.hidden_dim, config.vocabulary_size, config.max_sequence_length,
                         config.intermediate_dim, config.num_layers)
        layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h  # attention, MLP, 2 layer norms
        return v * h + p * h + n * layer + 2 * h

    def tokens_per_example(self, config):
        return config.sequence_length


@registry.register("gpt2_textgen", config=GPT2TextGenConfig, task=GPT2TextGenTask())
def gpt2_textgen(config, preset=None, tokenizer_files=None):
    """GPT-2 text generation: keras-hub's `GPT2CausalLM` with its preprocessor.

    With no preset, a fresh `GPT2Backbone` of the config's size, with a
    byte-level BPE tokenizer trained on the embedded corpus (or the given
    `tokenizer_files`). With a preset, the preset's model and tokenizer.

    Args:
        config: `GPT2TextGenConfig`. The architecture (ignored for a preset,
            except `sequence_length`).
        preset: str. A keras-hub preset name (`gpt2_base_en`, which needs
            the network) or a local preset directory. Defaults to None.
        tokenizer_files: (str, str). `vocabulary.json` and `merges.txt`
            paths. Defaults to the embedded corpus' BPE.

    ```python
    lm = zoo.get("gpt2_textgen", num_layers=2)
    lm.generate("def main", max_length=32)
    ```
    """
    import keras_hub

    if preset is not None:
        model = load_preset(os.fspath(preset))
        model.preprocessor.sequence_length = config.sequence_length
        return model
    vocabulary_path, merges_path = tokenizer_files or default_tokenizer_files(config.vocabulary_size)
    tokenizer = make_tokenizer(vocabulary_path, merges_path)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.hidden_dim,
        intermediate_dim=config.intermediate_dim,
        dropout=config.dropout,
        max_sequence_length=config.max_sequence_length,
    )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=config.sequence_length
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)
