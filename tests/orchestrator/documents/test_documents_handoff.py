"""input.md: seed + dialects parsed into header, sections, phases, steps, blocks, criteria;
the builder renders handoffs that parse back to the same data."""

from pathlib import Path

import pytest

from orchestrator.documents import handoff
from orchestrator.documents.errors import ParseError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "documents"
SEED = FIXTURES / "seeds" / "input.example.md"
FOCUS = "STUDY-SYNTH-DOSE-COMPARISON-001"


@pytest.mark.parametrize("name", ["seeds/input.example.md", "input_bold.md", "input_summary_first.md"])
def test_round_trip_byte_identical(name):
    path = FIXTURES / name
    assert handoff.render(handoff.load(path)).encode() == path.read_bytes()


def test_seed_header_and_sections():
    doc = handoff.load(SEED)
    assert (doc.mode, doc.focus_id, doc.focus_item_id, doc.branch) == (
        "Implementation",
        FOCUS,
        FOCUS,
        "feature/torchapi-newprompt-2",
    )
    assert doc.focus_title == "Synthetic Dose Response & Loss Comparison Study"
    assert doc.mapped_tests == "pytest --collect-only -q tests/ (registry check)"
    assert doc.artifacts == f"plans/active/{FOCUS}/reports/2026-01-07T200000Z/"
    assert doc.field("artifacts").line == 5
    assert [s.name for s in doc.sections] == list(handoff.KNOWN_SECTIONS)
    assert doc.summary.startswith("Execute the synthetic dose response study")
    assert doc.section("how to map").line == 70
    assert "**DO NOT** modify the translation layer" in doc.section("Pitfalls To Avoid").text


def test_seed_do_now_phases_steps_blocks_expectations():
    doc = handoff.load(SEED)
    assert [(p.id, p.title, p.line) for p in doc.phases] == [
        ("A", "Verify Environment", 20),
        ("B", "Execute Dose Response Study", 29),
        ("C", "Verify Outputs", 45),
        ("D", "Test Registry Check", 60),
    ]
    steps = doc.steps
    assert [(s.number, s.title) for s in steps] == [
        (1, "Quick sanity check"),
        (2, "Run the study"),
        (3, "Check artifacts"),
        (4, "Run pytest collect"),
    ]
    assert steps[0].detail == "verify the XLA fix is active:"
    block = steps[0].blocks[0]
    assert (block.lang, block.line, block.end_line) == ("bash", 23, 27)
    assert block.script.startswith("pytest tests/tf_helper/test_translation_shape_guard.py -v")
    (exp,) = block.expected
    assert (exp.raw, exp.count, exp.outcome, exp.line) == ("2 passed", 2, "passed", 26)
    assert len(doc.command_blocks) == 4
    assert doc.command_blocks[1].code.splitlines()[0] == "cd /home/ollie/Documents/PtychoPINN"


def test_seed_exit_criteria_are_numbered_with_lines_and_no_checks():
    crits = handoff.load(SEED).exit_criteria
    assert [(c.number, c.line, c.check) for c in crits] == [(n, 116 + n, None) for n in range(1, 6)]
    assert crits[2].text == '`dose_comparison.png` shows image data (not "No Data") in all 6 panels'


def test_bold_header_dialect_and_checks():
    doc = handoff.load(FIXTURES / "input_bold.md")
    assert doc.field("mode").bold and doc.mode == "Implementation"
    assert doc.focus_item_id == "REFACTOR-MODEL-SINGLETON-001"
    assert doc.artifacts == "plans/active/REFACTOR-MODEL-SINGLETON-001/reports/2026-01-07T040000Z/"
    assert doc.mapped_tests == 'pytest tests/ptycho/test_model.py -k "multi_n or import" -q'
    s2 = doc.steps[1]
    assert (s2.title, s2.detail, s2.blocks[0].lang) == (
        "Run the multi-N regression",
        "both sizes in one process:",
        "sh",
    )
    assert dict(s2.blocks[0].expected[0].counts) == {"passed": 2, "failed": 0}
    assert doc.steps[2].blocks == ()
    c1, c2, c3 = doc.exit_criteria
    assert (c1.text, c1.check) == (
        "Importing `ptycho` creates no `tf.Variable`",
        "pytest tests/ptycho/test_model.py -k import -q",
    )
    assert c2.text.endswith("(regression for the stale-trace bug)") and c2.check.endswith("-k multi_n -q")
    assert c3.check is None


