"""Bringing the clone up to the remote and publishing its commits: rebase onto the remote tip
(a conflict aborts the rebase and keeps the local commits on ``orchestrator/conflict-<ts>``)
and push what is pending (a rejected push: fetch, rebase, retry; never forced)."""

from __future__ import annotations

import logging

from orchestrator.context import HarnessContext
from orchestrator.fsutil import format_ts, iso_utc, utc_now
from orchestrator.sync.journal import Journal
from orchestrator.sync.peer_watch import PeerWatch
from orchestrator.sync.reconnect import Reconnect
from orchestrator.sync.stops import SyncConflict, SyncStop
from orchestrator.sync.worktree_guard import require_clean
from orchestrator.vcs.remote import PushRejected, RebaseConflict, RemoteBranch

__all__ = ["MAX_PUSH_ATTEMPTS", "Publisher"]

logger = logging.getLogger(__name__)

MAX_PUSH_ATTEMPTS = 5


class Publisher:
    def __init__(self, ctx: HarnessContext, remote: RemoteBranch, journal: Journal, net: Reconnect,
                 peer_watch: PeerWatch) -> None:
        self.ctx, self.remote, self.journal, self.net, self.peer_watch = ctx, remote, journal, net, peer_watch

    def rebase(self) -> None:
        """Rebase onto the fetched remote tip (a clean tree required)."""
        require_clean(self.ctx, self.remote, "before pulling")
        try:
            self.remote.rebase_onto_remote()
        except RebaseConflict as exc:
            branch = f"orchestrator/conflict-{format_ts(utc_now())}"
            self.remote.keep_branch(branch)
            self.journal.event("conflict", files=list(exc.files), branch=branch)
            where = f"{self.remote.remote}/{self.remote.branch}"
            raise SyncConflict(
                f"cannot rebase onto {where}: conflicting files: "
                f"{', '.join(exc.files) or '(unknown)'}. The rebase was aborted; your local commits are kept on "
                f"branch {branch} (and still on {self.remote.branch}). Resolve with "
                f"`git rebase {where}`, then run again.", exc.files, branch) from exc

    def push_pending(self, why: str) -> str | None:
        """Push the local commits the remote lacks; the pushed sha (None: nothing to push)."""
        for _attempt in range(MAX_PUSH_ATTEMPTS):
            ahead = self.remote.commits_ahead()
            if not ahead:
                return None
            if self.remote.commits_behind():
                self.rebase()
            try:
                sha = self.net.call(self.remote.push_branch, "push")
            except PushRejected as exc:
                logger.warning("push rejected (%s); fetching and rebasing", str(exc).splitlines()[0][:200])
                self.net.call(self.remote.fetch, "fetch")
                continue
            self.peer_watch.handed(sha)
            self.journal.update(last_push={"sha": sha, "utc": iso_utc(utc_now()), "commits": len(ahead), "why": why})
            self.journal.event("pushed", sha=sha, commits=len(ahead), why=why)
            logger.info("pushed %d commit(s) to %s/%s (%s)", len(ahead), self.remote.remote, self.remote.branch,
                        sha[:12])
            return sha
        raise SyncStop(f"push to {self.remote.remote}/{self.remote.branch} rejected {MAX_PUSH_ATTEMPTS} times in a "
                       "row (the branch keeps moving); your commits are kept locally; run again")
