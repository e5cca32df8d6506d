"""Exit codes of every ``orchestrator`` command (and ``python -m orchestrator.report``)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Exit"]


class Exit(IntEnum):
    """What each code means is the one table in docs/operations.md, "Exit codes"
    (the test test_exit_codes_doc.py checks it against this enum)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    LOCKED = 3
    STOPPED = 4
    PEER_DEAD = 5
    CONFLICT = 6
    OFFLINE = 7
    REFUSED = 8
    TIMEOUT = 124
    INTERRUPTED = 130
