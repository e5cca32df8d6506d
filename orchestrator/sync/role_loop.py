"""One side of the two-machine loop (``orchestrator loop --role supervisor|worker --remote R``).

Each side runs in its own clone and repeats: push what is pending → wait for its turn
(polling the remote every ``sync.poll_s``, judging the peer's lease) → bring the clone up to
the remote tip → take the turn with the existing single-role entry point
(:func:`orchestrator.cycle.loop.run_turn`, resume included) while a heartbeat thread renews the lease
→ push the turn's commit (rejected push: fetch, rebase, retry; never forced).

The jobs live in their own modules: :mod:`.reconnect` (backoff while the remote is
unreachable), :mod:`.worktree_guard` (dirty-tree checks), :mod:`.polling` (waiting for the
turn), :mod:`.peer_watch` (verdicts on the peer), :mod:`.publish` (rebase and push); this module
wires them into the loop.

Stops (exceptions in :mod:`.stops`, mapped to exit codes by the CLI): :class:`PeerDead` (5: the peer's lease is
overdue, it did not take a handed-over turn within ``sync.lease_s``, it stopped with an error,
or ``sync.max_wait_s`` passed), :class:`SyncConflict` (6: a rebase conflict; the local commits
are kept on ``orchestrator/conflict-<ts>``), :class:`RemoteUnreachable` (7: the remote stayed
unreachable for ``sync.max_offline_s``; nothing local is lost), :class:`DirtyTree` (1: tracked
files changed; the list is in the message, nothing is stashed or discarded) and
:class:`SyncUsage` (2: no such remote, wrong branch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from orchestrator.context import HarnessContext
from orchestrator.cycle.loop import CycleOutcome, run_turn
from orchestrator.execution.runner import sigterm_as_interrupt
from orchestrator.fsutil import iso_utc, utc_now
from orchestrator.records.state import hold_lock, load_state, save_state
from orchestrator.sync.journal import Journal
from orchestrator.sync.lease import Heartbeat, LeaseWriter
from orchestrator.sync.peer_watch import PeerWatch, notify_peer_dead
from orchestrator.sync.polling import TurnPoller
from orchestrator.sync.publish import MAX_PUSH_ATTEMPTS, Publisher
from orchestrator.sync.reconnect import Reconnect
from orchestrator.sync.stops import DirtyTree, PeerDead, RemoteUnreachable, SyncConflict, SyncStop, SyncUsage
from orchestrator.sync.turns import PEER, ROLES, Turn
from orchestrator.sync.worktree_guard import preflight, require_clean
from orchestrator.trust.enforce import verification_setup
from orchestrator.trust.signing import resolve_trust, signing_setup
from orchestrator.vcs.remote import RemoteBranch
from orchestrator.vcs.repo import GitError

__all__ = ["MAX_PUSH_ATTEMPTS", "DirtyTree", "PeerDead", "RemoteUnreachable", "RoleLoopResult", "RoleOptions",
           "SyncConflict", "SyncStop", "SyncUsage", "notify_peer_dead", "run_role_loop", "with_trust"]

logger = logging.getLogger(__name__)

_PREFIX = {"supervisor": "SUPERVISOR:", "worker": "RALPH:"}
_OK = ("supervised", "done", "progress", "idle")


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


def _remote_branch(ctx: HarnessContext, opt: RoleOptions) -> tuple[RemoteBranch, str]:
    """The shared branch on ``opt.remote`` and the remote's URL; SyncUsage when unusable."""
    current = ctx.git.current_branch()
    if current is None:
        raise SyncUsage(f"{ctx.repo}: HEAD is detached; check out the shared branch first")
    if opt.branch and current != opt.branch:
        raise SyncUsage(f"{ctx.repo}: on branch {current!r}, but --branch is {opt.branch!r}; "
                        f"run `git switch {opt.branch}` first")
    remote = RemoteBranch(ctx.git, opt.remote, opt.branch or current)
    try:
        return remote, remote.remote_url()
    except GitError as exc:
        raise SyncUsage(str(exc)) from exc


class _RoleLoop:
    """One side's loop: the jobs (reconnecting, polling, the peer, publishing) wired together."""

    def __init__(self, ctx: HarnessContext, opt: RoleOptions, on_turn: Callable[[CycleOutcome], None] | None):
        self.ctx, self.opt, self.on_turn = ctx, opt, on_turn
        self.cfg = ctx.config.sync
        self.role, self.peer = opt.role, PEER[opt.role]
        self.remote, url = _remote_branch(ctx, opt)
        self.journal = Journal(ctx.repo, self.role, opt.remote, self.remote.branch)
        self.peer_watch = PeerWatch(ctx, self.remote, self.peer, self.cfg, self.journal)
        self.net = Reconnect(self.cfg, self.journal, self.remote, url, on_back=self.peer_watch.restart_grace)
        self.poller = TurnPoller(self.remote, self.role, self.peer, self.cfg, self.journal, self.net, self.peer_watch)
        self.publisher = Publisher(ctx, self.remote, self.journal, self.net, self.peer_watch)
        #: the lease writer: made once the remote was fetched (its chain continues the fetched lease)
        self.writer: LeaseWriter | None = None
        self.last_turn_of: str | None = None

    # ---- the loop -----------------------------------------------------------------------
    def run(self) -> RoleLoopResult:
        preflight(self.ctx, self.remote)
        self.net.call(self.remote.fetch, "fetch")
        self.writer = writer = LeaseWriter(self.remote, self.role)
        self.peer_watch.take_baseline()
        budget = self.opt.cycles or self.ctx.config.budgets.max_cycles
        turns: list[CycleOutcome] = []
        try:
            self.publisher.push_pending("pending from an earlier run")
            while len(turns) < budget:
                with Heartbeat(writer, self.last_turn_of, self.cfg.heartbeat_s, state="idle"):
                    turn = self.poller.poll()
                if turn is None:
                    return self._finish(turns, f"the {self.peer} finished; nothing to wait for")
                outcome = self._take_turn(turn, writer)
                turns.append(outcome)
                if self.on_turn:
                    self.on_turn(outcome)
                self.publisher.push_pending("end of turn")
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

    def _beat_quietly(self, state: str, note: str = "") -> None:
        """Tell the peer this side's state; a failure to push it is logged, never raised."""
        if self.writer is None:  # stopped before the remote was fetched: no lease to continue
            logger.warning("lease (%s) not pushed: stopped before the first fetch", state)
            return
        try:
            self.writer.beat(self.last_turn_of, state, note)
        except GitError as exc:
            logger.warning("lease (%s) not pushed: %s", state, exc)

    # ---- taking a turn ----------------------------------------------------------------------
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

    def _take_turn(self, turn: Turn, writer: LeaseWriter) -> CycleOutcome:
        resuming = self._close_state(turn)
        if not resuming:
            require_clean(self.ctx, self.remote, "before pulling")
            if self.remote.commits_behind():
                self.publisher.rebase()
        self.last_turn_of = turn.handed_by
        self.journal.update(turn_taken={"turn_of": turn.handed_by, "utc": iso_utc(utc_now()), "resumed": resuming})
        self.journal.event("turn_started", turn_of=turn.handed_by, resumed=resuming)
        logger.info("%s turn %s (handed by %s)", self.role, "resumed" if resuming else "started",
                    (turn.handed_by or "-")[:12])
        with Heartbeat(writer, turn.handed_by, self.cfg.heartbeat_s):
            return run_turn(self.ctx, "supervise" if self.role == "supervisor" else "work",
                            self.opt.forced_focus, self.opt.phases_per_cycle)
