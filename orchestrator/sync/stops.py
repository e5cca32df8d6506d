"""Why a role loop stops: :class:`SyncStop` and its kinds (the CLI maps each to an exit code)."""

from __future__ import annotations

__all__ = ["DirtyTree", "PeerDead", "RemoteUnreachable", "SyncConflict", "SyncStop", "SyncUsage"]


class SyncStop(RuntimeError):
    """The role loop stopped; the message says why and what to do."""


class PeerDead(SyncStop):
    """The peer is dead (or the wait bound passed)."""


class SyncConflict(SyncStop):
    def __init__(self, message: str, files: tuple[str, ...], branch: str) -> None:
        super().__init__(message)
        self.files, self.branch = files, branch


class RemoteUnreachable(SyncStop):
    """The remote stayed unreachable for ``sync.max_offline_s``."""


class DirtyTree(SyncStop):
    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


class SyncUsage(SyncStop):
    """No such remote, a detached HEAD or the wrong branch checked out."""
