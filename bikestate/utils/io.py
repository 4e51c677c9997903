"""File input and output.

Output is crash-safe: write to a temporary file in the target folder, flush, rename. A kill at
any moment leaves either the old file or the new one, never a half-written file, because
``os.replace`` within one folder is atomic on POSIX file systems. Input errors are one
:class:`~bikestate.utils.errors.DataError` line naming the file.
"""
import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary sibling of ``path`` for writing; on success rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    if "r" in mode or "a" in mode:
        raise ValueError(f"atomic_open writes whole files; mode {mode!r} is not supported")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        # mkstemp creates the file readable by its owner only; give it the usual permissions.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(obj, path, **json_kwargs):
    """Write ``obj`` as JSON to ``path`` atomically."""
    json_kwargs.setdefault("indent", None)
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, **json_kwargs)


def atomic_write_text(text, path):
    """Write a string to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_bytes(data, path):
    """Write bytes to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def read_json(path, what="annotation file"):
    """Parse a JSON file; errors become one :class:`DataError` line naming the file (with line
    and column for a syntax error)."""
    # Imported here: the writers above must load without the package (benchmarks/make_results.py
    # reads this file by path so as not to import torch and detectron2).
    from .errors import DataError

    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") \
            from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read {what}: {e}") from None
