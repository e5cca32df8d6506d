"""Worker turn: validate the handoff (fail closed), run the Do Now through the worker agent,
verify the exit criteria independently, record run.json + summary.md, tick the plan, append
an Attempts History line, set the status and commit ``RALPH: <ID> — …``.

The item becomes ``done`` only when every step succeeded, every exit criterion has a check
that passed, and no checklist item of the working plan is left open. A cycle interrupted by
a signal writes run.json with status ``interrupted`` and keeps the finished steps in
``.orchestrator/state.json``, so the next run resumes without re-running or overwriting them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.agents.base import AgentResult, WorkerTask
from orchestrator.context import HarnessContext
from orchestrator.cycle import agent_turn
from orchestrator.cycle.meter import Meter
from orchestrator.cycle.prompt_context import worker_prompt_context
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import handoff as handoff_doc
from orchestrator.documents import plan as plan_doc
from orchestrator.documents.common import read_text
from orchestrator.documents.handoff_check import validate_handoff_file
from orchestrator.execution.runner import CommandInterrupted
from orchestrator.execution.steps import (
    PlannedCheck,
    PlannedStep,
    kill_marked_processes,
    planned_checks,
    planned_steps,
    run_checks,
    step_env,
    step_item_id,
    step_record,
)
from orchestrator.fsutil import atomic_write_json, atomic_write_text, iso_utc, parse_iso
from orchestrator.records.artifacts import (
    CriterionRecord,
    GitInfo,
    RunRecord,
    StepRecord,
    collect_artifacts,
    render_summary,
    validate_run_record,
    write_blocked,
)
from orchestrator.records.state import CycleState, Phase
from orchestrator.trust.enforce import verify_handoff
from orchestrator.turns.breaker import TurnStatus

__all__ = ["WorkResult", "commit_ralph", "work"]

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class WorkResult:
    """``status`` is run.json's (ok|failed|blocked|interrupted); ``item_status`` the fix
    plan's afterwards; ``progressed``: plan items ticked or the item became done."""

    status: str
    item_status: str | None
    run_json: Path | None
    commit: str | None
    progressed: bool
    message: str
    ticked: tuple[str, ...] = ()
    turn_status: str | None = None


def _preserve_previous(report: Path) -> list[str]:
    """Rename run.json / summary.md of an interrupted attempt to ``*.attempt-N.*``."""
    kept = []
    for name in ("run.json", "summary.md"):
        path = report / name
        if not path.exists():
            continue
        stem, suffix = name.split(".")
        n = 1
        while (report / f"{stem}.attempt-{n}.{suffix}").exists():
            n += 1
        path.rename(report / f"{stem}.attempt-{n}.{suffix}")
        kept.append(f"{stem}.attempt-{n}.{suffix}")
    return kept


def _step_from_dict(d: dict[str, Any]) -> StepRecord:
    return StepRecord(**{**d, "argv": tuple(d["argv"]), "started_at": parse_iso(d["started_at"]),
                         "ended_at": parse_iso(d["ended_at"])})


def _step_to_dict(record: StepRecord) -> dict[str, Any]:
    out = {k: getattr(record, k) for k in record.__dataclass_fields__}
    out["argv"] = list(record.argv)
    out["started_at"], out["ended_at"] = iso_utc(record.started_at), iso_utc(record.ended_at)
    return out


