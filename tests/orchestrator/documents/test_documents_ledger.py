"""galph_memory.md: seed + real-world dialect, typed fields, time order, atomic append."""

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.documents import ledger
from orchestrator.documents.errors import ParseError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "documents"
SEED = FIXTURES / "seeds" / "galph_memory.example.md"
COMPACT = FIXTURES / "galph_memory_compact.md"


def test_seed_round_trips_byte_identical():
    data = SEED.read_bytes()
    assert ledger.render(ledger.load(SEED)).encode() == data


def test_seed_entries_fields_and_state_line():
    doc = ledger.load(SEED)
    assert doc.dialect == ledger.SEPARATED and len(doc.entries) == 9
    first = doc.entries[0]
    assert first.line == 1 and first.level == 1
    assert first.timestamp == datetime(2026, 1, 6, 14, tzinfo=UTC)
    assert first.title == "FIX-GRIDSIZE-TRANSLATE-BATCH-001 — Root cause confirmed, fix designed"
    assert first.field("Mode") == "Implementation"
    assert first.field("focus issue").startswith("FIX-GRIDSIZE-TRANSLATE-BATCH-001 — Fix Translation")
    assert first.field("Git sync") == "`git pull --rebase` → Already up to date."
    assert first.field_line("Mode") == 6
    assert first.action_state == "ready_for_implementation"
    st = first.state
    assert (st.focus, st.state, st.dwell, st.ralph_last_commit, st.line) == (
        "FIX-GRIDSIZE-TRANSLATE-BATCH-001",
        "ready_for_implementation",
        0,
        "none",
        48,
    )
    assert st.artifacts == "plans/active/FIX-GRIDSIZE-TRANSLATE-BATCH-001/reports/2026-01-06T140000Z/"
    assert st.next_action == "implement batch broadcast in translate_xla"
    # free text (including the python fences) is kept verbatim in the body
    assert "**Root Cause Analysis (CONFIRMED):**" in first.body
    assert "B = tf.shape(translations)[0]  # Gets B from translations" in first.body
    assert not first.text.rstrip().endswith("---")


def test_seed_compact_timestamps_and_entries_without_state_line():
    doc = ledger.load(SEED)
    compact = doc.entries[2]
    assert compact.timestamp_text == "2026-01-07T073000Z"
    assert compact.timestamp == datetime(2026, 1, 7, 7, 30, tzinfo=UTC)
    blocked = doc.entries[1]  # free-text entry with a '##' sub-heading and no state line
    assert blocked.state is None and blocked.dwell is None
    assert blocked.focus == "STUDY-SYNTH-DOSE-COMPARISON-001"  # from the title
    assert "## Ralph Debugging Findings" in blocked.body
    last = doc.entries[-1]
    assert last.state.extra == {"summary": "plans/active/FIX-PYTORCH-FORWARD-PARITY-001/summary.md"}
    assert last.dwell == 3


def test_time_order_differs_from_file_order_and_is_sorted():
    doc = ledger.load(SEED)
    ordered = ledger.entries_in_time_order(doc)
    stamps = [e.timestamp for e in ordered]
    assert stamps == sorted(stamps)
    assert ordered[0].timestamp_text == "2025-11-20T002500Z"
    assert [e.line for e in doc.entries] == sorted(e.line for e in doc.entries)  # file order preserved


