"""The model registry: one dict of entries keyed by snake_case names.

Builders register with the `register` decorator, as in timm and torchvision.
Listing and describing models never imports TensorFlow: the builders import
it themselves when they run.
"""

import dataclasses
import fnmatch
import typing

from zoo import config as config_lib

_REGISTRY = {}


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered model.

    Attributes:
        name: str. The registry name, such as `"gpt2_textgen"`.
        builder: callable. `builder(config, preset=None) -> keras.Model`.
        config: type. The frozen config dataclass of the model.
        task: `zoo.task.Task` or None. Data, compile, evaluation and export
            hooks that the shared trainer uses.
        summary: str. One line on what the model is.
    """

    name: str
    builder: typing.Callable
    config: type
    task: typing.Any = None
    summary: str = ""


def register(name=None, *, config, task=None):
    """Registers a model builder under `name`.

    The builder takes the model's config dataclass (and `preset=` where the
    model has presets) and returns a `keras.Model`. Third-party code
    registers its own models the same way.

    Args:
        name: str. The registry name. Defaults to the builder's `__name__`.
        config: type. A frozen dataclass whose defaults build the default
            model.
        task: `zoo.task.Task`. The hooks `zoo.train` uses. Defaults to a
            plain `Task`, which needs `data=` to be given arrays.

    Example:

    ```python
    @zoo.register(config=MyConfig)
    def my_model(config):
        return keras.Sequential([keras.layers.Dense(config.units)])
    ```
    """
    if not (dataclasses.is_dataclass(config) and isinstance(config, type)):
        raise TypeError(
            f"`config` must be a dataclass type. Received: config={config!r}."
        )

    def decorator(builder):
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(
                f"A model named '{key}' is already registered (by "
                f"{_REGISTRY[key].builder.__module__}). Names must be unique."
            )
        if task is None:
            from zoo.task import Task

            entry_task = Task()
        else:
            entry_task = task
        summary = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = Entry(key, builder, config, entry_task, summary[0] if summary else "")
        return builder

    return decorator


def unregister(name):
    """Removes `name` from the registry (for tests and interactive use)."""
    _REGISTRY.pop(name, None)


def _load_builtins():
    import zoo.models  # noqa: F401  Registers the built-in models.


def get_entry(name):
    """Returns the `Entry` of `name`, or raises a `KeyError` that helps."""
    _load_builtins()
    if name not in _REGISTRY:
        available = sorted(_REGISTRY)
        raise KeyError(
            f"Unknown model '{name}'.{config_lib.did_you_mean(name, available)} "
            f"Available: {', '.join(available)}."
        )
    return _REGISTRY[name]


def list_models(pattern=None):
    """Returns the sorted names of registered models.

    Args:
        pattern: str. A shell-style wildcard (`"gpt*"`). Defaults to all.
    """
    _load_builtins()
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def get_config(name, **overrides):
    """Returns the config of model `name` with `overrides` applied.

    Raises `KeyError` for an unknown model or field, `TypeError` for a value
    of the wrong type and `ValueError` for a value out of range.

    ```python
    config = zoo.get_config("mlp_regressor", hidden_units=(64, 64))
    ```
    """
    entry = get_entry(name)
    return config_lib.apply_overrides(entry.config, overrides, what=f"{name} config")


def get(name, *, preset=None, **overrides):
    """Builds model `name`, compiled and ready to train.

    Args:
        name: str. A registered model name, see `zoo.list_models()`.
        preset: str. For models with presets (`gpt2_textgen`): a keras-hub
            preset name or a local preset directory. Defaults to None, a
            fresh model from the config.
        **overrides: config fields to change, such as `num_layers=4`.

    Returns:
        A compiled `keras.Model`.

    ```python
    model = zoo.get("gpt2_textgen", num_layers=2)
    model.summary()
    ```
    """
    entry = get_entry(name)
    config = get_config(name, **overrides)
    if preset is not None and not entry.task.has_presets:
        raise ValueError(
            f"Model '{name}' has no presets. Received: preset={preset!r}. "
            f"Models with presets: "
            f"{', '.join(n for n in list_models() if _REGISTRY[n].task.has_presets)}."
        )
    from zoo import quiet

    quiet.import_tensorflow()
    model = entry.builder(config, preset=preset) if entry.task.has_presets else entry.builder(config)
    entry.task.compile(model, config)
    if getattr(model, "optimizer", None) is not None and not model.optimizer.built:
        # A built optimizer saves its slots with the model, so a `.keras`
        # file of a fresh model reloads without optimizer-mismatch warnings.
        model.optimizer.build(model.trainable_variables)
    return model


def info(name):
    """Describes model `name` without importing TensorFlow.

    Returns:
        A dict with the name, summary, description, config fields (type,
        default, doc), default dataset, accepted data, recipe and parameter
        count of the default config.
    """
    entry = get_entry(name)
    docs = config_lib.field_docs(entry.config)
    hints = typing.get_type_hints(entry.config)
    default = entry.config()
    fields = [
        {
            "name": f.name,
            "type": config_lib.type_name(hints[f.name]),
            "default": getattr(default, f.name),
            "doc": docs.get(f.name, ""),
        }
        for f in dataclasses.fields(entry.config)
    ]
    description = (entry.builder.__doc__ or "").strip()
    return {
        "name": name,
        "summary": entry.summary,
        "description": description,
        "fields": fields,
        "default_data": entry.task.default_data,
        "data": entry.task.data_help,
        "recipe": f"recipes/{name}.py",
        "train_defaults": dict(entry.task.train_defaults),
        "parameters": entry.task.count_params(default),
        "presets": entry.task.has_presets,
    }
