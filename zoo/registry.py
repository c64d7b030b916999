"""The model registry: one dict of entries keyed by snake_case names.

Builders register with the `register` decorator, as in timm and torchvision.
Listing and describing models never imports TensorFlow: the builders import
it themselves when they run. The built-in models register when `zoo` is
imported (`zoo/__init__.py` imports `zoo.models`).
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
        task: `zoo.task.Task`. Data, compile, evaluation and export hooks
            that the shared trainer uses.
        summary: str. One line on what the model is.
        tiny: dict. Config overrides of a model that builds in well under a
            second, for tests and smoke runs.
    """

    name: str
    builder: typing.Callable
    config: type
    task: typing.Any = None
    summary: str = ""
    tiny: dict = dataclasses.field(default_factory=dict)

    def build(self, config, preset=None, **kwargs):
        """Calls the builder; `preset` only reaches builders that take one.

        Raises:
            ValueError: a preset for a model without presets.
        """
        self.check_preset(preset)
        if self.task.has_presets:
            kwargs["preset"] = preset
        return self.builder(config, **kwargs)

    def check_preset(self, preset):
        """Raises a `ValueError` for a preset given to a model without presets."""
        if preset is not None and not self.task.has_presets:
            raise ValueError(
                f"Model '{self.name}' has no presets. Received: preset={preset!r}. "
                f"Models with presets: "
                f"{', '.join(n for n in list_models() if _REGISTRY[n].task.has_presets) or 'none'}."
            )


def register(name=None, *, config, task=None, tiny=None):
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
        tiny: dict. Config overrides of a tiny model, which the tests
            parametrized over `zoo.list_models()` build. Defaults to the
            default config.

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
        clash = sorted(set(f.name for f in dataclasses.fields(config)) & set(config_lib.TRAIN_KEYWORDS))
        if clash:
            raise ValueError(
                f"Config of '{key}' has fields that `zoo.train` takes as training options: "
                f"{', '.join(clash)}. Rename them."
            )
        config_lib.apply_overrides(config, dict(tiny or {}), what=f"{key} tiny config")
        _REGISTRY[key] = Entry(key, builder, config, entry_task, summary[0] if summary else "",
                               dict(tiny or {}))
        return builder

    return decorator


def unregister(name):
    """Removes `name` from the registry (for tests and interactive use)."""
    _REGISTRY.pop(name, None)


def get_entry(name):
    """Returns the `Entry` of `name`, or raises a `KeyError` that helps."""
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
    from zoo import quiet
    from zoo import task as task_lib

    entry.check_preset(preset)
    quiet.import_tensorflow()
    model = entry.build(config, preset=preset)
    train_config = config_lib.TrainConfig.defaults_of(entry.task)
    task_lib.compile_model(entry.task, model, config, train_config)
    return model


def register_keras_classes():
    """Registers every model's own Keras classes (such as `zoo>DCGAN`)."""
    for entry in _REGISTRY.values():
        entry.task.register_keras_classes()


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