def test_real_world_compact_dialect():
    doc = ledger.load(COMPACT)
    assert doc.dialect == ledger.UNSEPARATED and len(doc.entries) == 4
    assert ledger.render(doc) == COMPACT.read_text()
    e = doc.entries[0]
    assert (e.level, e.title, e.line) == (2, "", 3)
    assert e.focus == "STUDY-SYNTH-DOSE-COMPARISON-001.F1" and e.focus_id == "STUDY-SYNTH-DOSE-COMPARISON-001"
    assert e.state.extra == {"action_type": "planning"}
    assert e.state.next_action == "run quick high_nll arm under timeout 900 and record metrics"
    assert e.state.action_state == e.effective_action_state == "ready_for_implementation"
    assert e.state.notes == "handoff written; Summary-first input.md; mapped tests listed as bullets"
    ordered = [x.timestamp_text for x in ledger.entries_in_time_order(doc)]
    assert ordered == ["2026-01-21T230500Z", "2026-01-22T022725Z", "2026-01-22T031500Z", "2026-01-22T040000Z"]
    assert [x.line for x in ledger.entries_for_focus(doc.entries, "STUDY-SYNTH-DOSE-COMPARISON-001")] == [3, 7, 11]
    assert [x.line for x in ledger.entries_for_focus(doc.entries, "STUDY-SYNTH-DOSE-COMPARISON-001.F0")] == [11]


def test_state_line_words_without_key_extend_previous_value():
    st = ledger.parse_state_line("focus=A-001 state=ready for impl dwell=2x next_action=set a=b <Action State>=[go]")
    assert (st.state, st.dwell, st.next_action, st.action_state) == ("ready for impl", 2, "set a=b", "go")


@pytest.mark.parametrize(
    "name, line, message",
    [
        ("galph_memory_bad_timestamp.md", 6, "month must be in 1..12"),
        ("galph_memory_missing_separator.md", 9, "missing '---' separator"),
        ("galph_memory_unterminated_fence.md", 4, "unterminated code fence"),
    ],
)
def test_malformed_ledgers_raise_parse_errors_naming_the_line(name, line, message):
    with pytest.raises(ParseError) as err:
        ledger.load(FIXTURES / "malformed" / name)
    assert err.value.line == line and message in err.value.message
    assert str(err.value).startswith(f"{FIXTURES / 'malformed' / name}:{line}: ")


@pytest.mark.parametrize(
    "heading", ["# 2026-01-07T7:30Z: short hour", "## 2026-01-07: no time", "# 2026-01-07T073000Z0"]
)
def test_date_like_heading_with_bad_timestamp_is_an_error(heading):
    with pytest.raises(ParseError, match="bad timestamp") as err:
        ledger.parse(f"# 2026-01-06T14:00:00Z: ok\n\n---\n\n{heading}\n", "g.md")
    assert err.value.line == 5


def test_headings_inside_fences_are_not_entries():
    text = "# 2026-01-06T14:00:00Z: one\n```\n# 2026-99-99T00:00Z not a heading\n- focus=X-1 state=fake\n```\n"
    doc = ledger.parse(text, "g.md")
    assert len(doc.entries) == 1 and doc.entries[0].state is None


def test_empty_and_non_utf8(tmp_path):
    with pytest.raises(ParseError, match="empty file"):
        ledger.parse(" \n\n", "g.md")
    bad = tmp_path / "galph_memory.md"
    bad.write_bytes(b"# 2026-01-06T14:00:00Z: x\n- note: caf\xe9\n")
    with pytest.raises(ParseError) as err:
        ledger.load(bad)
    assert err.value.line == 2


def _new_entry(minute: int) -> ledger.LedgerEntry:
    return ledger.make_entry(
        datetime(2026, 2, 1, 12, minute, tzinfo=UTC),
        "STUDY-X-001 — supervisor cycle",
        fields={"dwell": "1", "Focus issue": "STUDY-X-001 — study", "Documents reviewed": "docs/fix_plan.md"},
        body="Free text, **kept** verbatim.\n\n```bash\n# 2026-01-01T00:00Z inside a fence\n```",
        action_state="ready_for_implementation",
        state=ledger.StateLine(
            focus="STUDY-X-001",
            state="ready_for_implementation",
            dwell=1,
            ralph_last_commit="abc1234",
            artifacts="plans/active/STUDY-X-001/reports/x/",
            next_action="run the quick study",
            extra={"action_type": "handoff"},
            notes="n1",
        ),
    )


