"""File input and output.

Output is crash-safe: write to a temporary file in the target folder, flush, rename. A kill at
any moment leaves either the old file or the new one, never a half-written file, because
``os.replace`` within one folder is atomic on POSIX file systems. Input errors are one
:class:`~bikestate.utils.errors.DataError` line naming the file.
"""
import contextlib
import hashlib
import json
import math
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary sibling of ``path`` for writing; on success rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    if "r" in mode or "a" in mode:
        raise ValueError(f"atomic_open writes whole files; mode {mode!r} is not supported")
    fd, tmp = _temporary_sibling(path)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _temporary_sibling(path):
    """A new hidden file beside ``path``, with the usual permissions: ``(fd, its path)``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    # mkstemp creates the file readable by its owner only; give it the usual permissions.
    os.fchmod(fd, 0o666 & ~_current_umask())
    return fd, tmp


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


def atomic_write_texts(texts):
    """Write several files, each atomically and all at the same moment: every file's
    temporary sibling is written and flushed first, then they are renamed one after the other,
    so that a kill leaves the old set or the new one, not one new file beside an old one
    (except in the microseconds between two renames).

    Args:
        texts (dict[str, str]): the content of each path.
    """
    temporaries = {}
    try:
        for path, text in texts.items():
            fd, temporaries[path] = _temporary_sibling(path)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        for path, tmp in temporaries.items():
            os.replace(tmp, path)
    except BaseException:
        for tmp in temporaries.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


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


def is_json_number(value):
    """A finite number as JSON gives it: not a boolean (Python counts ``true`` as an int), not
    a string, not NaN or Infinity (which Python's JSON reader accepts)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def file_sha256(path, chunk_size=1 << 20):
    """Hex sha256 of a file's bytes, read in chunks of ``chunk_size``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
