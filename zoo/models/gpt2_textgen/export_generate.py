"""The `generate` signature of a `gpt2_textgen` SavedModel: text in, text out.

keras-hub's `GPT2CausalLM.generate` does not export: its tokenizer runs in
Python (the `tokenizers` package) and its loop is driven from Python. This
module builds the same generation as one TensorFlow graph of core ops only
(no tensorflow-text op, no Python or Keras at load time), which a process
with TensorFlow alone runs and whose every op TensorFlow Serving's stock
binary has:

1. **Tokenize** as keras-hub's eager tokenizer does, which is what zoo's
   training and `zoo generate` use. That path (`tokenizers`'s BPE, keras-hub
   0.32) splits out `<|endoftext|>` and does no other pre-splitting: its
   `Split` pre-tokenizer is handed the GPT-2 regex as a plain string, which
   `tokenizers` matches literally, so the whole prompt is one byte-level
   "word". The graph maps each byte to GPT-2's printable character, then
   merges the lowest-ranked adjacent pair, leftmost first, until no pair is
   in `merges.txt`: the order of `tokenizers`'s BPE. (keras-hub's own graph
   tokenizer splits on the regex first, needs tensorflow-text's
   `RegexSplitWithOffsets` op, and gives other ids: `"a  b"` is
   `a ĠĠ b` in zoo and `a Ġ Ġb` there.)
2. **Pack** `<|endoftext|>` (the start token), the prompt, then padding with
   id 0 (`<|pad|>`, keras-hub's pad id) to `max_length`.
3. **Decode greedily** with zoo's own cached step (`decoding.py`: the first
   pass over the shortest prompt, then one token per step in a
   `tf.while_loop` that keeps each layer's keys and values), keras-hub's
   `GreedySampler`, and the stop rule of keras-hub's `generate`: stop when
   every row has made a new `<|endoftext|>`, or at `max_length`. Not under
   XLA: TensorFlow Serving's CPU binary runs no XLA by default.
4. **Detokenize** as `tokenizers`'s byte-level decoder does: drop padding
   and `<|endoftext|>`, join each token's bytes, and decode them as UTF-8
   with U+FFFD for invalid bytes.

`zoo export` checks the result against zoo's own greedy generation on the
run's sample prompts in a fresh process (`zoo.exports`).
"""

import functools

# The GPT-2 byte-to-character map's printable bytes, which map to themselves.
_PRINTABLE = (*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
              *range(ord("®"), ord("ÿ") + 1))
# Larger than any merge rank: "no merge here".
_NO_MERGE = 2**31 - 1


def byte_characters():
    """GPT-2's byte-level map: the character that stands for each byte 0-255."""
    chars, extra = {}, 0
    for b in range(256):
        if b in _PRINTABLE:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def token_bytes(vocabulary):
    """Each token's bytes, by id, as `tokenizers`'s byte-level decoder
    reads them: every character mapped back to its byte, or, for a token
    with a character outside the map, its own UTF-8 bytes."""
    to_byte = {c: bytes([b]) for b, c in enumerate(byte_characters())}
    size = max(vocabulary.values()) + 1
    out = [b""] * size
    for token, i in vocabulary.items():
        if all(c in to_byte for c in token):
            out[i] = b"".join(to_byte[c] for c in token)
        else:
            out[i] = token.encode("utf-8")
    return out


def merge_rules(merges):
    """The merge rules `"a b"` in rank order, without the `#version` line."""
    return [m for m in merges if m and not m.lstrip().startswith("#version")]