class _Recorder:
    """Writes run.json + summary.md for one attempt."""

    def __init__(self, ctx: HarnessContext, state: CycleState, report: Path, sha_before: str, dirty: bool,
                 kept: list[str]) -> None:
        self.ctx, self.state, self.report = ctx, state, report
        self.sha_before, self.dirty, self.kept = sha_before, dirty, kept
        self.started = ctx.clock()
        self.provenance: dict[str, Any] | None = None  # trust boundary verdict on the handoff

    def write(self, status: str, steps: Sequence[StepRecord], criteria: Sequence[CriterionRecord],
              notes: str, extra: dict[str, Any], agent: dict[str, Any] | None = None) -> Path:
        git = self.ctx.git
        record = RunRecord(
            run_id=f"{self.state.cycle_id}-ralph-{self.state.attempts}", focus=self.state.focus or "UNKNOWN",
            role="RALPH", status=status, started_at=self.started, ended_at=self.ctx.clock(),
            git=GitInfo(git.branch(), self.sha_before, git.head_sha(), self.dirty),
            report_dir=self.ctx.rel(self.report), steps=tuple(steps), exit_criteria=tuple(criteria),
            artifacts=collect_artifacts(self.report, self.ctx.config.max_commit_bytes), notes=notes)
        data = record.to_dict()
        data["harness"] = {"cycle_id": self.state.cycle_id, "attempt": self.state.attempts,
                           "worker_agent": self.ctx.worker.name, "supervisor_commit": self.state.supervisor_commit,
                           "earlier_attempt_records": self.kept, **extra}
        if agent is not None:
            data["agent"] = agent
        if self.provenance is not None:
            data["harness"]["handoff_provenance"] = self.provenance
        problems = validate_run_record(data)
        if problems:
            raise ValueError("run.json would be invalid: " + "; ".join(problems))
        atomic_write_text(self.report / "summary.md", render_summary(record))
        return atomic_write_json(self.report / "run.json", data)


def commit_ralph(ctx: HarnessContext, focus: str, subject: str, state: CycleState, report_rel: str,
                 status: str, extra_paths: Sequence[str] = (), skip_paths: Sequence[str] = ()) -> str | None:
    """Commit the worker's owned changes (and ``extra_paths``, the agent's changes its commit
    policy accepted) as ``RALPH: <focus> — <subject>`` with trailers."""
    message = (f"{subject}\n\nCycle-Id: {state.cycle_id}\nArtifacts: {report_rel}/\nRun-Status: {status}")
    result = ctx.git.commit_owned("RALPH", focus, message, ctx.config.max_commit_bytes,
                                  expected_branch=ctx.expected_branch, extra_paths=extra_paths,
                                  skip_paths=skip_paths)
    if result.refused_reason:
        raise RuntimeError(result.refused_reason)
    for path, size in result.skipped_large:
        logger.warning("not committed (over max_commit_bytes): %s (%d bytes)", path, size)
    return result.sha


def _update_plans(ctx: HarnessContext, focus: str, steps: Sequence[StepRecord],
                  criteria: Sequence[CriterionRecord], all_steps_ran: bool,
                  attempt_text: Callable[[str], str]) -> tuple[str | None, tuple[str, ...]]:
    """Tick plan items of successful steps, set the status, append the attempt line."""
    plan = fix_plan_doc.load(ctx.layout.fix_plan)
    item = plan.item(focus)
    plan_path = ctx.layout.plan_of(focus, item.working_plan)
    work_plan = plan_doc.load(plan_path)
    ticked: list[str] = []
    for record in steps:
        item_id = step_item_id(record.title)
        if record.ok and item_id and any(it.id == item_id and not it.checked for it in work_plan.items):
            work_plan = plan_doc.tick(work_plan, item_id)
            ticked.append(item_id)
    if ticked:
        atomic_write_text(plan_path, plan_doc.render(work_plan))
    criteria_ok = bool(criteria) and all(c.ok is True for c in criteria)
    steps_ok = all_steps_ran and all(s.ok for s in steps)
    open_items = [it for it in work_plan.items if not it.checked]
    status = item.status
    if criteria_ok and steps_ok and not open_items:
        status = "done"
    elif item.status in ("pending", "done", None):
        status = "in_progress"
    if status != item.status and status is not None:
        plan = fix_plan_doc.set_status(plan, focus, status)
    plan = fix_plan_doc.append_attempt(plan, focus, attempt_text(status or "unknown"))
    atomic_write_text(ctx.layout.fix_plan, fix_plan_doc.render(plan))
    return status, tuple(ticked)


