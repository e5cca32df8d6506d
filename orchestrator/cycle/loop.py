"""The cycle: lock → supervise → validate → work → verify → commit, resumable.

``.orchestrator/state.json`` records the phase of the current cycle after every transition
and after every finished step; a cycle found unfinished is resumed where it stopped:

* ``supervising`` (no SUPERVISOR commit yet): the harness-owned root documents are put back
  to HEAD and the supervisor runs again (its earlier report dir is kept, a new one is made);
* ``supervised`` / ``working``: the worker runs, skipping steps that already finished;
* ``worked``: only the RALPH commit is (re)made.

SIGINT/SIGTERM stop the running command's process group, write run.json with status
``interrupted``, keep the state for resumption and release the lock.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from orchestrator.agents import SupervisorAgent, WorkerAgent
from orchestrator.agents.registry import build_agent
from orchestrator.config import ConfigError, HarnessConfig
from orchestrator.context import HarnessContext
from orchestrator.cycle.meter import LoopStop, Meter
from orchestrator.cycle.supervisor import SuperviseStatus, supervise
from orchestrator.cycle.worker import commit_ralph, work
from orchestrator.documents.handoff_check import validate_handoff_file
from orchestrator.execution.runner import sigterm_as_interrupt
from orchestrator.fsutil import atomic_write_bytes, format_ts, utc_now_iso
from orchestrator.layout import Layout
from orchestrator.records.state import (
    CycleState,
    Phase,
    hold_lock,
    load_state,
    save_state,
)
from orchestrator.turns.config import TurnsConfig
from orchestrator.turns.errors import TurnConfigError
from orchestrator.vcs.history import cycle_commits

__all__ = ["CycleOutcome", "CycleStatus", "LoopResult", "adopt_handoff", "load_turns", "make_agents", "run_cycle",
           "run_loop", "run_turn"]

logger = logging.getLogger(__name__)

_ROOT_DOCS = (Layout.HANDOFF, Layout.LEDGER, Layout.FIX_PLAN)


class CycleStatus(StrEnum):
    """How a cycle ended."""

    DONE = "done"  # the item finished
    PROGRESS = "progress"  # plan items ticked
    FAILED = "failed"  # no progress
    BLOCKED = "blocked"  # handoff rejected or escalated
    IDLE = "idle"  # nothing eligible
    INTERRUPTED = "interrupted"  # a signal; the state is saved for resumption
    SUPERVISED = "supervised"  # `orchestrator supervise`: stopped after the supervisor turn


#: Statuses of a cycle that went as it should.
OK_STATUSES = (CycleStatus.DONE, CycleStatus.PROGRESS, CycleStatus.IDLE)


@dataclass(frozen=True, kw_only=True)
class CycleOutcome:
    """One cycle's end (see :class:`CycleStatus`)."""

    cycle_id: str
    status: CycleStatus
    focus: str | None
    report_dir: str | None
    supervisor_commit: str | None
    worker_commit: str | None
    message: str
    resumed: bool = False
    escalated: tuple[str, ...] = ()
    duration_s: float = 0.0


@dataclass(frozen=True)
class LoopResult:
    """``stop_reason``: ``breaker`` | ``budget`` | ``wall`` when a limit stopped the loop
    (the CLI exits 4), else empty; ``spend``: the loop's ``{cost_usd, input_tokens, output_tokens}``."""

    cycles: tuple[CycleOutcome, ...] = field(default_factory=tuple)
    stopped_because: str = ""
    stop_reason: str = ""
    spend: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.cycles) and all(c.status in OK_STATUSES for c in self.cycles)


def load_turns(config: HarnessConfig) -> TurnsConfig:
    """The agent-turn settings of ``config`` (ConfigError naming the key when invalid)."""
    try:
        return TurnsConfig.from_mapping(config.document, config.source)
    except TurnConfigError as exc:
        raise ConfigError(str(exc)) from exc


def make_agents(config: HarnessConfig, repo: Path | None = None) -> tuple[SupervisorAgent, WorkerAgent]:
    """The configured agents, built by name from :mod:`orchestrator.agents.registry`. Every
    configured command's settings and prompt template (relative to ``repo``, default the
    config file's directory) are validated here, before any turn: ConfigError names the key
    or the template's file:line."""
    turns = load_turns(config)
    root = Path(repo) if repo is not None else (Path(config.source).parent if config.document else Path.cwd())
    try:
        templates = {name: turns.prompt_template(name, spec.role, root) for name, spec in config.commands.items()}
        sup = build_agent("supervisor", config.supervisor, config.commands, validate_handoff_file, templates)
        wrk = build_agent("worker", config.worker, config.commands, validate_handoff_file, templates)
    except TurnConfigError as exc:
        raise ConfigError(str(exc)) from exc
    return sup, wrk


