"""``orchestrator supervise`` then ``orchestrator work`` as subprocesses on a real repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # spawns the orchestrator command line


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
