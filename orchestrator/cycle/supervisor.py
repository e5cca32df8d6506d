"""Builtin supervisor: choose the focus, escalate stuck items, produce the handoff, record
a ledger entry and commit ``SUPERVISOR: <ID> — …``.

Focus rule: keep the current focus (that of the newest SUPERVISOR commit) while it is still
open and its dwell is below ``dwell_limit``; otherwise the highest-priority ``pending`` or
``in_progress`` item whose dependencies are all ``done`` (file order breaks ties). Dwell
comes from :mod:`orchestrator.vcs.history`, never from the ledger's text. At dwell ≥ limit the
item is marked ``blocked``, a ``blocked_<ts>.md`` is written into a fresh report dir of that
item, and that escalation is committed on its own before the next item is supervised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from orchestrator.agents.base import AgentResult, SupervisorTask
from orchestrator.context import HarnessContext
from orchestrator.cycle.meter import Meter
from orchestrator.cycle.prompt_context import supervisor_prompt_context
from orchestrator.cycle.supervisor_agent import (
    agent_status,
    chosen_focus,
    keep_valid_documents,
    move_report,
    spend_text,
)
from orchestrator.documents import findings as findings_doc
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import ledger as ledger_doc
from orchestrator.documents import plan as plan_doc
from orchestrator.documents.errors import DocumentError
from orchestrator.documents.handoff_check import validate_handoff_file
from orchestrator.documents.handoff_draft import DraftInputs, render_draft
from orchestrator.execution.steps import harness_bin
from orchestrator.fsutil import atomic_write_bytes, atomic_write_text
from orchestrator.layout import Layout
from orchestrator.records.artifacts import new_report_dir, write_blocked
from orchestrator.trust.signing import signing_setup
from orchestrator.vcs.history import cycle_commits, dwell, make_judge
from orchestrator.vcs.repo import GitError

__all__ = ["FocusChoice", "LedgerNote", "SuperviseResult", "SuperviseStatus", "choose_focus", "eligible_items",
           "escalate", "git_sync", "supervise"]

logger = logging.getLogger(__name__)

FIX_PLAN = Layout.FIX_PLAN
LEDGER = Layout.LEDGER
FINDINGS = Layout.FINDINGS
OPEN = ("pending", "in_progress")
_PRIORITY_RANK = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}


@dataclass(frozen=True)
class FocusChoice:
    """``focus`` None: nothing eligible. ``escalate``: the stuck focus to block first."""

    focus: str | None
    dwell: int
    reason: str
    escalate: str | None = None
    escalate_dwell: int = 0


class SuperviseStatus(StrEnum):
    READY = "ready"  # a valid input.md is committed
    BLOCKED = "blocked"  # the agent's handoff was invalid or it timed out; recorded and committed
    IDLE = "idle"  # nothing eligible


@dataclass(frozen=True)
class SuperviseResult:
    """The supervisor turn's result (see :class:`SuperviseStatus`)."""

    status: SuperviseStatus
    focus: str | None
    report_dir: Path | None
    commit: str | None
    message: str
    escalated: tuple[str, ...] = ()
    dwell: int = 0


def eligible_items(plan: fix_plan_doc.FixPlan, exclude: tuple[str, ...] = ()) -> list[fix_plan_doc.FixPlanItem]:
    """Open items whose dependencies are all ``done``, best first (priority, then file order)."""
    def deps_done(item: fix_plan_doc.FixPlanItem) -> bool:
        return all(plan.has(d) and plan.item(d).status == "done" for d in item.depends_on)

    items = [it for it in plan.items if it.status in OPEN and it.id not in exclude and deps_done(it)]
    return sorted(items, key=lambda it: (_PRIORITY_RANK.get(it.priority or "", 9), it.line))


