"""What an external supervisor agent may do beyond writing ``input.md``, checked by the harness:
refine ``docs/fix_plan.md`` and the working plan (an invalid file is kept as an artifact and the
previous one restored) and choose another eligible item as the focus (its report dir then moves
under that item). Also its turn status for the breaker and the spend line of a ledger entry."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator.context import HarnessContext
from orchestrator.cycle.meter import Meter
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import handoff as handoff_doc
from orchestrator.documents import plan as plan_doc
from orchestrator.documents.common import read_text
from orchestrator.documents.errors import DocumentError
from orchestrator.fsutil import atomic_write_bytes
from orchestrator.turns.breaker import TurnStatus

__all__ = ["agent_status", "chosen_focus", "keep_valid_documents", "move_report", "spend_text"]

logger = logging.getLogger(__name__)

_AGENT_STATUS = {"ok": TurnStatus.OK, "invalid": TurnStatus.INVALID_OUTPUT, "timed_out": TurnStatus.TIMEOUT,
                 "transient": TurnStatus.TRANSIENT}


def agent_status(status: str) -> TurnStatus:
    """An :class:`~orchestrator.agents.base.AgentResult` status as a turn status."""
    return _AGENT_STATUS.get(status, TurnStatus.AGENT_ERROR)


def keep_valid_documents(ctx: HarnessContext, report: Path, before: Mapping[Path, bytes]) -> list[str]:
    """The fix plan and working plan an agent may edit must still parse; an invalid one is kept
    as ``<report>/agent/invalid_<name>`` and the previous version restored. Returns notes."""
    notes = []
    for path, data in before.items():
        loader = fix_plan_doc.load if path == ctx.layout.fix_plan else plan_doc.load
        try:
            loader(path)
        except (DocumentError, OSError, ValueError) as exc:
            keep = report / "agent" / f"invalid_{path.name}"
            keep.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                keep.write_bytes(path.read_bytes())
            atomic_write_bytes(path, data)
            notes.append(f"{ctx.rel(path)}: invalid after the supervisor agent ({exc}); kept as "
                         f"{ctx.rel(keep)}, previous restored")
    return notes


def chosen_focus(ctx: HarnessContext, input_path: Path, proposed: str, eligible: Sequence[str]) -> str | None:
    """The item the agent's ``input.md`` names when it is another eligible item with an open
    plan phase (None otherwise: the handoff is then validated against the proposed focus)."""
    try:
        focus = handoff_doc.parse(read_text(input_path), input_path).focus_item_id
        if focus is None or focus == proposed or focus not in eligible:
            return None
        item = fix_plan_doc.load(ctx.layout.fix_plan).item(focus)
        plan = plan_doc.load(ctx.layout.plan_of(focus, item.working_plan))
    except (DocumentError, OSError, KeyError, ValueError):
        return None
    return focus if any(not p.done for p in plan.phases) else None


def move_report(ctx: HarnessContext, report: Path, focus: str) -> Path:
    """Move a turn's report dir (same name) under ``focus``'s reports; returns the new path."""
    target = ctx.layout.reports(focus) / report.name
    target.parent.mkdir(parents=True, exist_ok=True)
    report.rename(target)
    for empty in (report.parent, report.parent.parent):  # reports/ and the item dir, when left empty
        with contextlib.suppress(OSError):
            empty.rmdir()
    return target


def spend_text(meter: Meter | None, focus: str) -> str:
    """The ``Spend`` field of a ledger entry (empty before any agent turn reported spend)."""
    if meter is None or not meter.turns:
        return ""
    loop, item = meter.spend(), meter.spend(focus)
    return (f"${loop['cost_usd']:.4f}, {loop['input_tokens']} in / {loop['output_tokens']} out tokens this loop "
            f"(this focus: ${item['cost_usd']:.4f})")
