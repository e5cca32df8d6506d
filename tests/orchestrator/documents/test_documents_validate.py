"""Handoff validation (fail closed) against a fix plan and the repo root."""

from pathlib import Path

import pytest

from orchestrator.documents import fix_plan, handoff, validate

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "documents"
SEED = FIXTURES / "seeds" / "input.example.md"
FOCUS = "STUDY-SYNTH-DOSE-COMPARISON-001"
PLAN = fix_plan.load(FIXTURES / "fix_plan.md")


def _errors(issues):
    return [(i.line, i.message) for i in issues if i.severity == validate.ERROR]


def _valid_text(handoff_spec, **overrides) -> str:
    spec = dict(
        mode="Implementation",
        focus_id=FOCUS,
        focus_title="study",
        branch="main",
        mapped_tests="pytest -q",
        artifacts=f"plans/active/{FOCUS}/reports/2026-02-01T120000Z/",
        phases=(
            handoff_spec.PhaseSpec(
                "A", "Run", (handoff_spec.StepSpec("Tests", "pytest -q 2>/dev/null", ("1 passed",)),)
            ),
        ),
        exit_criteria=(handoff_spec.CriterionSpec("ok", "test -d plans"),),
    )
    spec.update(overrides)
    return handoff_spec.render_spec(handoff_spec.HandoffSpec(**spec))


def test_built_handoff_is_valid(tmp_path, handoff_spec):
    doc = handoff.parse(_valid_text(handoff_spec), tmp_path / "input.md")
    assert validate.validate_handoff(doc, PLAN, tmp_path) == []


def test_seed_flags_the_absolute_cd_path_with_its_line(tmp_path):
    issues = validate.validate_handoff(handoff.load(SEED), PLAN, tmp_path)
    assert _errors(issues) == [(33, "command uses a path outside the repo: '/home/ollie/Documents/PtychoPINN'")]
    assert str(issues[0]) == f"{SEED}:33: command uses a path outside the repo: '/home/ollie/Documents/PtychoPINN'"
    assert not validate.has_errors(
        validate.validate_handoff(handoff.load(SEED), PLAN, "/home/ollie/Documents/PtychoPINN")
    )


def test_missing_focus_and_artifacts(tmp_path):
    text = "Mode: x\nBranch: main\n\n## Do Now\n\n1. run\n```bash\nls\n```\n\n## Exit Criteria\n\n1. done\n"
    assert _errors(validate.validate_handoff(handoff.parse(text, "input.md"), PLAN, tmp_path)) == [
        (1, "missing 'Focus: <ID> — <title>' header"),
        (1, "missing 'Artifacts:' header"),
    ]


def test_unknown_focus_id_names_line_and_known_ids(tmp_path, handoff_spec):
    doc = handoff.parse(
        _valid_text(handoff_spec, focus_id="NOPE-999", artifacts="plans/active/NOPE-999/reports/x/"), "input.md"
    )
    ((line, message),) = _errors(validate.validate_handoff(doc, PLAN, tmp_path))
    assert line == 2 and "unknown focus ID 'NOPE-999'" in message and FOCUS in message


def test_do_now_without_any_command(tmp_path, handoff_spec):
    no_blocks = _valid_text(
        handoff_spec, phases=(handoff_spec.PhaseSpec("A", "Think", (handoff_spec.StepSpec("Read the plan"),)),)
    )
    assert _errors(validate.validate_handoff(handoff.parse(no_blocks, "input.md"), PLAN, tmp_path)) == [
        (7, "Do Now has no command (expected fenced bash blocks in its steps)")
    ]
    comments_only = _valid_text(
        handoff_spec,
        phases=(handoff_spec.PhaseSpec("A", "Think", (handoff_spec.StepSpec("Nothing", "# just a comment"),)),),
    )
    assert _errors(validate.validate_handoff(handoff.parse(comments_only, "input.md"), PLAN, tmp_path))
    no_section = "Focus: X-1 — t\nArtifacts: plans/active/X-1/reports/a/\n"
    assert (1, "missing 'Do Now' section") in _errors(
        validate.validate_handoff(handoff.parse(no_section, "i"), PLAN, tmp_path)
    )