class GraphTokenizer:
    """A `GPT2Tokenizer`'s eager tokenizing and detokenizing, as core
    TensorFlow ops (see the module docstring).

    Attributes:
        tables: `tf.Module`. The lookup tables, for `ExportArchive.track`.

    Args:
        tokenizer: `keras_hub.models.GPT2Tokenizer`. Its vocabulary and
            merges.
    """

    def __init__(self, tokenizer):
        import tensorflow as tf

        vocabulary = dict(tokenizer.vocabulary)
        merges = merge_rules(tokenizer.merges)
        self.end_token = tokenizer.end_token
        self.end_id = int(tokenizer.end_token_id)
        self.pad_id = int(tokenizer.pad_token_id)
        self.tables = tf.Module(name="gpt2_tokenizer_tables")
        self.tables.merge_ranks = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(merges, tf.string), tf.range(len(merges), dtype=tf.int32)),
            default_value=_NO_MERGE)
        self.tables.token_ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(vocabulary), tf.string),
                tf.constant(list(vocabulary.values()), tf.int32)),
            default_value=-1)
        self.byte_chars = byte_characters()
        self.token_bytes = token_bytes(vocabulary)

    def _bpe(self, words):
        """Merges the byte characters of `words` (`[n, length]`, "" after
        each word's end) by rank, one merge per word per step, the lowest
        rank first and the leftmost among equals, as `tokenizers` does."""
        import tensorflow as tf

        def step(words, _):
            left, right = words[:, :-1], words[:, 1:]
            ranks = self.tables.merge_ranks.lookup(tf.strings.join([left, right], separator=" "))
            ranks = tf.where(right != "", ranks, _NO_MERGE)
            best = tf.reduce_min(ranks, axis=1, keepdims=True)
            found = best[:, 0] < _NO_MERGE
            columns = tf.range(tf.shape(ranks)[1])[tf.newaxis]
            at = tf.reduce_min(tf.where(ranks == best, columns, _NO_MERGE), axis=1, keepdims=True)
            shifted = tf.concat([right, tf.fill([tf.shape(words)[0], 1], "")], axis=1)
            j = tf.range(tf.shape(words)[1])[tf.newaxis]
            merged = tf.where(j < at, words, tf.where(j == at, tf.strings.join([words, shifted]), shifted))
            return tf.where(found[:, tf.newaxis], merged, words), tf.reduce_any(found)

        words, _ = tf.while_loop(lambda words, more: more, step, [words, tf.constant(True)])
        return words

    def tokenize(self, prompts):
        """Token ids of `prompts` (`[batch]` strings): a `[batch, None]`
        ragged int32 tensor, `<|endoftext|>` in a prompt kept as its id."""
        import tensorflow as tf

        # Each piece between literal end tokens is one word.
        pieces = tf.strings.split(prompts, sep=self.end_token)
        flat = pieces.flat_values
        raw = tf.strings.bytes_split(flat)
        values = tf.cast(tf.reshape(tf.io.decode_raw(raw.flat_values, tf.uint8), [-1]), tf.int32)
        chars = raw.with_flat_values(tf.gather(tf.constant(self.byte_chars), values))
        words = self._bpe(chars.to_tensor(default_value=""))
        lengths = tf.reduce_sum(tf.cast(words != "", tf.int32), axis=1)
        ids = tf.RaggedTensor.from_tensor(self.tables.token_ids.lookup(words), lengths=lengths)
        # Every piece, then the end token that followed it; the last
        # piece of each prompt was followed by none.
        ends = tf.fill([tf.shape(flat)[0], 1], self.end_id)
        ids = tf.concat([ids, tf.RaggedTensor.from_tensor(ends)], axis=1)
        per_prompt = pieces.with_flat_values(ids).merge_dims(1, 2)
        return tf.RaggedTensor.from_tensor(per_prompt.to_tensor(self.pad_id),
                                           lengths=per_prompt.row_lengths() - 1)

    def detokenize(self, token_ids, keep):
        """Text of `token_ids` (`[batch, length]`) where `keep` is True."""
        import tensorflow as tf

        ids = tf.ragged.boolean_mask(token_ids, keep)
        data = tf.strings.reduce_join(tf.gather(tf.constant(self.token_bytes), ids), axis=1)
        return tf.strings.unicode_transcode(data, "UTF-8", "UTF-8", errors="replace",
                                            replacement_char=0xFFFD)