def _new_cycle_id(ctx: HarnessContext) -> str:
    return f"{format_ts(ctx.clock())}-{secrets.token_hex(3)}"


def _restore_root_docs(ctx: HarnessContext, cycle_id: str) -> None:
    """Put the root documents a half-finished supervisor turn touched back to HEAD.

    Their uncommitted edits cannot be told apart (the interrupted turn's, or a person's made
    meanwhile), so each changed document is first copied to
    ``.orchestrator/restored/<cycle_id>/`` and the copy is named in a warning: nothing is lost.
    """
    changed = [rel for rel in ctx.git.worktree_changes(*_ROOT_DOCS) if (ctx.repo / rel).is_file()]
    if changed:
        backup = ctx.layout.state_dir / "restored" / cycle_id
        for rel in changed:
            atomic_write_bytes(backup / rel, (ctx.repo / rel).read_bytes())
        logger.warning("resuming cycle %s: uncommitted edits of %s copied to %s before restoring them "
                       "from HEAD", cycle_id, ", ".join(changed), ctx.rel(backup))
    ctx.git.checkout_paths([p for p in _ROOT_DOCS if ctx.git.is_tracked(p)])
    if not ctx.git.is_tracked(ctx.layout.HANDOFF):
        ctx.layout.handoff.unlink(missing_ok=True)


def _catch_up(ctx: HarnessContext, state: CycleState) -> CycleState:
    """If HEAD is this cycle's SUPERVISOR (or RALPH) commit, the turn finished: advance."""
    head = next(cycle_commits(ctx.git), None)
    if head is None or head.trailers.get("Cycle-Id") != state.cycle_id or head.sha != ctx.git.head_sha():
        return state
    if state.phase == Phase.SUPERVISING and head.kind == "SUPERVISOR" and "Artifacts" in head.trailers:
        logger.warning("cycle %s: SUPERVISOR commit %s found; continuing with the worker", state.cycle_id,
                       head.sha[:10])
        return state.advance(Phase.SUPERVISED, focus=head.focus, supervisor_commit=head.sha,
                             report_dir=head.trailers["Artifacts"].rstrip("/"))
    if state.phase == Phase.WORKED and head.kind == "RALPH":
        return state.advance(Phase.DONE, worker_commit=head.sha)
    return state


@dataclass(frozen=True)
class _Run:
    """One call of :func:`run_cycle`: what every outcome of it shares."""

    ctx: HarnessContext
    t0: float
    resumed: bool
    escalated: tuple[str, ...] = ()
    meter: Meter | None = None

    def save(self, state: CycleState) -> CycleState:
        save_state(self.ctx.repo, state)
        return state

    def outcome(self, state: CycleState, status: str | None, message: str) -> CycleOutcome:
        """The outcome, read from the saved ``state`` (focus, report dir, commits)."""
        return CycleOutcome(cycle_id=state.cycle_id, status=_cycle_status(status), focus=state.focus,
                            report_dir=state.report_dir, supervisor_commit=state.supervisor_commit,
                            worker_commit=state.worker_commit, message=message, resumed=self.resumed,
                            escalated=self.escalated, duration_s=time.monotonic() - self.t0)


def _cycle_status(status: str | None) -> CycleStatus:
    """A cycle status; a resumed cycle's state may still hold its run status (``ok`` counts as
    progress: the item's own status was already written to the fix plan)."""
    if status in CycleStatus.__members__.values():
        return CycleStatus(status)
    return CycleStatus.PROGRESS if status == "ok" else CycleStatus.FAILED


def _start_or_resume(ctx: HarnessContext, handover: bool = False) -> tuple[CycleState, bool]:
    """The unfinished cycle (resumed) or a new one. ``handover``: a cycle whose supervisor turn
    finished is the worker's to continue (``orchestrator work``), not a resumption."""
    state = load_state(ctx.repo)
    if state is not None and not state.finished:
        if handover and state.phase == Phase.SUPERVISED:
            return state, False
        logger.warning("resuming cycle %s at phase %s", state.cycle_id, state.phase)
        return state, True
    now = utc_now_iso()
    state = CycleState(cycle_id=_new_cycle_id(ctx), phase=Phase.SUPERVISING, started_at=now, updated_at=now,
                       base_commit=ctx.git.head_sha(), branch=ctx.git.branch())
    save_state(ctx.repo, state)
    return state, False