def _blocked_handoff(ctx: HarnessContext, state: CycleState, problems: list[str]) -> WorkResult:
    focus = state.focus or "UNKNOWN"
    report = ctx.repo / state.report_dir if state.report_dir else ctx.layout.reports(focus) / "unknown"
    report.mkdir(parents=True, exist_ok=True)
    blocked = write_blocked(report, f"{focus}: input.md failed validation; the worker did not run",
                            "\n".join(f"- {p}" for p in problems), clock=ctx.clock)
    recorder = _Recorder(ctx, state, report, ctx.git.head_sha(), ctx.git.is_dirty(), [])
    run_json = recorder.write("blocked", (), (), "input.md failed validation:\n" + "\n".join(problems),
                              {"item_status": None, "ticked": [], "blocked_file": blocked.name})
    sha = commit_ralph(ctx, focus, "blocked: input.md failed validation", state, ctx.rel(report), "blocked")
    return WorkResult("blocked", None, run_json, sha, False, f"invalid handoff ({len(problems)} problem(s))")


@dataclass(frozen=True, kw_only=True)
class _Attempt:
    """One attempt at the Do Now of a valid handoff: where it records and what it runs."""

    focus: str
    handoff: Path
    report: Path
    report_rel: str
    steps: tuple[PlannedStep, ...]
    checks: tuple[PlannedCheck, ...]
    env: dict[str, str]
    recorder: _Recorder


class _Progress:
    """The cycle state as steps finish; saved after every step so a resumed cycle skips them."""

    def __init__(self, state: CycleState, save: Callable[[CycleState], None]) -> None:
        self.state, self._save = state, save

    def on_step(self, record: StepRecord) -> None:
        self.state = self.state.update(steps={**self.state.steps, str(record.index): _step_to_dict(record)})
        self._save(self.state)

    def finished_steps(self) -> list[StepRecord]:
        return [_step_from_dict(v) for _, v in sorted(self.state.steps.items(), key=lambda kv: int(kv[0]))]


def _start(ctx: HarnessContext, state: CycleState, save: Callable[[CycleState], None]) -> tuple[_Attempt, CycleState]:
    """Parse the (valid) handoff, prepare its report dir (earlier records kept, orphans of a
    killed attempt stopped) and enter the ``working`` phase."""
    handoff = ctx.layout.handoff
    doc = handoff_doc.parse(read_text(handoff), handoff)
    focus = doc.focus_item_id or ""
    report = ctx.repo / (doc.artifacts or "").strip().strip("`").rstrip("/")
    report_rel = ctx.rel(report)
    report.mkdir(parents=True, exist_ok=True)
    if state.attempts:
        kill_marked_processes(f"{state.cycle_id}:")
    kept = _preserve_previous(report)
    state = state.advance(Phase.WORKING, focus=focus, report_dir=report_rel, attempts=state.attempts + 1,
                          interrupted=False)
    save(state)
    recorder = _Recorder(ctx, state, report, ctx.git.head_sha(), ctx.git.is_dirty(untracked=False), kept)
    attempt = _Attempt(focus=focus, handoff=handoff, report=report, report_rel=report_rel, steps=planned_steps(doc),
                       checks=planned_checks(doc), env=step_env(ctx.repo, report_rel, state.cycle_id),
                       recorder=recorder)
    return attempt, state


def _record_interrupt(attempt: _Attempt, progress: _Progress, exc: KeyboardInterrupt,
                      save: Callable[[CycleState], None]) -> None:
    """run.json ``interrupted`` with the finished steps (and the one the signal cut short)."""
    partial = progress.finished_steps()
    if isinstance(exc, CommandInterrupted):
        title = next((s.title for s in attempt.steps if s.number == len(partial) + 1), "(interrupted)")
        partial.append(step_record(len(partial) + 1, exc.result, attempt.report, title=title))
    attempt.recorder.state = progress.state
    attempt.recorder.write("interrupted", partial, (), "interrupted by a signal; the next run resumes this cycle",
                           {"item_status": None, "ticked": []})
    save(progress.state.update(interrupted=True))


