"""gpt2_textgen's decoding: the same tokens as keras-hub's own generate, one trace.

A tiny randomly initialized GPT-2 (2 layers, hidden 16): its logits are
nearly uniform, so a difference in the arithmetic would show up as another
greedy token soon.
"""

import numpy as np
import pytest

from zoo.models.gpt2_textgen import decoding


def _models():
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=32, dropout=0.0)
    plain = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    fast = decoding.install(keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None))
    for model in (plain, fast):
        model.compile(sampler="greedy")
    return plain, fast


def _prompts(lengths, max_length, seed):
    """Token ids with prompts of different lengths, padded to max_length."""
    ids = np.random.default_rng(seed).integers(2, 64, (len(lengths), max_length)).astype("int32")
    mask = np.arange(max_length)[None, :] < np.array(lengths)[:, None]
    return {"token_ids": np.where(mask, ids, 0), "padding_mask": mask}


@pytest.mark.parametrize("stop_token_ids", [None, (5, 7)])
def test_same_tokens_as_keras_hub(stop_token_ids):
    plain, fast = _models()
    for seed, lengths in enumerate([(3, 6, 9), (1, 1, 1), (12, 4, 20)]):
        inputs = _prompts(lengths, 24, seed)
        expected = plain.generate(dict(inputs), stop_token_ids=stop_token_ids)
        got = fast.generate(dict(inputs), stop_token_ids=stop_token_ids)
        np.testing.assert_array_equal(got["token_ids"], expected["token_ids"])
        np.testing.assert_array_equal(got["padding_mask"], expected["padding_mask"])
        # The prompts are kept, and new tokens follow them.
        np.testing.assert_array_equal(got["token_ids"][inputs["padding_mask"]],
                                      inputs["token_ids"][inputs["padding_mask"]])


def test_new_prompts_reuse_the_trace_and_a_new_sampler_retraces():
    _, fast = _models()
    fast.generate(_prompts((4, 4), 16, 0), stop_token_ids=None)
    function = fast.generate_function
    fast.generate(_prompts((2, 7), 16, 1), stop_token_ids=None)
    assert fast.generate_function is function and function.experimental_get_tracing_count() == 1
    fast.compile(sampler="top_k")
    out = fast.generate(_prompts((4, 4), 16, 0), stop_token_ids=None)
    assert fast.generate_function is not function and out["token_ids"].shape == (2, 16)


def test_saved_preset_names_keras_hub_class(tmp_path):
    import json

    import keras_hub

    _, fast = _models()
    fast.save_to_preset(str(tmp_path / "preset"))
    task = json.loads((tmp_path / "preset" / "task.json").read_text())
    assert task["registered_name"] == "keras_hub>GPT2CausalLM"
    loaded = keras_hub.models.GPT2CausalLM.from_preset(str(tmp_path / "preset"))
    assert "make_generate_function" not in vars(loaded)


def test_eager_models_keep_keras_hub_generate():
    plain, fast = _models()
    fast.run_eagerly = True
    inputs = _prompts((3, 5), 12, 0)
    np.testing.assert_array_equal(fast.generate(dict(inputs), stop_token_ids=None)["token_ids"],
                                  plain.generate(dict(inputs), stop_token_ids=None)["token_ids"])
    assert not hasattr(fast.generate_function, "experimental_get_tracing_count")
