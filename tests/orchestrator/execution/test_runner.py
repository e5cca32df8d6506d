"""runner.run() with real subprocesses: timeouts, process groups, streaming, stdin, pipefail."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.execution import runner as runner_module
from orchestrator.execution.runner import (
    TIMEOUT_RC,
    CommandInterrupted,
    CommandResult,
    run,
    sigterm_as_interrupt,
)

REPO = Path(__file__).resolve().parents[3]
DRIVER = REPO / "tests" / "fixtures" / "runner" / "interrupt_driver.py"


def _wait_for(path: Path, limit_s: float = 10.0) -> str:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear within {limit_s}s")


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie is dead: it only waits for a reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return state[state.rfind(")") + 2] not in "ZX"


def _wait_dead(pid: int, limit_s: float = 3.0) -> bool:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_success_records_everything(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "step-01.log"
    lines: list[str] = []
    result = run("echo out; echo err >&2; echo '2 passed in 0.01s'", tmp_path, 10, log,
                 env={"MY_VAR": "xyz"}, echo=lines.append)
    assert isinstance(result, CommandResult)
    assert result.ok and result.rc == 0 and not result.timed_out
    assert result.argv[:3] == ("bash", "-o", "pipefail")
    assert result.started_at <= result.ended_at and result.started_at.tzinfo is not None
    assert result.pytest_counts is not None and result.pytest_counts.passed == 2
    assert lines == ["out", "err", "2 passed in 0.01s"]
    text = log.read_text()
    assert "out\nerr\n" in text and "# $ echo out" in text and "rc=0" in text
    env_result = run("echo $MY_VAR", tmp_path, 10, tmp_path / "env.log", env={"MY_VAR": "xyz"},
                     echo=False)
    assert "\nxyz\n" in env_result.log_path.read_text()


def test_timeout_kills_group_including_sigterm_ignoring_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    cmd = (
        "bash -c 'trap \"\" TERM; echo $$ > grandchild.pid; "
        "while true; do sleep 0.2; done' & wait"
    )
    t0 = time.monotonic()
    result = run(cmd, tmp_path, 2.0, tmp_path / "t.log", echo=False, kill_grace_s=1.0)
    elapsed = time.monotonic() - t0
    assert result.rc == TIMEOUT_RC == 124
    assert result.timed_out and not result.ok
    assert elapsed < 2.0 + 5
    pid = int(_wait_for(pidfile))
    assert _wait_dead(pid), f"grandchild {pid} survived the timeout kill"
    assert "timed_out=True" in result.log_path.read_text()


def test_output_is_streamed_while_running(tmp_path: Path) -> None:
    log = tmp_path / "stream.log"
    box: dict[str, CommandResult] = {}
    # the command blocks until the test creates 'go', so it is certainly still running
    cmd = "echo first-$((40+2)); while [ ! -f go ]; do sleep 0.05; done; echo second-$((40+2))"
    thread = threading.Thread(
        target=lambda: box.setdefault("r", run(cmd, tmp_path, 30, log, echo=False))
    )
    thread.start()
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and not (log.exists() and "first-42" in log.read_text()):
            time.sleep(0.02)
        seen = log.read_text()
        assert "first-42" in seen and "second-42" not in seen
        assert thread.is_alive(), "command finished before the log was read"
    finally:
        (tmp_path / "go").touch()
        thread.join(15)
    assert box["r"].rc == 0 and "second-42" in log.read_text()


def test_stdin_is_dev_null(tmp_path: Path) -> None:
    t0 = time.monotonic()
    result = run("cat; read -r x || echo no-input", tmp_path, 10, tmp_path / "c.log", echo=False)
    assert result.rc == 0 and not result.timed_out
    assert time.monotonic() - t0 < 5
    assert "no-input" in result.log_path.read_text()


def test_pipefail_keeps_the_failing_exit_code(tmp_path: Path) -> None:
    cmd = f"{sys.executable} -c 'import sys; sys.exit(3)' | tee x"
    assert run(cmd, tmp_path, 20, tmp_path / "p.log", echo=False).rc == 3


def test_real_pytest_through_tee(tmp_path: Path) -> None:
    (tmp_path / "test_tiny.py").write_text("def test_a(): pass\ndef test_b(): assert 0\n")
    cmd = f"{sys.executable} -m pytest -q -p no:cacheprovider test_tiny.py 2>&1 | tee pytest.log"
    result = run(cmd, tmp_path, 60, tmp_path / "py.log", echo=False)
    assert result.rc == 1
    assert result.pytest_counts is not None
    assert (result.pytest_counts.passed, result.pytest_counts.failed) == (1, 1)
    assert "1 failed, 1 passed" in (tmp_path / "pytest.log").read_text()


def test_background_job_left_behind_is_killed(tmp_path: Path) -> None:
    t0 = time.monotonic()
    result = run("sleep 60 & echo $! > bg.pid; echo started", tmp_path, 30, tmp_path / "b.log",
                 echo=False, drain_s=0.5, kill_grace_s=1.0)
    assert result.rc == 0 and result.strays_killed
    assert time.monotonic() - t0 < 5
    assert _wait_dead(int(_wait_for(tmp_path / "bg.pid")))


def test_process_escaping_the_group_cannot_block_the_reader(tmp_path: Path) -> None:
    cmd = "setsid sleep 60 & echo $! > esc.pid; echo launched"
    t0 = time.monotonic()
    result = run(cmd, tmp_path, 30, tmp_path / "e.log", echo=False, drain_s=0.5)
    try:
        assert result.rc == 0 and not result.timed_out
        assert time.monotonic() - t0 < 5
        assert "launched" in result.log_path.read_text()
    finally:
        pid = int(_wait_for(tmp_path / "esc.pid"))
        if _alive(pid):  # outside our group by design; clean up what the test started
            os.kill(pid, signal.SIGKILL)


def test_missing_executable_is_recorded_not_raised(tmp_path: Path) -> None:
    result = run(["definitely-not-a-command-xyz", "arg"], tmp_path, 5, tmp_path / "m.log",
                 echo=False)
    assert result.rc == 127 and result.error and "definitely-not-a-command-xyz" in result.error
    assert "cannot start" in result.log_path.read_text()
    assert result.cmd == "definitely-not-a-command-xyz arg"


def test_argv_mode_runs_without_shell(tmp_path: Path) -> None:
    result = run([sys.executable, "-c", "print('$HOME not expanded')"], tmp_path, 20,
                 tmp_path / "a.log", echo=False)
    assert result.rc == 0 and "$HOME not expanded" in result.log_path.read_text()


def test_log_is_appended_on_retry(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    run("echo attempt-1", tmp_path, 5, log, echo=False)
    run("echo attempt-2", tmp_path, 5, log, echo=False)
    text = log.read_text()
    assert text.index("attempt-1") < text.index("attempt-2")


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan")])
def test_bad_timeout_rejected(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        run("true", tmp_path, timeout, tmp_path / "x.log")


def test_empty_command_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        run("  ", tmp_path, 5, tmp_path / "x.log")


def test_sigterm_to_harness_kills_child_and_reports_partial_result(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        child = int(_wait_for(tmp_path / "child.pid", 20))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    record = json.loads(out.strip().splitlines()[-1])
    assert record["interrupted"] is True and record["timed_out"] is False
    assert record["ended_at"] >= record["started_at"]
    assert _wait_dead(child, 10.0), "child survived the harness interrupt"
    assert "interrupted=True" in (tmp_path / "step.log").read_text()


def test_an_interrupt_while_the_child_starts_still_kills_it(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM landing inside Popen, after the fork: the child must not outlive the harness
    (under load the interrupt test above once saw exactly this)."""
    started: list[int] = []

    class InterruptedPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self.pid)
            os.kill(os.getpid(), signal.SIGTERM)  # handled before Popen returns

    monkeypatch.setattr(runner_module.subprocess, "Popen", InterruptedPopen)
    try:
        with sigterm_as_interrupt(), pytest.raises(CommandInterrupted) as exc:
            run("sleep 60", tmp_path, 30, tmp_path / "s.log", echo=False, kill_grace_s=1.0)
        assert exc.value.result.interrupted
        assert _wait_dead(started[0], 10.0), "the child outlived the interrupt"
    finally:
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_output_flood_cannot_starve_the_deadline(tmp_path: Path) -> None:
    t0 = time.monotonic()
    result = run("yes", tmp_path, 1.0, tmp_path / "y.log", echo=False, kill_grace_s=1.0,
                 max_log_bytes=1_000_000)
    assert result.timed_out and result.rc == 124
    assert time.monotonic() - t0 < 1.0 + 5


def test_log_cap_keeps_head_and_tail(tmp_path: Path) -> None:
    cmd = "echo FIRST; yes | head -c 2000000; echo; echo '3 passed in 0.10s'"
    lines: list[str] = []
    result = run(cmd, tmp_path, 20, tmp_path / "cap.log", echo=lines.append,
                 max_log_bytes=50_000)
    text = result.log_path.read_text()
    assert "\nFIRST\n" in text and text.rstrip().splitlines()[-2] == "3 passed in 0.10s"
    assert "log truncated at 50000 bytes" in text
    assert len(text) < 50_000 + 70_000
    assert result.pytest_counts is not None and result.pytest_counts.passed == 3
    assert len(lines) < 50_000  # echo stops with the log


def test_non_string_env_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="N_THREADS"):
        run("true", tmp_path, 5, tmp_path / "x.log", env={"N_THREADS": 4})  # type: ignore[dict-item]
