"""docs/findings.md: standard table, Finding-ID tables without separator, add_or_update."""

import difflib
from pathlib import Path

import pytest

from orchestrator.documents import findings
from orchestrator.documents.errors import ParseError, UnknownIdError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "documents"
STANDARD = FIXTURES / "findings.md"
EXPORT = FIXTURES / "findings_no_separator.md"


@pytest.mark.parametrize("path", [STANDARD, EXPORT])
def test_render_of_parse_is_byte_identical(path):
    assert findings.render(findings.load(path)) == path.read_text()


def test_findings_rows_are_read_by_id_with_line_numbers():
    doc = findings.load(STANDARD)
    assert doc.ids == ("CONFIG-001", "MODULE-SINGLETON-001", "TF-NON-XLA-SHAPE-001", "BUG-TF-001")
    assert len(doc.tables) == 1 and doc.tables[0].has_separator  # the Keyword table has no ID column
    row = doc.get("MODULE-SINGLETON-001")
    assert (row.date, row.status, row.line) == ("2026-01-06", "resolved", 8)
    assert row.get("id") == "MODULE-SINGLETON-001" and row.get("EVIDENCE").endswith("summary.md")
    assert doc.get("BUG-TF-001").synopsis.endswith("a | inside a cell stays escaped")
    with pytest.raises(UnknownIdError):
        doc.get("NOPE-1")


def test_finding_id_header_without_separator_hundreds_of_rows():
    doc = findings.load(EXPORT)
    assert len(doc.rows) == 320 and not doc.tables[0].has_separator
    assert doc.tables[0].columns[0] == "Finding ID"
    assert doc.rows[0].id == "F-0001" and doc.rows[0].get("ID") == "F-0001"
    assert doc.get("F-0005").status == "resolved"


def test_add_or_update_touches_one_line():
    doc = findings.load(STANDARD)
    before = findings.render(doc)
    updated = findings.add_or_update(doc, "CONFIG-001", {"status": "resolved"})
    diff = [
        d for d in difflib.ndiff(before.splitlines(True), findings.render(updated).splitlines(True)) if d[:1] in "+-"
    ]
    assert len(diff) == 2 and diff[1].rstrip().endswith("| resolved |")
    assert updated.get("CONFIG-001").synopsis == doc.get("CONFIG-001").synopsis
    added = findings.add_or_update(doc, "NEW-001", {"Date": "2026-01-08", "Synopsis": "a | b", "Status": "active"})
    row = added.get("NEW-001")
    assert (row.synopsis, row.line) == ("a | b", 11)
    assert findings.render(added).splitlines()[10] == "| NEW-001 | 2026-01-08 |  | a \\| b |  | active |"
    with pytest.raises(ValueError, match="unknown column"):
        findings.add_or_update(doc, "NEW-002", {"Severity": "high"})
    with pytest.raises(ValueError, match="single line"):
        findings.add_or_update(doc, "NEW-002", {"Synopsis": "two\nlines"})


def test_empty_document_accepts_rows():
    doc = findings.add_or_update(findings.empty(), "F-1", {"Synopsis": "first"})
    assert doc.ids == ("F-1",) and findings.columns_of(doc) == findings.STANDARD_COLUMNS


def test_ragged_rows_and_errors():
    doc = findings.parse("| ID | A | B |\n| X-1 | a |\n| X-2 | a | b | c |\n", "f.md")
    assert doc.get("X-1").values == {"ID": "X-1", "A": "a", "B": ""}
    assert doc.get("X-2").get("B") == "b | c"
    with pytest.raises(ParseError, match="no findings table"):
        findings.parse("# Findings\n\nnone yet\n", "f.md")
    with pytest.raises(ParseError) as err:
        findings.parse("| ID | A |\n|---|---|\n| X-1 | a |\n| X-1 | b |\n", "f.md")
    assert err.value.line == 4