@pytest.mark.parametrize(
    "artifacts",
    [
        "plans/active/OTHER-001/reports/x/",
        f"plans/active/{FOCUS}/reports/",
        f"/abs/plans/active/{FOCUS}/reports/x",
        f"plans/active/{FOCUS}/reports/../../x/",
        "out/",
    ],
)
def test_artifacts_must_be_under_the_focus_reports_dir(tmp_path, artifacts, handoff_spec):
    doc = handoff.parse(_valid_text(handoff_spec, artifacts=artifacts), "input.md")
    ((line, message),) = _errors(validate.validate_handoff(doc, PLAN, tmp_path))
    assert line == 5 and "Artifacts path" in message


def test_paths_in_commands_and_checks(tmp_path, handoff_spec):
    script = (f"cat {tmp_path}/inside.txt\ncurl https://example.org/x -o out.txt\nls ~/notes\n"
              "cp a.txt --to=/tmp/b.txt\n# cd /ignored/in/comments")
    doc = handoff.parse(
        _valid_text(
            handoff_spec,
            phases=(handoff_spec.PhaseSpec("A", "Run", (handoff_spec.StepSpec("Mixed", script),)),),
            exit_criteria=(handoff_spec.CriterionSpec("ok", "test -f /etc/hosts"),),
        ),
        "input.md",
    )
    errors = _errors(validate.validate_handoff(doc, PLAN, tmp_path))
    assert [(line, msg.split(": ")[-1]) for line, msg in errors] == [
        (15, "'~/notes'"),
        (16, "'/tmp/b.txt'"),
        (22, "'/etc/hosts'"),
    ]


def test_unparseable_expectation_is_a_warning(tmp_path, handoff_spec):
    doc = handoff.parse(
        _valid_text(
            handoff_spec,
            phases=(handoff_spec.PhaseSpec("A", "Run", (handoff_spec.StepSpec("T", "ls", ("it works",)),)),),
        ),
        "input.md",
    )
    issues = validate.validate_handoff(doc, PLAN, tmp_path)
    assert not validate.has_errors(issues) and [i.severity for i in issues] == [validate.WARNING]


def test_validate_fix_plan_semantics(tmp_path):
    doc = fix_plan.parse(
        "## [A-001] a\n- Status: finished\n- Priority: high\n- Depends on: B-002\n"
        "- Working plan: plans/active/A-001/implementation.md\n\n## [C-003] c\n",
        "fp.md",
    )
    issues = validate.validate_fix_plan(doc, tmp_path)
    assert [(i.line, i.severity) for i in issues] == [
        (2, "error"),
        (3, "error"),
        (4, "error"),
        (5, "warning"),
        (7, "error"),
    ]
    assert not validate.validate_fix_plan(PLAN)


def test_validate_path_kinds_and_parse_errors(tmp_path, handoff_spec):
    assert validate.detect_kind("x/input.md") == "handoff" and validate.detect_kind("galph_memory.md") == "ledger"
    assert validate.detect_kind("notes.md") is None
    with pytest.raises(ValueError, match="cannot tell the document kind"):
        validate.validate_path(tmp_path / "notes.md")
    bad = FIXTURES / "malformed" / "fix_plan_duplicate.md"
    assert [(i.line, i.severity) for i in validate.validate_path(bad)] == [(9, "error")]
    (tmp_path / "input.md").write_text(_valid_text(handoff_spec))
    (issue,) = validate.validate_path(tmp_path / "input.md", repo_root=tmp_path)
    assert "fix plan" in issue.message and issue.severity == "error"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "fix_plan.md").write_text((FIXTURES / "fix_plan.md").read_text())
    assert validate.validate_path(tmp_path / "input.md", repo_root=tmp_path) == []
