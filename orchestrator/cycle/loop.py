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
from dataclasses import dataclass, field
from typing import Callable

from orchestrator.agents import (
    BuiltinSupervisor,
    BuiltinWorker,
    CommandAgent,
    SupervisorAgent,
    WorkerAgent,
)
from orchestrator.config import BUILTIN, HarnessConfig
from orchestrator.context import HarnessContext
from orchestrator.cycle.supervisor import supervise
from orchestrator.cycle.worker import commit_ralph, work
from orchestrator.documents.handoff_check import validate_handoff_file
from orchestrator.execution.runner import sigterm_as_interrupt
from orchestrator.fsutil import format_ts, utc_now_iso
from orchestrator.layout import Layout
from orchestrator.records.state import CycleState, hold_lock, load_state, save_state
from orchestrator.vcs.history import cycle_commits

__all__ = ["CycleOutcome", "LoopResult", "adopt_handoff", "make_agents", "run_cycle", "run_loop", "run_turn"]

logger = logging.getLogger(__name__)

_ROOT_DOCS = (Layout.HANDOFF, Layout.LEDGER, Layout.FIX_PLAN)


@dataclass(frozen=True)
class CycleOutcome:
    """``status``: ``done`` (item finished), ``progress`` (items ticked), ``failed`` (no
    progress), ``blocked`` (handoff rejected or escalated), ``idle`` (nothing eligible),
    ``interrupted``."""

    cycle_id: str
    status: str
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
    cycles: tuple[CycleOutcome, ...] = field(default_factory=tuple)
    stopped_because: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.cycles) and all(c.status in ("done", "progress", "idle") for c in self.cycles)


def make_agents(config: HarnessConfig) -> tuple[SupervisorAgent, WorkerAgent]:
    """The configured agents: builtin, or a CommandAgent per ``commands`` entry."""
    sup: SupervisorAgent = BuiltinSupervisor()
    wrk: WorkerAgent = BuiltinWorker()
    if config.supervisor != BUILTIN:
        sup = CommandAgent(config.commands[config.supervisor], validate_handoff_file)
    if config.worker != BUILTIN:
        wrk = CommandAgent(config.commands[config.worker], validate_handoff_file)
    return sup, wrk


def _new_cycle_id(ctx: HarnessContext) -> str:
    return f"{format_ts(ctx.clock())}-{secrets.token_hex(3)}"


def _restore_root_docs(ctx: HarnessContext) -> None:
    """Put the root documents a half-finished supervisor turn touched back to HEAD."""
    ctx.git.checkout_paths([p for p in _ROOT_DOCS if ctx.git.is_tracked(p)])
    if not ctx.git.is_tracked(ctx.layout.HANDOFF):
        ctx.layout.handoff.unlink(missing_ok=True)


def _catch_up(ctx: HarnessContext, state: CycleState) -> CycleState:
    """If HEAD is this cycle's SUPERVISOR (or RALPH) commit, the turn finished: advance."""
    head = next(cycle_commits(ctx.git), None)
    if head is None or head.trailers.get("Cycle-Id") != state.cycle_id or head.sha != ctx.git.head_sha():
        return state
    if state.phase == "supervising" and head.kind == "SUPERVISOR" and "Artifacts" in head.trailers:
        logger.warning("cycle %s: SUPERVISOR commit %s found; continuing with the worker", state.cycle_id, head.sha[:10])
        return state.advance("supervised", focus=head.focus, supervisor_commit=head.sha,
                             report_dir=head.trailers["Artifacts"].rstrip("/"))
    if state.phase == "worked" and head.kind == "RALPH":
        return state.advance("done", worker_commit=head.sha)
    return state


