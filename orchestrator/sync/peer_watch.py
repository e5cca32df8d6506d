"""The waiting side's view of its peer: the peer's lease (cached by sha), when each handed-over
turn was first seen, the grace start after a (re)connect, and the verdict on a poll
(:func:`orchestrator.sync.turns.judge_peer`): waiting on, the peer finished, or dead."""

from __future__ import annotations

import logging
import time

from orchestrator.config import SyncConfig
from orchestrator.context import HarnessContext
from orchestrator.sync.journal import Journal
from orchestrator.sync.lease import Lease, LeaseError
from orchestrator.sync.stops import PeerDead
from orchestrator.sync.turns import Turn, judge_peer
from orchestrator.turns.notify import notify
from orchestrator.vcs.remote import RemoteBranch

__all__ = ["PeerWatch", "notify_peer_dead"]

logger = logging.getLogger(__name__)


def notify_peer_dead(ctx: HarnessContext, message: str) -> None:
    """Log a dead peer and run the ``notify:`` argv with event ``peer_dead`` (never fatal)."""
    logger.error("peer dead: %s", message)
    notify(ctx.turns.notify, "peer_dead", message=message)


class PeerWatch:
    """See the module docstring. ``baseline``: the peer's lease sha when this side started (a
    lease is *fresh* once it moved past it)."""

    def __init__(self, ctx: HarnessContext, remote: RemoteBranch, peer: str, cfg: SyncConfig,
                 journal: Journal) -> None:
        self.ctx, self.remote, self.peer, self.cfg, self.journal = ctx, remote, peer, cfg, journal
        self.grace_from = time.time()  # overdue time of the peer counts from here (start, reconnect)
        self.handed_seen: dict[str, float] = {}
        self.baseline: str | None = None
        self._lease_cache: dict[str, Lease | None] = {}

    def restart_grace(self) -> None:
        self.grace_from = time.time()

    def take_baseline(self) -> None:
        peer = self.remote.read_lease(self.peer)
        self.baseline = peer[0] if peer else None

    def handed(self, sha: str) -> None:
        """This side handed a turn over with commit ``sha`` (now)."""
        self.handed_seen[sha] = time.time()

    def lease(self, sha: str | None) -> Lease | None:
        if sha is None:
            return None
        if sha not in self._lease_cache:
            try:
                self._lease_cache = {sha: Lease.from_message(self.remote.lease_message(sha), sha)}
            except LeaseError as exc:
                logger.warning("ignoring the %s's lease: %s", self.peer, exc)
                self._lease_cache = {sha: None}
        return self._lease_cache[sha]

    def finished(self, turn: Turn, lease_sha: str | None, now: float, waiting_since: float) -> bool:
        """The verdict on one poll while ``turn`` is the peer's: True when the peer stopped (done);
        raises :class:`PeerDead` when it is dead or ``sync.max_wait_s`` passed."""
        seen = self.handed_seen.setdefault(turn.handed_by or "", now)
        lease = self.lease(lease_sha)
        fresh = lease is not None and lease.sha != self.baseline
        verdict = judge_peer(turn, lease.to_dict() if lease else None, fresh, now, self.grace_from, seen,
                             self.cfg.lease_s)
        if verdict.action == "peer_done":
            logger.warning("the %s stopped: %s", self.peer, verdict.reason)
            return True
        if verdict.action == "peer_dead" or now - waiting_since > self.cfg.max_wait_s:
            reason = verdict.reason or f"no turn within sync.max_wait_s ({self.cfg.max_wait_s:g} s)"
            last = (f"last heartbeat {lease.heartbeat_utc} from host {lease.host} (pid {lease.pid}, "
                    f"state {lease.state})" if lease else "no heartbeat ever seen")
            message = f"the {self.peer} is not taking its turn: {reason}; {last}"
            notify_peer_dead(self.ctx, message)
            self.journal.event("peer_dead", peer=self.peer, reason=reason, lease=lease.to_dict() if lease else None)
            raise PeerDead(message)
        return False