class Generator:
    """`generate` of one `GPT2CausalLM` as `tf.function`s.

    Attributes:
        tokenizer: `GraphTokenizer`. Its `tables` go into the SavedModel.
        function: `tf.function(prompts, max_length) -> {"text": ...}`.
        default: the same with `max_length` fixed.

    Args:
        model: `keras_hub.models.GPT2CausalLM`. Its backbone and tokenizer.
        max_length: int. The `max_length` of `default`.
    """

    def __init__(self, model, max_length):
        import keras_hub
        import tensorflow as tf

        tokenizer = model.preprocessor.tokenizer
        self.model = model
        self.tokenizer = GraphTokenizer(tokenizer)
        self.max_length = int(max_length)
        self.limit = int(model.backbone.max_sequence_length)
        self.start_id = int(tokenizer.start_token_id)
        self.strip_ids = sorted({int(i) for i in tokenizer.special_token_ids})
        self.sampler = keras_hub.samplers.GreedySampler()
        self.function = tf.function(
            self.generate,
            input_signature=[tf.TensorSpec([None], tf.string, name="prompts"),
                             tf.TensorSpec([], tf.int32, name="max_length")],
            autograph=False)
        self.default = tf.function(
            lambda prompts: self.function(prompts, tf.constant(self.max_length)),
            input_signature=[tf.TensorSpec([None], tf.string, name="prompts")],
            autograph=False)

    # Generating.

    def token_ids(self, prompts, max_length):
        """`(token_ids, mask)`, both `[batch, max_length]`: the start token,
        each prompt and its greedy continuation, and where that holds a
        token, up to and including the first new end token."""
        import tensorflow as tf

        from zoo.models.gpt2_textgen import decoding

        checks = [
            tf.debugging.assert_greater_equal(
                max_length, 2, message="max_length must be at least 2"),
            tf.debugging.assert_less_equal(
                max_length, self.limit,
                message=f"max_length must be at most {self.limit}, the model's max_sequence_length"),
        ]
        tokens = self.tokenizer.tokenize(prompts)
        lengths = tokens.row_lengths() + 1  # The start token.
        checks.append(tf.debugging.assert_less(
            tf.cast(lengths, tf.int32), max_length,
            message="a prompt is max_length tokens or longer (the start token included), "
                    "so nothing is left to generate"))
        with tf.control_dependencies(checks):
            batch = tf.shape(prompts)[0]
            starts = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], self.start_id))
            packed = tf.concat([starts, tokens], axis=1)
            token_ids = packed.to_tensor(self.tokenizer.pad_id, shape=tf.stack([batch, max_length]))
            padding_mask = tf.sequence_mask(tf.cast(packed.row_lengths(), tf.int32), max_length)
        decode = functools.partial(decoding._decode, self.model, sampler=self.sampler)

        def run():
            out = decoding._generate_step(
                self.model, decode, {"token_ids": token_ids, "padding_mask": padding_mask},
                stop_token_ids=(self.tokenizer.end_id,))
            return out["token_ids"], out["padding_mask"]

        def empty():
            return tf.zeros([0, max_length], tf.int32), tf.zeros([0, max_length], tf.bool)

        return tf.cond(batch > 0, run, empty)

    def text(self, token_ids, mask):
        """What `token_ids` say where `mask` holds, the special tokens left out."""
        import tensorflow as tf

        for i in self.strip_ids:
            mask = tf.logical_and(mask, token_ids != i)
        return self.tokenizer.detokenize(token_ids, mask)

    def generate(self, prompts, max_length):
        """`{"text": [batch] strings}`: each prompt and its greedy continuation."""
        return {"text": self.text(*self.token_ids(prompts, max_length))}


class RoundingTie:
    """Where the graph's greedy text parts from zoo's, and how close a call
    the token there was: the `explain` of the `generate` signatures.

    Both loops pick the largest logit. zoo's runs under XLA and the graph's
    does not, so their logits differ in the last bits (in the last of
    bfloat16's 8 bits for a `mixed_bfloat16` run), and where the two best
    tokens are that close the two can pick differently. Called with the
    fresh process's text for one prompt, this reruns the graph here (the same
    ops on the same batch) to get its token ids and checks that they spell
    that text, finds the first token where they part from zoo's, and returns
    the gap between the two tokens' logits there, as the run's preset
    computes them; None when the graph does not explain the text.
    """

    def __init__(self, lm, generator, prompts, max_length):
        self.lm, self.generator = lm, generator
        self.prompts, self.max_length = prompts, max_length
        self._ids = None

    def _both_ids(self):
        import numpy as np
        import tensorflow as tf

        if self._ids is None:
            generator, tokenizer = self.generator, self.lm.preprocessor.tokenizer

            @tf.function(autograph=False)
            def graph(prompts, max_length):
                ids, mask = generator.token_ids(prompts, max_length)
                return ids, mask, generator.text(ids, mask)

            ids, mask, text = graph(tf.constant(self.prompts), tf.constant(self.max_length))
            inputs = self.lm.preprocessor.generate_preprocess(self.prompts, sequence_length=self.max_length)
            zoo = self.lm.make_generate_function()(inputs, stop_token_ids=[tokenizer.end_token_id])
            self._ids = (np.asarray(ids), np.asarray(mask), [t.decode("utf-8") for t in text.numpy()],
                         np.asarray(zoo["token_ids"]), np.asarray(zoo["padding_mask"]),
                         np.asarray(inputs["padding_mask"]).sum(axis=1))
        return self._ids

    def __call__(self, output, index, value):
        import numpy as np

        ids, mask, text, zoo_ids, zoo_mask, prompt_lengths = self._both_ids()
        if output != "text" or text[index] != value:
            return None
        parted = np.flatnonzero(mask[index] & zoo_mask[index] & (ids[index] != zoo_ids[index]))
        # Parting inside the prompt is a tokenizer that differs, not a greedy pick.
        if not len(parted) or parted[0] < prompt_lengths[index]:
            return None
        k = int(parted[0])
        prefix = zoo_ids[index, :k][np.newaxis]
        logits = np.asarray(self.lm({"token_ids": prefix, "padding_mask": np.ones_like(prefix)}),
                            "float32")[0, -1]
        a, b = int(zoo_ids[index, k]), int(ids[index, k])
        tokenizer = self.lm.preprocessor.tokenizer
        return {"index": index, "prompt": self.prompts[index], "token": k,
                "zoo": tokenizer.id_to_token(a), "export": tokenizer.id_to_token(b),
                "logit_gap": float(abs(logits[a] - logits[b])),
                "logit_scale": float(np.max(np.abs(logits))),
                "dtype": str(self.lm.backbone.compute_dtype)}  # What the model computes in.