def test_summary_first_dialect():
    doc = handoff.load(FIXTURES / "input_summary_first.md")
    assert doc.summary.startswith("Run the quick high_nll arm")
    assert doc.focus_id == f"{FOCUS}.F1" and doc.focus_item_id == FOCUS
    assert doc.mapped_tests == ["pytest tests/studies/test_dose_study.py -q", "pytest --collect-only -q tests/"]
    do_now = doc.do_now
    assert (do_now.qualifier, do_now.style, do_now.line) == ("hard validity contract", "label", 10)
    (phase,) = doc.phases
    assert phase.id is None
    assert [len(s.blocks) for s in phase.steps] == [1, 1, 1, 0]
    assert all(b.lang == "" and b.is_command for b in doc.command_blocks)
    assert doc.command_blocks[2].expected[0].count == 3
    assert [c.check is not None for c in doc.exit_criteria] == [True, False]
    assert [s.name for s in doc.sections] == [
        "Do Now",
        "How-To Map",
        "Pitfalls To Avoid",
        "If Blocked",
        "Exit Criteria",
    ]


def test_malformed_handoffs_raise_parse_errors_naming_the_line():
    with pytest.raises(ParseError, match="empty file"):
        handoff.load(FIXTURES / "malformed" / "input_empty.md")
    with pytest.raises(ParseError) as err:
        handoff.parse("Focus: A-001 — x\n\n## Do Now\n\n1. run\n```bash\nls\n", "input.md")
    assert err.value.line == 6


def _spec(handoff_spec, **overrides):
    base = dict(
        mode="Implementation",
        focus_id=FOCUS,
        focus_title="Synthetic dose study",
        branch="harness/run-1",
        mapped_tests=("pytest tests/studies -q", "pytest --collect-only -q tests/"),
        artifacts=f"plans/active/{FOCUS}/reports/2026-02-01T120000Z/",
        summary="Run the quick study.\nThen check the figure.",
        current_state=("FIX-GRIDSIZE-TRANSLATE-BATCH-001 done",),
        phases=(
            handoff_spec.PhaseSpec(
                "A",
                "Verify environment",
                (
                    handoff_spec.StepSpec(
                        "Sanity check", "pytest tests/ptycho/test_translation.py -q", ("2 passed",), "translation"
                    ),
                ),
            ),
            handoff_spec.PhaseSpec(
                "B",
                "Run",
                (
                    handoff_spec.StepSpec(
                        "Quick study",
                        "timeout 900 python scripts/studies/dose_response_study.py \\\n    --quick --output-dir out/x",
                    ),
                    handoff_spec.StepSpec("Read the notes"),
                    handoff_spec.StepSpec("Only expectations", "", ("0 failed",)),
                ),
            ),
        ),
        how_to_map="ARTIFACTS=plans/x\npython scripts/studies/dose_response_study.py --help",
        pitfalls=("Do not edit ptycho/ here",),
        if_blocked=("Write blocked_<ts>.md",),
        findings_applied=("MODULE-SINGLETON-001: resolved",),
        pointers=("docs/fix_plan.md",),
        exit_criteria=(
            handoff_spec.CriterionSpec("Study completes", "test -s out/x/summary.json"),
            handoff_spec.CriterionSpec("Ledger updated"),
        ),
        next_up=("Mark the study done",),
    )
    base.update(overrides)
    return handoff_spec.HandoffSpec(**base)


