"""keras-hub presets for any keras-hub class, with clear offline errors.

A preset is a keras-hub name (such as `gpt2_base_en`, fetched from Kaggle)
or a local directory written by `save_to_preset(DIR)`. zoo machines are
often offline: a built-in name that cannot be fetched fails at once with a
message that says how to get a local copy, instead of keras-hub's long
retries. Local directories always work offline.

```python
lm = zoo.hub.from_preset(keras_hub.models.GPT2CausalLM, "runs/gpt2_textgen/x/preset")
```
"""

import glob
import json
import os


def kaggle_reachable(timeout=3.0):
    """Whether Kaggle, where built-in presets come from, answers at all.

    keras-hub retries a failed download for a while; this fails fast.
    """
    import socket

    try:
        socket.create_connection(("api.kaggle.com", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def builtin_cached(preset):
    """Whether kagglehub's cache already holds the built-in `preset`."""
    root = os.environ.get("KAGGLEHUB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kagglehub")
    return bool(glob.glob(os.path.join(glob.escape(root), "models", "keras", "*", "keras", preset, "*")))


def is_local(preset):
    """Whether `preset` names a local directory rather than a built-in name."""
    preset = os.fspath(preset)
    return os.path.isdir(preset) or os.path.sep in preset or preset.startswith(".")


def check_local(preset):
    """Raises a `FileNotFoundError` unless `preset` is a preset directory."""
    preset = os.fspath(preset)
    if not os.path.isdir(preset):
        raise FileNotFoundError(
            f"Preset directory '{preset}' not found. `preset` takes a local preset "
            "directory (as saved by `save_to_preset`, or <run>/preset) or a keras-hub "
            "preset name."
        )
    if not os.path.exists(os.path.join(preset, "config.json")):
        raise FileNotFoundError(
            f"'{preset}' is not a keras-hub preset directory: it has no config.json. "
            "Runs save theirs in <run>/preset."
        )
    check_files(preset)


def check_files(preset):
    """Raises a `ValueError` naming the first unreadable file of a preset.

    Every JSON file must parse and every `.h5` weights file must open as
    HDF5 (a truncated one does not), before anything uses the preset.
    """
    what_to_do = ("Save the preset again (`save_to_preset`, or rerun the run that wrote it), "
                  "or use another preset.")
    for root, dirs, names in os.walk(preset):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            if name.endswith(".json"):
                try:
                    with open(path, encoding="utf-8") as f:
                        json.load(f)
                except (OSError, ValueError) as e:
                    raise ValueError(f"Preset file '{path}' is corrupt: it is not valid JSON "
                                     f"({e}). {what_to_do}") from None
            elif name.endswith(".h5"):
                import h5py

                try:
                    with h5py.File(path, "r"):
                        pass
                except (OSError, ValueError) as e:
                    reason = str(e).split(" (", 1)[0]
                    raise ValueError(f"Preset file '{path}' is corrupt: it does not open as "
                                     f"an HDF5 weights file ({reason}; {os.path.getsize(path)} "
                                     f"bytes, truncated?). {what_to_do}") from None


def from_preset(cls, preset, **kwargs):
    """`cls.from_preset(preset)` with clear errors for a bad or offline name.

    Args:
        cls: a keras-hub class with `from_preset`, such as
            `keras_hub.models.GPT2CausalLM` or `GPT2Tokenizer`.
        preset: str. A local preset directory or a built-in preset name.
        **kwargs: passed to `cls.from_preset`.

    Raises:
        FileNotFoundError: a local path that is not a preset directory.
        ValueError: an unknown built-in name (with the closest match).
        ConnectionError: a built-in name that cannot be fetched offline.
    """
    from zoo import config as config_lib

    preset = os.fspath(preset)
    if is_local(preset):
        check_local(preset)
        return cls.from_preset(preset, **kwargs)
    builtin = sorted(getattr(cls, "presets", {}) or {})
    if preset not in builtin:
        raise ValueError(
            f"Unknown preset '{preset}'.{config_lib.did_you_mean(preset, builtin)} Built-in "
            f"presets of {cls.__name__}: {', '.join(builtin) or 'none'}; or give a local "
            "preset directory."
        )
    offline = (
        f"Could not download keras-hub preset '{preset}': built-in presets come from "
        "Kaggle and need the network, which this machine cannot reach. Download it once "
        "where there is network and save it with "
        f"`keras_hub.models.{cls.__name__}.from_preset('{preset}').save_to_preset(DIR)`, "
        "then pass that DIR as the preset."
    )
    if not builtin_cached(preset) and not kaggle_reachable():
        raise ConnectionError(offline)
    try:
        return cls.from_preset(preset, **kwargs)
    except Exception as e:  # keras-hub raises many kinds on a failed download.
        raise ConnectionError(f"{offline} ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def backbone_config(preset, fields):
    """The `fields` of a preset's backbone config, as a dict.

    Reads `config.json` of a local preset directory (keras-hub's layout);
    for a built-in name, through keras-hub.
    """
    preset = os.fspath(preset)
    if is_local(preset):
        check_local(preset)
        with open(os.path.join(preset, "config.json")) as f:
            config = json.load(f).get("config", {})
    else:
        from keras_hub.src.utils.preset_utils import load_json

        config = load_json(preset, "config.json").get("config", {})
    return {k: config[k] for k in fields if k in config}
