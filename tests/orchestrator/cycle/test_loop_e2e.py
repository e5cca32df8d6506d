"""End to end: the builtin harness on a real git repository in tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cycle.loop import run_loop
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import ledger as ledger_doc
from orchestrator.documents import plan as plan_doc
from orchestrator.documents.handoff_check import validate_handoff_file
from orchestrator.records.artifacts import validate_run_record
from orchestrator.tools.ledger_check import check_ledger

pytestmark = pytest.mark.integration  # spawns the orchestrator command line

PASSING = (
    "T-PASS-001",
    [
        ("Checks", [("true works", "true"), ("echo works", "echo hello > $ARTIFACTS/hello.txt")]),
        (
            "Tests",
            [("tiny pytest", "python -m pytest -q -p no:cacheprovider tests/test_tiny.py\n# Expected: 2 passed")],
        ),
    ],
    [
        "hello written — check: `test -s $ARTIFACTS/hello.txt`",
        "tiny tests pass — check: `python -m pytest -q -p no:cacheprovider tests/test_tiny.py`",
    ],
)
FAILING = ("T-FAIL-001", [("Broken", [("always fails", "echo trying; false")])], ["never — check: `false`"])
NEXT = ("T-NEXT-001", [("Easy", [("ok", "true")])], ["fine — check: `true`"])


def test_supervise_work_commit_end_to_end(tmp_path: Path, harness) -> None:
    repo = harness.make_repo(
        tmp_path / "r", {"T-PASS-001": (harness.item("T-PASS-001", "passing item"), harness.plan(*PASSING))}
    )
    result = run_loop(harness.context(repo, phases_per_cycle=0), cycles=3)
    assert [c.status for c in result.cycles] == ["done", "idle"]
    assert harness.subjects(repo)[:2] == [
        "RALPH: T-PASS-001 — 3/3 steps ok, 2/2 exit criteria passed → done",
        "SUPERVISOR: T-PASS-001 — Phase A–B handoff (dwell 0)",
    ]
    assert harness.git(repo, "status", "--porcelain") == ""  # everything the harness wrote is committed
    # the handoff the supervisor committed is valid and names this cycle's report dir
    report_rel = result.cycles[0].report_dir
    assert validate_handoff_file(repo, repo / "input.md", "T-PASS-001", report_rel) == []
    assert f"Artifacts: {report_rel}/" in (repo / "input.md").read_text()
    report = repo / report_rel
    run = json.loads((report / "run.json").read_text())
    assert validate_run_record(run) == []
    assert run["status"] == "ok" and run["role"] == "RALPH" and run["focus"] == "T-PASS-001"
    assert [s["rc"] for s in run["steps"]] == [0, 0, 0]
    assert run["steps"][2]["expectation"] == "2 passed" and run["steps"][2]["expectation_ok"] is True
    assert [c["ok"] for c in run["exit_criteria"]] == [True, True]
    assert run["git"]["sha_before"] == result.cycles[0].supervisor_commit
    assert {a["path"] for a in run["artifacts"]} >= {"hello.txt", "logs/step-01.log", "logs/check-02.log"}
    assert "3/3 steps ok" in (report / "summary.md").read_text() or "| 3 |" in (report / "summary.md").read_text()
    assert (report / "hello.txt").read_text() == "hello\n"
    # plan ticked, status done, one RALPH attempts line naming the handoff's SUPERVISOR commit as such
    # (its own sha cannot be in it: the line is part of the RALPH commit)
    work_plan = plan_doc.load(repo / "plans/active/T-PASS-001/implementation.md")
    assert all(i.checked for i in work_plan.items)
    fp_item = fix_plan_doc.load(repo / "docs/fix_plan.md").item("T-PASS-001")
    assert fp_item.status == "done"
    assert len(fp_item.attempts) == 1 and fp_item.attempts[0].role == "RALPH"
    assert fp_item.attempts[0].sha == "none"
    assert f"handoff of SUPERVISOR {result.cycles[0].supervisor_commit[:10]}" in fp_item.attempts[0].text
    # ledger entry: real git sync result, documents read, state line, trailer link to the commit
    entry = ledger_doc.load(repo / "galph_memory.md").entries[-1]
    assert entry.focus_id == "T-PASS-001" and entry.dwell == 0 and entry.state_name == "ready_for_implementation"
    assert "git_sync: false" in entry.field("Git sync")
    assert "plans/active/T-PASS-001/implementation.md" in entry.field("Documents reviewed")
    assert f"Ledger-Entry: {entry.timestamp_text}" in harness.git(repo, "log", "-1", "--format=%b", "HEAD~1")
    assert check_ledger(repo, ledger_doc.load(repo / "galph_memory.md")).ok


def test_dwell_from_history_escalates_after_three_failed_cycles(tmp_path: Path, harness) -> None:
    repo = harness.make_repo(
        tmp_path / "r",
        {
            "T-FAIL-001": (harness.item("T-FAIL-001", "stuck item", priority="P0"), harness.plan(*FAILING)),
            "T-NEXT-001": (harness.item("T-NEXT-001", "next item", priority="P1"), harness.plan(*NEXT)),
        },
    )
    result = run_loop(harness.context(repo), cycles=4)
    assert [c.status for c in result.cycles] == ["failed", "failed", "failed", "done"]
    assert result.cycles[3].escalated == ("T-FAIL-001",) and result.cycles[3].focus == "T-NEXT-001"
    log = harness.subjects(repo)
    assert [s for s in log if s.startswith("SUPERVISOR: T-FAIL")] == [
        "SUPERVISOR: T-FAIL-001 — blocked after 3 cycles without progress",
        "SUPERVISOR: T-FAIL-001 — Phase A handoff (dwell 2)",
        "SUPERVISOR: T-FAIL-001 — Phase A handoff (dwell 1)",
        "SUPERVISOR: T-FAIL-001 — Phase A handoff (dwell 0)",
    ]
    fp = fix_plan_doc.load(repo / "docs/fix_plan.md")
    assert fp.item("T-FAIL-001").status == "blocked" and fp.item("T-NEXT-001").status == "done"
    blocked = sorted((repo / "plans/active/T-FAIL-001/reports").glob("*/blocked_*.md"))
    assert len(blocked) == 1 and "3 consecutive cycles without progress" in blocked[0].read_text()
    entries = ledger_doc.entries_in_time_order(ledger_doc.load(repo / "galph_memory.md"))
    assert [(e.focus_id, e.dwell, e.state_name) for e in entries] == [
        ("T-FAIL-001", 0, "ready_for_implementation"),
        ("T-FAIL-001", 1, "ready_for_implementation"),
        ("T-FAIL-001", 2, "ready_for_implementation"),
        ("T-FAIL-001", 3, "blocked"),
        ("T-NEXT-001", 0, "ready_for_implementation"),
    ]
    assert check_ledger(repo, ledger_doc.load(repo / "galph_memory.md")).ok


def test_dwell_is_not_read_from_the_ledger_text_and_check_flags_tampering(tmp_path: Path, harness) -> None:
    repo = harness.make_repo(
        tmp_path / "r", {"T-FAIL-001": (harness.item("T-FAIL-001", "stuck", priority="P0"), harness.plan(*FAILING))}
    )
    ctx = harness.context(repo)
    run_loop(ctx, cycles=2)
    ledger_path = repo / "galph_memory.md"
    tampered = ledger_path.read_text().replace("dwell=1", "dwell=0").replace("- dwell: 1 ", "- dwell: 0 ")
    ledger_path.write_text(tampered)
    harness.git(repo, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "hand edit of the ledger")
    check = check_ledger(repo, ledger_doc.load(ledger_path))
    assert [(e.recorded_dwell, e.computed_dwell, [f.kind for f in e.flags]) for e in check.entries] == [
        (0, 0, []),
        (0, 1, ["dwell_mismatch"]),
    ]
    third = run_loop(ctx, cycles=1).cycles[0]
    assert third.status == "failed"
    assert harness.subjects(repo)[1] == "SUPERVISOR: T-FAIL-001 — Phase A handoff (dwell 2)"  # computed, not 0+1


def test_progress_resets_dwell_one_phase_per_cycle(tmp_path: Path, harness) -> None:
    two_phase = harness.plan(
        "T-TWO-001",
        [("First", [("ok", "true")]), ("Second", [("ok too", "true")])],
        ["both phases ran — check: `true`"],
    )
    repo = harness.make_repo(tmp_path / "r", {"T-TWO-001": (harness.item("T-TWO-001", "two phases"), two_phase)})
    result = run_loop(harness.context(repo, phases_per_cycle=1), cycles=3)
    assert [c.status for c in result.cycles] == ["progress", "done", "idle"]
    assert harness.subjects(repo)[:4] == [
        "RALPH: T-TWO-001 — 1/1 steps ok, 1/1 exit criteria passed → done",
        "SUPERVISOR: T-TWO-001 — Phase B handoff (dwell 0)",
        "RALPH: T-TWO-001 — 1/1 steps ok, 1/1 exit criteria passed → in_progress",
        "SUPERVISOR: T-TWO-001 — Phase A handoff (dwell 0)",
    ]


def _cli(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def test_cli_status_json_replay_and_ledger_check(tmp_path: Path, harness) -> None:
    repo = harness.make_repo(
        tmp_path / "r",
        {"T-PASS-001": (harness.item("T-PASS-001", "passing item"), harness.plan(*PASSING))},
        extra={"orchestrator.yaml": "git_sync: false\nphases_per_cycle: 0\nstep_timeout_s: 60\n"},
    )
    loop = _cli(repo, "loop", "--cycles", "1")
    assert loop.returncode == 0, loop.stderr
    assert "cycle" in loop.stdout and ": done" in loop.stdout
    status = json.loads(_cli(repo, "status", "--json").stdout)
    assert status["focus"] == {"id": "T-PASS-001", "dwell": 0, "dwell_limit": 3}
    assert status["items"][0]["status"] == "done" and status["items"][0]["plan"] == {"ticked": 3, "total": 3}
    assert status["runs"][0]["status"] == "ok" and status["lock"] is None
    assert status["state"]["phase"] == "done"
    check = _cli(repo, "ledger", "--check", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    [entry] = json.loads(check.stdout)
    assert entry["computed_dwell"] == 0 and entry["dwell_source"] == "git" and entry["flags"] == []
    # break the tiny test on HEAD: replay at the recorded commit still reproduces the run ...
    (repo / "tests/test_tiny.py").write_text("def test_one():\n    assert False\n")
    harness.git(repo, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "break the test")
    ts = entry["timestamp"]
    same = _cli(repo, "replay", "--ledger-entry", ts, "--step", "3", "--json")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "same as recorded" in same.stdout
    # ... while replaying the same step at HEAD shows the difference, and nothing is committed
    head = harness.git(repo, "rev-parse", "HEAD")
    diff = _cli(repo, "replay", "--ledger-entry", ts, "--step", "3", "--at", "HEAD")
    assert diff.returncode == 1 and "expectation_ok: True → False" in diff.stdout
    assert harness.git(repo, "rev-parse", "HEAD") == head and harness.git(repo, "status", "--porcelain") == ""
    assert harness.git(repo, "worktree", "list").count("\n") == 0  # replay worktrees removed


def test_ledger_check_flags_seed_ledger(tmp_path: Path, harness) -> None:
    source = Path(__file__).parents[2] / "fixtures" / "documents" / "seeds" / "galph_memory.example.md"
    repo = harness.make_repo(
        tmp_path / "r",
        {"T-PASS-001": (harness.item("T-PASS-001", "x"), harness.plan(*PASSING))},
        extra={"galph_memory.md": source.read_text()},
    )
    result = _cli(repo, "ledger", "--check")
    assert result.returncode == 1
    assert "unknown_commit: ralph_last_commit 347ce7d6" in result.stdout
    assert "missing_artifacts" in result.stdout and "dwell_mismatch" in result.stdout


def test_killed_between_commit_and_state_save_is_caught_up(tmp_path: Path, harness) -> None:
    from orchestrator.cycle.loop import run_turn
    from orchestrator.records.state import load_state, save_state

    repo = harness.make_repo(
        tmp_path / "r", {"T-PASS-001": (harness.item("T-PASS-001", "passing item"), harness.plan(*PASSING))}
    )
    ctx = harness.context(repo, phases_per_cycle=0)
    assert run_turn(ctx, "supervise").status == "supervised"
    state = load_state(repo)
    save_state(repo, state.advance("supervising"))  # as if killed right after the SUPERVISOR commit
    outcome = run_loop(ctx, cycles=1).cycles[0]
    assert outcome.status == "done" and outcome.resumed and outcome.cycle_id == state.cycle_id
    assert [s.split(" — ")[0] for s in harness.subjects(repo)] == [
        "RALPH: T-PASS-001",
        "SUPERVISOR: T-PASS-001",
        "seed",
    ]


def test_wall_time_budget_stops_the_loop(tmp_path: Path, harness) -> None:
    repo = harness.make_repo(
        tmp_path / "r", {"T-FAIL-001": (harness.item("T-FAIL-001", "stuck", priority="P0"), harness.plan(*FAILING))}
    )
    result = run_loop(harness.context(repo), cycles=5, max_wall_s=0.001)
    assert len(result.cycles) == 1 and result.stopped_because == "wall-time budget of 0.001s used"


def test_builtin_handoff_that_fails_validation_is_kept_not_committed_as_input(tmp_path: Path, harness) -> None:
    escaping = harness.plan(
        "T-ABS-001", [("A", [("leaves the repo", "cd /home/someone/elsewhere && true")])], ["x — check: `true`"]
    )
    repo = harness.make_repo(tmp_path / "r", {"T-ABS-001": (harness.item("T-ABS-001", "absolute path"), escaping)})
    [outcome] = run_loop(harness.context(repo), cycles=1).cycles
    assert outcome.status == "blocked"
    report = repo / outcome.report_dir
    assert "cd /home/someone/elsewhere" in (report / "invalid_input.md").read_text()
    assert "/home/someone/elsewhere" in next(report.glob("blocked_*.md")).read_text()
    assert not (repo / "input.md").exists() and harness.git(repo, "status", "--porcelain") == ""


def test_resumed_supervisor_turn_keeps_a_copy_of_uncommitted_root_doc_edits(tmp_path: Path, harness,
                                                                             caplog) -> None:
    from orchestrator.fsutil import utc_now_iso
    from orchestrator.records.state import CycleState, Phase, save_state

    repo = harness.make_repo(
        tmp_path / "r", {"T-PASS-001": (harness.item("T-PASS-001", "passing item"), harness.plan(*PASSING))}
    )
    ctx = harness.context(repo, phases_per_cycle=0)
    now = utc_now_iso()
    save_state(repo, CycleState(cycle_id="c-interrupted", phase=Phase.SUPERVISING, started_at=now,
                                updated_at=now, base_commit=ctx.git.head_sha(), branch="main"))
    plan = repo / "docs/fix_plan.md"
    edited = plan.read_text() + "\nA note a person added while the loop was down.\n"
    plan.write_text(edited)  # the interrupted turn's edit, or a person's: both are kept
    (repo / "input.md").write_text("half-written handoff\n")
    with caplog.at_level("WARNING", logger="orchestrator.cycle.loop"):
        outcome = run_loop(ctx, cycles=1).cycles[0]
    assert outcome.resumed and outcome.cycle_id == "c-interrupted" and outcome.status == "done"
    backup = repo / ".orchestrator/restored/c-interrupted"
    assert (backup / "docs/fix_plan.md").read_text() == edited
    assert (backup / "input.md").read_text() == "half-written handoff\n"
    assert "A note a person added" not in plan.read_text()  # the cycle ran on HEAD's plan
    assert ".orchestrator/restored/c-interrupted" in caplog.text and "docs/fix_plan.md" in caplog.text
