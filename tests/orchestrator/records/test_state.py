"""Lock file and resumable cycle state (``orchestrator.records.state``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.fsutil import utc_now_iso
from orchestrator.records.state import (
    CycleState,
    LockHeld,
    StateError,
    hold_lock,
    load_state,
    save_state,
)


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    with hold_lock(tmp_path) as path:
        owner = json.loads(path.read_text())
        assert owner["pid"] == os.getpid()
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
            with hold_lock(tmp_path):
                pass
    assert not path.exists()
    with hold_lock(tmp_path):  # free again
        pass


def test_lock_held_by_live_process_in_another_interpreter(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from orchestrator.records.state import hold_lock\n"
        "with hold_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld, match=str(proc.pid)):
            with hold_lock(tmp_path):
                pass
    finally:
        proc.kill()
        proc.wait()
    # the holder died without cleaning up: the lock is stale and is taken over
    assert (tmp_path / ".orchestrator" / "lock").exists()
    with hold_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_lock_with_reused_pid_is_stale_and_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / ".orchestrator" / "lock"
    lock.parent.mkdir()
    # our own pid but a different kernel start time: the recorded owner is gone
    lock.write_text(json.dumps({"pid": os.getpid(), "start_ticks": 1, "host": None, "started_at": "x"}))
    with hold_lock(tmp_path) as path:
        owner = json.loads(path.read_text())
        assert owner["pid"] == os.getpid() and owner["start_ticks"] != 1 and owner["started_at"] != "x"
    assert not lock.exists()


def test_state_round_trip_is_atomic_and_validated(tmp_path: Path) -> None:
    assert load_state(tmp_path) is None
    now = utc_now_iso()
    state = CycleState(cycle_id="c1", phase="supervising", started_at=now, updated_at=now)
    save_state(tmp_path, state)
    state = state.advance("working", focus="X-1", steps={"1": {"rc": 0}})
    save_state(tmp_path, state)
    loaded = load_state(tmp_path)
    assert loaded == state and loaded.steps["1"]["rc"] == 0
    assert [p.name for p in (tmp_path / ".orchestrator").iterdir()] == ["state.json"]  # no temp files left
    with pytest.raises(StateError, match="phase"):
        state.advance("nonsense")
    (tmp_path / ".orchestrator" / "state.json").write_text("{broken")
    with pytest.raises(StateError, match=r"state\.json:1"):
        load_state(tmp_path)
