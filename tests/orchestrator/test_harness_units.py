"""Pure logic of the loop: configuration, focus choice, step/plan mapping, history trailers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import ConfigError, HarnessConfig, load_config
from orchestrator.cycle.supervisor import choose_focus, eligible_items
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import handoff as handoff_doc
from orchestrator.documents.handoff_draft import plan_sections, substitute_artifacts
from orchestrator.execution.steps import planned_steps, step_item_id
from orchestrator.vcs.history import _trailers

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_repo_config_loads_and_documents_real_agent_clis() -> None:
    config = load_config(REPO_ROOT / "orchestrator.yaml")
    assert (config.supervisor, config.worker, config.dwell_limit) == ("builtin", "builtin", 3)
    assert config.main_job.focus == "STUDY-SYNTH-DOSE-COMPARISON-001" and config.main_job.phases_per_cycle == 0
    roles = {(c.argv[0], c.role) for c in config.commands.values()}
    assert {("claude", "supervisor"), ("claude", "worker"), ("codex", "worker")} <= roles
    assert all(any("{prompt" in a for a in c.argv) for c in config.commands.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dwell_limit: 0\n", "dwell_limit must be >= 1"),
        ("step_timeout: 5\n", "unknown key(s) ['step_timeout']"),
        ("agents:\n  supervisor: nobody\n", "'nobody' is neither 'builtin' nor a command"),
        ("budgets:\n  max_cycles: 0\n", "budgets.max_cycles must be >= 1"),
        ("commands:\n  x:\n    role: boss\n    argv: [a]\n", "role must be supervisor|worker"),
        ("agents: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_config_gives_builtin_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "none.yaml") == HarnessConfig()


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


def test_plan_sections_and_artifact_substitution(harness) -> None:
    from orchestrator.documents import plan as plan_doc

    text = harness.plan(
        "X-1", [("A", [("a", "echo $ARTIFACTS/x ${ARTIFACTS}/y")])], ["c — check: `test -d $ARTIFACTS`"]
    )
    sections = plan_sections(plan_doc.parse(text))
    assert sections.exit_criteria == ("c — check: `test -d $ARTIFACTS`",) and sections.findings == ("F-ONE-001",)
    assert (
        substitute_artifacts("echo $ARTIFACTS/x ${ARTIFACTS}/y $ARTIFACTSX", "p/r/") == "echo p/r/x p/r/y $ARTIFACTSX"
    )


def test_planned_steps_keep_expectations_and_item_ids() -> None:
    seed = Path(__file__).parents[1] / "fixtures" / "documents" / "seeds" / "input.example.md"
    steps = planned_steps(handoff_doc.parse(seed.read_text(), seed))
    assert [s.number for s in steps] == [1, 2, 3, 4] and [s.phase for s in steps] == ["A", "B", "C", "D"]
    assert steps[0].expected == "2 passed" and steps[1].script.startswith("cd /home/ollie")
    assert all("# Expected" not in s.script for s in steps)
    assert step_item_id("A1: Sanity — tests") == "A1" and step_item_id("**B2:** run") == "B2"
    assert step_item_id("Quick sanity check") is None


def test_trailers_only_from_the_last_paragraph() -> None:
    assert _trailers("text\n\nCycle-Id: c1\nLedger-Entry: 2026-01-01T00:00:00Z (line 3)") == {
        "Cycle-Id": "c1",
        "Ledger-Entry": "2026-01-01T00:00:00Z (line 3)",
    }
    assert _trailers("Cycle-Id: c1\n\nnot a trailer here") == {}


def test_cli_supervise_then_work(tmp_path: Path, harness) -> None:
    p = harness.plan("T-CLI-001", [("A", [("ok", "true")])], ["fine — check: `true`"])
    repo = harness.make_repo(
        tmp_path / "r",
        {"T-CLI-001": (harness.item("T-CLI-001", "cli item"), p)},
        extra={"orchestrator.yaml": "git_sync: false\n"},
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args], cwd=repo, capture_output=True, text=True, timeout=120
        )

    work_first = cli("work")
    assert work_first.returncode == 1 and "input.md" in work_first.stderr  # no handoff yet: fail closed
    sup = cli("supervise")
    assert sup.returncode == 0, sup.stderr
    assert harness.subjects(repo)[0] == "SUPERVISOR: T-CLI-001 — Phase A handoff (dwell 0)"
    assert cli("supervise").returncode == 1  # the cycle must be finished by `work` first
    wrk = cli("work")
    assert wrk.returncode == 0, wrk.stderr
    assert "(resumed)" not in wrk.stdout and "resuming" not in wrk.stderr  # a handover, not a resume
    assert harness.subjects(repo)[0] == "RALPH: T-CLI-001 — 1/1 steps ok, 1/1 exit criteria passed → done"
    assert cli("validate", "input.md", "docs/fix_plan.md").returncode == 0


@pytest.mark.parametrize(("typed", "clean"), [
    ("2026-01-07T07:30:00Z", "2026-01-07T07:30:00Z"),
    ("2026-01-07T07:30:00Z@12", "2026-01-07T07:30:00Z@12"),
    ("# 2026-01-07T07:30:00Z:", "2026-01-07T07:30:00Z"),
    ("# 2026-01-07T07:30:00Z: A-001 — Phase A handoff", "2026-01-07T07:30:00Z"),
    ("2026-01-07T073000Z:@3", "2026-01-07T073000Z@3"),
    ("2026-01-07T07:30:00Z (line 5)", "2026-01-07T07:30:00Z@5"),
])
def test_replay_accepts_a_ledger_timestamp_as_typed_pasted_or_from_a_trailer(typed: str, clean: str) -> None:
    from orchestrator.tools.replay import clean_entry

    assert clean_entry(typed) == clean
