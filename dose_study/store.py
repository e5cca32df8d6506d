"""Output layout of the study and atomic per-arm commits (no ptycho import).

Layout under ``--output-dir``::

  <arm>/wts.h5.zip  history.csv  metrics.json  recon.npz  complete
  summary.json  summary.md  dose_comparison.png
  .staging-<arm>-<pid>-<rand>/     an arm being written (never looks complete)

An arm is *complete* exactly when ``<arm>/`` exists and holds the ``complete`` marker plus every
file of ``ARM_FILES``. Arms are written into a staging directory, the marker is written last,
and the directory is renamed into place with one ``os.rename``; a killed process therefore
leaves at most a staging directory, which the next run removes once its owner pid is dead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptycho.fsutil import atomic_write_json

log = logging.getLogger(__name__)

ARM_FILES = ("wts.h5.zip", "history.csv", "metrics.json", "recon.npz")
COMPLETE_MARKER = "complete"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"


class OutputDirError(OSError):
    """The output directory cannot be created or written."""


class ArmDataError(ValueError):
    """A complete-looking arm holds unreadable data."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_json(path: Path) -> Any:
    """Parse a JSON file; ArmDataError naming the file (and line) when malformed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArmDataError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from exc
    except OSError as exc:
        raise ArmDataError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def ensure_writable_dir(root: Path) -> Path:
    """Create ``root`` (and parents) and prove it is writable; OutputDirError otherwise."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            raise NotADirectoryError(f"not a directory: {root}")
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputDirError(f"output dir {str(root)!r} is not writable: {reason}") from exc
    return root


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ArmStore:
    """Per-arm directories under one study root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def arm_dir(self, arm: str) -> Path:
        return self.root / arm

    def is_complete(self, arm: str) -> bool:
        d = self.arm_dir(arm)
        return (d / COMPLETE_MARKER).is_file() and all((d / f).is_file() for f in ARM_FILES)

    def complete_arms(self, names: tuple[str, ...]) -> list[str]:
        return [n for n in names if self.is_complete(n)]

    def load_metrics(self, arm: str) -> dict[str, Any]:
        path = self.arm_dir(arm) / "metrics.json"
        data = read_json(path)
        if not isinstance(data, dict) or data.get("arm") != arm:
            raise ArmDataError(f"{path}: expected a JSON object with \"arm\": {arm!r}")
        return data

    def clean_stale(self) -> list[Path]:
        """Remove staging/trash dirs left by dead processes; returns what was removed."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for entry in sorted(self.root.iterdir()):
            if not entry.is_dir() or not entry.name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
                continue
            try:
                pid = int(entry.name.rsplit("-", 2)[-2])
            except (ValueError, IndexError):
                pid = -1
            if _pid_alive(pid) and pid != os.getpid():
                continue  # another live process (e.g. a parallel --arm run) owns it
            if entry.name.startswith(TRASH_PREFIX) and self._restore(entry):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
            log.info("removed leftover %s (from an interrupted run)", entry.name)
        return removed

    def _restore(self, trash: Path) -> bool:
        """Put back a complete arm that a commit interrupted between its two renames."""
        arm = trash.name[len(TRASH_PREFIX):].rsplit("-", 2)[0]
        final = self.arm_dir(arm)
        if final.exists() or not (trash / COMPLETE_MARKER).is_file():
            return False
        os.rename(trash, final)
        log.warning("restored arm %s from %s (a commit was interrupted)", arm, trash.name)
        return True

    @contextmanager
    def staging(self, arm: str) -> Iterator[Path]:
        """Yield an empty staging dir for ``arm``; on error it is removed, nothing committed.

        The caller writes every file of ARM_FILES into it and then calls ``commit``.
        """
        tmp = self.root / f"{STAGING_PREFIX}{arm}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, staging: Path, arm: str) -> Path:
        """Atomically publish ``staging`` as ``<root>/<arm>`` (replacing any previous one)."""
        missing = [f for f in ARM_FILES if not (staging / f).is_file()]
        if missing:
            raise ArmDataError(f"arm {arm}: refusing to commit, missing {missing} in {staging}")
        atomic_write_json(staging / COMPLETE_MARKER,
                          {"arm": arm, "completed_utc": utc_now(), "files": list(ARM_FILES)})
        _fsync_dir(staging)
        final = self.arm_dir(arm)
        trash = None
        if final.exists():
            trash = self.root / f"{TRASH_PREFIX}{arm}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(final, trash)
        os.rename(staging, final)
        _fsync_dir(self.root)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
