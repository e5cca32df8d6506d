"""Lock, hard kill + resume, SIGINT, and the main job — the real CLI in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.execution.steps import kill_marked_processes

pytestmark = pytest.mark.integration  # spawns the orchestrator command line and signals it

CONFIG = "git_sync: false\nstep_timeout_s: 120\ncheck_timeout_s: 60\nphases_per_cycle: 0\n"
# step 2 hangs on its first attempt only, so a resumed cycle can finish
SLOW = (
    "T-SLOW-001",
    [
        (
            "Work",
            [
                ("first step", "echo ran >> $ARTIFACTS/first.txt"),
                (
                    "second step",
                    "if [ -f $ARTIFACTS/second.started ]; then echo resumed; else touch $ARTIFACTS/second.started; "
                    "sleep 300; fi",
                ),
                ("third step", "echo three > $ARTIFACTS/third.txt"),
            ],
        )
    ],
    ["third ran — check: `test -s $ARTIFACTS/third.txt`"],
)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _default_sigint() -> None:
    # A job started in the background by a non-interactive shell inherits SIGINT ignored, and
    # Python then never raises KeyboardInterrupt; the loop under test must see a normal Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(repo: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        preexec_fn=_default_sigint,
    )


def _run(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env=env or _env(),
    )


def _wait_for_step_2(repo: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    state_path = repo / ".orchestrator" / "state.json"
    while time.monotonic() < deadline:
        if state_path.exists():
            state = json.loads(state_path.read_text())
            report = repo / (state.get("report_dir") or "nowhere")
            if "1" in state["steps"] and (report / "second.started").exists():
                return state
        time.sleep(0.1)
    raise AssertionError("the loop never reached step 2")


def _slow_repo(tmp_path: Path, harness) -> Path:
    return harness.make_repo(
        tmp_path / "r",
        {"T-SLOW-001": (harness.item("T-SLOW-001", "slow item"), harness.plan(*SLOW))},
        extra={"orchestrator.yaml": CONFIG},
    )


def test_second_loop_is_refused_while_the_first_holds_the_lock(tmp_path: Path, harness) -> None:
    repo = _slow_repo(tmp_path, harness)
    first = _start(repo, "loop", "--cycles", "1")
    try:
        _wait_for_step_2(repo)
        second = _run(repo, "loop", "--cycles", "1")
        assert second.returncode == 3
        assert f"another orchestrator loop is running (pid {first.pid}" in second.stderr
        status = json.loads(_run(repo, "status", "--json").stdout)
        assert status["lock"]["alive"] is True and status["state"]["phase"] == "working"
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)


def test_hard_kill_mid_step_then_restart_resumes_without_losing_artifacts(tmp_path: Path, harness) -> None:
    repo = _slow_repo(tmp_path, harness)
    loop = _start(repo, "loop", "--cycles", "1")
    state = _wait_for_step_2(repo)
    loop.kill()  # SIGKILL: no cleanup at all; the lock and the step's `sleep` are left behind
    loop.wait(timeout=10)
    report = repo / state["report_dir"]
    try:
        resumed = _run(repo, "loop", "--cycles", "1")
    finally:
        kill_marked_processes(f"{state['cycle_id']}:")  # never leave a sleep behind, even if the test fails
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "(resumed)" in resumed.stdout and ": done" in resumed.stdout
    assert (report / "first.txt").read_text() == "ran\n"  # step 1 was not re-run
    log2 = (report / "logs" / "step-02.log").read_text()
    assert "resumed" in log2 and (report / "second.started").exists()  # the retry appended to the same log
    run = json.loads((report / "run.json").read_text())
    assert run["status"] == "ok" and [s["index"] for s in run["steps"]] == [1, 2, 3]
    assert run["harness"]["attempt"] == 2 and run["harness"]["cycle_id"] == state["cycle_id"]
    assert len([s for s in harness.subjects(repo) if s.startswith("SUPERVISOR:")]) == 1  # not re-supervised
    assert len(list((repo / "plans/active/T-SLOW-001/reports").iterdir())) == 1  # no second report dir
    assert kill_marked_processes(f"{state['cycle_id']}:") == []  # the orphaned sleep was killed on resume


def test_sigint_records_interrupted_then_resume_finishes(tmp_path: Path, harness) -> None:
    repo = _slow_repo(tmp_path, harness)
    loop = _start(repo, "loop", "--cycles", "1")
    state = _wait_for_step_2(repo)
    loop.send_signal(signal.SIGINT)
    out, _ = loop.communicate(timeout=30)
    assert loop.returncode == 130, out
    report = repo / state["report_dir"]
    run = json.loads((report / "run.json").read_text())
    assert run["status"] == "interrupted"
    assert [s["index"] for s in run["steps"]] == [1, 2] and run["steps"][1]["interrupted"] is True
    saved = json.loads((repo / ".orchestrator" / "state.json").read_text())
    assert saved["interrupted"] is True and saved["phase"] == "working"
    assert not (repo / ".orchestrator" / "lock").exists()
    assert kill_marked_processes(f"{state['cycle_id']}:") == []  # the step's process group was killed
    resumed = _run(repo, "loop", "--cycles", "1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads((report / "run.json").read_text())["status"] == "ok"
    assert json.loads((report / "run.attempt-1.json").read_text())["status"] == "interrupted"  # kept, not overwritten


def test_main_job_runs_in_a_worktree_without_touching_the_checkout(tmp_path: Path, harness) -> None:
    quick = harness.plan(
        "T-MAIN-001",
        [("A", [("ok", "true")]), ("B", [("echo", "echo hi > $ARTIFACTS/hi.txt")])],
        ["hi written — check: `test -s $ARTIFACTS/hi.txt`"],
    )
    repo = harness.make_repo(
        tmp_path / "r",
        {"T-MAIN-001": (harness.item("T-MAIN-001", "main item"), quick)},
        extra={"orchestrator.yaml": CONFIG + "main_job:\n  focus: T-MAIN-001\n  phases_per_cycle: 0\n"},
    )
    (repo / "scratch.txt").write_text("the user's uncommitted work\n")
    before = harness.git(repo, "status", "--porcelain"), harness.git(repo, "rev-parse", "HEAD")
    home = tmp_path / "home"
    home.mkdir()
    env = _env(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / "none"), GIT_CONFIG_NOSYSTEM="1")
    result = _run(repo, "main-job", env=env)  # a fresh machine: no git identity configured
    assert result.returncode == 0, result.stdout + result.stderr
    assert (harness.git(repo, "status", "--porcelain"), harness.git(repo, "rev-parse", "HEAD")) == before
    assert "your checkout: untouched by the harness" in result.stdout
    branch = next(line.split()[1] for line in result.stdout.splitlines() if line.strip().startswith("branch:"))
    assert branch.startswith("harness/run-")
    log = harness.git(repo, "log", "--format=%an|%s", f"main..{branch}").splitlines()
    assert log == [
        "ptycho-harness|RALPH: T-MAIN-001 — 2/2 steps ok, 1/1 exit criteria passed → done",
        "ptycho-harness|SUPERVISOR: T-MAIN-001 — Phase A–B handoff (dwell 0)",
    ]
    worktree = repo / ".orchestrator" / "worktrees"
    [wt] = list(worktree.iterdir())
    assert (wt / "input.md").exists() and list(wt.glob("plans/active/T-MAIN-001/reports/*/run.json"))


def test_main_job_exits_nonzero_when_the_cycle_fails(tmp_path: Path, harness) -> None:
    failing = harness.plan("T-BAD-001", [("A", [("breaks", "exit 7")])], ["never — check: `false`"])
    repo = harness.make_repo(
        tmp_path / "r",
        {"T-BAD-001": (harness.item("T-BAD-001", "bad item"), failing)},
        extra={"orchestrator.yaml": CONFIG + "main_job:\n  focus: T-BAD-001\n"},
    )
    before = harness.git(repo, "status", "--porcelain"), harness.git(repo, "rev-parse", "HEAD")
    result = _run(repo, "main-job")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "result:    failed" in result.stdout and "your checkout: untouched by the harness" in result.stdout
    assert (harness.git(repo, "status", "--porcelain"), harness.git(repo, "rev-parse", "HEAD")) == before


def test_checkout_guard_blames_only_what_the_harness_could_touch(tmp_path: Path, harness) -> None:
    from orchestrator.tools.mainjob import _Checkout, _compare
    from orchestrator.vcs.repo import GitRepo

    repo = harness.make_repo(
        tmp_path / "r",
        {"T-X-001": (harness.item("T-X-001", "x"), harness.plan("T-X-001", [("A", [("a", "true")])], []))},
    )
    gitrepo = GitRepo(repo)
    before = _Checkout.take(gitrepo)
    (repo / "other.txt").write_text("a colleague's work\n")
    harness.git(repo, "add", "other.txt")
    harness.git(repo, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "someone else's commit")
    untouched, notes = _compare(gitrepo, before, _Checkout.take(gitrepo))
    assert untouched and "HEAD moved by 1 commit(s) during the run (none by the harness)" in notes
    (repo / "docs" / "fix_plan.md").write_text((repo / "docs" / "fix_plan.md").read_text() + "\n")
    untouched, notes = _compare(gitrepo, before, _Checkout.take(gitrepo))
    assert not untouched and notes[0] == "harness-owned files changed in your checkout: docs/fix_plan.md"
