"""The loop's private state under ``<repo>/.orchestrator/``: the single-loop lock and the
resumable cycle record ``state.json``.

``lock``: created with ``O_CREAT | O_EXCL`` and holding ``{"pid", "start_ticks", "host",
"started_at"}``. A lock whose process is gone (or whose pid was reused by another process,
detected by the kernel start time) is stale and taken over; a live one raises
:class:`LockHeld`.

``state.json``: one :class:`CycleState`, rewritten atomically (temp file + ``os.replace``)
at every phase change and after every finished step, so a cycle killed at any point can be
resumed where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from orchestrator.fsutil import atomic_write_json, utc_now_iso
from orchestrator.layout import Layout

__all__ = [
    "CycleState",
    "LockHeld",
    "PHASES",
    "Phase",
    "StateError",
    "hold_lock",
    "load_state",
    "read_lock",
    "save_state",
    "state_dir",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class Phase(StrEnum):
    """Cycle phases in order."""

    SUPERVISING = "supervising"  # input.md being written
    SUPERVISED = "supervised"  # the SUPERVISOR commit exists
    WORKING = "working"  # Do-Now steps running
    WORKED = "worked"  # run.json written, RALPH commit pending
    DONE = "done"  # both commits made


PHASES = tuple(Phase)
_EMPTY_LOCK_GRACE_S = 5.0


class LockHeld(RuntimeError):
    """Another live loop holds the lock."""

    def __init__(self, path: Path, owner: dict[str, Any]) -> None:
        self.path = path
        self.owner = owner
        super().__init__(
            f"another orchestrator loop is running (pid {owner.get('pid')} on {owner.get('host')}, "
            f"since {owner.get('started_at')}); lock file {path}. "
            "Wait for it to finish, or remove the file if that process is really gone."
        )


class StateError(ValueError):
    """``state.json`` is unreadable or inconsistent; the message names the file."""


def state_dir(repo: Path) -> Path:
    return Layout(Path(repo)).state_dir


# --------------------------------------------------------------------------- lock


def _start_ticks(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), None if unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        text = state.read_text()
        if text[text.rfind(")") + 2 :].startswith(("Z", "X")):
            return False
    return True


def _owner_alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if owner.get("host") not in (None, socket.gethostname()):
        return True  # cannot check another host's pids: assume live
    if not _pid_alive(pid):
        return False
    recorded, actual = owner.get("start_ticks"), _start_ticks(pid)
    return recorded is None or actual is None or recorded == actual


def _read_owner(path: Path) -> dict[str, Any] | None:
    """The lock's content; None while it is empty/partial and younger than the grace."""
    try:
        text = path.read_text(encoding="utf-8")
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return {}
    try:
        owner = json.loads(text)
        if isinstance(owner, dict):
            return owner
    except json.JSONDecodeError:
        pass
    return None if age < _EMPTY_LOCK_GRACE_S else {}


@contextlib.contextmanager
def hold_lock(repo: Path, name: str = "lock") -> Iterator[Path]:
    """Hold ``<repo>/.orchestrator/<name>`` (default ``lock``) for the duration of the block.

    Raises :class:`LockHeld` when a live process holds it. A stale lock (dead pid, reused
    pid, or an empty file older than a few seconds) is replaced, with a warning.
    """
    path = state_dir(repo) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "start_ticks": _start_ticks(os.getpid()), "host": socket.gethostname(),
          "started_at": utc_now_iso()}
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if owner is None:
                raise LockHeld(path, {"pid": "?", "host": "?", "started_at": "just now"}) from None
            if owner and _owner_alive(owner):
                raise LockHeld(path, owner) from None
            logger.warning("removing stale lock %s (owner %s is gone)", path, owner or "unknown")
            with contextlib.suppress(FileNotFoundError):
                if _read_owner(path) == owner:
                    path.unlink()
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        break
    else:
        raise LockHeld(path, _read_owner(path) or {})
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            current = _read_owner(path)
            if current and current.get("pid") == me["pid"]:
                path.unlink()


def read_lock(repo: Path) -> dict[str, Any] | None:
    """``{"path", "owner", "alive"}`` for an existing lock file, None when there is none."""
    path = state_dir(repo) / "lock"
    if not path.exists():
        return None
    owner = _read_owner(path)
    return {"path": str(path), "owner": owner or None, "alive": bool(owner) and _owner_alive(owner or {})}


# --------------------------------------------------------------------------- cycle state


@dataclass(frozen=True)
class CycleState:
    """The record of the current (or last) cycle.

    ``steps`` maps a step number (as a string, JSON keys) to its finished record, so a
    resumed worker skips steps that already ran. ``attempts`` counts how often the work
    phase was (re)started; ``interrupted`` is set when a signal stopped the cycle.
    """

    cycle_id: str
    phase: Phase
    started_at: str
    updated_at: str
    focus: str | None = None
    report_dir: str | None = None
    supervisor_commit: str | None = None
    worker_commit: str | None = None
    base_commit: str | None = None
    branch: str | None = None
    status: str | None = None
    attempts: int = 0
    interrupted: bool = False
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise StateError(f"state phase must be one of {[str(p) for p in PHASES]}, got {self.phase!r}")
        object.__setattr__(self, "phase", Phase(self.phase))

    @property
    def finished(self) -> bool:
        return self.phase == Phase.DONE

    def advance(self, phase: Phase, **changes: Any) -> CycleState:
        return replace(self, phase=phase, updated_at=utc_now_iso(), **changes)

    def update(self, **changes: Any) -> CycleState:
        return replace(self, updated_at=utc_now_iso(), **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "state.json") -> CycleState:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise StateError(f"{source}: unknown field(s) {unknown}")
        try:
            values = dict(data)
            values["notes"] = tuple(values.get("notes", ()))
            return cls(**values)
        except TypeError as exc:
            raise StateError(f"{source}: {exc}") from exc


def load_state(repo: Path) -> CycleState | None:
    """The saved cycle state, or None when there is none."""
    path = state_dir(repo) / "state.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); move it aside to start afresh") from exc
    if not isinstance(data, dict):
        raise StateError(f"{path}: expected a JSON object")
    return CycleState.from_dict(data, str(path))


def save_state(repo: Path, state: CycleState) -> None:
    atomic_write_json(state_dir(repo) / "state.json", state.to_dict(), sort_keys=True)
