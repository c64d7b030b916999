"""`gpt2_textgen` behind `zoo serve`: batched, streamed generation.

The run's keras-hub preset is loaded once (`generation.load_preset`). The
greedy, top-k and top-p samplers run in zoo's own decoding loop, built for
serving:

- Every row of a batch carries its own sampler settings (kind,
  temperature, top_k, top_p) and its own seed, as tensors, so requests with
  different settings share one batch and one compiled function, and a
  seeded request gets the same text alone or batched with others: its
  random draws depend only on its seed, its prompt's index and the
  position (a counter-based hash, no shared random state).
- The loop is Python around one XLA-compiled step (sample a token, then
  run the model on it with zoo's per-layer KV cache,
  `gpt2_textgen.decoding`), so each step's tokens can be streamed as they
  are decoded. The step is compiled once per *bucket*: the batch padded to
  a power of four (1, 4, 16, ..., at most `--max-batch-size`: padding rows
  cost little next to a step's fixed cost on a CPU, and each bucket is one
  more XLA compilation) and the cache length to a power of two of at least 16 (at most the model's
  `max_sequence_length`); `traces` counts the compilations. The prompt pass
  before the loop runs over the shortest prompt, as keras-hub's does.

`beam` search needs the whole batch of beams to the end, so it is not
streamed: it runs through `generation.generate_text` (keras-hub's
`generate` with zoo's decoding), batched with requests of the same
settings.
"""

import codecs
import collections
import dataclasses
import os

from zoo.serve import validation as v
from zoo.serve.servable import Call, Servable, seed_field
from zoo.serve.validation import RequestError

SAMPLERS = ("greedy", "top_k", "top_p", "beam")
MODES = {"greedy": 0, "top_k": 1, "top_p": 2}
MIN_LENGTH_BUCKET = 16
MAX_BEAMS = 16


@dataclasses.dataclass
class Prompt:
    """One prompt of a request, checked and tokenized.

    Attributes:
        text: str. The prompt.
        ids: list of int. Its tokens after the start token.
        max_length: int. Tokens in all, prompt included.
        mode: int. 0 greedy, 1 top-k, 2 top-p (`MODES`).
        temperature, top_k, top_p: the sampler's settings.
        seed: int. The row's seed.
    """

    text: str
    ids: list
    max_length: int
    mode: int
    temperature: float
    top_k: int
    top_p: float
    seed: int


def bucket(n, low=1, high=None, base=2):
    """The smallest power of `base` >= n (and >= low), capped at `high`."""
    size = max(1, low)
    while size < n:
        size *= base
    return min(size, high) if high else size


