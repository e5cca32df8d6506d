"""CommandAgent with a deterministic fake agent CLI (tests/fixtures/agents/fake_agent.py)."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.agents import CommandAgent, SupervisorTask, WorkerTask, render_argv
from orchestrator.config import AgentCommand
from orchestrator.cycle.loop import run_loop
from orchestrator.documents.handoff_check import validate_handoff_file
from orchestrator.execution.steps import step_env
from orchestrator.records.artifacts import new_report_dir

FAKE = Path(__file__).parents[2] / "fixtures" / "agents" / "fake_agent.py"
SIMPLE = ("T-AG-001", [("Only", [("ok", "true")])], ["fine — check: `true`"])


def _spec(role: str, mode: str, timeout_s: float = 30) -> AgentCommand:
    return AgentCommand(
        name=f"fake-{mode}",
        role=role,
        timeout_s=timeout_s,
        argv=(
            sys.executable,
            str(FAKE),
            mode,
            "--repo",
            "{repo}",
            "--focus",
            "{focus}",
            "--report-dir",
            "{report_dir}",
            "--prompt-file",
            "{prompt_file}",
        ),
    )


def _task(repo: Path) -> SupervisorTask:
    report = new_report_dir(repo, "T-AG-001")
    return SupervisorTask(repo, "T-AG-001", "agent item", 0, report, "(draft)", datetime.now(UTC))


@pytest.fixture()
def repo(tmp_path: Path, harness) -> Path:
    root = harness.make_repo(
        tmp_path / "r",
        {"T-AG-001": (harness.item("T-AG-001", "agent item"), harness.plan(*SIMPLE))},
        extra={"input.md": "previous handoff, kept verbatim\n"},
    )
    return root


def test_render_argv_substitutes_once_without_a_shell() -> None:
    argv = render_argv(
        ("agent", "-p", "{prompt}", "--dir={repo}"),
        {
            "prompt": "use {repo} literally; $(rm -rf /)",
            "repo": "/r",
            "prompt_file": "",
            "report_dir": "",
            "role": "supervisor",
            "focus": "X",
        },
    )
    assert argv == ["agent", "-p", "use {repo} literally; $(rm -rf /)", "--dir=/r"]


def test_valid_handoff_is_accepted_with_transcript_and_prompt(repo: Path) -> None:
    task = _task(repo)
    result = CommandAgent(_spec("supervisor", "valid"), validate_handoff_file).supervise(task)
    assert result.status == "ok", result.problems
    assert "written by the fake agent" in (repo / "input.md").read_text()
    transcript = (task.report_dir / "agent" / "supervisor-transcript.log").read_text()
    assert "fake agent valid: prompt has" in transcript and "fake agent done" in transcript
    prompt = (task.report_dir / "agent" / "supervisor-prompt.md").read_text()
    assert "T-AG-001" in prompt and "(draft)" in prompt
    record = json.loads((task.report_dir / "agent" / "supervisor.json").read_text())
    assert record["status"] == "ok" and record["command"]["rc"] == 0


def test_invalid_handoff_is_kept_and_previous_restored(repo: Path) -> None:
    task = _task(repo)
    result = CommandAgent(_spec("supervisor", "invalid"), validate_handoff_file).supervise(task)
    assert result.status == "invalid"
    assert any("Focus" in p for p in result.problems)
    assert (repo / "input.md").read_text() == "previous handoff, kept verbatim\n"
    kept = task.report_dir / "agent" / "invalid_input.md"
    assert kept.read_text().startswith("Mode: Implementation\n\n## Do Now")
    assert json.loads((task.report_dir / "agent" / "supervisor.json").read_text())["kept"] == ["agent/invalid_input.md"]


def test_hanging_agent_is_killed_and_recorded(repo: Path) -> None:
    task = _task(repo)
    t0 = time.monotonic()
    result = CommandAgent(_spec("supervisor", "hang", timeout_s=1.5), validate_handoff_file).supervise(task)
    assert time.monotonic() - t0 < 15
    assert result.status == "timed_out" and "killed" in result.message
    record = json.loads((task.report_dir / "agent" / "supervisor.json").read_text())
    assert record["command"]["timed_out"] is True and record["command"]["rc"] == 124
    assert "thinking..." in (task.report_dir / "agent" / "supervisor-transcript.log").read_text()
    assert (repo / "input.md").read_text() == "previous handoff, kept verbatim\n"


def test_worker_agent_may_not_rewrite_the_handoff(repo: Path) -> None:
    report = new_report_dir(repo, "T-AG-001")
    task = WorkerTask(repo, repo / "input.md", "T-AG-001", report, step_env(repo, "x", "t"), 30)
    result = CommandAgent(_spec("worker", "work-edits"), validate_handoff_file).work(task)
    assert result.status == "invalid" and (report / "agent_output.txt").exists()
    assert (repo / "input.md").read_text() == "previous handoff, kept verbatim\n"
    assert (report / "agent" / "worker_edited_input.md").read_text() == "overwritten by the worker\n"


def test_loop_with_invalid_agent_records_a_blocked_cycle(repo: Path, harness) -> None:
    ctx = harness.context(repo)
    ctx = type(ctx)(
        ctx.repo,
        ctx.config,
        CommandAgent(_spec("supervisor", "invalid"), validate_handoff_file),
        ctx.worker,
        ctx.expected_branch,
        ctx.git_env,
    )
    [outcome] = run_loop(ctx, cycles=1).cycles
    assert outcome.status == "blocked"
    assert harness.subjects(repo)[0].startswith("SUPERVISOR: T-AG-001 — handoff rejected:")
    report = repo / outcome.report_dir
    assert (report / "agent" / "invalid_input.md").exists() and list(report.glob("blocked_*.md"))
    assert harness.git(repo, "show", "HEAD:input.md") == "previous handoff, kept verbatim"
    assert harness.git(repo, "status", "--porcelain") == ""


def test_loop_with_valid_agents_end_to_end(repo: Path, harness) -> None:
    ctx = harness.context(repo)
    ctx = type(ctx)(
        ctx.repo,
        ctx.config,
        CommandAgent(_spec("supervisor", "valid"), validate_handoff_file),
        CommandAgent(_spec("worker", "work"), validate_handoff_file),
        ctx.expected_branch,
        ctx.git_env,
    )
    [outcome] = run_loop(ctx, cycles=1).cycles
    run = json.loads((repo / outcome.report_dir / "run.json").read_text())
    assert run["harness"]["worker_agent"] == "fake-work"
    assert [s["title"] for s in run["steps"]] == ["agent fake-work"]
    assert [c["ok"] for c in run["exit_criteria"]] == [True]  # the harness verified the agent's handoff criteria
    assert (repo / outcome.report_dir / "agent_output.txt").exists()
    assert outcome.status == "failed"  # no plan item was ticked by the agent: no progress