def test_make_entry_round_trips_its_data():
    e = _new_entry(0)
    assert e.title == "STUDY-X-001 — supervisor cycle" and e.field("Documents reviewed") == "docs/fix_plan.md"
    assert e.action_state == "ready_for_implementation"
    expected = ledger.StateLine(
        focus="STUDY-X-001",
        state="ready_for_implementation",
        dwell=1,
        ralph_last_commit="abc1234",
        artifacts="plans/active/STUDY-X-001/reports/x/",
        next_action="run the quick study",
        extra={"action_type": "handoff"},
        notes="n1",
    )
    assert dataclasses.replace(e.state, line=0) == expected
    assert "Free text, **kept** verbatim." in e.body
    again = ledger.parse(ledger.render_entry(e), "x").entries[0]
    assert (again.fields, again.state, again.title) == (e.fields, e.state, e.title)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"title": "two\nlines"}, "single line"),
        ({"fields": {"bad:key": "v"}}, "bad ledger field key"),
        ({"state": ledger.StateLine(focus="A-1", state="has space")}, "one non-empty token"),
        ({"body": "# 2026-01-01T00:00:00Z: sneaky heading"}, "must not contain ledger headings"),
    ],
)
def test_make_entry_rejects_values_that_would_not_parse_back(kwargs, message):
    args = {"title": "t", **kwargs}
    title = args.pop("title")
    with pytest.raises(ValueError, match=message):
        ledger.make_entry(datetime(2026, 1, 1, tzinfo=UTC), title, **args)


@pytest.mark.parametrize("source", [SEED, COMPACT])
def test_append_keeps_every_earlier_byte(tmp_path, source):
    target = tmp_path / "galph_memory.md"
    original = source.read_bytes()
    target.write_bytes(original)
    line = ledger.append(target, _new_entry(5))
    data = target.read_bytes()
    assert data.startswith(original) and len(data) > len(original)
    doc = ledger.load(target)
    assert doc.entries[-1].line == line and doc.entries[-1].timestamp_text == "2026-02-01T12:05:00Z"
    assert len(doc.entries) == len(ledger.parse(original.decode(), "x").entries) + 1
    assert doc.dialect == ledger.parse(original.decode(), "x").dialect  # written in the file's dialect
    assert [p.name for p in tmp_path.iterdir()] == ["galph_memory.md"]


def test_append_creates_missing_file_and_handles_missing_final_newline(tmp_path):
    target = tmp_path / "galph_memory.md"
    assert ledger.append(target, _new_entry(1)) == 1
    target.write_bytes(target.read_bytes().rstrip(b"\n"))
    before = target.read_bytes()
    ledger.append(target, _new_entry(2))
    assert target.read_bytes().startswith(before)
    doc = ledger.load(target)
    assert doc.dialect == ledger.SEPARATED and [e.timestamp.minute for e in doc.entries] == [1, 2]


def test_append_refuses_a_corrupt_ledger_and_leaves_it_untouched(tmp_path):
    target = tmp_path / "galph_memory.md"
    broken = (FIXTURES / "malformed" / "galph_memory_missing_separator.md").read_bytes()
    target.write_bytes(broken)
    with pytest.raises(ParseError):
        ledger.append(target, _new_entry(3))
    assert target.read_bytes() == broken


def test_entry_to_dict_lists_focus_for_every_entry():
    records = [ledger.entry_to_dict(e) for e in ledger.load(SEED).entries]
    assert all(r["focus"] for r in records)
    assert records[0]["timestamp"] == "2026-01-06T14:00:00Z" and records[0]["line"] == 1


@pytest.mark.parametrize("key", ["Mode ", " Mode", "x" * 90, "a:b", "focus=x"])
def test_make_entry_rejects_keys_the_parser_would_not_read(key):
    with pytest.raises(ValueError, match="bad ledger field key"):
        ledger.make_entry(datetime(2026, 1, 1, tzinfo=UTC), "t", fields={key: "v"})