def _supervise_phase(run: _Run, state: CycleState, forced_focus: str | None,
                     phases_per_cycle: int | None) -> tuple[_Run, CycleState, CycleOutcome | None, str]:
    """The supervisor turn; an outcome when the cycle ends here (idle or blocked)."""
    ctx = run.ctx
    if run.resumed:
        _restore_root_docs(ctx, state.cycle_id)
    result = supervise(ctx, state.cycle_id, forced_focus, phases_per_cycle, run.meter)
    run = replace(run, escalated=result.escalated)
    report_dir = ctx.rel(result.report_dir) if result.report_dir else None
    if result.status != SuperviseStatus.READY:
        state = run.save(state.advance(Phase.DONE, focus=result.focus, supervisor_commit=result.commit,
                                       status=result.status, report_dir=report_dir))
        return run, state, run.outcome(state, result.status, result.message), result.message
    state = run.save(state.advance(Phase.SUPERVISED, focus=result.focus, supervisor_commit=result.commit,
                                   report_dir=report_dir))
    return run, state, None, result.message


def _work_phase(run: _Run, state: CycleState) -> CycleOutcome:
    if run.meter is not None:
        run.meter.check(state.focus)  # no new turn once the breaker tripped or the budget is used
    with sigterm_as_interrupt():
        result, state = work(run.ctx, state, run.save, run.meter)
    if result.status == "blocked":
        status = CycleStatus.BLOCKED
    elif result.item_status == "done":
        status = CycleStatus.DONE
    else:
        status = CycleStatus.PROGRESS if result.progressed else CycleStatus.FAILED
    state = run.save(state.advance(Phase.DONE, worker_commit=result.commit, status=status))
    return run.outcome(state, status, result.message)


def run_cycle(ctx: HarnessContext, forced_focus: str | None = None, phases_per_cycle: int | None = None,
              stop_after_supervise: bool = False, meter: Meter | None = None,
              handover: bool = False) -> CycleOutcome:
    """Run (or resume) one cycle (``handover``: see ``_start_or_resume``). The caller holds the
    lock. KeyboardInterrupt propagates after the state and an ``interrupted`` run.json are
    saved; :class:`LoopStop` (breaker, budget, a wait past the wall budget) propagates with the
    state kept for resumption."""
    t0 = time.monotonic()
    state, resumed = _start_or_resume(ctx, handover=handover)
    run = _Run(ctx, t0, resumed, meter=meter if meter is not None else Meter.for_loop(ctx))
    if resumed and state.phase in (Phase.SUPERVISING, Phase.WORKED):
        state = run.save(_catch_up(ctx, state))  # killed after its commit, before the state was saved
    if state.phase == Phase.SUPERVISING:
        run, state, ended, message = _supervise_phase(run, state, forced_focus, phases_per_cycle)
        if ended is not None:
            return ended
        if stop_after_supervise:
            return run.outcome(state, CycleStatus.SUPERVISED, message)
    if state.phase in (Phase.SUPERVISED, Phase.WORKING):
        return _work_phase(run, state)
    if state.phase == Phase.DONE:  # caught up: the RALPH commit had been made
        return run.outcome(state, state.status, "cycle was already committed")
    # Phase.WORKED: run.json written, commit missing (killed in between)
    sha = commit_ralph(ctx, state.focus or "UNKNOWN", "commit of an interrupted cycle's results", state,
                       state.report_dir or "", state.status or "failed")
    state = run.save(state.advance(Phase.DONE, worker_commit=sha))
    return run.outcome(state, state.status, "committed the results of an interrupted cycle")


def adopt_handoff(ctx: HarnessContext) -> CycleState:
    """A cycle state for the committed ``input.md`` (for ``orchestrator work`` without a
    preceding ``supervise``); ValueError listing the problems when the handoff is invalid."""
    problems = validate_handoff_file(ctx.repo, ctx.layout.handoff)
    if problems:
        raise ValueError("input.md is not a valid handoff:\n" + "\n".join(problems))
    from orchestrator.documents import handoff as handoff_doc
    from orchestrator.documents.common import read_text

    doc = handoff_doc.parse(read_text(ctx.layout.handoff), ctx.layout.handoff)
    now = utc_now_iso()
    head = ctx.git.head_sha()
    return CycleState(cycle_id=_new_cycle_id(ctx), phase=Phase.SUPERVISED, started_at=now, updated_at=now,
                      focus=doc.focus_item_id, report_dir=(doc.artifacts or "").strip().strip("`").rstrip("/"),
                      supervisor_commit=head, base_commit=head, branch=ctx.git.branch(),
                      notes=("adopted an existing input.md (no supervisor turn in this cycle)",))


