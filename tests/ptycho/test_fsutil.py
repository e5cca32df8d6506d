"""ptycho.fsutil: atomic writes keep a plain open()'s file mode and lose nothing on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ptycho.fsutil import atomic_path, atomic_write_json, atomic_write_text, current_umask


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_file_gets_the_mode_of_a_plain_open(tmp_path: Path, umask_022: None) -> None:
    assert current_umask() == 0o022
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = atomic_write_text(tmp_path / "sub" / "atomic.txt", "x")
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644


def test_replacing_keeps_the_mode_of_the_replaced_file(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "shared.json"
    path.write_text("{}")
    path.chmod(0o664)
    atomic_write_json(path, {"a": 1})
    assert path.stat().st_mode & 0o777 == 0o664
    assert path.read_text() == '{\n  "a": 1\n}\n'


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
