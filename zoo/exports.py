"""`zoo export RUN --format saved_model|litert|onnx`: files other runtimes load.

Each format takes the run's serving model (`Task.serving_model`: what a
user has in, what they want out) through Keras 3's `model.export`:

- `saved_model`: TensorFlow Serving's layout, `<out>/<version>/saved_model.pb`
  with a `serving_default` signature, and the task's own signatures beside
  it (`Task.saved_model_signatures`: GPT-2's text-in, text-out `generate`);
- `litert`: `<out>/model.tflite`, LiteRT built-in ops only (no Flex ops, which
  the phone runtimes do not ship), run by `ai-edge-litert`'s interpreter;
- `onnx`: `<out>/model.onnx` through `tf2onnx`, run by `onnxruntime`.

Every export is written into a temporary directory, then loaded in a fresh
Python process that does not import zoo (only NumPy and the format's own
runtime) and run on real inputs of the run (`Task.serving_examples`). Its
outputs are compared with the Keras model's, and a task's own signatures'
outputs with what zoo itself gives (exactly: GPT-2's `generate` text against
zoo's greedy generation); only when they agree is the directory renamed into
place, with `export.json` (the signatures, the runtime versions, the max abs
difference) beside the model. An export that does not reproduce the model
raises and leaves nothing behind.

```python
info = zoo.export("runs/mlp_regressor/20260101-120000", "saved_model")
info["max_abs_diff"], info["path"]
```
"""

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

from zoo import config as config_lib
from zoo import quiet
from zoo import registry
from zoo import runs
from zoo import workarounds
from zoo.files import TMP_PREFIX, read_json, write_json

FORMATS = ("saved_model", "litert", "onnx")
# An export agrees with Keras when max|export - keras| <= RTOL * max(1, max|keras|);
# for bfloat16 outputs (a mixed_bfloat16 run), two units in the last of its 8
# significant bits instead: a graph that fuses ops differently rounds 1 unit apart.
RTOL = 1e-3
RTOL_BFLOAT16 = 2 * 2.0**-7
NUM_EXAMPLES = 8
VERSION = 1
# Runs in a fresh interpreter: NumPy and the format's runtime, never zoo.
VERIFY_SCRIPT = r"""
import json, sys
import numpy as np

fmt, path, inputs_path, outputs_path = sys.argv[1:5]
inputs = dict(np.load(inputs_path))
extra = {}
if fmt == "saved_model":
    import tensorflow as tf

    # What loading and calling the SavedModel imports, beyond TensorFlow's own imports.
    before = set(sys.modules)
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    outputs = signature(**{k: tf.constant(v) for k, v in inputs.items()})
    # bfloat16 (a mixed_bfloat16 run's logits) has no NumPy dtype that np.load reads back.
    outputs = {k: (tf.cast(v, tf.float32) if v.dtype == tf.bfloat16 else v).numpy() for k, v in outputs.items()}
    # The task's own signatures (GPT-2's `generate`): JSON values in and out, strings as UTF-8.
    for name, values in json.load(open(sys.argv[5], encoding="utf-8")).items():
        fn = loaded.signatures[name]
        got = fn(**{k: tf.constant(v, fn.structured_input_signature[1][k].dtype) for k, v in values.items()})
        extra[name] = {k: [x.decode("utf-8") if isinstance(x, bytes) else x for x in v.numpy().tolist()]
                       for k, v in got.items()}
    runtime = {"tensorflow": tf.__version__,
               "imported_by_the_model": sorted(m for m in set(sys.modules) - before
                                               if m.split(".")[0] in ("keras", "keras_hub", "tensorflow_text"))}
elif fmt == "litert":
    import ai_edge_litert
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    outputs = runner(**inputs)
    runtime = {"ai_edge_litert": getattr(ai_edge_litert, "__version__", "?")}
else:
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = {n: inputs[n] for n in names} if set(names) <= set(inputs) else dict(zip(names, inputs.values()))
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    runtime = {"onnxruntime": ort.__version__}
zoo_modules = sorted(m for m in sys.modules if m.split(".")[0] in ("zoo", "keras_hub", "tensorflow_text"))
np.savez(outputs_path, **outputs)
print(json.dumps({"runtime": runtime, "zoo_modules": zoo_modules, "signatures": extra}))
"""


