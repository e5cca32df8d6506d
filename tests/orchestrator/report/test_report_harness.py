"""The review page on what the real builtin harness wrote (not hand-made fixtures).

Runs the loop (tests/orchestrator/_harness_repo.py, the loop's own test helper) on a tiny
plan in a real git repo: one item that fails three cycles and gets escalated, one that
passes. The page built from that repo must show every run without schema warnings, the
escalation, git-derived dwell that agrees with the ledger, and attempts linked to runs.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.cycle.loop import run_loop
from orchestrator.report import build_report, write_report

STUCK = ("T-STUCK-001", [("Broken", [("always fails", "echo trying; false")])], ["never — check: `false`"])
EASY = ("T-EASY-001", [("Easy", [("ok", "echo fine > $ARTIFACTS/fine.txt")])],
            ["written — check: `test -s $ARTIFACTS/fine.txt`"])


def test_report_on_a_real_harness_history(tmp_path: Path, harness) -> None:
    repo = harness.make_repo(tmp_path / "r", {
        "T-STUCK-001": (harness.item("T-STUCK-001", "stuck item", priority="P0"), harness.plan(*STUCK)),
        "T-EASY-001": (harness.item("T-EASY-001", "easy item", priority="P1"), harness.plan(*EASY))})
    result = run_loop(harness.context(repo), cycles=4)
    assert [c.status for c in result.cycles] == ["failed", "failed", "failed", "done"]

    data = build_report(repo)
    assert data.all_notices == (), data.all_notices  # real run.json validate; no false warnings
    assert [(r.focus, r.outcome) for r in data.runs] == [
        ("T-EASY-001", "pass"), ("T-STUCK-001", "fail"), ("T-STUCK-001", "fail"), ("T-STUCK-001", "fail")]
    assert all(s.log_exists for r in data.runs for s in r.steps)
    (esc,) = data.escalations
    assert esc.focus == "T-STUCK-001" and "without progress" in esc.title

    entries = data.timeline.entries
    assert [e.focus for e in entries] == ["T-STUCK-001"] * 4 + ["T-EASY-001"]
    assert {e.dwell_source for e in entries} == {"git"}
    assert [e.recorded_dwell for e in entries] == [e.computed_dwell for e in entries] == [0, 1, 2, 3, 0]
    assert all(e.flags == () for e in entries)

    items = {i.item_id: i for col in data.board.columns for i in col.items}
    assert items["T-STUCK-001"].status == "blocked" and items["T-STUCK-001"].last_attempt.result == "blocked"
    easy = items["T-EASY-001"].last_attempt
    assert items["T-EASY-001"].status == "done" and easy.result == "pass"
    assert easy.run_id == data.runs[0].run_id  # linked to its run card

    html = write_report(repo, tmp_path / "page.html").read_text(encoding="utf-8")
    assert f'href="#run-{easy.run_id}"' in html and 'class="escalation"' in html
