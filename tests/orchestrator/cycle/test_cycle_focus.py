"""The builtin supervisor's focus choice: eligibility by priority and dependencies, dwell, escalation."""

from __future__ import annotations

import pytest

from orchestrator.cycle.supervisor import choose_focus, eligible_items
from orchestrator.documents import fix_plan as fix_plan_doc


@pytest.fixture
def backlog(harness) -> fix_plan_doc.FixPlan:
    """Five items: priorities, a dependency on an open item and a done item."""
    return fix_plan_doc.parse(
        harness.item("A-LOW-001", "low", priority="P2")
        + harness.item("B-DEP-001", "waits", priority="P0", depends="C-TOP-001")
        + harness.item("C-TOP-001", "top", priority="P1")
        + harness.item("D-DONE-001", "finished", status="done", priority="P0")
        + harness.item("E-TIE-001", "tie", priority="P1")
    )


def test_eligible_items_by_priority_then_file_order_and_dependencies(backlog) -> None:
    assert [i.id for i in eligible_items(backlog)] == ["C-TOP-001", "E-TIE-001", "A-LOW-001"]


def test_choose_focus_keeps_current_below_limit_and_escalates_at_limit(backlog) -> None:
    dwells = {"A-LOW-001": 2, "C-TOP-001": 3, "E-TIE-001": 0}
    keep = choose_focus(backlog, "A-LOW-001", dwells.get, 3)
    assert (keep.focus, keep.dwell, keep.escalate) == ("A-LOW-001", 2, None)
    moved = choose_focus(backlog, "C-TOP-001", dwells.get, 3)
    assert (moved.focus, moved.escalate, moved.escalate_dwell) == ("E-TIE-001", "C-TOP-001", 3)
    fresh = choose_focus(backlog, "D-DONE-001", dwells.get, 3)  # the current focus is done: pick the best
    assert fresh.focus == "C-TOP-001" and fresh.escalate is None
    with pytest.raises(ValueError, match="B-DEP-001 is not eligible"):
        choose_focus(backlog, None, dwells.get, 3, forced="B-DEP-001")