def run_cycle(ctx: HarnessContext, forced_focus: str | None = None, phases_per_cycle: int | None = None,
              stop_after_supervise: bool = False) -> CycleOutcome:
    """Run (or resume) one cycle. The caller holds the lock. KeyboardInterrupt propagates
    after the state and an ``interrupted`` run.json are saved."""
    t0 = time.monotonic()
    state = load_state(ctx.repo)
    resumed = state is not None and not state.finished
    if not resumed:
        now = utc_now_iso()
        state = CycleState(cycle_id=_new_cycle_id(ctx), phase="supervising", started_at=now, updated_at=now,
                           base_commit=ctx.git.head_sha(), branch=ctx.git.branch())
        save_state(ctx.repo, state)
    else:
        logger.warning("resuming cycle %s at phase %s", state.cycle_id, state.phase)
    assert state is not None

    def save(st: CycleState) -> None:
        save_state(ctx.repo, st)

    escalated: tuple[str, ...] = ()
    if resumed and state.phase in ("supervising", "worked"):
        state = _catch_up(ctx, state)  # killed after its commit, before the state was saved
        save(state)
    if state.phase == "supervising":
        if resumed:
            _restore_root_docs(ctx)
        result = supervise(ctx, state.cycle_id, forced_focus, phases_per_cycle)
        escalated = result.escalated
        if result.status != "ready":
            state = state.advance("done", focus=result.focus, supervisor_commit=result.commit, status=result.status,
                                  report_dir=ctx.rel(result.report_dir) if result.report_dir else None)
            save(state)
            return CycleOutcome(state.cycle_id, result.status, result.focus, state.report_dir, result.commit, None,
                                result.message, resumed, escalated, time.monotonic() - t0)
        state = state.advance("supervised", focus=result.focus, supervisor_commit=result.commit,
                              report_dir=ctx.rel(result.report_dir) if result.report_dir else None)
        save(state)
        if stop_after_supervise:
            return CycleOutcome(state.cycle_id, "supervised", state.focus, state.report_dir, result.commit, None,
                                result.message, resumed, escalated, time.monotonic() - t0)
    if state.phase in ("supervised", "working"):
        with sigterm_as_interrupt():
            outcome, state = work(ctx, state, save)
        status = "blocked" if outcome.status == "blocked" else (
            "done" if outcome.item_status == "done" else "progress" if outcome.progressed else "failed")
        state = state.advance("done", worker_commit=outcome.commit, status=status)
        save(state)
        return CycleOutcome(state.cycle_id, status, state.focus, state.report_dir, state.supervisor_commit,
                            outcome.commit, outcome.message, resumed, escalated, time.monotonic() - t0)
    if state.phase == "done":  # caught up: the RALPH commit had been made
        return CycleOutcome(state.cycle_id, state.status or "failed", state.focus, state.report_dir,
                            state.supervisor_commit, state.worker_commit, "cycle was already committed", resumed,
                            escalated, time.monotonic() - t0)
    if state.phase == "worked":  # run.json written, commit missing (killed in between)
        sha = commit_ralph(ctx, state.focus or "UNKNOWN", "commit of an interrupted cycle's results", state,
                      state.report_dir or "", state.status or "failed")
        state = state.advance("done", worker_commit=sha)
        save(state)
        return CycleOutcome(state.cycle_id, state.status or "failed", state.focus, state.report_dir,
                            state.supervisor_commit, sha, "committed the results of an interrupted cycle", resumed,
                            escalated, time.monotonic() - t0)
    raise AssertionError(f"unreachable cycle phase {state.phase!r}")


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
    return CycleState(cycle_id=_new_cycle_id(ctx), phase="supervised", started_at=now, updated_at=now,
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
            if unfinished and state.phase != "supervising":
                raise ValueError(f"cycle {state.cycle_id} is at phase {state.phase}: run `orchestrator work` "
                                 "(or `loop`) to finish it first")
            return run_cycle(ctx, forced_focus, phases_per_cycle, stop_after_supervise=True)
        if role != "work":
            raise ValueError(f"unknown role {role!r}")
        if unfinished and state.phase == "supervising":
            raise ValueError(f"the supervisor turn of cycle {state.cycle_id} did not finish: "
                             "run `orchestrator supervise` (or `loop`) first")
        if not unfinished:
            save_state(ctx.repo, adopt_handoff(ctx))
        return run_cycle(ctx)


def run_loop(ctx: HarnessContext, cycles: int | None = None, max_wall_s: float | None = None,
             forced_focus: str | None = None, phases_per_cycle: int | None = None,
             on_cycle: Callable[[CycleOutcome], None] | None = None) -> LoopResult:
    """Hold the lock and run up to ``cycles`` cycles (default: the budget) within
    ``max_wall_s`` (0 = unlimited). Stops early when nothing is eligible or on a signal.
    Raises :class:`orchestrator.records.state.LockHeld` when another loop runs."""
    budget = ctx.config.budgets
    n_max = cycles if cycles is not None else budget.max_cycles
    wall = budget.max_wall_s if max_wall_s is None else max_wall_s
    t0 = time.monotonic()
    done: list[CycleOutcome] = []
    with hold_lock(ctx.repo):
        with sigterm_as_interrupt():
            for _ in range(n_max):
                if done and wall and time.monotonic() - t0 >= wall:  # the first cycle always starts
                    return LoopResult(tuple(done), f"wall-time budget of {wall:g}s used")
                try:
                    outcome = run_cycle(ctx, forced_focus, phases_per_cycle)
                except KeyboardInterrupt:
                    state = load_state(ctx.repo)
                    interrupted = CycleOutcome(state.cycle_id if state else "?", "interrupted",
                                               state.focus if state else None, state.report_dir if state else None,
                                               state.supervisor_commit if state else None, None,
                                               "interrupted by a signal; run again to resume")
                    done.append(interrupted)
                    if on_cycle:
                        on_cycle(interrupted)
                    return LoopResult(tuple(done), "interrupted")
                done.append(outcome)
                if on_cycle:
                    on_cycle(outcome)
                if outcome.status == "idle":
                    return LoopResult(tuple(done), "nothing eligible")
    return LoopResult(tuple(done), f"{n_max} cycle(s) run")
