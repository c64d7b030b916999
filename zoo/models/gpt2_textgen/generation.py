"""Presets and text generation of `gpt2_textgen`: samplers, length checks.

`load_preset` opens a keras-hub preset (a run's `<run>/preset` or a built-in
name) with zoo's faster generate function (`decoding.py`); `make_sampler`
turns a sampler's name and settings into a keras-hub sampler with checked
values; `generate_text` checks the prompt against `max_length` first.
"""

import os

from zoo import config as config_lib
from zoo import hub

SAMPLERS = ("greedy", "top_k", "top_p", "beam")
SAMPLE_MAX_LENGTH = 64
ARCHITECTURE_FIELDS = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim",
                       "intermediate_dim", "max_sequence_length", "dropout")


def load_preset(preset):
    """Loads a `GPT2CausalLM` from a keras-hub preset name or directory,
    with zoo's faster generate function (`decoding.py`).

    A preset saved under a mixed precision policy (a run trained in
    `mixed_bfloat16`) loads under that policy, as its `model.keras` does:
    keras-hub 0.32's `from_preset` cannot load it by itself (`Invalid dtype:
    mixed_bfloat16`: its `is_float_dtype` passes the policy name to Keras
    3.15's `standardize_dtype`, which takes dtypes only), so zoo passes the
    saved policy as `dtype`.
    """
    import keras_hub

    from zoo.models.gpt2_textgen import decoding

    preset = os.fspath(preset)
    # Built-in presets are float32; reading theirs would need the network first.
    dtype = hub.backbone_config(preset, ("dtype",)).get("dtype") if hub.is_local(preset) else None
    name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    kwargs = {"dtype": name} if isinstance(name, str) and name.startswith("mixed_") else {}
    return decoding.install(hub.from_preset(keras_hub.models.GPT2CausalLM, preset, **kwargs))


def load_tokenizer(preset):
    """The `GPT2Tokenizer` of a preset."""
    import keras_hub

    return hub.from_preset(keras_hub.models.GPT2Tokenizer, os.fspath(preset))


def preset_architecture(preset):
    """Config fields of a preset's backbone, for the run's `config.json`."""
    return hub.backbone_config(preset, ARCHITECTURE_FIELDS)


def make_sampler(name, *, temperature=1.0, top_k=10, top_p=0.9, num_beams=4, seed=None):
    """A keras-hub sampler from its name and settings.

    Args:
        name: str. "greedy", "top_k", "top_p" or "beam".
        temperature: float. Softens (> 1) or sharpens (< 1) the
            distribution. Defaults to 1.0.
        top_k: int. Tokens kept by "top_k". Defaults to 10.
        top_p: float. Probability mass kept by "top_p". Defaults to 0.9.
        num_beams: int. Beams of "beam". Defaults to 4.
        seed: int. Makes "top_k" and "top_p" reproducible. Defaults to None.

    ```python
    lm.compile(sampler=make_sampler("top_p", temperature=0.8, seed=1))
    ```
    """
    import keras_hub

    if name not in SAMPLERS:
        raise ValueError(
            f"Unknown sampler '{name}'.{config_lib.did_you_mean(name, SAMPLERS)} "
            f"Accepted: {', '.join(SAMPLERS)}."
        )
    config_lib.require(
        isinstance(temperature, (int, float)) and temperature > 0, "temperature", temperature,
        "must be a positive number",
    )
    if name == "greedy":
        return keras_hub.samplers.GreedySampler()
    if name == "top_k":
        config_lib.require(isinstance(top_k, int) and top_k >= 1, "top_k", top_k, "must be a positive int")
        return keras_hub.samplers.TopKSampler(k=top_k, seed=seed, temperature=temperature)
    if name == "top_p":
        config_lib.require(
            isinstance(top_p, (int, float)) and 0 < top_p <= 1, "top_p", top_p, "must be in (0, 1]"
        )
        return keras_hub.samplers.TopPSampler(p=top_p, seed=seed, temperature=temperature)
    config_lib.require(
        isinstance(num_beams, int) and num_beams >= 1, "num_beams", num_beams, "must be a positive int"
    )
    return keras_hub.samplers.BeamSampler(num_beams=num_beams, temperature=temperature)


def generate_text(model, prompts, max_length=SAMPLE_MAX_LENGTH, sampler=None):
    """Generates from `prompts` with `model`, checking the lengths first.

    Args:
        model: `keras_hub.models.GPT2CausalLM`.
        prompts: list of str. One batch of prompts.
        max_length: int. Tokens in all, prompt included; at most the
            model's `max_sequence_length`. Defaults to 64.
        sampler: a keras-hub sampler, or None for the compiled one. A new
            sampler drops the compiled generate function (one trace).

    Returns:
        A list of str, each prompt followed by its continuation.
    """
    limit = model.backbone.max_sequence_length
    if not isinstance(max_length, int) or not 2 <= max_length <= limit:
        raise ValueError(
            f"Invalid value for `max_length`: must be an int in [2, {limit}] (the model's "
            f"max_sequence_length). Received: max_length={max_length!r}."
        )
    tokenizer = model.preprocessor.tokenizer
    for prompt in prompts:
        length = len(tokenizer(prompt)) + 1  # The start token.
        if length >= max_length:
            raise ValueError(
                f"Invalid value for `max_length`: the prompt {prompt[:40]!r} is already "
                f"{length} tokens, so nothing is left to generate. Received: max_length={max_length}."
            )
    if sampler is not None and sampler is not model.sampler:
        model.sampler = sampler
        model.generate_function = None
    outputs = model.generate(list(prompts), max_length=max_length)
    return [str(o) for o in outputs]