@pytest.mark.parametrize(
    "overrides",
    [
        lambda hs: {},
        lambda hs: {"mapped_tests": "pytest -q"},
        lambda hs: {
            "phases": (hs.PhaseSpec("", "", (hs.StepSpec("only", "true"),)),),
            "summary": "",
            "how_to_map": "",
            "pitfalls": (),
            "current_state": (),
        },
    ],
)
def test_built_handoff_parses_back_to_its_spec(overrides, handoff_spec):
    spec = _spec(handoff_spec, **overrides(handoff_spec))
    doc = handoff_spec.build(spec)
    assert handoff_spec.spec_of(doc) == spec
    text = handoff.render(doc)
    assert text == handoff_spec.render_spec(spec) and handoff.render(handoff.parse(text, "input.md")) == text
    assert doc.focus_item_id == FOCUS and doc.command_blocks


def test_builder_layout_matches_seed_conventions(handoff_spec):
    text = handoff_spec.render_spec(_spec(handoff_spec))
    assert text.startswith(f"Mode: Implementation\nFocus: {FOCUS} — Synthetic dose study\n")
    assert (
        "1. **Sanity check** - translation\n```bash\n"
        "pytest tests/ptycho/test_translation.py -q\n\n# Expected: 2 passed\n```"
        in text
    )
    assert "1. Study completes — check: `test -s out/x/summary.json`" in text


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda hs: {"focus_title": "two\nlines"}, "single line"),
        (lambda hs: {"phases": (hs.PhaseSpec("A", "t", (hs.StepSpec("s", "```\nls\n```"),)),)}, "code-fence"),
        (
            lambda hs: {"phases": (hs.PhaseSpec("A", "t", (hs.StepSpec("s", "ls\n# Expected: 1 passed"),)),)},
            "StepSpec.expected",
        ),
        (lambda hs: {"summary": "fine\n## Do Now"}, "headings or section labels"),
        (lambda hs: {"exit_criteria": (hs.CriterionSpec("x", "echo `date`"),)}, "backticks"),
        (lambda hs: {"pitfalls": "a string"}, "must be a sequence"),
        (lambda hs: {"phases": (hs.PhaseSpec("A-1", "t"),)}, "alphanumeric"),
    ],
)
def test_builder_rejects_specs_that_would_not_round_trip(make, message, handoff_spec):
    with pytest.raises((ValueError, TypeError), match=message):
        _spec(handoff_spec, **make(handoff_spec))


def test_summary_label_on_its_own_line_stays_in_the_header():
    text = (
        "Summary:\nRun the quick arm\nand record metrics.\nMode: Perf\nFocus: X-001.F2 — arm\n"
        "Artifacts: plans/active/X-001/reports/r/\n\nDo Now:\n- Run:\n```\ntrue\n```\n"
    )
    doc = handoff.parse(text, "input.md")
    assert doc.summary == "Run the quick arm\nand record metrics."
    assert (doc.mode, doc.focus_id, doc.field("focus").line) == ("Perf", "X-001.F2", 5)
    assert [s.name for s in doc.sections] == ["Do Now"] and len(doc.command_blocks) == 1
    assert handoff.render(doc) == text


def test_bullets_under_numbered_steps_are_notes_and_focus_may_be_backticked():
    text = (
        "Focus: `A-001.F1` — **title**\n\n## Do Now\n\n1. **Run**\n- note: keep logs\n```bash\nls\n```\n"
        "2. **Check**\n```bash\ntrue\n```\n"
    )
    doc = handoff.parse(text, "input.md")
    assert (doc.focus_id, doc.focus_item_id, doc.focus_title) == ("A-001.F1", "A-001", "title")
    assert [(s.number, s.title, len(s.blocks)) for s in doc.steps] == [(1, "Run", 1), (2, "Check", 1)]