def token_bytes(tokenizer):
    """The bytes each token id spells; b"" for the special tokens."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    byte_list, chars = bytes_to_unicode()
    decoder = dict(zip(chars, byte_list))
    special = {tokenizer.start_token_id, tokenizer.end_token_id, tokenizer.pad_token_id}
    pieces = []
    for index, token in enumerate(tokenizer.get_vocabulary()):
        if index in special:
            pieces.append(b"")
        else:
            pieces.append(b"".join(decoder.get(ch, ch.encode("utf-8")) for ch in token))
    return pieces


def _uniform(tf, seeds, index, width):
    """Uniform (0, 1) noise `[batch, width]` from a hash of (seed, index, column)."""
    mask = tf.constant(0xFFFFFFFF, tf.int64)

    def mix(x):
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
        x = tf.bitwise.bitwise_and(x * 0x85EBCA6B, mask)
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 13))
        x = tf.bitwise.bitwise_and(x * 0xC2B2AE35, mask)
        return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))

    row = mix(tf.bitwise.bitwise_and(
        tf.cast(seeds, tf.int64) * 0x9E3779B1 + tf.cast(index, tf.int64) * 0x7FEB352D, mask))
    columns = tf.range(width, dtype=tf.int64) * 0x846CA68B
    bits = mix(tf.bitwise.bitwise_and(row[:, None] + columns[None, :], mask))
    return tf.cast((tf.cast(bits, tf.float64) + 0.5) / 2.0**32, tf.float32)


def sample(tf, logits, index, mode, temperature, top_k, top_p, seeds):
    """One token per row: greedy, or top-k then top-p with temperature.

    The same rules as keras-hub's `TopKSampler` and `TopPSampler` (top-p
    keeps the smallest set of tokens whose probability reaches `top_p`),
    drawn with the Gumbel-max trick from per-row hashed noise.
    """
    logits = tf.cast(logits, tf.float32)
    width = logits.shape[-1]
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    scaled = logits / temperature[:, None]
    ranks = tf.range(width)[None, :]
    kept = ranks < tf.clip_by_value(top_k, 1, width)[:, None]
    ordered = tf.where(kept, tf.sort(scaled, axis=-1, direction="DESCENDING"), -float("inf"))
    before = tf.cumsum(tf.nn.softmax(ordered, axis=-1), axis=-1, exclusive=True)
    keep = kept & (before < top_p[:, None])
    cutoff = tf.reduce_min(tf.where(keep, ordered, float("inf")), axis=-1)
    masked = tf.where(scaled >= cutoff[:, None], scaled, -float("inf"))
    gumbel = -tf.math.log(-tf.math.log(_uniform(tf, seeds, index, width)))
    sampled = tf.argmax(masked + gumbel, axis=-1, output_type=tf.int32)
    return tf.where(mode == 0, greedy, sampled)


class TextGenerator(Servable):
    """`gpt2_textgen`: `generate` text, whole or streamed."""

    verbs = ("generate",)
    heavy_checks = True
    FIELDS = ("prompt", "prompts", "max_length", "sampler", "temperature", "top_k", "top_p",
              "num_beams", "seed", "stream")

    def load(self):
        from zoo.models.gpt2_textgen import generation

        self.lm = self.model = generation.load_preset(os.path.join(self.run_dir, "preset"))
        backbone = self.lm.backbone
        self.tokenizer = self.lm.preprocessor.tokenizer
        self.max_sequence_length = backbone.max_sequence_length
        self.cap = min(self.limits.max_length, self.max_sequence_length)
        self.vocabulary_size = backbone.vocabulary_size
        self.start_id, self.end_id = self.tokenizer.start_token_id, self.tokenizer.end_token_id
        self.pieces = token_bytes(self.tokenizer)
        self.traces = collections.Counter()
        self._steps, self._prefills, self._beam_samplers = {}, {}, {}

    def warm_up(self):
        length = min(self.cap, MIN_LENGTH_BUCKET)
        prompt = Prompt("", [], length, 0, 1.0, 1, 1.0, 0)
        self.run_batch(("sample", bucket(length, MIN_LENGTH_BUCKET, self.max_sequence_length)), [prompt], [None])

    def signature(self):
        return ({"prompt": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}, "name": "prompt"}},
                {"text": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}, "name": "text"}})

    def describe(self):
        return {
            "max_sequence_length": self.max_sequence_length, "max_length_cap": self.cap,
            "vocabulary_size": self.vocabulary_size, "samplers": list(SAMPLERS),
            "compiled": sorted(f"{kind} batch={b} length={n}: {count} trace(s)"
                               for (kind, b, n), count in self.traces.items()),
        }

    # Requests

    def request(self, verb, body):
        v.check_fields(body, self.FIELDS)
        if ("prompt" in body) == ("prompts" in body):
            raise RequestError(400, "A generate request takes exactly one of `prompt` (a string) or `prompts` "
                                    f"(a list of strings). Received: {', '.join(body) or 'neither'}.")
        if "prompt" in body:
            prompts = [v.string(body["prompt"], "prompt")]
            fields = ["prompt"]
        else:
            prompts = [v.string(p, f"prompts[{i}]") for i, p in enumerate(v.batch_list(body["prompts"], "prompts",
                                                                                          self.limits))]
            fields = [f"prompts[{i}]" for i in range(len(prompts))]
        cap_name = (f"max_length={self.cap}, the smaller of `zoo serve --max-length` ({self.limits.max_length}) "
                    f"and the model's max_sequence_length ({self.max_sequence_length})")
        max_length = v.integer(body.get("max_length", min(64, self.cap)), "max_length", 2, self.cap, cap=cap_name)
        sampler = v.choice(body.get("sampler", "top_p"), "sampler", SAMPLERS)
        temperature = v.real(body.get("temperature", 1.0), "temperature", 0.0, 100.0, low_open=True)
        top_k = v.integer(body.get("top_k", 10), "top_k", 1, self.vocabulary_size)
        top_p = v.real(body.get("top_p", 0.9), "top_p", 0.0, 1.0, low_open=True)
        num_beams = v.integer(body.get("num_beams", 4), "num_beams", 1, MAX_BEAMS)
        seed = seed_field(body)
        stream = v.boolean(body.get("stream", False), "stream")
        if stream and sampler == "beam":
            raise RequestError(400, "Invalid value for `stream`: beam search cannot stream, since its best "
                                    "sequence is known only at the end. Use greedy, top_k or top_p, or stream=false.")
        ids = [self.tokenize(p) for p in prompts]
        for field, prompt, tokens in zip(fields, prompts, ids):
            if len(tokens) + 1 >= max_length:
                raise RequestError(
                    400, f"Invalid value for `max_length`: the prompt `{field}` ({prompt[:40]!r}) is already "
                         f"{len(tokens) + 1} tokens with the start token, so nothing is left to generate. "
                         f"Received: max_length={max_length}.")
        mode = MODES.get(sampler, 0)
        items = [Prompt(p, t, max_length, mode, temperature,
                        top_k if sampler == "top_k" else self.vocabulary_size,
                        top_p if sampler == "top_p" else 1.0, (seed * 65_537 + i) % 2**31)
                 for i, (p, t) in enumerate(zip(prompts, ids))]
        if sampler == "beam":
            key = ("beam", num_beams, temperature, max_length)
        else:
            key = ("sample", bucket(max_length, MIN_LENGTH_BUCKET, self.max_sequence_length))
        return Call(key, items, lambda results: {"predictions": results, "seed": seed}, stream=stream)

    def tokenize(self, text):
        """The token ids of `text` (no start token), as Python ints."""
        ids = self.tokenizer(text)
        return [int(i) for i in (ids.numpy() if hasattr(ids, "numpy") else ids)]

    # The model

    def run_batch(self, key, items, sinks):
        results = []
        step = self.limits.max_batch_size
        for start in range(0, len(items), step):
            chunk, chunk_sinks = items[start:start + step], sinks[start:start + step]
            if key[0] == "beam":
                results += self._beam(key, chunk)
            else:
                results += self._sample(key[1], chunk, chunk_sinks)
        return results

    def _functions(self, rows, length):
        """The prompt pass and the compiled step of one bucket."""
        import tensorflow as tf

        from zoo.models.gpt2_textgen import decoding

        key = (rows, length)
        if key not in self._steps:
            lm, backbone = self.lm, self.lm.backbone
            shape = [rows, length, backbone.num_heads, backbone.hidden_dim // backbone.num_heads]

            def prefill(token_ids):
                self.traces[("prefill", rows, length)] += 1
                cache = tuple((tf.zeros(shape, lm.compute_dtype), tf.zeros(shape, lm.compute_dtype))
                              for _ in backbone.transformer_layers)
                logits, _, cache = decoding._call_with_cache(lm, token_ids, cache, 0)
                return cache, logits[:, -1, :]

            def step(cache, logits, index, forced, is_forced, mode, temperature, top_k, top_p, seeds):
                self.traces[("step", rows, length)] += 1

                def body(index, cache, logits, _):
                    token = sample(tf, logits, index, mode, temperature, top_k, top_p, seeds)
                    token = tf.where(is_forced, forced, token)
                    logits, _, cache = decoding._call_with_cache(lm, token[:, None], cache, index)
                    return index + 1, cache, logits[:, 0, :], token

                # A loop of one step: XLA would otherwise take `index` (a cache
                # position, used in slices) as a compile-time constant and
                # compile the step again for every position.
                _, cache, logits, token = tf.while_loop(
                    lambda *_: True, body, (index, cache, logits, tf.zeros([rows], tf.int32)),
                    maximum_iterations=1)
                return token, cache, logits

            self._prefills[key] = tf.function(prefill, input_signature=[tf.TensorSpec([rows, None], tf.int32)])
            self._steps[key] = tf.function(step, jit_compile=True)
        return self._prefills[key], self._steps[key]

    def _sample(self, length, prompts, sinks):
        import numpy as np

        rows = bucket(len(prompts), 1, max(self.limits.max_batch_size, len(prompts)), base=4)
        pad = Prompt("", [], 2, 0, 1.0, 1, 1.0, 0)
        batch = list(prompts) + [pad] * (rows - len(prompts))
        prefill, step = self._functions(rows, length)
        tokens = [[self.start_id] + p.ids for p in batch]
        shortest = min(len(t) for t in tokens)
        settings = dict(
            mode=np.array([p.mode for p in batch], np.int32),
            temperature=np.array([p.temperature for p in batch], np.float32),
            top_k=np.array([p.top_k for p in batch], np.int32),
            top_p=np.array([p.top_p for p in batch], np.float32),
            seeds=np.array([p.seed for p in batch], np.int32),
        )
        cache, logits = prefill(np.array([t[:shortest] for t in tokens], np.int32))
        generated = [[] for _ in prompts]
        decoders = [codecs.getincrementaldecoder("utf-8")("replace") for _ in prompts]
        texts = [[] for _ in prompts]
        done = [False] * len(prompts)
        stops = ["max_length"] * len(prompts)
        end = max(p.max_length for p in prompts)
        for index in range(shortest, end):
            forced = np.array([t[index] if index < len(t) else 0 for t in tokens], np.int32)
            is_forced = np.array([index < len(t) for t in tokens])
            token, cache, logits = step(cache, logits, np.int32(index), forced, is_forced, **settings)
            token = token.numpy()
            for r, prompt in enumerate(prompts):
                if done[r] or is_forced[r]:
                    continue
                new = int(token[r])
                if new == self.end_id:
                    done[r], stops[r] = True, "end_token"
                    continue
                generated[r].append(new)
                delta = decoders[r].decode(self.pieces[new])
                texts[r].append(delta)
                if sinks[r] is not None:
                    sinks[r]({"token": new, "text": delta})
                if index + 1 >= prompt.max_length:
                    done[r] = True
            if all(done):
                break
        results = []
        for r, prompt in enumerate(prompts):
            tail = decoders[r].decode(b"", final=True)
            if tail and sinks[r] is not None:
                sinks[r]({"token": None, "text": tail})
            completion = "".join(texts[r]) + tail
            results.append({"prompt": prompt.text, "completion": completion, "text": prompt.text + completion,
                            "tokens": len(generated[r]), "stop": stops[r]})
        return results

    def _beam(self, key, prompts):
        import keras_hub

        from zoo.models.gpt2_textgen import generation

        _, num_beams, temperature, max_length = key
        sampler_key = (num_beams, temperature)
        if sampler_key not in self._beam_samplers:
            self._beam_samplers[sampler_key] = keras_hub.samplers.BeamSampler(num_beams=num_beams,
                                                                               temperature=temperature)
        texts = [p.text for p in prompts]
        rows = bucket(len(texts))
        outputs = generation.generate_text(self.lm, texts + [""] * (rows - len(texts)), max_length,
                                           sampler=self._beam_samplers[sampler_key])
        results = []
        for prompt, output in zip(prompts, outputs):
            completion = output[len(prompt.text):] if output.startswith(prompt.text) else output
            count = len(self.tokenize(output)) - len(prompt.ids)
            results.append({"prompt": prompt.text, "completion": completion, "text": prompt.text + completion,
                            "tokens": int(count), "stop": "end_token" if count + len(prompt.ids) + 1 < max_length
                            else "max_length"})
        return results