def choose_focus(plan: fix_plan_doc.FixPlan, current: str | None, dwell_of, limit: int,
                 forced: str | None = None) -> FocusChoice:
    """Apply the focus rule; ``dwell_of(id) -> int``. ``forced`` must be eligible."""
    open_ids = [it.id for it in eligible_items(plan)]
    if forced is not None:
        if forced not in open_ids:
            status = plan.item(forced).status if plan.has(forced) else "not in the fix plan"
            raise ValueError(f"{plan.path}: focus {forced} is not eligible (status {status}, "
                             f"eligible: {', '.join(open_ids) or 'none'})")
        return FocusChoice(forced, dwell_of(forced), "requested focus")
    escalate, escalate_dwell = None, 0
    if current is not None and current in open_ids:
        d = dwell_of(current)
        if d < limit:
            return FocusChoice(current, d, f"current focus kept (dwell {d} < {limit})")
        escalate, escalate_dwell = current, d
    rest = eligible_items(plan, exclude=(escalate,) if escalate else ())
    if not rest:
        return FocusChoice(None, 0, "no pending/in_progress item with all dependencies done", escalate, escalate_dwell)
    pick = rest[0]
    why = f"highest-priority eligible item ({pick.priority or 'no priority'})"
    return FocusChoice(pick.id, dwell_of(pick.id), why, escalate, escalate_dwell)


def git_sync(ctx: HarnessContext) -> str:
    """Pull (rebase) when the branch tracks an upstream; returns what happened, for the ledger."""
    if not ctx.config.git_sync:
        return "disabled in orchestrator.yaml (git_sync: false)"
    upstream = ctx.git.upstream()
    if upstream is None:
        return "no upstream configured for this branch; pull skipped"
    try:
        pulled = ctx.git.pull_rebase(timeout_s=120)
    except GitError:
        return f"`git pull --rebase` from {upstream} timed out after 120 s"
    text = " ".join((pulled.stdout + pulled.stderr).split())[:200] or "(no output)"
    return f"`git pull --rebase` ({upstream}) → rc {pulled.returncode}: {text}"


def _ralph_last(ctx: HarnessContext, focus: str) -> str:
    for c in cycle_commits(ctx.git):
        if c.kind == "RALPH" and c.focus == focus:
            return c.sha[:10]
    return "none"


@dataclass(frozen=True, kw_only=True)
class LedgerNote:
    """What one supervisor ledger entry says: heading ``title``, the focus and its dwell, the
    action and resulting state, the report dir, the git sync result, the documents reviewed,
    the next action and an optional body."""

    title: str
    focus: str
    dwell: int
    action: str
    state: str
    report_rel: str | None
    sync: str
    reviewed: tuple[str, ...]
    next_action: str
    body: str = ""
    spend: str = ""


def _ledger_entry(ctx: HarnessContext, note: LedgerNote) -> str:
    """Append the entry; returns ``<timestamp> (line N)``, the commit trailer ``Ledger-Entry``
    (timestamps have one-second resolution, the heading's line makes the link unique)."""
    now = ctx.clock()
    item_title = ""
    try:
        item_title = fix_plan_doc.load(ctx.layout.fix_plan).item(note.focus).title
    except (DocumentError, OSError):
        pass
    entry = ledger_doc.make_entry(
        now, note.title,
        fields=[("dwell", f"{note.dwell} (computed from git history; limit {ctx.config.dwell_limit})"),
                ("Focus issue", f"{note.focus} — {item_title}".rstrip(" —")), ("Action type", note.action),
                ("Mode", "Implementation"), ("Git sync", note.sync), ("Documents reviewed", ", ".join(note.reviewed)),
                *([("Spend", note.spend)] if note.spend else [])],
        body=note.body, action_state=note.state,
        state=ledger_doc.StateLine(focus=note.focus, state=note.state, dwell=note.dwell,
                                   ralph_last_commit=_ralph_last(ctx, note.focus),
                                   artifacts=(note.report_rel.rstrip("/") + "/") if note.report_rel else "none",
                                   next_action=note.next_action))
    line = ledger_doc.append(ctx.layout.ledger, entry)
    return f"{entry.timestamp_text} (line {line})"


def _commit(ctx: HarnessContext, focus: str, subject: str, trailers: dict[str, str]) -> str | None:
    message = subject + "\n\n" + "\n".join(f"{k}: {v}" for k, v in trailers.items())
    result = ctx.git.commit_owned("SUPERVISOR", focus, message, ctx.config.max_commit_bytes,
                                  expected_branch=ctx.expected_branch,
                                  commit_args=signing_setup(ctx.git, ctx.config).commit_args)
    if result.refused_reason:
        raise RuntimeError(result.refused_reason)
    return result.sha


