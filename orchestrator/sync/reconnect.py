"""Remote operations retried with backoff while the remote is unreachable (``sync.max_offline_s``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from orchestrator.config import SyncConfig
from orchestrator.sync.journal import Journal
from orchestrator.sync.stops import RemoteUnreachable
from orchestrator.vcs.remote import RemoteBranch, RemoteOffline

__all__ = ["Reconnect"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Reconnect:
    """:meth:`call` runs a remote operation, retrying (delay doubling from ``min(poll_s, 1)``
    up to ``max(poll_s, min(30, max_offline_s / 4))``) while it raises ``RemoteOffline``, and
    raises :class:`RemoteUnreachable` after ``sync.max_offline_s``. ``on_back`` is called when
    the remote answers again after an outage (the peer's overdue time restarts then)."""

    def __init__(self, cfg: SyncConfig, journal: Journal, remote: RemoteBranch, url: str,
                 on_back: Callable[[], None]) -> None:
        self.cfg, self.journal, self.remote, self.url, self.on_back = cfg, journal, remote, url, on_back

    def call(self, op: Callable[[], T], what: str) -> T:
        start: float | None = None
        delay = min(self.cfg.poll_s, 1.0)
        cap = max(self.cfg.poll_s, min(30.0, self.cfg.max_offline_s / 4))
        while True:
            try:
                result = op()
            except RemoteOffline as exc:
                now = time.monotonic()
                if start is None:
                    start = now
                    logger.warning("%s: %s; retrying for up to %g s", what, exc, self.cfg.max_offline_s)
                    self.journal.event("offline", what=what, error=str(exc)[:300])
                if now - start >= self.cfg.max_offline_s:
                    pending = len(self.remote.commits_ahead())
                    raise RemoteUnreachable(
                        f"remote {self.remote.remote!r} ({self.url}) unreachable for {now - start:.0f} s "
                        f"(sync.max_offline_s {self.cfg.max_offline_s:g}) during {what}: {exc}. Nothing local is "
                        f"lost ({pending} local commit(s) not pushed yet); run the same command again to push "
                        "them and continue") from exc
                time.sleep(max(0.0, min(delay, self.cfg.max_offline_s - (now - start)) + 0.01))
                delay = min(delay * 2, cap)
                continue
            if start is not None:
                self.on_back()
                logger.warning("%s: remote reachable again after %.1f s", what, time.monotonic() - start)
                self.journal.event("online", what=what, after_s=round(time.monotonic() - start, 2))
            return result
