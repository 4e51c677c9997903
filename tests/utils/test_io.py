"""Crash-safe writes: a failure while writing leaves the previous file whole."""
import os

import pytest

from bikestate.utils.io import atomic_open, atomic_write_json, atomic_write_text


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
