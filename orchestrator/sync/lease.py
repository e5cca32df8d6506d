"""Leases: each side's liveness record on the remote, ``refs/orchestrator/lease/<role>``.

The ref points at a chain of small commits (empty tree; each one's parent is the previous
heartbeat, so every push is a fast-forward, never a force) whose message is one JSON object::

    {"role": "worker", "host": "gpu-box", "pid": 4242, "turn_of": "<sha that handed the turn>",
     "heartbeat_utc": "2026-11-29T21:30:00.123456Z", "state": "working", "note": ""}

``state``: ``working`` (holding the turn), ``idle`` (waiting for the peer), ``done`` (stopped
cleanly: budget used or nothing eligible), ``failed`` (stopped on an error; ``note`` says which).
The side holding the turn renews its lease every ``sync.heartbeat_s`` from a background thread
(:class:`Heartbeat`); nothing is ever added to the shared branch.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.fsutil import iso_utc, parse_iso
from orchestrator.sync.turns import ROLES
from orchestrator.vcs.remote import PushRejected, RemoteBranch
from orchestrator.vcs.repo import GitError

__all__ = ["LEASE_STATES", "Heartbeat", "Lease", "LeaseError", "LeaseWriter"]

logger = logging.getLogger(__name__)

LEASE_STATES = ("working", "idle", "done", "failed")


class LeaseError(ValueError):
    """A lease commit's message is not a valid lease record (the message names the commit)."""


@dataclass(frozen=True)
class Lease:
    """One heartbeat (see the module docstring). ``sha``: the lease commit (not serialised)."""

    role: str
    host: str
    pid: int
    turn_of: str | None
    heartbeat_utc: str
    state: str
    note: str = ""
    sha: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise LeaseError(f"lease role must be one of {ROLES}, got {self.role!r}")
        if self.state not in LEASE_STATES:
            raise LeaseError(f"lease state must be one of {LEASE_STATES}, got {self.state!r}")
        parse_iso(self.heartbeat_utc)

    @property
    def heartbeat_s(self) -> float:
        """The heartbeat time as epoch seconds."""
        return parse_iso(self.heartbeat_utc).timestamp()

    def to_message(self) -> str:
        data = asdict(self)
        data.pop("sha")
        return json.dumps(data, sort_keys=True) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "heartbeat_s": self.heartbeat_s}

    @classmethod
    def from_message(cls, message: str, sha: str) -> Lease:
        try:
            data = json.loads(message)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            return cls(**{k: data[k] for k in ("role", "host", "pid", "turn_of", "heartbeat_utc", "state")},
                       note=str(data.get("note", "")), sha=sha)
        except (ValueError, TypeError, KeyError) as exc:
            raise LeaseError(f"lease commit {sha[:12]}: not a lease record ({exc}): {message[:200]!r}") from exc


class LeaseWriter:
    """Pushes this side's heartbeats. Thread-safe: the heartbeat thread and the loop share it.
    ``clock`` returns an aware UTC datetime."""

    def __init__(self, remote: RemoteBranch, role: str, clock: Callable[[], datetime] | None = None) -> None:
        self.remote = remote
        self.role = role
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        current = remote.read_lease(role)
        self._parent: str | None = current[0] if current else None
        self.last: Lease | None = None

    def beat(self, turn_of: str | None, state: str, note: str = "") -> Lease:
        """Push one heartbeat. Raises RemoteOffline/GitError (the caller decides)."""
        with self._lock:
            stamp = iso_utc(self.clock(), "microseconds")
            lease = Lease(self.role, socket.gethostname(), os.getpid(), turn_of, stamp, state, note)
            for _ in range(3):
                sha = self.remote.make_lease_commit(lease.to_message(), self._parent)
                try:
                    self.remote.push_lease(self.role, sha)
                except PushRejected:  # an earlier process of this role pushed more: build on its tip
                    self._parent = self.remote.fetch_lease(self.role)
                    continue
                self._parent = sha
                self.last = Lease(**{**asdict(lease), "sha": sha})
                return self.last
            raise GitError(f"lease {self.remote.lease_ref(self.role)}: push rejected three times")


class Heartbeat:
    """Context manager: renew the lease (``state``, ``turn_of``) every ``interval_s`` in a
    daemon thread until the block ends (``working`` during a turn, ``idle`` while waiting).
    Failures (an offline remote) are logged, never raised: the loop's own pushes decide what an
    outage means."""

    def __init__(self, writer: LeaseWriter, turn_of: str | None, interval_s: float, state: str = "working") -> None:
        self.writer, self.turn_of, self.interval_s, self.state = writer, turn_of, interval_s, state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{writer.role}", daemon=True)
        self.failures = 0

    def _beat(self) -> None:
        try:
            self.writer.beat(self.turn_of, self.state)
        except GitError as exc:
            self.failures += 1
            logger.warning("heartbeat not pushed (%s); retrying in %g s", exc, self.interval_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def __enter__(self) -> Heartbeat:
        self._beat()  # a turn is announced as taken before any work starts
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.writer.remote.timeout_s + 5)
