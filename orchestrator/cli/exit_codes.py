"""Exit codes of every ``orchestrator`` command (and ``python -m orchestrator.report``)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Exit"]


class Exit(IntEnum):
    """0 ok · 1 a check, validation or cycle failed · 2 usage error · 3 lock held ·
    4 stopped by a limit (circuit breaker, spend budget, a transient wait past the wall budget) ·
    124 a command timed out · 130 interrupted (state saved; the same command resumes)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    LOCKED = 3
    STOPPED = 4
    TIMEOUT = 124
    INTERRUPTED = 130