def run_turn(ctx: HarnessContext, role: str, forced_focus: str | None = None,
             phases_per_cycle: int | None = None) -> CycleOutcome:
    """``orchestrator supervise`` / ``work``: one role's turn under the lock."""
    with hold_lock(ctx.repo), sigterm_as_interrupt():
        state = load_state(ctx.repo)
        unfinished = state is not None and not state.finished
        if role == "supervise":
            if unfinished and state.phase != Phase.SUPERVISING:
                raise ValueError(f"cycle {state.cycle_id} is at phase {state.phase}: run `orchestrator work` "
                                 "(or `loop`) to finish it first")
            return run_cycle(ctx, forced_focus, phases_per_cycle, stop_after_supervise=True)
        if role != "work":
            raise ValueError(f"unknown role {role!r}")
        if unfinished and state.phase == Phase.SUPERVISING:
            raise ValueError(f"the supervisor turn of cycle {state.cycle_id} did not finish: "
                             "run `orchestrator supervise` (or `loop`) first")
        if not unfinished:
            save_state(ctx.repo, adopt_handoff(ctx))
        return run_cycle(ctx, handover=True)


def _interrupted_outcome(ctx: HarnessContext) -> CycleOutcome:
    state = load_state(ctx.repo)
    return CycleOutcome(cycle_id=state.cycle_id if state else "?", status=CycleStatus.INTERRUPTED,
                        focus=state.focus if state else None, report_dir=state.report_dir if state else None,
                        supervisor_commit=state.supervisor_commit if state else None, worker_commit=None,
                        message="interrupted by a signal; run again to resume")


def _notify_outcome(meter: Meter, outcome: CycleOutcome) -> None:
    if outcome.status == CycleStatus.DONE:
        meter.notify("done", outcome.focus, outcome.message, outcome.report_dir)
    if outcome.status == CycleStatus.BLOCKED:
        meter.notify("blocked", outcome.focus, outcome.message, outcome.report_dir)
    for focus in outcome.escalated:
        meter.notify("blocked", focus, f"{focus} escalated to blocked", outcome.report_dir)


def run_loop(ctx: HarnessContext, cycles: int | None = None, max_wall_s: float | None = None,
             forced_focus: str | None = None, phases_per_cycle: int | None = None,
             on_cycle: Callable[[CycleOutcome], None] | None = None, meter: Meter | None = None) -> LoopResult:
    """Hold the lock and run up to ``cycles`` cycles (default: the budget) within
    ``max_wall_s`` (0 = unlimited). Stops early when nothing is eligible, on a signal, when the
    circuit breaker trips or the spend budget is used (``stop_reason``; a ledger entry and a
    notification). Raises :class:`orchestrator.records.state.LockHeld` when another loop runs."""
    budget = ctx.config.budgets
    n_max = cycles if cycles is not None else budget.max_cycles
    wall = budget.max_wall_s if max_wall_s is None else max_wall_s
    meter = meter if meter is not None else Meter.for_loop(ctx, wall)
    t0 = time.monotonic()
    done: list[CycleOutcome] = []

    def result(why: str, reason: str = "") -> LoopResult:
        return LoopResult(tuple(done), why, reason, meter.spend())

    def stopped(stop: LoopStop) -> LoopResult:
        meter.stopped(stop)
        event = stop.reason if stop.reason in ("breaker", "budget") else "error"
        meter.notify(event, stop.focus, stop.message)
        return result(f"{stop.reason}: {stop.message}", stop.reason)

    with hold_lock(ctx.repo):
        with sigterm_as_interrupt():
            for _ in range(n_max):
                if done and wall and time.monotonic() - t0 >= wall:  # the first cycle always starts
                    return result(f"wall-time budget of {wall:g}s used")
                try:
                    meter.check()
                    outcome = run_cycle(ctx, forced_focus, phases_per_cycle, meter=meter)
                except KeyboardInterrupt:
                    interrupted = _interrupted_outcome(ctx)
                    done.append(interrupted)
                    if on_cycle:
                        on_cycle(interrupted)
                    return result("interrupted")
                except LoopStop as stop:
                    return stopped(stop)
                except Exception as exc:
                    meter.notify("error", forced_focus, f"{type(exc).__name__}: {exc}")
                    raise
                done.append(outcome)
                _notify_outcome(meter, outcome)
                if on_cycle:
                    on_cycle(outcome)
                if outcome.status == CycleStatus.IDLE:
                    return result("nothing eligible")
            try:  # a limit reached on the last allowed turn stops the loop like any other
                meter.check()
            except LoopStop as stop:
                return stopped(stop)
    return result(f"{n_max} cycle(s) run")
