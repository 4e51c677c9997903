"""Crash-safe writes: a failure while writing leaves the previous file whole."""
import os

import pytest

from bikestate.utils.io import atomic_open, atomic_write_json, atomic_write_text, atomic_write_texts


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_json({"version": 1}, str(target))
    with pytest.raises(OSError, match="disk full"):
        with atomic_open(str(target), "w") as f:
            f.write('{"version": 2, "half')
            raise OSError(28, "disk full")
    assert target.read_text() == '{"version": 1}'
    assert sorted(os.listdir(tmp_path)) == ["report.json"]


def test_atomic_files_get_normal_permissions(tmp_path):
    target = tmp_path / "out.txt"
    old = os.umask(0o022)
    try:
        atomic_write_text("hello", str(target))
    finally:
        os.umask(old)
    assert target.read_text() == "hello"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_append_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="whole files"):
        with atomic_open(str(tmp_path / "x"), "a"):
            pass


def test_atomic_write_texts_writes_all_or_leaves_the_old_set(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.csv"
    atomic_write_texts({str(first): "new a", str(second): "new b"})
    assert (first.read_text(), second.read_text()) == ("new a", "new b")
    # A file that cannot be written (its folder is missing): no file of the set is replaced.
    with pytest.raises(FileNotFoundError):
        atomic_write_texts({str(first): "newer a", str(tmp_path / "missing" / "c.txt"): "c"})
    assert (first.read_text(), second.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.csv"]