class ExportMismatchError(RuntimeError):
    """An export ran but did not reproduce the Keras model; nothing was kept."""


def open_run(run_dir):
    """The pieces of a finished run: its `config.json`, registry entry,
    model config and training config.

    Raises:
        FileNotFoundError: no such directory, not a run, or not finished.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"Run directory '{run_dir}' not found.")
    saved = read_json(os.path.join(run_dir, runs.CONFIG))
    if saved is None:
        raise FileNotFoundError(
            f"'{run_dir}' is not a zoo run directory: it has no config.json. "
            "Give a directory made by `zoo train` (or `zoo compress`).")
    if not runs.is_finished(run_dir) or not os.path.exists(os.path.join(run_dir, "model.keras")):
        raise FileNotFoundError(
            f"Run '{run_dir}' has not finished: it has no metrics.json and model.keras yet. "
            "Rerun its training command with the same --run-dir to finish it.")
    entry = registry.get_entry(saved["model_name"])
    model_config = registry.get_config(entry.name, **saved.get("model", {}))
    train_config = config_lib.apply_overrides(config_lib.TrainConfig, saved.get("train", {}),
                                              what="training")
    return saved, entry, model_config, train_config


def load_run_data(run_dir, entry, model_config, train_config):
    """The run's data again, loaded the way the trainer did (same seed and
    options), for evaluation and real inputs.

    Raises:
        ValueError: the run trained on in-memory arrays, which it does not keep.
    """
    data = train_config.data
    if isinstance(data, str) and data.startswith("<"):
        raise ValueError(
            f"Run '{run_dir}' was trained on in-memory arrays ({data}), which a run "
            "directory does not keep; its evaluation data cannot be loaded again.")
    return entry.task.load_data(data, model_config, dict(train_config.data_options),
                                train_config.seed, preset=train_config.preset)


def load_trained_model(run_dir):
    """The run's `model.keras`, without Keras' load-time warnings."""
    quiet.import_tensorflow()
    with warnings.catch_warnings():
        # A subclassed model's custom compile and optimizer slots: harmless here.
        warnings.simplefilter("ignore")
        return runs.load_model(os.path.join(run_dir, "model.keras"))


def check_format(format):
    if format not in FORMATS:
        raise ValueError(
            f"Unknown export format '{format}'.{config_lib.did_you_mean(str(format), FORMATS)} "
            f"Accepted: {', '.join(FORMATS)}.")


def default_out(run_dir, format):
    return os.path.join(run_dir, "export", format)


def export(run_dir, format, out=None):
    """Exports a finished run to `format`, verified in a fresh process.

    Args:
        run_dir: str. A finished run directory (of `zoo train` or
            `zoo compress`).
        format: str. "saved_model", "litert" or "onnx".
        out: str. The output directory; it must not exist. Defaults to
            `<run>/export/<format>`.

    Returns:
        The dict written to `<out>/export.json`: `path` (the model file or
        the SavedModel version directory), `signature` (of
        `serving_default`), `max_abs_diff`, `tolerance`, `runtime`, the
        inputs it was checked on, and for a SavedModel `signatures`: each of
        the task's own signatures, what it takes and gives, and its check.

    Raises:
        ValueError: an unknown format, or a model the format cannot hold.
        FileNotFoundError: no finished run at `run_dir`.
        FileExistsError: `out` exists.
        ExportMismatchError: the export does not reproduce the model.

    ```python
    zoo.export("runs/dcgan/20260101-120000", "onnx", out="exports/dcgan-onnx")
    ```
    """
    check_format(format)
    run_dir = os.fspath(run_dir)
    saved, entry, model_config, train_config = open_run(run_dir)
    out = os.fspath(out) if out else default_out(run_dir, format)
    if os.path.exists(out):
        raise FileExistsError(
            f"Output directory '{out}' already exists; an export never overwrites one. "
            "Remove it or give another --out.")
    model = load_trained_model(run_dir)
    task = entry.task
    serving = task.serving_model(model)
    load_data = functools.cache(lambda: load_run_data(run_dir, entry, model_config, train_config))
    inputs, source = task.serving_examples(model_config, load_data, NUM_EXAMPLES)
    inputs = named_inputs(serving, inputs)
    expected = _keras_outputs(serving, inputs)
    extra = (task.saved_model_signatures(model, model_config, run_dir, load_data)
             if format == "saved_model" else [])
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=parent)
    try:
        model_path = _write(serving, format, tmp, extra)
        check = verify(format, model_path, inputs, expected, signatures=extra)
        info = {
            "format": format,
            "model_name": entry.name,
            "run": os.path.abspath(run_dir),
            "path": os.path.join(os.path.abspath(out), os.path.relpath(model_path, tmp)),
            "signature": signature(serving, inputs, expected),
            "num_examples": int(len(next(iter(inputs.values())))),
            "checked_on": source,
            **check,
            "keras": _versions(),
            "compression": saved.get("compression"),
        }
        write_json(os.path.join(tmp, "export.json"), info)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return info


def named_inputs(serving, inputs):
    """Named inputs in the serving model's dtypes: a dict of arrays by input name."""
    import numpy as np

    if not isinstance(inputs, dict):
        inputs = {serving.inputs[0].name: inputs}
    dtypes = {t.name: t.dtype for t in serving.inputs}
    return {k: np.asarray(v).astype(dtypes.get(k, np.asarray(v).dtype)) for k, v in inputs.items()}


