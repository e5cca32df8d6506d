"""docs/fix_plan.md: items dialect with variants, single-focus dialect, byte-exact mutations."""

import difflib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.documents import fix_plan
from orchestrator.documents.errors import (
    ParseError,
    ReadOnlyDialectError,
    UnknownIdError,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "documents"
PLAN = FIXTURES / "fix_plan.md"
SINGLE = FIXTURES / "fix_plan_single_focus.md"


def _changed_lines(before: str, after: str) -> list[str]:
    return [d for d in difflib.ndiff(before.splitlines(True), after.splitlines(True)) if d[:1] in "+-"]


@pytest.mark.parametrize("path", [PLAN, SINGLE])
def test_render_of_parse_is_byte_identical(path):
    assert fix_plan.render(fix_plan.load(path)) == path.read_text()


def test_items_dialect_reads_status_priority_dependencies_and_plan():
    doc = fix_plan.load(PLAN)
    assert doc.dialect == fix_plan.ITEMS
    assert doc.ids == (
        "FIX-GRIDSIZE-TRANSLATE-BATCH-001",
        "REFACTOR-MODEL-SINGLETON-001",
        "STUDY-SYNTH-DOSE-COMPARISON-001",
    )
    fix = doc.item("FIX-GRIDSIZE-TRANSLATE-BATCH-001")
    assert (fix.status, fix.priority, fix.depends_on, fix.line) == ("done", "P0", (), 5)
    assert fix.working_plan == "plans/active/FIX-GRIDSIZE-TRANSLATE-BATCH-001/implementation.md"
    assert fix.mapped_tests == ("pytest tests/ptycho/test_translation.py -k batch_broadcast -q",)
    assert len(fix.exit_criteria) == 2
    a0, a1 = fix.attempts
    assert (a0.timestamp, a0.role, a0.sha, a0.text, a0.line) == (
        datetime(2026, 1, 6, 14, tzinfo=UTC),
        "SUPERVISOR",
        "1945a45f",
        "root cause confirmed, fix designed",
        15,
    )
    assert a1.role == "RALPH" and a1.sha == "13599565"


def test_real_world_variants_bold_keys_status_note_dash_heading():
    doc = fix_plan.load(PLAN)
    ref = doc.item("REFACTOR-MODEL-SINGLETON-001")
    assert (ref.status, ref.status_note) == ("done", "verified by test_import_no_side_effects")
    assert ref.depends_on == ("FIX-GRIDSIZE-TRANSLATE-BATCH-001",)
    assert ref.working_plan == "plans/active/REFACTOR-MODEL-SINGLETON-001/implementation.md"
    assert ref.mapped_tests == ('pytest tests/ptycho/test_model.py -k "multi_n or import" -q',)
    assert [a.timestamp is None for a in ref.attempts] == [False, False, True]  # free-form line kept as raw
    assert ref.attempts[1].timestamp == datetime(2026, 1, 7, 6, tzinfo=UTC)  # compact form
    study = doc.item("STUDY-SYNTH-DOSE-COMPARISON-001")
    assert study.title == "Synthetic dose response & loss comparison study"
    assert study.status == "pending"  # un-bulleted "Status: pending"
    assert study.depends_on == ("FIX-GRIDSIZE-TRANSLATE-BATCH-001", "REFACTOR-MODEL-SINGLETON-001")
    assert "NOT-AN-ITEM-001" not in doc.ids  # heading inside a fence


def test_lookup_accepts_substep_and_unknown_id_lists_known():
    doc = fix_plan.load(PLAN)
    assert doc.item("STUDY-SYNTH-DOSE-COMPARISON-001.F1").id == "STUDY-SYNTH-DOSE-COMPARISON-001"
    with pytest.raises(UnknownIdError) as err:
        doc.item("NOPE-001")
    assert isinstance(err.value, KeyError)
    assert "unknown fix-plan item 'NOPE-001'" in str(err.value) and "REFACTOR-MODEL-SINGLETON-001" in str(err.value)


def test_set_status_changes_only_the_status_line():
    doc = fix_plan.load(PLAN)
    before = fix_plan.render(doc)
    new = fix_plan.set_status(doc, "REFACTOR-MODEL-SINGLETON-001", "blocked")
    assert new.item("REFACTOR-MODEL-SINGLETON-001").status == "blocked"
    assert _changed_lines(before, fix_plan.render(new)) == [
        "- - **Status:** done — verified by test_import_no_side_effects\n",
        "+ - **Status:** blocked\n",
    ]
    assert fix_plan.render(doc) == before  # the original document is not mutated
    plain = fix_plan.set_status(doc, "STUDY-SYNTH-DOSE-COMPARISON-001", "in_progress")
    assert _changed_lines(before, fix_plan.render(plain)) == ["- Status: pending\n", "+ Status: in_progress\n"]
    with pytest.raises(ValueError, match="status must be one of"):
        fix_plan.set_status(doc, "STUDY-SYNTH-DOSE-COMPARISON-001", "finished")


def test_set_status_inserts_a_missing_status_field():
    doc = fix_plan.parse("# Plan\n\n## [A-001] t\n- Priority: P1\n", "fp.md")
    new = fix_plan.set_status(doc, "A-001", "pending")
    assert fix_plan.render(new) == "# Plan\n\n## [A-001] t\n- Status: pending\n- Priority: P1\n"


def test_append_attempt_to_existing_and_new_history():
    doc = fix_plan.load(PLAN)
    before = fix_plan.render(doc)
    line = fix_plan.format_attempt(datetime(2026, 1, 8, tzinfo=UTC), "ralph", "abc1234", "ran the study")
    assert line == "2026-01-08T00:00:00Z RALPH abc1234: ran the study"
    new = fix_plan.append_attempt(doc, "REFACTOR-MODEL-SINGLETON-001", line)
    assert _changed_lines(before, fix_plan.render(new)) == [f"+   - {line}\n"]
    last = new.item("REFACTOR-MODEL-SINGLETON-001").attempts[-1]
    assert (last.role, last.sha, last.text) == ("RALPH", "abc1234", "ran the study")
    created = fix_plan.append_attempt(doc, "STUDY-SYNTH-DOSE-COMPARISON-001", line)
    assert _changed_lines(before, fix_plan.render(created)) == ["+ - Attempts History:\n", f"+   - {line}\n"]
    study = created.item("STUDY-SYNTH-DOSE-COMPARISON-001")
    assert [a.text for a in study.attempts] == ["ran the study"]
    assert study.exit_criteria == doc.item("STUDY-SYNTH-DOSE-COMPARISON-001").exit_criteria
    with pytest.raises(ValueError, match="single line"):
        fix_plan.append_attempt(doc, "STUDY-SYNTH-DOSE-COMPARISON-001", "a\nb")


def test_add_item_appends_a_parseable_item():
    doc = fix_plan.load(PLAN)
    new = fix_plan.add_item(
        doc,
        "DOCS-NEW-001",
        "Write docs",
        priority="P3",
        depends_on=["STUDY-SYNTH-DOSE-COMPARISON-001"],
        mapped_tests=["pytest -q tests/x.py"],
    )
    assert fix_plan.render(new).startswith(fix_plan.render(doc))
    item = new.item("DOCS-NEW-001")
    assert (item.status, item.priority, item.depends_on, item.mapped_tests) == (
        "pending",
        "P3",
        ("STUDY-SYNTH-DOSE-COMPARISON-001",),
        ("pytest -q tests/x.py",),
    )
    with pytest.raises(ValueError, match="already exists"):
        fix_plan.add_item(new, "DOCS-NEW-001", "again")


def test_single_focus_dialect():
    doc = fix_plan.load(SINGLE)
    assert doc.dialect == fix_plan.SINGLE_FOCUS
    assert (doc.status, doc.current_focus) == ("in_progress", "STUDY-SYNTH-DOSE-COMPARISON-001")
    assert doc.current_focus_title == "Synthetic Dose Response & Loss Comparison Study"
    focus = doc.item("STUDY-SYNTH-DOSE-COMPARISON-001")
    assert focus.status == "in_progress" and focus.line == 7
    assert [(a.focus, a.label, a.role) for a in focus.attempts] == [
        ("STUDY-SYNTH-DOSE-COMPARISON-001.F1", "supervisor handoff", "SUPERVISOR"),
        ("STUDY-SYNTH-DOSE-COMPARISON-001.F1", "ralph run", "RALPH"),
        ("STUDY-SYNTH-DOSE-COMPARISON-001.F0", "supervisor triage", "SUPERVISOR"),
    ]
    assert focus.attempts[0].timestamp == datetime(2026, 1, 22, 2, 40, tzinfo=UTC)
    assert "timeout 900" in focus.attempts[0].text
    assert doc.item("FIX-GRIDSIZE-TRANSLATE-BATCH-001").status == "done"
    assert doc.item("DOCS-FINDINGS-REFRESH-001").status == "pending"
    with pytest.raises(ReadOnlyDialectError):
        fix_plan.set_status(doc, "STUDY-SYNTH-DOSE-COMPARISON-001", "done")


def test_single_focus_bad_attempt_timestamp():
    text = SINGLE.read_text().replace("2026-01-22T03:15Z", "2026-01-22T3:15Z")
    with pytest.raises(ParseError) as err:
        fix_plan.parse(text, "fp.md")
    assert err.value.line == 22


def test_duplicate_ids_and_no_items():
    with pytest.raises(ParseError) as err:
        fix_plan.load(FIXTURES / "malformed" / "fix_plan_duplicate.md")
    assert err.value.line == 9 and "duplicate focus ID 'FIX-A-001'" in err.value.message
    with pytest.raises(ParseError, match="no fix-plan items"):
        fix_plan.parse("# Fix plan\n\nnothing yet\n", "fp.md")
