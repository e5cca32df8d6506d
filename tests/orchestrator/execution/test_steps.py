"""Do-Now steps (``orchestrator.execution.steps``): planned from a handoff, run as real subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.documents import handoff as handoff_doc
from orchestrator.execution.steps import (
    TIMEOUT_GRACE_S,
    PlannedCheck,
    PlannedStep,
    kill_marked_processes,
    planned_steps,
    run_checks,
    run_steps,
    step_env,
    step_item_id,
    step_timeout,
)


@pytest.mark.parametrize(("script", "expected"), [
    ("timeout 600 python x.py", 600 + TIMEOUT_GRACE_S),
    ("cd sub\ntimeout 10m pytest -q\ntimeout -k 5 30s true", 630 + TIMEOUT_GRACE_S),
    ("FOO=1 timeout --signal=KILL 1h make", 3600 + TIMEOUT_GRACE_S),
    ("python -m pytest -q  # no timeout here", 42.0),
    ("echo 'timeout 5'", 42.0),
])
def test_step_timeout_from_prefix_or_default(script: str, expected: float) -> None:
    assert step_timeout(script, 42.0)[0] == pytest.approx(expected)


def test_step_env_puts_harness_python_and_root_first(tmp_path: Path) -> None:
    env = step_env(tmp_path, "plans/active/X-1/reports/t", "run1", {"PATH": "/usr/bin", "PYTHONPATH": "/a"})
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["PYTHONPATH"] == f"{tmp_path}{os.pathsep}/a"
    assert env["ARTIFACTS"] == "plans/active/X-1/reports/t"


def _env(tmp_path: Path, marker: str = "t-run") -> dict[str, str]:
    return step_env(tmp_path, "rep", marker)


def test_steps_run_in_root_fail_fast_and_check_expectations(tmp_path: Path) -> None:
    report = tmp_path / "rep"
    (tmp_path / "test_tiny.py").write_text("def test_a():\n    assert True\n\ndef test_b():\n    assert True\n")
    steps = [
        PlannedStep(1, "where", "A", "pwd > $ARTIFACTS/pwd.txt\ncommand -v python > $ARTIFACTS/python.txt"),
        PlannedStep(2, "tiny pytest", "A", "python -m pytest -q -p no:cacheprovider test_tiny.py", "2 passed"),
        PlannedStep(3, "wrong expectation", "B", "python -m pytest -q -p no:cacheprovider test_tiny.py", "3 passed"),
        PlannedStep(4, "never runs", "B", "touch $ARTIFACTS/never"),
    ]
    report.mkdir()
    seen: list[int] = []
    records = run_steps(steps, tmp_path, report, _env(tmp_path), 60, on_step=lambda r: seen.append(r.index))
    assert [r.index for r in records] == [1, 2, 3] == seen
    assert (report / "pwd.txt").read_text().strip() == str(tmp_path)
    assert (report / "python.txt").read_text().strip().startswith(str(Path(sys.executable).parent))
    assert records[1].ok and records[1].expectation_ok is True
    assert records[2].rc == 0 and records[2].expectation_ok is False and not records[2].ok
    assert not (report / "never").exists()
    assert (report / "logs" / "step-02.log").read_text().count("2 passed") == 1


def test_set_e_makes_a_failing_command_fail_the_step(tmp_path: Path) -> None:
    (tmp_path / "rep").mkdir()
    records = run_steps([PlannedStep(1, "x", "A", "false\necho still-here")], tmp_path, tmp_path / "rep",
                        _env(tmp_path), 60)
    assert records[0].rc == 1
    assert "still-here" not in (tmp_path / "rep" / "logs" / "step-01.log").read_text().splitlines()


def test_done_steps_are_not_rerun(tmp_path: Path) -> None:
    report = tmp_path / "rep"
    report.mkdir()
    first = run_steps([PlannedStep(1, "x", "A", "echo run >> $ARTIFACTS/count")], tmp_path, report, _env(tmp_path), 60)
    again = run_steps([PlannedStep(1, "x", "A", "echo run >> $ARTIFACTS/count"),
                       PlannedStep(2, "y", "A", "echo two >> $ARTIFACTS/count")],
                      tmp_path, report, _env(tmp_path), 60, done={1: first[0]})
    assert (report / "count").read_text().split() == ["run", "two"]
    assert again[0] == first[0]


def test_step_timeout_kills_and_records(tmp_path: Path) -> None:
    (tmp_path / "rep").mkdir()
    t0 = time.monotonic()
    records = run_steps([PlannedStep(1, "hang", "A", "sleep 30")], tmp_path, tmp_path / "rep", _env(tmp_path), 1.0)
    assert records[0].timed_out and records[0].rc == 124
    assert time.monotonic() - t0 < 15


def test_checks_pass_fail_and_manual(tmp_path: Path) -> None:
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "ok.txt").write_text("x")
    checks = [PlannedCheck(1, "file exists", "test -s $ARTIFACTS/ok.txt"),
              PlannedCheck(2, "missing", "test -s $ARTIFACTS/missing.txt"),
              PlannedCheck(3, "a human looks at it", None)]
    records = run_checks(checks, tmp_path, tmp_path / "rep", _env(tmp_path), 30)
    assert [r.ok for r in records] == [True, False, None]
    assert records[1].rc == 1 and records[1].log == "logs/check-02.log"


def test_kill_marked_processes_finds_orphans_by_marker(tmp_path: Path) -> None:
    env = {**os.environ, "ORCHESTRATOR_STEP": "orphan-test-xyz:1"}
    proc = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    try:
        time.sleep(0.2)
        assert kill_marked_processes("other-run:") == []
        assert kill_marked_processes("orphan-test-xyz:") == [proc.pid]
        assert proc.wait(timeout=10) == -9
    finally:
        if proc.poll() is None:
            proc.kill()


def test_planned_steps_keep_expectations_and_item_ids() -> None:
    seed = Path(__file__).parents[2] / "fixtures" / "documents" / "seeds" / "input.example.md"
    steps = planned_steps(handoff_doc.parse(seed.read_text(), seed))
    assert [s.number for s in steps] == [1, 2, 3, 4] and [s.phase for s in steps] == ["A", "B", "C", "D"]
    assert steps[0].expected == "2 passed" and steps[1].script.startswith("cd /home/ollie")
    assert all("# Expected" not in s.script for s in steps)
    assert step_item_id("A1: Sanity — tests") == "A1" and step_item_id("**B2:** run") == "B2"
    assert step_item_id("Quick sanity check") is None
