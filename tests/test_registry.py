"""The registry, configs and builders, parametrized over every model."""

import dataclasses
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import zoo
from conftest import ZOO, zoo_env

# Tiny configs, declared by each model with its registration
# (`zoo.register(..., tiny=...)`): a newly registered model is covered by
# every test below without a line here.
TINY = {name: zoo.registry.get_entry(name).tiny for name in zoo.list_models()}


def test_every_model_has_a_tiny_config():
    assert sorted(TINY) == zoo.list_models()
    assert all(TINY.values()), "every model declares tiny= with its registration"


@pytest.mark.parametrize("name", sorted(TINY))
def test_build_forward_save_load(name, tmp_path, tmp_cache):
    import keras

    model = zoo.get(name, **TINY[name])
    config = zoo.get_config(name, **TINY[name])
    task = zoo.registry.get_entry(name).task
    x = task.example_input(config, 3)
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == task.expected_output_shape(config, 3)
    assert model.count_params() == zoo.registry.get_entry(name).task.count_params(config)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = zoo.load_model(path)  # safe_mode stays on.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(x, training=False)), y, rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("name", sorted(TINY))
def test_info_describes_every_field(name):
    info = zoo.info(name)
    fields = {f.name for f in dataclasses.fields(zoo.registry.get_entry(name).config)}
    assert {f["name"] for f in info["fields"]} == fields
    assert all(f["doc"] for f in info["fields"]), "every config field needs a doc line"
    assert info["parameters"] > 0 and info["summary"] and info["default_data"]


def test_unknown_model_suggests_the_closest():
    with pytest.raises(KeyError, match="Did you mean 'gpt2_textgen'.*Available: dcgan, gpt2_textgen, image_classifier, mlp_regressor"):
        zoo.get("gpt2_textgne")


def test_unknown_override_lists_keys_and_closest():
    with pytest.raises(KeyError, match="Unknown mlp_regressor config key 'hidden_unit'. Did you mean 'hidden_units'.*Valid keys: input_dim"):
        zoo.get_config("mlp_regressor", hidden_unit=(3,))


def test_wrong_type_names_field_type_and_value():
    with pytest.raises(TypeError, match=r"`num_layers`: expected int. Received: num_layers='four' \(str\)"):
        zoo.get_config("gpt2_textgen", num_layers="four")
    with pytest.raises(TypeError, match=r"expected tuple\[int, \.\.\.\]"):
        zoo.get_config("mlp_regressor", hidden_units=[64, "x"])
    # Lossless conversions a user means are accepted.
    assert zoo.get_config("mlp_regressor", hidden_units=[64, 64], dropout=0).hidden_units == (64, 64)


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("mlp_regressor", dict(hidden_units=(64, -1)), "must be one or more positive layer widths"),
        ("mlp_regressor", dict(dropout=1.5), r"must be in \[0, 1\). Received: dropout=1.5"),
        ("mlp_regressor", dict(activation="rleu"), "Did you mean 'relu'"),
        ("dcgan", dict(image_height=30), "reaches only multiples of 4.*such as 28 or 32"),
        ("dcgan", dict(channels=2), "must be 1 or 3"),
        ("gpt2_textgen", dict(hidden_dim=30, num_heads=4), "must divide hidden_dim=30"),
        ("gpt2_textgen", dict(sequence_length=512), r"must be in \[2, max_sequence_length=256\]"),
    ],
)
def test_nonsensical_values_say_what_is_allowed(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        zoo.get_config(name, **overrides)


def test_duplicate_registration_is_an_error():
    @dataclasses.dataclass(frozen=True)
    class Config:
        """Attributes:
        units: int. Width.
        """

        units: int = 2

    @zoo.register("zz_test_model", config=Config)
    def builder(config):
        """A test model."""
        import keras

        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(config.units)])

    try:
        assert "zz_test_model" in zoo.list_models("zz_*")
        assert zoo.get("zz_test_model", units=4).output_shape == (None, 4)
        with pytest.raises(ValueError, match="already registered"):
            zoo.register("zz_test_model", config=Config)(builder)
    finally:
        zoo.registry.unregister("zz_test_model")


def test_list_models_wildcards():
    assert zoo.list_models("gpt*") == ["gpt2_textgen"]
    assert zoo.list_models("*_*") == ["gpt2_textgen", "image_classifier", "mlp_regressor"]
    assert zoo.list_models("nothing*") == []


def test_preset_on_a_model_without_presets():
    with pytest.raises(ValueError, match="has no presets.*gpt2_textgen"):
        zoo.get("mlp_regressor", preset="x")


def test_listing_does_not_import_tensorflow():
    code = (
        "import sys, zoo; zoo.list_models(); [zoo.info(n) for n in zoo.list_models()]; "
        "from zoo import cli; cli.main(['list']); cli.main(['info', 'dcgan']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'keras_hub')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=zoo_env(), check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_cli_list_and_info():
    out = subprocess.run([*ZOO, "list", "gpt*"], capture_output=True, text=True, env=zoo_env())
    assert out.returncode == 0 and out.stdout.startswith("gpt2_textgen  GPT-2")
    out = subprocess.run([*ZOO, "info", "dcgan"], capture_output=True, text=True, env=zoo_env())
    assert out.returncode == 0
    for text in ("Parameters (default config):", "Default data: digits", "recipes/dcgan.py"):
        assert text in out.stdout
    assert re.search(r"image_height +int = 8\n +Height of the generated images", out.stdout)


def test_cli_user_errors_have_no_traceback():
    out = subprocess.run([*ZOO, "info", "mlp_regresor"], capture_output=True, text=True, env=zoo_env())
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: Unknown model 'mlp_regresor'. Did you mean 'mlp_regressor'? "
        "Available: dcgan, gpt2_textgen, image_classifier, mlp_regressor."
    )
    out = subprocess.run(
        [*ZOO, "train", "mlp_regressor", "--set", "hidden_units=[0]", "--run-dir", "/nonexistent/x"],
        capture_output=True, text=True, env=zoo_env(),
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "must be one or more positive layer widths. Received: hidden_units=(0,)" in out.stderr


def test_parse_assignments():
    parsed = zoo.config.parse_assignments(["a=1", "b=[2, 3]", "c=gelu", "d=0.5", "e=True"])
    assert parsed == {"a": 1, "b": [2, 3], "c": "gelu", "d": 0.5, "e": True}
    with pytest.raises(ValueError, match="expected key=value. Received: 'oops'"):
        zoo.config.parse_assignments(["oops"])


def test_config_json_round_trip():
    config = zoo.get_config("mlp_regressor", hidden_units=(3, 4))
    data = json.loads(json.dumps(zoo.config.to_dict(config)))
    assert zoo.apply_overrides(type(config), data) == config
