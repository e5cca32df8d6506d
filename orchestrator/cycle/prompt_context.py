"""The context of an agent's prompt (:class:`orchestrator.turns.prompts.PromptContext`), read
from the repository: the focus's fix-plan item, its working plan, the last ledger entries, the
previous worker turn on the focus (its run.json: status, notes, failing criteria with the
tails of their logs), ``git diff --stat`` since the last SUPERVISOR commit, dwell and spend."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.context import HarnessContext
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import ledger as ledger_doc
from orchestrator.documents.errors import DocumentError
from orchestrator.turns.prompts import FailingCriterion, PreviousTurn, PromptContext, Spend
from orchestrator.vcs.history import cycle_commits

if TYPE_CHECKING:
    from orchestrator.cycle.meter import Meter

__all__ = ["LEDGER_ENTRIES", "supervisor_prompt_context", "worker_prompt_context"]

logger = logging.getLogger(__name__)

#: how many of the newest ledger entries a prompt shows
LEDGER_ENTRIES = 3
_LOG_TAIL_LINES = 30


def _item_text(ctx: HarnessContext, focus: str) -> tuple[str, str, str]:
    """(title, the item's lines in docs/fix_plan.md, working plan path)."""
    try:
        plan = fix_plan_doc.load(ctx.layout.fix_plan)
        item = plan.item(focus)
    except (DocumentError, OSError, KeyError, ValueError):
        return "", "", ""
    text = "\n".join(line.rstrip("\r\n") for line in plan.lines[item.line - 1:item.end_line]).strip()
    return item.title, text, ctx.layout.rel(ctx.layout.plan_of(focus, item.working_plan))


def _ledger(ctx: HarnessContext) -> tuple[str, ...]:
    try:
        entries = ledger_doc.entries_in_time_order(ledger_doc.load(ctx.layout.ledger))
    except (DocumentError, OSError):
        return ()
    return tuple(e.text.strip() for e in entries[-LEDGER_ENTRIES:])


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-_LOG_TAIL_LINES:])
    except OSError:
        return ""


def _previous(ctx: HarnessContext, focus: str) -> PreviousTurn | None:
    runs = sorted(ctx.layout.reports(focus).glob("*/run.json"), key=lambda p: p.parent.name)
    if not runs:
        return None
    try:
        data = json.loads(runs[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    report = runs[-1].parent
    failing = tuple(FailingCriterion(c.get("text", ""), _tail(report / c["log"]) if c.get("log") else "")
                    for c in data.get("exit_criteria", []) if c.get("ok") is not True)
    status = (data.get("agent") or {}).get("status") or data.get("status", "")
    return PreviousTurn(str(status), str(data.get("notes", "")), failing)


def _diff_stat(ctx: HarnessContext) -> str:
    last = next((c.sha for c in cycle_commits(ctx.git) if c.kind == "SUPERVISOR"), None)
    return ctx.git.diff_stat(last) if last else ""


def _spend(ctx: HarnessContext, meter: Meter | None) -> Spend:
    if meter is None:
        return Spend()
    s, left = meter.spent, meter.remaining()
    return Spend(s.cost_usd, s.input_tokens, s.output_tokens, left["cost_usd"], left["tokens"])


def _dwell(ctx: HarnessContext, focus: str) -> int:
    from orchestrator.vcs.history import dwell, make_judge

    return dwell(cycle_commits(ctx.git), focus, make_judge(ctx.git))


def _working_plan(ctx: HarnessContext, rel: str) -> str:
    try:
        return (ctx.repo / rel).read_text(encoding="utf-8") if rel else ""
    except OSError:
        return ""


def supervisor_prompt_context(ctx: HarnessContext, focus: str, report_rel: str, dwell: int, draft: str,
                              eligible: tuple[str, ...], meter: Meter | None) -> PromptContext:
    title, item, plan_rel = _item_text(ctx, focus)
    return PromptContext(
        role="supervisor", repo=str(ctx.repo), focus=focus, report_dir=report_rel, focus_title=title,
        fix_plan_item=item, eligible_items=eligible, working_plan_path=plan_rel,
        working_plan=_working_plan(ctx, plan_rel), ledger_entries=_ledger(ctx), previous_turn=_previous(ctx, focus),
        diff_stat=_diff_stat(ctx), dwell=dwell, dwell_limit=ctx.config.dwell_limit, spend=_spend(ctx, meter),
        handoff_path=ctx.layout.HANDOFF, draft=draft)


def worker_prompt_context(ctx: HarnessContext, focus: str, report_rel: str, meter: Meter | None) -> PromptContext:
    title, item, plan_rel = _item_text(ctx, focus)
    return PromptContext(
        role="worker", repo=str(ctx.repo), focus=focus, report_dir=report_rel, focus_title=title,
        fix_plan_item=item, working_plan_path=plan_rel, working_plan=_working_plan(ctx, plan_rel),
        ledger_entries=_ledger(ctx), previous_turn=_previous(ctx, focus), diff_stat=_diff_stat(ctx),
        dwell=_dwell(ctx, focus), dwell_limit=ctx.config.dwell_limit, spend=_spend(ctx, meter),
        handoff_path=ctx.layout.HANDOFF)