def _handoff_ref(state: CycleState, attempt: _Attempt) -> str:
    """The commit whose handoff the attempt worked on, named as what it is. (The attempt line is
    part of its own RALPH commit, whose sha cannot be known yet: the line's sha is ``none``.)"""
    if state.supervisor_commit:
        return f"handoff of SUPERVISOR {state.supervisor_commit[:10]}"
    return f"handoff at {attempt.recorder.sha_before[:10]}"


@dataclass(frozen=True)
class _Verdict:
    """How the attempt went, however the agent was judged: what run.json, the fix plan and the
    RALPH commit say. ``agent``: run.json's ``agent`` object and ``stage``/``skip`` the agent's
    own changes the commit takes / leaves (evidence-judged agents); ``turn_status`` feeds the meter."""

    run_status: str
    item_status: str | None
    ticked: tuple[str, ...]
    progressed: bool
    notes: str
    subject: str
    agent: dict[str, Any] | None = None
    stage: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    turn_status: TurnStatus | None = None


def _judge_steps(ctx: HarnessContext, attempt: _Attempt, state: CycleState, outcome: AgentResult,
                 criteria: Sequence[CriterionRecord]) -> _Verdict:
    """An agent whose records map onto the Do-Now steps: tick the items of successful steps,
    set the status, append the attempt line."""
    records = outcome.steps
    all_ran = len(records) == len(attempt.steps) if outcome.per_step else outcome.ok
    n_ok = sum(1 for r in records if r.ok)
    n_crit = sum(1 for c in criteria if c.ok is True)
    summary = (f"{n_ok}/{len(attempt.steps) if outcome.per_step else len(records)} steps ok, "
               f"{n_crit}/{len(criteria)} exit criteria passed")
    handoff = _handoff_ref(state, attempt)
    item_status, ticked = _update_plans(
        ctx, attempt.focus, records, criteria, all_ran,
        lambda st: fix_plan_doc.format_attempt(ctx.clock(), "RALPH", None,
                                               f"{summary}; status {st}; {handoff} ({attempt.report_rel}/)"))
    passed = all_ran and bool(criteria) and all(c.ok is True for c in criteria)
    notes = f"{outcome.message}. {summary}. Fix-plan status: {item_status}."
    if ticked:
        notes += f" Ticked: {', '.join(ticked)}."
    return _Verdict("ok" if outcome.ok and passed else "failed", item_status, ticked,
                    bool(ticked) or item_status == "done", notes, f"{summary} → {item_status}")


def _judge_evidence(ctx: HarnessContext, attempt: _Attempt, state: CycleState, outcome: AgentResult,
                    criteria: Sequence[CriterionRecord], before: agent_turn.Before) -> _Verdict:
    """An agent judged from evidence (:mod:`orchestrator.cycle.agent_turn`): its changes are
    committed under the commit policy, refusals go to the ledger."""
    turn = agent_turn.judge(ctx, attempt.focus, before, outcome, criteria, attempt.report)
    verdict = turn.verdict
    item_status = agent_turn.update_plans(
        ctx, attempt.focus, verdict.done,
        fix_plan_doc.format_attempt(ctx.clock(), "RALPH", None, f"agent {ctx.worker.name}: {verdict.status}; "
                                    f"{verdict.reason}; {_handoff_ref(state, attempt)} ({attempt.report_rel}/)"))
    notes = (f"{outcome.message}. Turn {verdict.status}: {verdict.reason}. "
             f"{sum(1 for c in criteria if c.ok is True)}/{len(criteria)} exit criteria passed. "
             f"Fix-plan status: {item_status}.")
    if turn.refused:
        agent_turn.ledger_refusals(ctx, attempt.focus, attempt.report_rel, turn.refused)
    return _Verdict("ok" if verdict.status == "ok" else "failed", item_status, verdict.newly_ticked,
                    verdict.progressed or item_status == "done", notes, f"agent {verdict.status} → {item_status}",
                    agent=turn.record(ctx.worker.name), stage=turn.stage,
                    skip=tuple(r.path for r in turn.refused), turn_status=verdict.status)


