"""Exit codes of every ``orchestrator`` command (and ``python -m orchestrator.report``)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Exit"]


class Exit(IntEnum):
    """0 ok · 1 a check, validation or cycle failed (also: a dirty tree refused by
    ``loop --role``) · 2 usage error · 3 lock held · 4 stopped by a limit (circuit breaker, spend
    budget, a transient wait past the wall budget) · 5 peer dead (``loop --role``: the other
    side's lease is overdue, it did not take its turn, or ``sync.max_wait_s`` passed) ·
    6 rebase conflict (local commits kept on ``orchestrator/conflict-<ts>``) · 7 remote
    unreachable for ``sync.max_offline_s`` · 8 handoff refused by the worker (trust
    boundary: not signed by an allowed supervisor key, or a command outside
    ``worker.allow_commands``; nothing ran) · 124 a command timed out · 130 interrupted (state
    saved; the same command resumes)."""

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
