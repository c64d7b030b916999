"""`gpt2_textgen`: GPT-2 text generation on keras-hub's `GPT2CausalLM`.

Data: `pydoc` (the default: Python's own documentation, which ships with
every CPython), `.txt` files, folders or globs, and the tfds datasets
`imdb_reviews` and `tiny_shakespeare` from the tfds data dir (`zoo.data.text`).
The tokenizer is a byte-level BPE trained on the run's training split
(`tokenizer.py`); the score is the validation set's bits per byte beside what
`xz -9` needs for the same bytes (`zoo.metrics.text`). The parts:
`task.py` (the trainer's hooks), `tokenizer.py`, `generation.py` (presets,
samplers), `decoding.py` (a cached, XLA-compiled generate loop),
`export_generate.py` (the SavedModel's text-in, text-out `generate`).

This module only declares the config and registers the builder; it imports
no TensorFlow.
"""

import dataclasses

from zoo import config as config_lib
from zoo import registry
from zoo.models.gpt2_textgen.task import GPT2TextGenTask

TINY = dict(
    vocabulary_size=300, num_layers=2, num_heads=2, hidden_dim=16,
    intermediate_dim=32, max_sequence_length=32, sequence_length=16,
)


@dataclasses.dataclass(frozen=True)
class GPT2TextGenConfig:
    """Config of `gpt2_textgen`.

    Attributes:
        vocabulary_size: int. Tokens in the byte-level BPE vocabulary,
            including the 256 byte tokens and 2 special tokens; a small
            corpus may yield fewer. Defaults to 4096.
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
        embedding_stddev: float. Standard deviation of the token
            embedding's initial values, for a model trained from scratch.
            keras-hub's default, 0.01, leaves token rows half the size of
            the position embedding's (0.02), and a small model then sits on
            the unigram plateau for its first epochs; 0.05 does not.
            Defaults to 0.05.
    """

    vocabulary_size: int = 4096
    num_layers: int = 4
    num_heads: int = 4
    hidden_dim: int = 256
    intermediate_dim: int = 1024
    max_sequence_length: int = 256
    sequence_length: int = 128
    dropout: float = 0.1
    embedding_stddev: float = 0.05

    def __post_init__(self):
        config_lib.require(
            self.vocabulary_size >= 260, "vocabulary_size", self.vocabulary_size,
            "must be at least 260 (256 byte tokens, 2 special tokens and some merges)",
        )
        config_lib.require_positive(self, "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                                    "max_sequence_length")
        config_lib.require(
            self.hidden_dim % self.num_heads == 0, "num_heads", self.num_heads,
            f"must divide hidden_dim={self.hidden_dim}",
        )
        config_lib.require(
            2 <= self.sequence_length <= self.max_sequence_length, "sequence_length",
            self.sequence_length, f"must be in [2, max_sequence_length={self.max_sequence_length}]",
        )
        config_lib.require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        config_lib.require(
            self.embedding_stddev > 0, "embedding_stddev", self.embedding_stddev, "must be positive"
        )



@registry.register("gpt2_textgen", config=GPT2TextGenConfig, task=GPT2TextGenTask(), tiny=TINY)
def gpt2_textgen(config, preset=None, tokenizer_files=None):
    """GPT-2 text generation: keras-hub's `GPT2CausalLM` with its preprocessor.

    With no preset, a fresh `GPT2Backbone` of the config's size, with a
    byte-level BPE tokenizer trained on the embedded corpus' training split
    (or the given `tokenizer_files`). With a preset, the preset's model and
    tokenizer.

    Args:
        config: `GPT2TextGenConfig`. The architecture (ignored for a preset,
            except `sequence_length`).
        preset: str. A keras-hub preset name (`gpt2_base_en`, which needs
            the network) or a local preset directory, such as a run's
            `<run>/preset`. Defaults to None.
        tokenizer_files: (str, str). `vocabulary.json` and `merges.txt`
            paths. Defaults to the embedded corpus' BPE.

    ```python
    lm = zoo.get("gpt2_textgen", num_layers=2)
    lm.generate("def main", max_length=32)
    ```
    """
    import keras
    import keras_hub

    from zoo.models.gpt2_textgen import decoding, generation, tokenizer as tokenizer_lib

    if preset is not None:
        model = generation.load_preset(preset)
        model.preprocessor.sequence_length = config.sequence_length
        return model
    vocabulary_path, merges_path = tokenizer_files or tokenizer_lib.default_tokenizer_files(config.vocabulary_size)
    tokenizer = tokenizer_lib.make_tokenizer(vocabulary_path, merges_path)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.hidden_dim,
        intermediate_dim=config.intermediate_dim,
        dropout=config.dropout,
        max_sequence_length=config.max_sequence_length,
    )
    # A plain value change: the preset stays a plain keras-hub GPT2Backbone.
    embeddings = backbone.token_embedding.embeddings
    embeddings.assign(keras.initializers.RandomNormal(stddev=config.embedding_stddev)(embeddings.shape))
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=config.sequence_length
    )
    # Same model and presets; `generate` keeps a per-layer cache and decodes under XLA.
    return decoding.install(keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor))