def _finish(ctx: HarnessContext, attempt: _Attempt, state: CycleState, outcome: AgentResult,
            criteria: Sequence[CriterionRecord], verdict: _Verdict, save: Callable[[CycleState], None],
            meter: Meter | None) -> tuple[WorkResult, CycleState]:
    """The one way an attempt ends: run.json, the saved state, one RALPH commit, the meter."""
    attempt.recorder.state = state
    run_json = attempt.recorder.write(verdict.run_status, outcome.steps, criteria, verdict.notes,
                                      {"item_status": verdict.item_status, "ticked": list(verdict.ticked),
                                       "agent_message": outcome.message}, agent=verdict.agent)
    state = state.advance(Phase.WORKED, status=verdict.run_status)
    save(state)
    sha = commit_ralph(ctx, attempt.focus, verdict.subject, state, attempt.report_rel, verdict.run_status,
                       extra_paths=verdict.stage, skip_paths=verdict.skip)
    if meter is not None and ctx.worker.traits.metered and verdict.turn_status is not None:
        meter.record("worker", attempt.focus, outcome, verdict.turn_status)
    turn_status = verdict.turn_status.value if verdict.turn_status is not None else None
    return WorkResult(verdict.run_status, verdict.item_status, run_json, sha, verdict.progressed, verdict.notes,
                      verdict.ticked, turn_status=turn_status), state


def work(ctx: HarnessContext, state: CycleState, save: Callable[[CycleState], None],
         meter: Meter | None = None) -> tuple[WorkResult, CycleState]:
    """Run the worker turn for ``state`` (phase ``supervised`` or a resumed ``working``). What
    the harness does around the agent follows its declared :class:`~orchestrator.agents.AgentTraits`
    (an agent judged from evidence is observed before its turn and judged by
    :mod:`orchestrator.cycle.agent_turn`); ``meter`` waits out transient failures and counts spend."""
    provenance = verify_handoff(ctx, state, save)  # trust boundary: HandoffRefused (exit 8) before anything runs
    problems = validate_handoff_file(ctx.repo, ctx.layout.handoff, expected_focus=state.focus,
                                     expected_artifacts=state.report_dir)
    if problems:
        return _blocked_handoff(ctx, state, problems), state
    attempt, state = _start(ctx, state, save)
    attempt.recorder.provenance = provenance.to_dict()
    progress = _Progress(state, save)
    traits = ctx.worker.traits
    before = agent_turn.observe_before(ctx, attempt.focus, attempt.checks, attempt.report, attempt.env) \
        if traits.judged_by_evidence else None
    context = worker_prompt_context(ctx, attempt.focus, attempt.report_rel, meter) if traits.prompt_context else None
    task = WorkerTask(ctx.repo, attempt.handoff, attempt.focus, attempt.report, attempt.env,
                      ctx.config.step_timeout_s, steps=attempt.steps,
                      done_steps={int(k): _step_from_dict(v) for k, v in state.steps.items()},
                      on_step=progress.on_step, prompt_context=context)
    try:
        if meter is not None:
            outcome = meter.call("worker", attempt.focus, attempt.report_rel, lambda: ctx.worker.work(task))
        else:
            outcome = ctx.worker.work(task)
        criteria = run_checks(attempt.checks, ctx.repo, attempt.report, attempt.env, ctx.config.check_timeout_s)
    except KeyboardInterrupt as exc:
        _record_interrupt(attempt, progress, exc, save)
        raise
    verdict = (_judge_evidence(ctx, attempt, progress.state, outcome, criteria, before) if before is not None
               else _judge_steps(ctx, attempt, progress.state, outcome, criteria))
    return _finish(ctx, attempt, progress.state, outcome, criteria, verdict, save, meter)
