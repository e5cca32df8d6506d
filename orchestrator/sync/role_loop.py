"""One side of the two-machine loop (``orchestrator loop --role supervisor|worker --remote R``).

Each side runs in its own clone and repeats: push what is pending → wait for its turn
(polling the remote every ``sync.poll_s``, judging the peer's lease) → bring the clone up to
the remote tip → take the turn with the existing single-role entry point
(:func:`orchestrator.cycle.loop.run_turn`, resume included) while a heartbeat thread renews the lease
→ push the turn's commit (rejected push: fetch, rebase, retry; never forced).

Stops (exceptions, mapped to exit codes by the CLI): :class:`PeerDead` (5: the peer's lease is
overdue, it did not take a handed-over turn within ``sync.lease_s``, it stopped with an error,
or ``sync.max_wait_s`` passed), :class:`SyncConflict` (6: a rebase conflict; the local commits
are kept on ``orchestrator/conflict-<ts>``), :class:`RemoteUnreachable` (7: the remote stayed
unreachable for ``sync.max_offline_s``; nothing local is lost), :class:`DirtyTree` (1: tracked
files changed; the list is in the message, nothing is stashed or discarded) and
:class:`SyncUsage` (2: no such remote, wrong branch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from orchestrator.context import HarnessContext
from orchestrator.cycle.loop import CycleOutcome, run_turn
from orchestrator.execution.runner import sigterm_as_interrupt
from orchestrator.fsutil import format_ts, iso_utc, utc_now
from orchestrator.records.state import hold_lock, load_state, save_state
from orchestrator.sync.journal import Journal
from orchestrator.sync.lease import Heartbeat, Lease, LeaseError, LeaseWriter
from orchestrator.sync.turns import PEER, ROLES, Turn, judge_peer, whose_turn
from orchestrator.trust.enforce import verification_setup
from orchestrator.trust.signing import resolve_trust, signing_setup
from orchestrator.turns.notify import notify
from orchestrator.vcs.owned import is_owned
from orchestrator.vcs.remote import PushRejected, RebaseConflict, RemoteBranch, RemoteOffline
from orchestrator.vcs.repo import GitError

__all__ = ["DirtyTree", "PeerDead", "RemoteUnreachable", "RoleLoopResult", "RoleOptions", "SyncConflict",
           "SyncStop", "SyncUsage", "notify_peer_dead", "run_role_loop", "with_trust"]

logger = logging.getLogger(__name__)

MAX_PUSH_ATTEMPTS = 5
_PREFIX = {"supervisor": "SUPERVISOR:", "worker": "RALPH:"}
_OK = ("supervised", "done", "progress", "idle")
T = TypeVar("T")


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


@dataclass(frozen=True)
class RoleOptions:
    """``cycles``: turns this side takes before it stops (default ``budgets.max_cycles``)."""

    role: str
    remote: str
    branch: str | None = None
    cycles: int | None = None
    forced_focus: str | None = None
    phases_per_cycle: int | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"--role must be one of {ROLES}, got {self.role!r}")
        if not self.remote:
            raise ValueError("--remote NAME is required with --role")
        if self.cycles is not None and self.cycles < 1:
            raise ValueError(f"--cycles must be >= 1, got {self.cycles}")


@dataclass(frozen=True)
class RoleLoopResult:
    turns: tuple[CycleOutcome, ...]
    stopped_because: str

    @property
    def ok(self) -> bool:
        return all(t.status in _OK for t in self.turns)


def notify_peer_dead(ctx: HarnessContext, message: str) -> None:
    """Log a dead peer and run the ``notify:`` argv with event ``peer_dead`` (never fatal)."""
    logger.error("peer dead: %s", message)
    notify(ctx.turns.notify, "peer_dead", message=message)


def with_trust(ctx: HarnessContext, role: str, remote: str) -> HarnessContext:
    """``ctx`` with ``trust.require_signed_handoff`` decided for this side (unset = on, see
    :func:`orchestrator.trust.signing.resolve_trust`), checked once at the start: the
    supervisor's signing setup, the worker's allowed-signers file. Raises
    :class:`~orchestrator.trust.signing.SigningConfigError` (exit 2) naming what is missing."""
    ctx = replace(ctx, config=resolve_trust(ctx.config, role, remote))
    if role == "supervisor":
        signing_setup(ctx.git, ctx.config)
    else:
        verification_setup(ctx.repo, ctx.config)
    return ctx


def run_role_loop(ctx: HarnessContext, options: RoleOptions,
                  on_turn: Callable[[CycleOutcome], None] | None = None) -> RoleLoopResult:
    """Run one side until its budget is used, nothing is eligible, the peer finished, or a
    :class:`SyncStop`. Holds ``.orchestrator/sync-lock`` (one role loop per clone). A handoff
    the worker refuses raises :class:`~orchestrator.trust.verify.HandoffRefused` (exit 8)."""
    ctx = with_trust(ctx, options.role, options.remote)
    with hold_lock(ctx.repo, "sync-lock"), sigterm_as_interrupt():
        return _RoleLoop(ctx, options, on_turn).run()


class _RoleLoop:
    def __init__(self, ctx: HarnessContext, opt: RoleOptions, on_turn: Callable[[CycleOutcome], None] | None):
        self.ctx, self.opt, self.on_turn = ctx, opt, on_turn
        self.cfg = ctx.config.sync
        self.role, self.peer = opt.role, PEER[opt.role]
        current = ctx.git.current_branch()
        if current is None:
            raise SyncUsage(f"{ctx.repo}: HEAD is detached; check out the shared branch first")
        if opt.branch and current != opt.branch:
            raise SyncUsage(f"{ctx.repo}: on branch {current!r}, but --branch is {opt.branch!r}; "
                            f"run `git switch {opt.branch}` first")
        self.remote = RemoteBranch(ctx.git, opt.remote, opt.branch or current)
        try:
            self.url = self.remote.remote_url()
        except GitError as exc:
            raise SyncUsage(str(exc)) from exc
        self.journal = Journal(ctx.repo, self.role, opt.remote, self.remote.branch)
        self.grace_from = time.time()  # overdue time of the peer counts from here (start, reconnect)
        self.handed_seen: dict[str, float] = {}
        self.last_turn_of: str | None = None
        self._turn_cache: tuple[str | None, Turn] | None = None
        self._lease_cache: dict[str, Lease | None] = {}

    # ---- the loop -----------------------------------------------------------------------
    def run(self) -> RoleLoopResult:
        self._preflight()
        self._net(self.remote.fetch, "fetch")
        self.writer = LeaseWriter(self.remote, self.role)
        peer = self.remote.read_lease(self.peer)
        self.peer_baseline = peer[0] if peer else None
        budget = self.opt.cycles or self.ctx.config.budgets.max_cycles
        turns: list[CycleOutcome] = []
        try:
            self._push_pending("pending from an earlier run")
            while len(turns) < budget:
                turn = self._wait_for_turn()
                if turn is None:
                    return self._finish(turns, f"the {self.peer} finished; nothing to wait for")
                outcome = self._take_turn(turn)
                turns.append(outcome)
                if self.on_turn:
                    self.on_turn(outcome)
                self._push_pending("end of turn")
                if outcome.status == "idle":
                    return self._finish(turns, "nothing eligible")
            return self._finish(turns, f"{budget} turn(s) taken")
        except SyncStop as exc:
            if not isinstance(exc, (PeerDead, RemoteUnreachable)):  # nobody to tell / no way to tell: exit at once
                self._beat_quietly("failed", f"{type(exc).__name__}: {str(exc)[:300]}")
            self.journal.event("stopped", reason=type(exc).__name__, message=str(exc))
            raise
        except KeyboardInterrupt:
            self._beat_quietly("failed", "interrupted by a signal; the same command resumes")
            self.journal.event("stopped", reason="interrupted")
            raise
        except Exception as exc:  # a failed turn (invalid handoff, git guard, …): tell the peer, then report
            self._beat_quietly("failed", f"{type(exc).__name__}: {str(exc)[:300]}")
            self.journal.event("stopped", reason=type(exc).__name__, message=str(exc))
            raise

    def _finish(self, turns: list[CycleOutcome], why: str) -> RoleLoopResult:
        self._beat_quietly("done", why)
        self.journal.event("stopped", reason="done", message=why)
        return RoleLoopResult(tuple(turns), why)

    # ---- pieces -------------------------------------------------------------------------
    def _preflight(self) -> None:
        if self.ctx.git.operation_in_progress():
            raise DirtyTree(f"{self.ctx.repo}: a rebase/merge/cherry-pick is in progress; finish or abort it", [])
        dirty = self.remote.dirty_paths()
        state = load_state(self.ctx.repo)
        if dirty and state is not None and not state.finished and all(is_owned(p, state.focus) for p in dirty):
            return  # the harness's own files of an unfinished cycle: the resumed turn deals with them
        if dirty:
            self._refuse_dirty(dirty, "at start")

    def _refuse_dirty(self, files: list[str], when: str) -> None:
        shown = "\n  ".join(files[:50]) + (f"\n  (+{len(files) - 50} more)" if len(files) > 50 else "")
        raise DirtyTree(f"{self.ctx.repo}: refusing to sync {when}: tracked files have uncommitted changes "
                        f"(nothing was stashed or discarded; commit or revert them, then run again):\n  {shown}", files)

    def _net(self, op: Callable[[], T], what: str) -> T:
        """``op()`` with retries and backoff while the remote is unreachable (up to max_offline_s)."""
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
                        f"remote {self.opt.remote!r} ({self.url}) unreachable for {now - start:.0f} s "
                        f"(sync.max_offline_s {self.cfg.max_offline_s:g}) during {what}: {exc}. Nothing local is "
                        f"lost ({pending} local commit(s) not pushed yet); run the same command again to push "
                        "them and continue") from exc
                time.sleep(max(0.0, min(delay, self.cfg.max_offline_s - (now - start)) + 0.01))
                delay = min(delay * 2, cap)
                continue
            if start is not None:
                self.grace_from = time.time()
                logger.warning("%s: remote reachable again after %.1f s", what, time.monotonic() - start)
                self.journal.event("online", what=what, after_s=round(time.monotonic() - start, 2))
            return result

    def _beat_quietly(self, state: str, note: str = "") -> None:
        try:
            self.writer.beat(self.last_turn_of, state, note)
        except (GitError, AttributeError) as exc:
            logger.warning("lease (%s) not pushed: %s", state, exc)

    def _turn(self, tip: str | None = None) -> Turn:
        tip = tip if tip is not None else self.remote.remote_tip()
        if self._turn_cache is None or self._turn_cache[0] != tip:
            log = self.remote.first_parent_log(self.remote.tracking_ref)
            self._turn_cache = (tip, whose_turn((e.sha, e.subject, e.paths) for e in log))
        return self._turn_cache[1]

    def _peer_lease(self, sha: str | None) -> Lease | None:
        if sha is None:
            return None
        if sha not in self._lease_cache:
            try:
                self._lease_cache = {sha: Lease.from_message(self.remote.lease_message(sha), sha)}
            except LeaseError as exc:
                logger.warning("ignoring the %s's lease: %s", self.peer, exc)
                self._lease_cache = {sha: None}
        return self._lease_cache[sha]

    def _wait_for_turn(self) -> Turn | None:
        with Heartbeat(self.writer, self.last_turn_of, self.cfg.heartbeat_s, state="idle"):
            return self._poll_for_turn()

    def _poll_for_turn(self) -> Turn | None:
        t0, last_note, logged = time.time(), 0.0, False
        while True:
            started = time.monotonic()
            self._net(self.remote.fetch, "fetch")
            refs = self.remote.fetched_refs()
            turn = self._turn(refs.get(self.remote.tracking_ref))
            if turn.holder == self.role:
                return turn
            now = time.time()
            if now - last_note >= self.cfg.heartbeat_s:
                self.journal.update(last_fetch_utc=iso_utc(utc_now()))
                last_note = now
            if not logged:
                logger.info("waiting for the %s (turn handed by %s)", self.peer, (turn.handed_by or "-")[:12])
                logged = True
            seen = self.handed_seen.setdefault(turn.handed_by or "", now)
            lease = self._peer_lease(refs.get(self.remote.lease_tracking_ref(self.peer)))
            fresh = lease is not None and lease.sha != self.peer_baseline
            verdict = judge_peer(turn, lease.to_dict() if lease else None, fresh, now, self.grace_from, seen,
                                 self.cfg.lease_s)
            if verdict.action == "peer_done":
                logger.warning("the %s stopped: %s", self.peer, verdict.reason)
                return None
            if verdict.action == "peer_dead" or now - t0 > self.cfg.max_wait_s:
                reason = verdict.reason or f"no turn within sync.max_wait_s ({self.cfg.max_wait_s:g} s)"
                last = (f"last heartbeat {lease.heartbeat_utc} from host {lease.host} (pid {lease.pid}, "
                        f"state {lease.state})" if lease else "no heartbeat ever seen")
                message = f"the {self.peer} is not taking its turn: {reason}; {last}"
                notify_peer_dead(self.ctx, message)
                self.journal.event("peer_dead", peer=self.peer, reason=reason, lease=lease.to_dict() if lease else None)
                raise PeerDead(message)
            time.sleep(max(0.0, self.cfg.poll_s - (time.monotonic() - started)))  # one poll per poll_s

    def _rebase(self) -> None:
        dirty = self.remote.dirty_paths()
        if dirty:
            self._refuse_dirty(dirty, "before pulling")
        try:
            self.remote.rebase_onto_remote()
        except RebaseConflict as exc:
            branch = f"orchestrator/conflict-{format_ts(utc_now())}"
            self.remote.keep_branch(branch)
            self.journal.event("conflict", files=list(exc.files), branch=branch)
            raise SyncConflict(
                f"cannot rebase onto {self.opt.remote}/{self.remote.branch}: conflicting files: "
                f"{', '.join(exc.files) or '(unknown)'}. The rebase was aborted; your local commits are kept on "
                f"branch {branch} (and still on {self.remote.branch}). Resolve with "
                f"`git rebase {self.opt.remote}/{self.remote.branch}`, then run again.", exc.files, branch) from exc

    def _push_pending(self, why: str) -> str | None:
        for _attempt in range(MAX_PUSH_ATTEMPTS):
            ahead = self.remote.commits_ahead()
            if not ahead:
                return None
            if self.remote.commits_behind():
                self._rebase()
            try:
                sha = self._net(self.remote.push_branch, "push")
            except PushRejected as exc:
                logger.warning("push rejected (%s); fetching and rebasing", str(exc).splitlines()[0][:200])
                self._net(self.remote.fetch, "fetch")
                continue
            self.handed_seen[sha] = time.time()
            self.journal.update(last_push={"sha": sha, "utc": iso_utc(utc_now()), "commits": len(ahead), "why": why})
            self.journal.event("pushed", sha=sha, commits=len(ahead), why=why)
            logger.info("pushed %d commit(s) to %s/%s (%s)", len(ahead), self.opt.remote, self.remote.branch, sha[:12])
            return sha
        raise SyncStop(f"push to {self.opt.remote}/{self.remote.branch} rejected {MAX_PUSH_ATTEMPTS} times in a row "
                       "(the branch keeps moving); your commits are kept locally; run again")

    def _close_state(self, turn: Turn) -> bool:
        """Close an unfinished cycle that is not this turn's to resume; True when one is left to resume."""
        state = load_state(self.ctx.repo)
        if state is None or state.finished:
            return False
        taken = self.journal.data.get("turn_taken") or {}
        same_turn = "turn_of" in taken and taken["turn_of"] == turn.handed_by
        committed = self.remote.find_commit(_PREFIX[self.role], state.cycle_id)
        handed_over = self.role == "supervisor" and state.phase != "supervising"
        if same_turn and not committed and not handed_over:
            return True
        why = ("the worker side finished it" if handed_over else "its commit is already made" if committed
               else "it belongs to an earlier turn")
        logger.log(logging.WARNING if not (handed_over or committed) else logging.INFO,
                   "cycle %s (phase %s) closed on this clone: %s", state.cycle_id, state.phase, why)
        save_state(self.ctx.repo, state.advance("done", status=state.status or "handed-over",
                                                notes=(*state.notes, f"closed by the {self.role} loop: {why}")))
        return False

    def _take_turn(self, turn: Turn) -> CycleOutcome:
        resuming = self._close_state(turn)
        if not resuming:
            dirty = self.remote.dirty_paths()
            if dirty:
                self._refuse_dirty(dirty, "before pulling")
            if self.remote.commits_behind():
                self._rebase()
        self.last_turn_of = turn.handed_by
        self.journal.update(turn_taken={"turn_of": turn.handed_by, "utc": iso_utc(utc_now()), "resumed": resuming})
        self.journal.event("turn_started", turn_of=turn.handed_by, resumed=resuming)
        logger.info("%s turn %s (handed by %s)", self.role, "resumed" if resuming else "started",
                    (turn.handed_by or "-")[:12])
        with Heartbeat(self.writer, turn.handed_by, self.cfg.heartbeat_s):
            return run_turn(self.ctx, "supervise" if self.role == "supervisor" else "work",
                            self.opt.forced_focus, self.opt.phases_per_cycle)