def _keras_outputs(serving, inputs):
    import numpy as np

    # A one-input model takes its array, several inputs a dict by name.
    args = inputs if len(inputs) > 1 else next(iter(inputs.values()))
    return np.asarray(serving(args, training=False))


def _write(serving, format, tmp, signatures=()):
    """Writes the export into `tmp`; returns the path a runtime loads."""
    import tensorflow as tf

    if format == "saved_model":
        path = os.path.join(tmp, str(VERSION))
        _write_saved_model(serving, path, signatures)
        return path
    if format == "litert":
        modes = sorted(quantized_modes(serving))
        if modes:
            raise ValueError(
                f"LiteRT cannot hold this model: its layers are quantized by Keras ({', '.join(modes)}), "
                "and TensorFlow's converter rejects Keras' quantized matmuls ('tfl.fully_connected' "
                "takes no int8 activations of this kind). Export the float run to LiteRT, or this "
                "run to saved_model or onnx.")
        path = os.path.join(tmp, "model.tflite")
        try:
            with _quiet_export():
                serving.export(path, format="litert", verbose=False,
                               target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})
        except Exception as e:  # The converter raises ConverterError and others.
            raise ValueError(
                f"LiteRT cannot hold this model: TensorFlow's converter (TF {tf.__version__}) "
                f"failed with LiteRT's built-in ops only (no Flex ops): {_first_error(e)}. Export "
                "this run to saved_model or onnx instead.") from None
        return path
    path = os.path.join(tmp, "model.onnx")
    _write_onnx(serving, path)
    return path


def _write_saved_model(serving, path, signatures=()):
    """The SavedModel, its `serving_default` calling the model in inference
    mode, and the task's `signatures` (`zoo.task.ServingSignature`) beside it.

    Not `model.export(format="tf_saved_model")` as it is: that endpoint calls
    the model with `training` unset, and Keras' random augmentation layers
    (`RandomTranslation` in image_classifier) default to `training=True`, so
    the export shifted every image it was given (caught by the check:
    max abs difference 0.04 in probabilities). LiteRT's path already passes
    `training=False`; this does the same.
    """
    import keras
    from keras.src.export.export_utils import get_input_signature

    workarounds.patch_saved_model_variables()  # One copy of each weight, not two (keras#23553).
    archive = keras.export.ExportArchive()
    archive.track(serving)
    archive.add_endpoint("serve", functools.partial(serving.__call__, training=False),
                         get_input_signature(serving))
    for extra in signatures:
        for resource in extra.track:
            archive.track(resource)
        archive.add_endpoint(extra.name, extra.function)
    with _quiet_export():
        archive.write_out(path, verbose=False)


