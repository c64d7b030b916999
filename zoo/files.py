"""Files on disk: atomic writes, JSON, and zoo's cache directory.

Every file zoo writes goes through `atomic_path`, so a reader (or a resumed
run) sees either the old file or the whole new one, never half of one.
Nothing here imports TensorFlow.

```python
with zoo.files.atomic_path("runs/x/model.keras") as tmp:
    model.save(tmp)
zoo.files.write_json("runs/x/metrics.json", {"test_mse": 0.1})
```
"""

import contextlib
import json
import os
import shutil

TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`, renamed onto it on success.

    The temporary name keeps the suffix (Keras checks `.keras` and
    `.weights.h5`), and a failure removes it, so readers only ever see a
    complete file.
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}-{name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            if os.path.isdir(tmp):
                shutil.rmtree(tmp)
            else:
                os.remove(tmp)


def write_json(path, obj):
    """Writes `obj` as JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=json_default)
            f.write("\n")


def read_json(path, default=None):
    """Reads the JSON file `path`; `default` when it does not exist."""
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def json_default(obj):
    """JSON for NumPy scalars and tuples; `str` for anything else."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)


def cache_dir(*parts):
    """zoo's cache of derived files: `$ZOO_CACHE_DIR` or `~/.cache/zoo`.

    Args:
        *parts: str. Sub-folders under the cache root, such as
            `"tokenizers"`.
    """
    root = os.environ.get("ZOO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "zoo")
    return os.path.join(root, *parts)
