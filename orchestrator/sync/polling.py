"""Waiting for this side's turn: fetch every ``sync.poll_s`` (through :class:`Reconnect`),
read whose turn it is from the remote branch (cached by tip) and ask :class:`PeerWatch` about
the peer while it holds the turn."""

from __future__ import annotations

import logging
import time

from orchestrator.config import SyncConfig
from orchestrator.fsutil import iso_utc, utc_now
from orchestrator.sync.journal import Journal
from orchestrator.sync.peer_watch import PeerWatch
from orchestrator.sync.reconnect import Reconnect
from orchestrator.sync.turns import Turn, whose_turn
from orchestrator.vcs.remote import RemoteBranch

__all__ = ["TurnPoller"]

logger = logging.getLogger(__name__)


class TurnPoller:
    def __init__(self, remote: RemoteBranch, role: str, peer: str, cfg: SyncConfig, journal: Journal,
                 net: Reconnect, peer_watch: PeerWatch) -> None:
        self.remote, self.role, self.peer, self.cfg = remote, role, peer, cfg
        self.journal, self.net, self.peer_watch = journal, net, peer_watch
        self._turn_cache: tuple[str | None, Turn] | None = None

    def turn(self, tip: str | None = None) -> Turn:
        """Whose turn it is at the remote tip ``tip`` (default: the tracking ref's)."""
        tip = tip if tip is not None else self.remote.remote_tip()
        if self._turn_cache is None or self._turn_cache[0] != tip:
            log = self.remote.first_parent_log(self.remote.tracking_ref)
            self._turn_cache = (tip, whose_turn((e.sha, e.subject, e.paths) for e in log))
        return self._turn_cache[1]

    def poll(self) -> Turn | None:
        """This side's turn, or None when the peer finished; PeerDead / RemoteUnreachable stop it."""
        t0, last_note, logged = time.time(), 0.0, False
        while True:
            started = time.monotonic()
            self.net.call(self.remote.fetch, "fetch")
            refs = self.remote.fetched_refs()
            turn = self.turn(refs.get(self.remote.tracking_ref))
            if turn.holder == self.role:
                return turn
            now = time.time()
            if now - last_note >= self.cfg.heartbeat_s:
                self.journal.update(last_fetch_utc=iso_utc(utc_now()))
                last_note = now
            if not logged:
                logger.info("waiting for the %s (turn handed by %s)", self.peer, (turn.handed_by or "-")[:12])
                logged = True
            if self.peer_watch.finished(turn, refs.get(self.remote.lease_tracking_ref(self.peer)), now, t0):
                return None
            time.sleep(max(0.0, self.cfg.poll_s - (time.monotonic() - started)))  # one poll per poll_s