def _write_onnx(serving, path):
    """ONNX through tf2onnx, from a frozen graph of the serving model.

    Not Keras' `model.export(format="onnx")`: its `tf2onnx.convert.from_function`
    turns every tensor the function captures (such as a `Normalization`
    layer's mean) into an ONNX input that callers would have to feed. Freezing
    first (`convert_variables_to_constants_v2`) leaves only the real inputs.
    """
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError:
        raise ValueError("ONNX export needs tf2onnx and onnxruntime: pip install 'zoo[export]'.") from None
    from keras.src.export.tf2onnx_lib import patch_tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    names = [t.name for t in serving.inputs]
    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in serving.inputs]

    @tf.function
    def serve(*args):
        return serving(args[0] if len(args) == 1 else dict(zip(names, args)), training=False)

    try:
        with _quiet_export():
            patch_tf2onnx()  # tf2onnx 1.17 still reads NumPy 1 names (np.object, np.bool).
            frozen = convert_variables_to_constants_v2(serve.get_concrete_function(*specs))
            inputs = [t.name for t in frozen.inputs]
            outputs = [t.name for t in frozen.outputs]
            rename = {**dict(zip(inputs, names)), **{o: f"output_{i}" for i, o in enumerate(outputs)}}
            tf2onnx.convert.from_graph_def(
                frozen.graph.as_graph_def(), input_names=inputs, output_names=outputs,
                tensors_to_rename=rename, output_path=path)
    except Exception as e:
        raise ValueError(
            f"tf2onnx {tf2onnx.__version__} could not convert this model under TF "
            f"{tf.__version__}: {_first_error(e)}") from None


@contextlib.contextmanager
def _quiet_export():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import logging

        logger = logging.getLogger("tensorflow")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def quantized_modes(model):
    """The Keras quantization modes of `model`'s layers ("int8", ...)."""
    return {layer.dtype_policy.quantization_mode
            for layer in model._flatten_layers(include_self=False, recursive=True)
            if getattr(layer.dtype_policy, "quantization_mode", None)}