def escalate(ctx: HarnessContext, focus: str, dwell_: int, cycle_id: str, sync: str) -> str | None:
    """Mark ``focus`` blocked, write ``blocked_<ts>.md``, ledger entry, commit it."""
    report = new_report_dir(ctx.repo, focus, ctx.clock)
    blocked = write_blocked(report, f"{focus}: {dwell_} consecutive cycles without progress "
                            f"(dwell limit {ctx.config.dwell_limit})",
                            {"Focus": focus, "Dwell (computed from git history)": dwell_,
                             "Cycle": cycle_id, "Next": "a human re-plans the item and sets it back to pending"},
                            clock=ctx.clock)
    plan = fix_plan_doc.load(ctx.layout.fix_plan)
    plan = fix_plan_doc.set_status(plan, focus, "blocked")
    plan = fix_plan_doc.append_attempt(plan, focus, fix_plan_doc.format_attempt(
        ctx.clock(), "SUPERVISOR", ctx.git.head_sha()[:10],
        f"escalated to blocked after {dwell_} cycles without progress ({ctx.rel(blocked)})"))
    atomic_write_text(ctx.layout.fix_plan, fix_plan_doc.render(plan))
    ts = _ledger_entry(ctx, LedgerNote(
        title=f"{focus} escalated to blocked", focus=focus, dwell=dwell_, action="Escalation", state="blocked",
        report_rel=ctx.rel(report), sync=sync, reviewed=(FIX_PLAN, LEDGER), next_action="human review of the blocker"))
    logger.warning("escalated %s to blocked (dwell %d); %s", focus, dwell_, blocked)
    return _commit(ctx, focus, f"blocked after {dwell_} cycles without progress",
                   {"Ledger-Entry": ts, "Cycle-Id": cycle_id, "Harness-Action": "escalate"})


def _phases(ctx: HarnessContext, plan: plan_doc.Plan, phases_per_cycle: int) -> tuple[plan_doc.Phase, ...]:
    open_phases = tuple(p for p in plan.phases if not p.done)
    return open_phases if phases_per_cycle == 0 else open_phases[:phases_per_cycle]


@dataclass(frozen=True, kw_only=True)
class _Turn:
    """One supervisor turn once the focus is chosen: the item, its plan and phases, the
    report dir and the task handed to the supervisor agent."""

    cycle_id: str
    sync: str
    choice: FocusChoice
    escalated: tuple[str, ...]
    plan: fix_plan_doc.FixPlan
    item: fix_plan_doc.FixPlanItem
    plan_path: str
    phases: tuple[plan_doc.Phase, ...]
    reviewed: tuple[str, ...]
    report: Path
    task: SupervisorTask
    phases_per_cycle: int | None = None

    @property
    def report_rel(self) -> str:
        return Layout(self.task.repo).rel(self.report)

    @property
    def span(self) -> str:
        return "–".join(dict.fromkeys((self.phases[0].id, self.phases[-1].id)))


