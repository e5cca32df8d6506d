"""plans/active/<ID>/implementation.md: phases, checklist items, blocks, tick."""

from pathlib import Path

import pytest

from orchestrator.documents import plan
from orchestrator.documents.errors import ParseError, UnknownIdError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "documents"
PLAN = FIXTURES / "implementation.md"


def test_round_trip_and_structure():
    doc = plan.load(PLAN)
    assert plan.render(doc) == PLAN.read_text()
    assert doc.title == "STUDY-SYNTH-DOSE-COMPARISON-001 — implementation plan"
    assert [(p.id, p.title, p.line) for p in doc.phases] == [
        ("A", "Verify environment", 5),
        ("B", "Execute the quick study", 16),
        ("C", "Verify outputs", 27),
        ("D", "Done criteria (informational, no checklist)", 31),
    ]
    a = doc.phase("A")
    assert [(i.id, i.checked, i.line) for i in a.items] == [("A1", True, 6), ("A2", False, 11)]
    assert (
        a.items[0].blocks[0].code
        == "pytest tests/ptycho/test_translation.py -k batch_broadcast -q\n# Expected: 2 passed"
    )
    assert a.items[0].blocks[0].expected[0].count == 2
    b = doc.phase("B")
    assert b.items[0].blocks[0].lang == "bash" and "timeout 900" in b.items[0].blocks[0].script  # indented fence
    assert b.items[2].id is None and b.items[2].text == "Unnumbered follow-up item"
    assert doc.phase("C").items[1].id == "C-CHECK"
    assert "Z9" not in [i.id for i in doc.items]  # the Appendix is not a phase


def test_first_unfinished_phase_and_tick_changes_one_byte():
    doc = plan.load(PLAN)
    assert plan.first_unfinished_phase(doc).id == "A"
    ticked = plan.tick(doc, "A2")
    before, after = plan.render(doc), plan.render(ticked)
    assert len(before) == len(after) and sum(x != y for x, y in zip(before, after, strict=True)) == 1
    assert ticked.item("A2").checked and ticked.phase("A").done
    assert plan.first_unfinished_phase(ticked).id == "B"
    assert plan.render(plan.tick(ticked, "A2", checked=False)) == before
    done = ticked
    for item in doc.items:
        if item.id:
            done = plan.tick(done, item.id)
    assert plan.first_unfinished_phase(done).id == "B"  # B has an item without ID, still open
    with pytest.raises(UnknownIdError, match="unknown plan item 'Q7'"):
        plan.tick(doc, "Q7")


def test_all_phases_done_gives_none():
    doc = plan.parse("# P\n\n## Phase A: one\n- [x] A1: a\n\n## Phase B: two\n- [X] B1: b\n", "p.md")
    assert plan.first_unfinished_phase(doc) is None


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("# P\n\nno phases here\n", 1, "no phases"),
        ("## Phase A: x\n- [ ] A1: a\n- [ ] A1: again\n", 3, "duplicate plan item 'A1'"),
        ("## Phase A: x\n\n## Phase A: y\n", 3, "duplicate phase 'A'"),
    ],
)
def test_malformed_plans_raise_parse_errors_naming_the_line(text, line, message):
    with pytest.raises(ParseError) as err:
        plan.parse(text, "p.md")
    assert err.value.line == line and message in err.value.message


def test_unterminated_fence_fixture():
    with pytest.raises(ParseError) as err:
        plan.load(FIXTURES / "malformed" / "implementation_unterminated.md")
    assert err.value.line == 5
