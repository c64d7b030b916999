"""Faster cached generation for keras-hub's `GPT2CausalLM`, same tokens.

keras-hub's `generate` spends most of its time moving its KV cache, not
computing: the cache is one tensor `[batch, layers, 2, max_length, heads,
head_dim]`, so every new token slices each layer's keys and values out of
it, writes one position back (a full copy), and stacks the layers together
again; its first forward pass also runs over the whole padded `max_length`
instead of the prompt. Profiled on 2 CPU cores at batch 8 (the
`gpt2_generate` benchmark's config), those copies took most of each
decoding step, and XLA (keras-hub's `jit_compile=True`) removed only part
of them.

`install(model)` replaces the model's generate function with one that
keeps each layer's keys and values as separate tensors carried through the
sampler's loop, runs the first pass over the prompt only, and compiles the
decoding loop with XLA, where writing one position of a loop-carried
tensor happens in place. The model, its weights, its samplers and its
saved presets are unchanged (`save_to_preset` still names keras-hub's
`GPT2CausalLM`); only `generate` runs faster. Its greedy tokens are the
same as keras-hub's: the layers' own projections and attention compute
each step, and the tests compare both on the same prompts.

```python
lm = zoo.get("gpt2_textgen", num_layers=2)  # Installed by the builder.
lm.generate("def main", max_length=32)
```
"""

import functools


def install(model):
    """Makes `model.generate` use the per-layer cache and XLA decoding.

    The model's class, config and presets are untouched: this sets the
    instance's `make_generate_function`, which keras-hub's `generate` calls,
    and drops an already compiled generate function. Models that are not
    keras-hub GPT-2 models, or that run eagerly or outside TensorFlow, keep
    keras-hub's own generate function.

    Args:
        model: `keras_hub.models.GPT2CausalLM`.

    Returns:
        `model`.
    """
    model.make_generate_function = functools.partial(make_generate_function, model)
    model.generate_function = None
    return model


def _supported(model):
    import keras

    backbone = getattr(model, "backbone", None)
    layers = getattr(backbone, "transformer_layers", None)
    return (
        keras.config.backend() == "tensorflow"
        and not model.run_eagerly
        and layers is not None
        and all(getattr(layer, "normalize_first", False)
                and getattr(layer, "_cross_attention_layer", None) is None for layer in layers)
    )


def make_generate_function(model):
    """The compiled generate function of `model`, built once per sampler.

    keras-hub's `compile` (a new sampler) sets `model.generate_function` to
    None, which makes the next call build a new one; calls with the same
    batch size and `max_length` reuse its trace (keras-hub#779).
    """
    if model.generate_function is not None:
        return model.generate_function
    if not _supported(model):
        return type(model).make_generate_function(model)
    import tensorflow as tf

    decode = tf.function(functools.partial(_decode, model), jit_compile=True)
    model.generate_function = tf.function(functools.partial(_generate_step, model, decode))
    return model.generate_function


def _call_with_cache(model, token_ids, cache, index):
    """`GPT2CausalLM.call_with_cache` with a tuple of per-layer `(keys,
    values)`, each `[batch, max_length, heads, head_dim]`.

    The same layers and the same attention as keras-hub's decoder layer
    (pre-layer-norm, no cross-attention), with the new keys and values
    written at `index` of each layer's own tensors.
    """
    from keras import ops
    from keras_hub.src.layers.modeling.transformer_layer_utils import compute_causal_mask

    backbone = model.backbone
    tokens = backbone.token_embedding(token_ids)
    positions = backbone.position_embedding(tokens, start_index=index)
    x = backbone.embeddings_dropout(backbone.embeddings_add((tokens, positions)))
    batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
    mask = compute_causal_mask(batch, ops.shape(cache[0][0])[1], length, index)
    new_cache = []
    for layer, (key_cache, value_cache) in zip(backbone.transformer_layers, cache):
        attention = layer._self_attention_layer
        residual = x
        h = layer._self_attention_layer_norm(x)
        query = attention._query_dense(h)
        keys = ops.slice_update(key_cache, [0, index, 0, 0], attention._key_dense(h))
        values = ops.slice_update(value_cache, [0, index, 0, 0], attention._value_dense(h))
        h, _ = attention._compute_attention(query=query, key=keys, value=values, attention_mask=mask,
                                            training=False)
        x = layer._self_attention_dropout(attention._output_dense(h)) + residual
        residual = x
        h = layer._feedforward_layer_norm(x)
        h = layer._feedforward_output_dense(layer._feedforward_intermediate_dense(h))
        x = layer._feedforward_dropout(h) + residual
        new_cache.append((keys, values))
    hidden_states = backbone.layer_norm(x)
    logits = backbone.token_embedding(hidden_states, reverse=True)
    return logits, hidden_states, tuple(new_cache)


def _decode(model, token_ids, padding_mask, cache, hidden_states, index, stop_token_ids=None,
            sampler=None):
    """The sampler's loop, one token per step from `index` on (under XLA
    in `generate`; the SavedModel's `generate` signature runs it without,
    with its own greedy `sampler`, `export_generate.py`)."""
    from keras import ops

    def next(prompt, cache, index):
        # The cache index is the index of the previous token, as in keras-hub.
        position = index - 1
        token = ops.slice(prompt, [0, position], [ops.shape(prompt)[0], 1])
        logits, hidden_states, cache = _call_with_cache(model, token, cache, position)
        # The sampler's softmax in float32 under a mixed policy too.
        logits = ops.cast(ops.squeeze(logits, axis=1), "float32")
        return logits, ops.squeeze(hidden_states, axis=1), cache

    sampler = sampler or model.sampler
    return sampler(next=next, prompt=token_ids, cache=cache, index=index, mask=padding_mask,
                         stop_token_ids=stop_token_ids, hidden_states=hidden_states, model=model)


def _generate_step(model, decode, inputs, stop_token_ids=None):
    """keras-hub's `generate_step`: the same inputs, outputs and stop rule.

    The first pass runs over the tokens before the shortest prompt's end
    (a length only known at run time, so outside XLA); the loop then feeds
    every later position in turn, the rest of longer prompts included.
    """
    from keras import ops
    from keras_hub.src.utils.tensor_utils import any_equal

    token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
    backbone = model.backbone
    batch, max_length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
    head_dim = backbone.hidden_dim // backbone.num_heads
    shape = [batch, max_length, backbone.num_heads, head_dim]
    cache = tuple((ops.zeros(shape, model.compute_dtype), ops.zeros(shape, model.compute_dtype))
                  for _ in backbone.transformer_layers)
    index = ops.min(ops.sum(ops.cast(padding_mask, "int32"), axis=-1))
    _, hidden_states, cache = _call_with_cache(model, token_ids[:, :index], cache, 0)
    # Samplers that read hidden states (contrastive) expect max_length
    # positions; those past `index` are masked until written.
    hidden_states = ops.pad(hidden_states, [[0, 0], [0, max_length - index], [0, 0]])
    token_ids = decode(token_ids, padding_mask, cache, hidden_states, index, stop_token_ids)
    if stop_token_ids is not None:
        # As keras-hub: mask everything after the first new stop token.
        end_locations = ops.cast(any_equal(token_ids, stop_token_ids, ops.logical_not(padding_mask)), "int32")
        overflow = ops.cast(ops.cumsum(end_locations, axis=-1), "int32") - end_locations
        padding_mask = ops.logical_not(ops.cast(overflow, "bool"))
    else:
        padding_mask = ops.ones_like(token_ids, dtype="bool")
    return {"token_ids": token_ids, "padding_mask": padding_mask}
