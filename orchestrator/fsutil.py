"""File writes and the clock for the whole harness (the one atomic-write helper of this package).

Atomic writes go to a temp file in the target's directory, are fsynced and renamed over the
target only when complete: a reader sees the old or the new content, never a partial file, and
a failed write leaves the old file as it was. The written file gets the mode a plain
``open(path, "w")`` would give a new file (``0o666 & ~umask``), or keeps the mode of the file
it replaces, so ``mkstemp``'s private 0600 never reaches what colleagues read.

Timestamps: the harness's UTC clock (``utc_now``) and its three spellings — ``format_ts``
for directory/file names, ``iso_utc`` for records, ``utc_now_iso`` for state files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "create_atomic",
    "current_umask", "format_ts", "iso_utc", "parse_iso", "utc_now", "utc_now_iso",
]


# --------------------------------------------------------------------------- atomic writes


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: the classic set-and-restore probe
    os.umask(mask)
    return mask


def _final_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def _write_temp(target: Path, data: bytes) -> Path:
    """``data`` in a fsynced temp file beside ``target`` that already has the final mode."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _final_mode(target))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for a writer that needs a file name.

    On normal exit the temp file gets the final mode and replaces ``path``; on an exception it
    is removed and ``path`` is untouched. Parent directories are created.
    """
    target = Path(path)
    tmp = _write_temp(target, b"")
    try:
        yield tmp
        os.chmod(tmp, _final_mode(target))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); returns the path."""
    target = Path(path)
    tmp = _write_temp(target, data)
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` atomically, with no newline translation; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, sort_keys: bool = False) -> Path:
    """Write ``obj`` as indented JSON (UTF-8, non-ASCII kept) plus a newline, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n")


def create_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Like :func:`atomic_write_text`, but FileExistsError instead of replacing an existing file
    (the complete temp file is hard-linked into place)."""
    target = Path(path)
    tmp = _write_temp(target, text.encode("utf-8"))
    try:
        os.link(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


# --------------------------------------------------------------------------- UTC clock


def utc_now() -> datetime:
    """The harness clock: now, timezone-aware UTC."""
    return datetime.now(UTC)


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime (UTC clock), got naive {dt!r}")
    return dt.astimezone(UTC)


def format_ts(dt: datetime) -> str:
    """Compact form used in directory and file names: ``2026-01-07T073000Z``."""
    return _utc(dt).strftime("%Y-%m-%dT%H%M%SZ")


def iso_utc(dt: datetime, timespec: str = "milliseconds") -> str:
    """``2026-01-07T07:30:00.123Z``: ISO-8601 in UTC with a ``Z`` (the one spelling of every
    record's timestamp); ``timespec`` as ``datetime.isoformat`` ("seconds", "microseconds", …)."""
    return _utc(dt).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Inverse of :func:`iso_utc` (any ISO-8601 text with a zone)."""
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def utc_now_iso() -> str:
    """``2026-01-07T07:30:00Z`` (seconds), for state files."""
    return iso_utc(utc_now(), "seconds")