def _prepare(ctx: HarnessContext, cycle_id: str, sync: str, choice: FocusChoice, escalated: tuple[str, ...],
             phases_per_cycle: int | None, meter: Meter | None = None, report: Path | None = None) -> _Turn:
    """Load the chosen item's plan, pick the phases, make the report dir and render the draft."""
    assert choice.focus is not None
    plan = fix_plan_doc.load(ctx.layout.fix_plan)
    item = plan.item(choice.focus)
    plan_path = Layout.plan_rel(item.id, item.working_plan)
    work_plan = plan_doc.load(ctx.repo / plan_path)
    per_cycle = ctx.config.phases_per_cycle if phases_per_cycle is None else phases_per_cycle
    phases = _phases(ctx, work_plan, per_cycle)
    if not phases:
        raise ValueError(f"{plan_path}: every checklist item is ticked but {item.id} is {item.status}; "
                         "set its status by hand or add a phase")
    findings = findings_doc.load(ctx.layout.findings) if ctx.layout.findings.exists() else None
    report = report if report is not None else new_report_dir(ctx.repo, item.id, ctx.clock)
    draft = render_draft(DraftInputs(item, plan, work_plan, plan_path, phases, findings, ctx.rel(report),
                                     ctx.git.branch(), choice.dwell, ctx.config.dwell_limit, cycle_id, harness_bin()))
    context = None
    if ctx.supervisor.traits.prompt_context:
        eligible = tuple(f"{it.id} — {it.title} ({it.status}, {it.priority or 'no priority'})"
                         for it in eligible_items(plan))
        context = supervisor_prompt_context(ctx, item.id, ctx.rel(report), choice.dwell, draft, eligible, meter)
    task = SupervisorTask(ctx.repo, item.id, item.title, choice.dwell, report, draft, ctx.clock(), context)
    reviewed = (FIX_PLAN, plan_path, *([FINDINGS] if findings else []), LEDGER)
    return _Turn(cycle_id=cycle_id, sync=sync, choice=choice, escalated=escalated, plan=plan, item=item,
                 plan_path=plan_path, phases=phases, reviewed=reviewed, report=report, task=task,
                 phases_per_cycle=phases_per_cycle)


def _rechoose(ctx: HarnessContext, turn: _Turn, focus: str) -> _Turn:
    """The turn for the eligible item ``focus`` a supervisor agent chose instead of the proposed
    one: its report dir (same name, under ``focus``; the agent's transcript moved there), plan,
    phases and dwell."""
    report = move_report(ctx, turn.report, focus)
    choice = FocusChoice(focus, dwell(cycle_commits(ctx.git), focus, make_judge(ctx.git)),
                         f"chosen by the supervisor agent instead of {turn.item.id}")
    logger.info("supervisor agent chose %s instead of %s", focus, turn.item.id)
    return _prepare(ctx, turn.cycle_id, turn.sync, choice, turn.escalated, turn.phases_per_cycle, report=report)


def _handoff(ctx: HarnessContext, turn: _Turn, meter: Meter | None = None,
             forced: bool = False) -> tuple[_Turn, AgentResult, list[str]]:
    """Run the supervisor agent and validate what it wrote; an invalid handoff is kept as an
    artifact and the previous ``input.md`` is put back (so are an invalid fix plan or plan).
    A supervisor with ``may_choose_focus`` may name another eligible item (not when the focus was forced)."""
    task = turn.task
    previous = task.input_path.read_bytes() if task.input_path.exists() else None
    documents = {p: p.read_bytes() for p in (ctx.layout.fix_plan, ctx.repo / turn.plan_path) if p.exists()}
    task = replace(task, after_run=lambda: keep_valid_documents(ctx, turn.report, documents))
    if meter is not None:
        outcome = meter.call("supervisor", turn.item.id, turn.report_rel, lambda: ctx.supervisor.supervise(task))
    else:
        outcome = ctx.supervisor.supervise(task)
    traits = ctx.supervisor.traits
    if traits.metered and meter is not None:
        meter.record("supervisor", turn.item.id, outcome, agent_status(outcome.status))
    if not outcome.ok:
        return turn, outcome, list(outcome.problems)
    if traits.may_choose_focus and not forced:
        eligible = [it.id for it in eligible_items(fix_plan_doc.load(ctx.layout.fix_plan))]
        chosen = chosen_focus(ctx, task.input_path, turn.item.id, eligible)
        if chosen is not None:
            turn = _rechoose(ctx, turn, chosen)
    problems = validate_handoff_file(ctx.repo, task.input_path, expected_focus=turn.item.id,
                                     expected_artifacts=turn.report_rel)
    if problems:
        (turn.report / "invalid_input.md").write_bytes(task.input_path.read_bytes())
        if previous is None:
            task.input_path.unlink()
        else:
            atomic_write_bytes(task.input_path, previous)
    return turn, outcome, problems


