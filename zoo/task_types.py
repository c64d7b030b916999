"""The typed values that `zoo.task.Task`'s hooks take and return.

`Data` (what `load_data` returns and every later hook is given; a task
subclasses it for state its hooks share), `Predictions` (`Task.predict`),
`ServingSignature` (`Task.saved_model_signatures`) and `Evaluation`
(`Task.evaluate_data`). Plain dataclasses: nothing here imports
TensorFlow. `zoo.task` re-exports them, so `from zoo.task import Data`
works as before.
"""

import dataclasses
import typing


@dataclasses.dataclass
class Data:
    """The datasets of a run; a task subclasses it for state its hooks share.

    Attributes:
        train: `tf.data.Dataset`. Unbatched training examples.
        validation: `tf.data.Dataset` or None. Unbatched validation examples.
        num_train: int. The number of training examples.
        name: str. The dataset's name for logs and `config.json`.
        config_updates: dict. Model config fields that follow from the
            data, such as the number of input features.
    """

    train: typing.Any
    validation: typing.Any = None
    num_train: int = 0
    name: str = ""
    config_updates: dict = dataclasses.field(default_factory=dict)

    def describe(self):
        """What `config.json` records of the data beside its name and size,
        such as a table's feature columns. Empty by default."""
        return {}


@dataclasses.dataclass
class Predictions:
    """What `Task.predict` returns: the output columns and their rows.

    The input is checked (columns, shapes) before this is returned; the
    rows are read and predicted chunk by chunk as `chunks` is iterated, so
    an input larger than memory streams through.

    Attributes:
        columns: list of str. The output columns, in order.
        predicted: list of str. Those of `columns` that the model made (the
            others are passed through from the input).
        chunks: iterator of dicts. Each maps every column to a 1-D array (or
            list) of the next rows.
        source: str. What was read, for messages.
    """

    columns: list
    predicted: list
    chunks: typing.Any
    source: str = ""


@dataclasses.dataclass
class ServingSignature:
    """A SavedModel signature beside `serving_default`, with what `zoo
    export` checks it on (`Task.saved_model_signatures`).

    Attributes:
        name: str. The signature name, such as "generate".
        function: `tf.function` with a named `input_signature`, returning
            a dict of tensors by output name.
        track: list. Resources it uses beyond the model's variables
            (lookup tables).
        inputs: dict. Input name to what `tf.constant` takes: real inputs.
        expected: dict. Output name to the values it must return, exactly.
        checked_on: str. Where `inputs` and `expected` come from.
        info: dict. More for `export.json`.
        explain: callable `(output, index, value) -> dict | None`, or
            None. For a returned value that is not the expected one: where
            it parted from it by a near tie (`logit_gap`, `logit_scale`,
            `dtype`, ...), which the check accepts within its tolerance.
    """

    name: str
    function: typing.Any
    track: list = dataclasses.field(default_factory=list)
    inputs: dict = dataclasses.field(default_factory=dict)
    expected: dict = dataclasses.field(default_factory=dict)
    checked_on: str = ""
    info: dict = dataclasses.field(default_factory=dict)
    explain: typing.Any = None


@dataclasses.dataclass
class Evaluation:
    """What `Task.evaluate_data` returns.

    Attributes:
        metrics: dict. Metric name to float, named as in the run's
            `metrics.json`, so the two compare key by key.
        data: str. The data's name.
        split: str. The rows scored: "all", or the split of the run's own
            data that its metrics were measured on (such as "test").
        num_examples: int. Examples (rows, images, tokens) scored.
    """

    metrics: dict
    data: str
    split: str = "all"
    num_examples: int = 0