def zoo_greedy(preset):
    """The `GPT2CausalLM` that `zoo generate RUN --sampler greedy` runs:
    the run's preset, zoo's cached decoding, the greedy sampler."""
    from zoo.models.gpt2_textgen import generation

    lm = generation.load_preset(preset)
    lm.compile(sampler=generation.make_sampler("greedy"))
    return lm


def zoo_greedy_text(preset, prompts, max_length):
    """What `zoo generate RUN --sampler greedy --max-length N` prints for `prompts`."""
    from zoo.models.gpt2_textgen import generation

    return generation.generate_text(zoo_greedy(preset), prompts, max_length)


def signatures(model, run_dir, prompts):
    """The `generate` and `generate_max_length` signatures of `model`,
    with zoo's greedy text for `prompts` to check them against.

    Args:
        model: `keras_hub.models.GPT2CausalLM`. The run's model.
        run_dir: str. The run; its `preset` is what `zoo generate` loads.
        prompts: list of str. Real prompts (the run's sample prompts);
            the empty prompt is added, and prompts too long for
            `max_length` are left out.

    Returns:
        A list of `zoo.task.ServingSignature`, empty for a run without a
        preset (saved by an older zoo, which `zoo generate` refuses too).
    """
    import os

    from zoo.models.gpt2_textgen import generation
    from zoo.task import ServingSignature

    preset = os.path.join(run_dir, "preset")
    if not os.path.isdir(preset):
        return []
    length = min(generation.SAMPLE_MAX_LENGTH, int(model.backbone.max_sequence_length))
    generator = Generator(model, length)
    tokenizer = model.preprocessor.tokenizer
    prompts = [p for p in dict.fromkeys([*prompts, ""]) if len(tokenizer(p)) + 1 < length]
    lm = zoo_greedy(preset)
    text = generation.generate_text(lm, prompts, length)
    explain = RoundingTie(lm, generator, prompts, length)
    checked_on = (f"{len(prompts) - 1} sample prompt(s) of the run and the empty prompt, against "
                  f"`zoo generate RUN --sampler greedy --max-length {length}` (the run's preset)")
    info = {
        "max_length": length,
        "sampler": "greedy",
        "stops_at": f"{generator.tokenizer.end_token} (id {generator.tokenizer.end_id}) or max_length",
        "padding_id": generator.tokenizer.pad_id,
        "tokenizer": "in the graph, core TensorFlow ops only (no tensorflow-text)",
        "custom_ops": [],
    }
    examples = [{"prompt": p, "text": t} for p, t in zip(prompts, text)]
    tables = [generator.tokenizer.tables]
    return [
        ServingSignature("generate", generator.default, tables, {"prompts": prompts}, {"text": text},
                         checked_on, {**info, "examples": examples}, explain),
        ServingSignature("generate_max_length", generator.function, tables,
                         {"prompts": prompts, "max_length": length}, {"text": text},
                         checked_on + f", with max_length={length}",
                         {k: v for k, v in info.items() if k != "max_length"}, explain),
    ]