def _commit_handoff(ctx: HarnessContext, turn: _Turn, meter: Meter | None = None) -> SuperviseResult:
    item, choice = turn.item, turn.choice
    if item.status == "pending":  # the plan as it is now: a supervisor agent may have refined it
        plan = fix_plan_doc.load(ctx.layout.fix_plan)
        atomic_write_text(ctx.layout.fix_plan, fix_plan_doc.render(fix_plan_doc.set_status(plan, item.id,
                                                                                             "in_progress")))
    ts = _ledger_entry(ctx, LedgerNote(
        title=f"{item.id} — Phase {turn.span} handoff", focus=item.id, dwell=choice.dwell,
        action="Implementation handoff", state="ready_for_implementation", report_rel=turn.report_rel,
        sync=turn.sync, reviewed=turn.reviewed,
        next_action=f"worker runs Phase {turn.span} ({ctx.supervisor.name} supervisor; {choice.reason})",
        spend=spend_text(meter, item.id)))
    sha = _commit(ctx, item.id, f"Phase {turn.span} handoff (dwell {choice.dwell})",
                  {"Ledger-Entry": ts, "Cycle-Id": turn.cycle_id, "Artifacts": turn.report_rel + "/"})
    return SuperviseResult(SuperviseStatus.READY, item.id, turn.report, sha,
                           f"handoff for Phase {turn.span} committed", turn.escalated, choice.dwell)


def _commit_rejection(ctx: HarnessContext, turn: _Turn, reason: str, problems: list[str],
                      meter: Meter | None = None) -> SuperviseResult:
    item = turn.item
    blocked = write_blocked(turn.report, f"{item.id}: supervisor agent {ctx.supervisor.name}: {reason}",
                            "\n".join(f"- {p}" for p in problems) or reason, clock=ctx.clock)
    ts = _ledger_entry(ctx, LedgerNote(
        title=f"{item.id} — handoff blocked", focus=item.id, dwell=turn.choice.dwell, action="Handoff rejected",
        state="blocked", report_rel=turn.report_rel, sync=turn.sync, reviewed=turn.reviewed,
        next_action="next cycle retries the handoff", body="\n".join(f"- {p}" for p in problems[:20]),
        spend=spend_text(meter, item.id)))
    sha = _commit(ctx, item.id, f"handoff rejected: {reason[:80]}",
                  {"Ledger-Entry": ts, "Cycle-Id": turn.cycle_id, "Artifacts": turn.report_rel + "/"})
    logger.warning("supervisor %s: %s (%s)", ctx.supervisor.name, reason, ctx.rel(blocked))
    return SuperviseResult(SuperviseStatus.BLOCKED, item.id, turn.report, sha, reason, turn.escalated,
                           turn.choice.dwell)


def supervise(ctx: HarnessContext, cycle_id: str, forced_focus: str | None = None,
              phases_per_cycle: int | None = None, meter: Meter | None = None) -> SuperviseResult:
    """One supervisor turn (see the module docstring); ``meter`` waits out transient agent
    failures, counts spend and feeds the breaker."""
    signing_setup(ctx.git, ctx.config)  # trust boundary: SigningConfigError names the missing git setting
    sync = git_sync(ctx)
    plan = fix_plan_doc.load(ctx.layout.fix_plan)
    judge = make_judge(ctx.git)

    def dwell_of(fid: str) -> int:
        return dwell(cycle_commits(ctx.git), fid, judge)

    current = next((c.focus for c in cycle_commits(ctx.git) if c.kind == "SUPERVISOR"), None)
    choice = choose_focus(plan, current, dwell_of, ctx.config.dwell_limit, forced_focus)
    escalated: tuple[str, ...] = ()
    if choice.escalate:
        escalate(ctx, choice.escalate, choice.escalate_dwell, cycle_id, sync)
        escalated = (choice.escalate,)
    if choice.focus is None:
        return SuperviseResult(SuperviseStatus.IDLE, None, None, None, choice.reason, escalated)
    turn = _prepare(ctx, cycle_id, sync, choice, escalated, phases_per_cycle, meter)
    turn, outcome, problems = _handoff(ctx, turn, meter, forced=forced_focus is not None)
    if outcome.ok and not problems:
        return _commit_handoff(ctx, turn, meter)
    return _commit_rejection(ctx, turn, outcome.message if not outcome.ok else "the handoff failed validation",
                             problems, meter)
