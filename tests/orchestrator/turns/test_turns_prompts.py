"""orchestrator.turns.prompts: shipped templates, load-time validation with file:line."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.turns.errors import TurnConfigError
from orchestrator.turns.prompts import (
    FailingCriterion,
    PreviousTurn,
    PromptContext,
    Spend,
    default_template,
    load_template,
    template_from_text,
)

REPO = "/work/repo"


def context(role: str, **changes: object) -> PromptContext:
    base: dict[str, object] = dict(
        role=role, repo=REPO, focus="FEAT-2", report_dir="plans/active/FEAT-2/reports/2026-11-29T210000Z",
        focus_title="Add the scaler", fix_plan_item="## [FEAT-2] Add the scaler\n- Status: in_progress",
        eligible_items=("FEAT-2 — Add the scaler (in_progress, P1)", "FEAT-3 — Docs (pending, P2)"),
        working_plan_path="plans/active/FEAT-2/implementation.md",
        working_plan="## Phase A: Code\n- [x] A1: write src/scaler.py\n- [ ] A2: test it",
        ledger_entries=("# 2026-11-29T20:00:00Z: SUPERVISOR FEAT-2\n- dwell: 1",),
        previous_turn=PreviousTurn("no_op", "exit 0, nothing changed",
                                   (FailingCriterion("pytest tests/test_scaler.py passes",
                                                     "E   AssertionError: 3 != 4"),)),
        diff_stat=" src/scaler.py | 12 ++++++++++++\n 1 file changed, 12 insertions(+)",
        dwell=2, spend=Spend(0.1234, 5000, 700, usd_left=4.8766, tokens_left=None),
        draft="Mode: Implementation\nFocus: FEAT-2 — Add the scaler")
    base.update(changes)
    return PromptContext(**base)  # type: ignore[arg-type]


def test_worker_template_renders_the_rules_and_the_evidence() -> None:
    text = default_template("worker").render(context("worker"))
    assert "Focus: FEAT-2 — Add the scaler" in text
    assert "Report directory: plans/active/FEAT-2/reports/2026-11-29T210000Z/" in text
    for rule in ("execute its `## Do Now`", "Run the mapped tests", "tick the checkbox",
                 "Do not edit `input.md` or `galph_memory.md`", "judges this turn from evidence"):
        assert rule in text
    assert "Still failing: pytest tests/test_scaler.py passes" in text and "AssertionError: 3 != 4" in text
    assert "- [ ] A2: test it" in text


def test_supervisor_template_renders_choices_format_and_context() -> None:
    text = default_template("supervisor").render(context("supervisor"))
    for part in ("FEAT-3 — Docs (pending, P2)", "Artifacts: plans/active/FEAT-2/reports/2026-11-29T210000Z/",
                 "## Do Now", "## Exit Criteria", "check: `", "dwell 2 of 3", "src/scaler.py | 12",
                 "# 2026-11-29T20:00:00Z: SUPERVISOR FEAT-2", "$0.1234", "$4.8766 left", "Failing criterion:",
                 "Mode: Implementation\nFocus: FEAT-2 — Add the scaler"):
        assert part in text, part
    minimal = default_template("supervisor").render(PromptContext(role="supervisor", repo=REPO, focus="X-1",
                                                                  report_dir="r"))
    assert "(none)" in minimal and "Previous turn" not in minimal and "left" not in minimal


def test_unknown_variable_is_named_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "w.md.j2"
    path.write_text("Focus {{ focus }}\n\n{% if dwell %}\n{{ fokus }}\n{% endif %}\n", encoding="utf-8")
    with pytest.raises(TurnConfigError, match=rf"{path}:4: unknown variable 'fokus' \(known: .*focus"):
        load_template(path)


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a\n{{ previous_turn.sumary }}", 2, "unknown attribute 'sumary' of PreviousTurn"),
    ("{{ spend.usd }}", 1, "unknown attribute 'usd' of Spend"),
    ("{% if previous_turn %}\n{% for c in previous_turn.failing %}\n{{ c.log }}\n{% endfor %}{% endif %}", 3,
     "unknown attribute 'log' of FailingCriterion"),
    ("{{ focus }\n", 1, "template syntax error"),
])
def test_bad_attribute_or_syntax_is_named_with_line(text: str, line: int, message: str) -> None:
    with pytest.raises(TurnConfigError, match=rf"^t\.j2:{line}: .*{message}"):
        template_from_text(text, "t.j2")


def test_known_attributes_loops_and_string_methods_pass() -> None:
    tpl = template_from_text("{% for e in ledger_entries %}{{ loop.index }}:{{ e.splitlines()[0] }} {% endfor %}"
                             "{{ spend.cost_usd }} {{ previous_turn.failing | length if previous_turn else 0 }}"
                             "{{ range(2) | list }}", "t.j2")
    assert tpl.render(context("worker")) == "1:# 2026-11-29T20:00:00Z: SUPERVISOR FEAT-2 0.1234 1[0, 1]"


def test_missing_template_file_and_runtime_strictness(tmp_path: Path) -> None:
    with pytest.raises(TurnConfigError, match=rf"{tmp_path / 'nope.j2'}: prompt template not found"):
        load_template(tmp_path / "nope.j2")
    tpl = template_from_text("{{ previous_turn.summary }}", "t.j2")  # previous_turn may be None at render time
    with pytest.raises(TurnConfigError, match="t.j2: 'None' has no attribute 'summary'"):
        tpl.render(context("worker", previous_turn=None))
    with pytest.raises(ValueError, match="role"):
        PromptContext(role="reviewer", repo=REPO, focus="X", report_dir="r")
    with pytest.raises(ValueError):
        default_template("reviewer")
