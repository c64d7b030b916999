"""Files on disk: atomic writes, JSON, checksums and zoo's cache directory.

Every file zoo writes goes through `atomic_path`, so a reader (or a resumed
run) sees either the old file or the whole new one, never half of one. A
write that fails (a full disk, a file-size limit, a lost permission) leaves
the old file as it was and raises `WriteError`, which names the file; a
write killed half-way leaves a `.tmp-<pid>-<name>` beside the file, which
`remove_stale_temps` clears when the next run opens that directory. A JSON
file that cannot be parsed raises `CorruptFileError`, which names the file
and says what to do. Nothing here imports TensorFlow.

```python
with zoo.files.atomic_path("runs/x/model.keras") as tmp:
    model.save(tmp)
zoo.files.write_json("runs/x/metrics.json", {"test_mse": 0.1})
```
"""

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil

TMP_PREFIX = ".tmp-"
_TMP_NAME = re.compile(r"^\.tmp-(\d+)-")


class WriteError(OSError):
    """A file could not be written; the previous version is kept intact.

    Attributes:
        errno: int or None. The error number of the failed write.
    """

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


class CorruptFileError(ValueError):
    """A file zoo wrote earlier cannot be read back; the message says what to do."""


def _write_error(path, error):
    reason = error.strerror or str(error)
    hint = {
        errno.ENOSPC: "Free some disk space",
        errno.EDQUOT: "Free some disk space (the disk quota is reached)",
        errno.EFBIG: "Raise the file-size limit (`ulimit -f`) or free space",
        errno.EACCES: "Make the directory writable",
        errno.EROFS: "Write to a disk that is not read-only",
    }.get(error.errno, "Fix the cause")
    what = "kept as it was" if os.path.exists(path) else "not created"
    return WriteError(
        f"Could not write '{path}': {reason}. The file was {what} and nothing half-written "
        f"was left. {hint}, then rerun the same command: a training run resumes from its "
        "last checkpoint.", error.errno)


def _fsync(path):
    """Flushes a written file to the disk, so a full disk fails here, before the rename."""
    if os.path.isfile(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`, renamed onto it on success.

    The temporary name keeps the suffix (Keras checks `.keras` and
    `.weights.h5`), and a failure removes it, so readers only ever see a
    complete file. The file is synced to disk before the rename.

    Raises:
        WriteError: writing failed with an `OSError` (such as a full disk);
            the file at `path`, if any, is unchanged.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}-{name}")
    try:
        os.makedirs(directory, exist_ok=True)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as e:
        raise _write_error(path, e) from e
    finally:
        with contextlib.suppress(OSError):
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp)
            elif os.path.lexists(tmp):
                os.remove(tmp)


def write_json(path, obj):
    """Writes `obj` as JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=json_default)
            f.write("\n")


def read_json(path, default=None, *, what_to_do=None):
    """Reads the JSON file `path`; `default` when it does not exist.

    Args:
        path: str. The file.
        default: returned when the file does not exist. Defaults to None.
        what_to_do: str. The advice of the error for a corrupt file.
            Defaults to a generic one.

    Raises:
        CorruptFileError: the file exists but is not valid JSON (a
            truncated or overwritten file). The message names the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return default
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFileError(
            f"'{path}' is corrupt: it is not valid JSON ({e}). "
            + (what_to_do or "Restore it from a copy, or delete it and create it again.")
        ) from None


def sha256(path, chunk=1 << 20):
    """The SHA-256 hex digest of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temps(directory):
    """Removes what interrupted writes left under `directory`.

    That is every `.tmp-<pid>-*` file or folder of another process than
    this one; the caller must own `directory` (a run holds its lock), so
    no other process is writing there. Returns the removed paths, sorted.
    """
    removed = []
    if not os.path.isdir(directory):
        return removed
    for root, dirs, names in os.walk(directory):
        for name in list(dirs) + names:
            match = _TMP_NAME.match(name)
            if not match or int(match.group(1)) == os.getpid():
                continue
            path = os.path.join(root, name)
            if name in dirs:
                dirs.remove(name)  # Do not walk into it.
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)
            removed.append(path)
    return sorted(removed)


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
