"""orchestrator.fsutil: atomic writes keep a plain open()'s file mode and lose nothing on failure."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from orchestrator.fsutil import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    create_atomic,
    current_umask,
    format_ts,
    iso_utc,
    parse_iso,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_files_get_the_mode_of_a_plain_open(tmp_path: Path, umask_022: None) -> None:
    assert current_umask() == 0o022
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = [atomic_write_text(tmp_path / "sub" / "a.txt", "x"), atomic_write_bytes(tmp_path / "b.bin", b"x"),
               atomic_write_json(tmp_path / "c.json", {}), create_atomic(tmp_path / "d.md", "x")]
    assert {p.stat().st_mode & 0o777 for p in written} == {plain.stat().st_mode & 0o777} == {0o644}


def test_replacing_keeps_the_mode_of_the_replaced_file(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "private.json"
    path.write_text("{}")
    path.chmod(0o600)
    atomic_write_json(path, {"ü": 1}, sort_keys=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text(encoding="utf-8") == '{\n  "ü": 1\n}\n'


def test_failed_writes_leave_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("disk full")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "bad \ud800")
    with pytest.raises(FileExistsError):
        create_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_text_is_written_without_newline_translation(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "doc.md", "a\r\nb\n")
    assert path.read_bytes() == b"a\r\nb\n"


def test_timestamps_are_utc_and_round_trip() -> None:
    local = datetime(2026, 1, 7, 8, 30, 0, 250_000, tzinfo=timezone(timedelta(hours=1)))
    assert format_ts(local) == "2026-01-07T073000Z"
    assert iso_utc(local) == "2026-01-07T07:30:00.250Z"
    assert iso_utc(local, "seconds") == "2026-01-07T07:30:00Z"  # state files, documents
    assert iso_utc(local, "microseconds") == "2026-01-07T07:30:00.250000Z"  # leases
    assert parse_iso(iso_utc(local)) == local and parse_iso(iso_utc(local)).tzinfo == UTC
    with pytest.raises(ValueError, match="naive"):
        format_ts(datetime(2026, 1, 7))