def _first_error(error):
    lines = [line.strip() for line in str(error).splitlines() if "error:" in line]
    text = lines[0] if lines else (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text[:400]


def verify(format, path, inputs, expected, signatures=()):
    """Runs the export at `path` in a fresh process without zoo, on
    `inputs`, and a SavedModel's other `signatures` (`zoo.task.ServingSignature`)
    on theirs.

    Returns:
        `{"max_abs_diff", "tolerance", "runtime"}`, and `signatures` (the
        checks of `signatures`, by name) when there are any.

    Raises:
        ExportMismatchError: the process failed, imported zoo, keras-hub
            or tensorflow-text, or its outputs differ from `expected` by
            more than the tolerance, or a signature's from its own.
    """
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="zoo-verify-") as work:
        np.savez(os.path.join(work, "inputs.npz"), **inputs)
        outputs_path = os.path.join(work, "outputs.npz")
        signatures_path = os.path.join(work, "signatures.json")
        write_json(signatures_path, {s.name: s.inputs for s in signatures})
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        proc = subprocess.run(
            [sys.executable, "-c", VERIFY_SCRIPT, format, os.path.abspath(path),
             os.path.join(work, "inputs.npz"), outputs_path, signatures_path],
            cwd=work, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = [line for line in proc.stderr.strip().splitlines()
                    if not line.startswith(("I0000", "W0000", "WARNING: All log"))][-3:]
            raise ExportMismatchError(
                f"The {format} export did not load and run in a fresh process: {' | '.join(tail)}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        if report["zoo_modules"]:
            raise ExportMismatchError(
                f"The {format} check imported zoo, keras-hub or tensorflow-text: {report['zoo_modules']}.")
        outputs = dict(np.load(outputs_path))
    if len(outputs) != 1:
        raise ExportMismatchError(f"The {format} export returns {sorted(outputs)}; expected one output.")
    got = next(iter(outputs.values()))
    if got.shape != expected.shape:
        raise ExportMismatchError(
            f"The {format} export returns shape {got.shape}; the Keras model {expected.shape}.")
    diff = float(np.max(np.abs(got.astype("float64") - expected.astype("float64")))) if got.size else 0.0
    rtol = RTOL_BFLOAT16 if str(expected.dtype) == "bfloat16" else RTOL
    tolerance = rtol * max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    if not diff <= tolerance:
        raise ExportMismatchError(
            f"The {format} export does not reproduce the model: max abs difference {diff:.3g} "
            f"on {len(got)} real inputs, tolerance {tolerance:.3g}. Nothing was written.")
    check = {"max_abs_diff": diff, "tolerance": tolerance, "runtime": report["runtime"]}
    if signatures:
        check["signatures"] = {s.name: _check_signature(s, report["signatures"].get(s.name))
                               for s in signatures}
    return check


def _check_signature(extra, got):
    """The check of one of the task's signatures: exactly its expected
    outputs, or parted from them only at a rounding tie (`extra.explain`:
    the two candidates' logits within the logits' tolerance)."""
    if got is None or sorted(got) != sorted(extra.expected):
        raise ExportMismatchError(
            f"The SavedModel's `{extra.name}` signature returns {sorted(got or [])}; "
            f"expected {sorted(extra.expected)}. Nothing was written.")
    ties = []
    for key, want in extra.expected.items():
        if len(got[key]) != len(want):
            raise ExportMismatchError(
                f"The SavedModel's `{extra.name}` signature returns {len(got[key])} `{key}` values "
                f"for {len(want)} inputs. Nothing was written.")
        for i, (a, b) in enumerate(zip(got[key], want)):
            if a == b:
                continue
            tie = extra.explain(key, i, a) if extra.explain else None
            if tie is not None:
                rtol = RTOL_BFLOAT16 if tie["dtype"] == "bfloat16" else RTOL
                tie["tolerance"] = rtol * max(1.0, tie["logit_scale"])
                if tie["logit_gap"] <= tie["tolerance"]:
                    ties.append(tie)
                    continue
            at = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            why = (f" At token {tie['token']} it took {tie['export']!r} and zoo {tie['zoo']!r}, whose "
                   f"logits are {tie['logit_gap']:.3g} apart, more than the tolerance {tie['tolerance']:.3g}."
                   if tie else "")
            raise ExportMismatchError(
                f"The SavedModel's `{extra.name}` signature does not reproduce zoo: for input {i} "
                f"({next(iter(extra.inputs.values()))[i]!r}) its `{key}` is {a!r}, zoo's {b!r}; they differ "
                f"from character {at} on.{why} Checked on {extra.checked_on}. Nothing was written.")
    return {**_signature_spec(extra.function), "checked_on": extra.checked_on, "num_examples": len(want),
            "matches": True, "rounding_ties": ties, **extra.info}


def _signature_spec(function):
    """Inputs and outputs of a `tf.function`: names, dtypes and shapes."""
    def spec(t):
        return {"dtype": t.dtype.name, "shape": [None if d is None else int(d) for d in t.shape]}

    concrete = function.get_concrete_function()
    return {"inputs": {t.name: spec(t) for t in function.input_signature},
            "outputs": {k: spec(v) for k, v in concrete.structured_outputs.items()}}


def signature(serving, inputs, expected):
    """What the export takes and gives: names, dtypes and shapes (None: any)."""
    def spec(tensor):
        return {"dtype": str(tensor.dtype), "shape": [None if d is None else int(d) for d in tensor.shape]}

    return {
        "inputs": {t.name: spec(t) for t in serving.inputs} if serving.inputs else
        {k: {"dtype": str(v.dtype), "shape": [None, *v.shape[1:]]} for k, v in inputs.items()},
        "outputs": {"output_0": spec(serving.outputs[0]) if serving.outputs else
                    {"dtype": str(expected.dtype), "shape": [None, *expected.shape[1:]]}},
    }


def _versions():
    import keras
    import tensorflow as tf

    versions = {"keras": keras.__version__, "tensorflow": tf.__version__}
    with contextlib.suppress(ImportError):
        import tf2onnx

        versions["tf2onnx"] = tf2onnx.__version__
    return versions
