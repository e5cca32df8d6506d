"""Builtin supervisor: choose the focus, escalate stuck items, produce the handoff, record
a ledger entry and commit ``SUPERVISOR: <ID> — …``.

Focus rule: keep the current focus (that of the newest SUPERVISOR commit) while it is still
open and its dwell is below ``dwell_limit``; otherwise the highest-priority ``pending`` or
``in_progress`` item whose dependencies are all ``done`` (file order breaks ties). Dwell
comes from :mod:`orchestrator.history`, never from the ledger's text. At dwell ≥ limit the
item is marked ``blocked``, a ``blocked_<ts>.md`` is written into a fresh report dir of that
item, and that escalation is committed on its own before the next item is supervised.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.agents import SupervisorTask
from orchestrator.artifacts import new_report_dir, write_blocked
from orchestrator.context import HarnessContext
from orchestrator.documents import findings as findings_doc
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import ledger as ledger_doc
from orchestrator.documents import plan as plan_doc
from orchestrator.documents.common import write_atomic
from orchestrator.documents.errors import DocumentError
from orchestrator.handoff_check import validate_handoff_file
from orchestrator.handoff_draft import DraftInputs, render_draft
from orchestrator.history import cycle_commits, dwell, make_judge

from orchestrator.steps import harness_bin
from orchestrator.trust.signing import signing_setup

__all__ = ["FocusChoice", "SuperviseResult", "choose_focus", "eligible_items", "escalate", "git_sync", "supervise"]

logger = logging.getLogger(__name__)

FIX_PLAN = "docs/fix_plan.md"
LEDGER = "galph_memory.md"
FINDINGS = "docs/findings.md"
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


@dataclass(frozen=True)
class SuperviseResult:
    """``status``: ``ready`` (valid input.md committed), ``blocked`` (the agent's handoff was
    invalid or it timed out; recorded and committed), ``idle`` (nothing eligible)."""

    status: str
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
    def git(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=ctx.repo, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False, env=None)

    if not ctx.config.git_sync:
        return "disabled in orchestrator.yaml (git_sync: false)"
    upstream = git("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}")
    if upstream.returncode != 0:
        return "no upstream configured for this branch; pull skipped"
    try:
        pulled = git("pull", "--rebase", "--no-autostash", timeout=120)
    except subprocess.TimeoutExpired:
        return f"`git pull --rebase` from {upstream.stdout.strip()} timed out after 120 s"
    text = " ".join((pulled.stdout + pulled.stderr).split())[:200] or "(no output)"
    return f"`git pull --rebase` ({upstream.stdout.strip()}) → rc {pulled.returncode}: {text}"


def _ralph_last(ctx: HarnessContext, focus: str) -> str:
    for c in cycle_commits(ctx.repo):
        if c.kind == "RALPH" and c.focus == focus:
            return c.sha[:10]
    return "none"


def _ledger_entry(ctx: HarnessContext, title: str, focus: str, dwell_: int, action: str, state: str,
                  report_rel: str | None, sync: str, reviewed: list[str], next_action: str, body: str = "") -> str:
    """Append the entry; returns ``<timestamp> (line N)``, the commit trailer ``Ledger-Entry``
    (timestamps have one-second resolution, the heading's line makes the link unique)."""
    now = ctx.clock()
    item_title = ""
    try:
        item_title = fix_plan_doc.load(ctx.repo / FIX_PLAN).item(focus).title
    except (DocumentError, OSError):
        pass
    entry = ledger_doc.make_entry(
        now, title,
        fields=[("dwell", f"{dwell_} (computed from git history; limit {ctx.config.dwell_limit})"),
                ("Focus issue", f"{focus} — {item_title}".rstrip(" —")), ("Action type", action),
                ("Mode", "Implementation"), ("Git sync", sync), ("Documents reviewed", ", ".join(reviewed))],
        body=body, action_state=state,
        state=ledger_doc.StateLine(focus=focus, state=state, dwell=dwell_,
                                   ralph_last_commit=_ralph_last(ctx, focus),
                                   artifacts=(report_rel.rstrip("/") + "/") if report_rel else "none",
                                   next_action=next_action))
    line = ledger_doc.append(ctx.repo / LEDGER, entry)
    return f"{entry.timestamp_text} (line {line})"


def _commit(ctx: HarnessContext, focus: str, subject: str, trailers: dict[str, str]) -> str | None:
    message = subject + "\n\n" + "\n".join(f"{k}: {v}" for k, v in trailers.items())
    result = ctx.git().commit_owned("SUPERVISOR", focus, message, ctx.config.max_commit_bytes,
                                    expected_branch=ctx.expected_branch,
                                    commit_args=signing_setup(ctx.repo, ctx.config).commit_args)
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
    plan = fix_plan_doc.load(ctx.repo / FIX_PLAN)
    plan = fix_plan_doc.set_status(plan, focus, "blocked")
    plan = fix_plan_doc.append_attempt(plan, focus, fix_plan_doc.format_attempt(
        ctx.clock(), "SUPERVISOR", ctx.git().head_sha()[:10],
        f"escalated to blocked after {dwell_} cycles without progress ({ctx.rel(blocked)})"))
    write_atomic(ctx.repo / FIX_PLAN, fix_plan_doc.render(plan))
    ts = _ledger_entry(ctx, f"{focus} escalated to blocked", focus, dwell_, "Escalation", "blocked",
                       ctx.rel(report), sync, [FIX_PLAN, LEDGER], "human review of the blocker")
    logger.warning("escalated %s to blocked (dwell %d); %s", focus, dwell_, blocked)
    return _commit(ctx, focus, f"blocked after {dwell_} cycles without progress",
                   {"Ledger-Entry": ts, "Cycle-Id": cycle_id, "Harness-Action": "escalate"})


def _phases(ctx: HarnessContext, plan: plan_doc.Plan, phases_per_cycle: int) -> tuple[plan_doc.Phase, ...]:
    open_phases = tuple(p for p in plan.phases if not p.done)
    return open_phases if phases_per_cycle == 0 else open_phases[:phases_per_cycle]


def supervise(ctx: HarnessContext, cycle_id: str, forced_focus: str | None = None,
              phases_per_cycle: int | None = None) -> SuperviseResult:
    """One supervisor turn (see the module docstring)."""
    signing_setup(ctx.repo, ctx.config)  # trust boundary: SigningConfigError names the missing git setting
    sync = git_sync(ctx)
    plan = fix_plan_doc.load(ctx.repo / FIX_PLAN)
    judge = make_judge(ctx.repo)
    dwell_of = lambda fid: dwell(cycle_commits(ctx.repo), fid, judge)  # noqa: E731
    current = next((c.focus for c in cycle_commits(ctx.repo) if c.kind == "SUPERVISOR"), None)
    choice = choose_focus(plan, current, dwell_of, ctx.config.dwell_limit, forced_focus)
    escalated: tuple[str, ...] = ()
    if choice.escalate:
        escalate(ctx, choice.escalate, choice.escalate_dwell, cycle_id, sync)
        escalated = (choice.escalate,)
    if choice.focus is None:
        return SuperviseResult("idle", None, None, None, choice.reason, escalated)
    plan = fix_plan_doc.load(ctx.repo / FIX_PLAN)
    item = plan.item(choice.focus)
    plan_path = item.working_plan or f"plans/active/{item.id}/implementation.md"
    work_plan = plan_doc.load(ctx.repo / plan_path)
    per_cycle = ctx.config.phases_per_cycle if phases_per_cycle is None else phases_per_cycle
    phases = _phases(ctx, work_plan, per_cycle)
    if not phases:
        raise ValueError(f"{plan_path}: every checklist item is ticked but {item.id} is {item.status}; "
                         "set its status by hand or add a phase")
    findings_path = ctx.repo / FINDINGS
    findings = findings_doc.load(findings_path) if findings_path.exists() else None
    report = new_report_dir(ctx.repo, item.id, ctx.clock)
    report_rel = ctx.rel(report)
    branch = ctx.git().branch()
    draft = render_draft(DraftInputs(item, plan, work_plan, plan_path, phases, findings, report_rel, branch,
                                     choice.dwell, ctx.config.dwell_limit, cycle_id, harness_bin()))
    task = SupervisorTask(ctx.repo, item.id, item.title, choice.dwell, report, draft, ctx.clock())
    previous = task.input_path.read_bytes() if task.input_path.exists() else None
    outcome = ctx.supervisor.supervise(task)
    problems = list(outcome.problems)
    if outcome.ok:
        problems = validate_handoff_file(ctx.repo, task.input_path, expected_focus=item.id,
                                         expected_artifacts=report_rel)
        if problems:  # keep what was written as an artifact, put the previous handoff back
            (report / "invalid_input.md").write_bytes(task.input_path.read_bytes())
            if previous is None:
                task.input_path.unlink()
            else:
                write_atomic(task.input_path, previous.decode("utf-8"))
    reviewed = [FIX_PLAN, plan_path, *([FINDINGS] if findings else []), LEDGER]
    span = "–".join(dict.fromkeys((phases[0].id, phases[-1].id)))
    if outcome.ok and not problems:
        if item.status == "pending":
            write_atomic(ctx.repo / FIX_PLAN, fix_plan_doc.render(fix_plan_doc.set_status(plan, item.id, "in_progress")))
        ts = _ledger_entry(ctx, f"{item.id} — Phase {span} handoff", item.id, choice.dwell,
                           "Implementation handoff", "ready_for_implementation", report_rel, sync, reviewed,
                           f"worker runs Phase {span} ({ctx.supervisor.name} supervisor; {choice.reason})")
        sha = _commit(ctx, item.id, f"Phase {span} handoff (dwell {choice.dwell})",
                      {"Ledger-Entry": ts, "Cycle-Id": cycle_id, "Artifacts": report_rel + "/"})
        return SuperviseResult("ready", item.id, report, sha, f"handoff for Phase {span} committed",
                               escalated, choice.dwell)
    reason = outcome.message if not outcome.ok else "the handoff failed validation"
    blocked = write_blocked(report, f"{item.id}: supervisor agent {ctx.supervisor.name}: {reason}",
                            "\n".join(f"- {p}" for p in problems) or reason, clock=ctx.clock)
    ts = _ledger_entry(ctx, f"{item.id} — handoff blocked", item.id, choice.dwell, "Handoff rejected",
                       "blocked", report_rel, sync, reviewed, "next cycle retries the handoff",
                       body="\n".join(f"- {p}" for p in problems[:20]))
    sha = _commit(ctx, item.id, f"handoff rejected: {reason[:80]}",
                  {"Ledger-Entry": ts, "Cycle-Id": cycle_id, "Artifacts": report_rel + "/"})
    logger.warning("supervisor %s: %s (%s)", ctx.supervisor.name, reason, ctx.rel(blocked))
    return SuperviseResult("blocked", item.id, report, sha, reason, escalated, choice.dwell)

