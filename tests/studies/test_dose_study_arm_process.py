"""The arm-process launcher with fake child executables (no TensorFlow), and the pure parts of
the Dask executor (options, shipping the task by value)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from dose_study import arm_process
from dose_study.arm_process import ArmProcessError, launch_arm
from dose_study.recipe import slim_training_data


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for ``python``: gets ``-m dose_study.arm_process --arm A
    --staging DIR ...``; ``staging`` and ``write_result`` are available to ``body``."""
    path = tmp_path / "fake_python"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import json, os, sys, time
        from pathlib import Path
        argv = sys.argv[1:]
        staging = Path(argv[argv.index("--staging") + 1])
        def write_result(obj):
            (staging / ".arm-result.json").write_text(json.dumps(obj))
        """) + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def test_ok_child_lines_reach_the_caller(tmp_path: Path) -> None:
    python = fake_python(tmp_path, """
        print("epoch 1/2 loss=1.0", flush=True)
        print("epoch 2/2 loss=0.5", file=sys.stderr, flush=True)
        (staging / "metrics.json").write_text("{}")
        write_result({"status": "ok"})
    """)
    lines: list[str] = []
    res = launch_arm("low_nll", tmp_path, {"N": 16}, python=python, on_line=lines.append)
    assert res.status == "ok" and res.returncode == 0 and res.reason == ""
    assert lines == ["epoch 1/2 loss=1.0", "epoch 2/2 loss=0.5"]
    assert res.peak_rss_mb > 1 and res.pid > 0
    assert not (tmp_path / ".arm-result.json").exists()  # consumed, never committed


def test_failed_arm_gives_its_reason(tmp_path: Path) -> None:
    python = fake_python(tmp_path, """
        write_result({"status": "failed", "reason": "ArmFailure: loss is not finite"})
        sys.exit(1)
    """)
    res = launch_arm("low_nll", tmp_path, {}, python=python)
    assert res.status == "failed" and res.reason == "ArmFailure: loss is not finite"


@pytest.mark.parametrize(("body", "how"), [
    ("print('about to die', flush=True); os.kill(os.getpid(), 9)", "killed by signal 9"),
    ("print('Traceback: boom', flush=True); sys.exit(3)", "exit code 3"),
    ("sys.exit(0)", "exit code 0"),  # exit 0 without a result is not success
])
def test_child_without_result_raises(tmp_path: Path, body: str, how: str) -> None:
    python = fake_python(tmp_path, body)
    with pytest.raises(ArmProcessError, match=rf"arm high_mae: process \d+ ended without a result "
                                              rf"\({how}\)"):
        launch_arm("high_mae", tmp_path, {}, python=python)


def test_stop_request_terminates_the_child(tmp_path: Path) -> None:
    marker = tmp_path / "got_sigterm"
    python = fake_python(tmp_path, f"""
        import signal
        def on_term(*a):
            Path({str(marker)!r}).write_text("yes")
            sys.exit(143)
        signal.signal(signal.SIGTERM, on_term)
        print("started", flush=True)
        time.sleep(60)
    """)
    started = time.monotonic()
    seen: list[str] = []
    res = launch_arm("low_mae", tmp_path, {}, python=python, on_line=seen.append,
                     should_stop=lambda: bool(seen), poll_s=0.05)
    assert res.status == "interrupted" and time.monotonic() - started < 20
    assert marker.read_text() == "yes"


def test_an_interrupt_just_after_the_start_still_terminates_the_child(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or the study's SIGTERM handler) landing between the child's start and the wait
    loop, here while the output reader starts, must not leave the child running."""
    ran_on = tmp_path / "ran_on"
    python = fake_python(tmp_path, f"""
        time.sleep(1.5)
        Path({str(ran_on)!r}).write_text("the child outlived the interrupted launcher")
    """)

    class InterruptedThread(arm_process.threading.Thread):
        def start(self) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(arm_process.threading, "Thread", InterruptedThread)
    with pytest.raises(KeyboardInterrupt):
        launch_arm("low_mae", tmp_path, {}, python=python)
    monkeypatch.undo()
    time.sleep(3)
    assert not ran_on.exists()


@pytest.mark.integration  # spawns the arm-process command line
def test_child_ends_itself_when_its_parent_dies(tmp_path: Path) -> None:
    """The real child entry, started outside the checkout with no PYTHONPATH (it is found by its
    installed name): with --parent-pid of a process that is gone, it exits at once."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    env = {k: v for k, v in arm_process.child_env(None).items() if k != "PYTHONPATH"}
    staging = tmp_path / "staging"
    staging.mkdir()
    proc = subprocess.run([sys.executable, "-m", "dose_study.arm_process", "--arm", "low_nll",
                           "--staging", str(staging), "--config", "{}", "--parent-pid",
                           dead.stdout.strip()], env=env, cwd=tmp_path, capture_output=True,
                          timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert list(staging.iterdir()) == []


def test_child_env_caps_threads() -> None:
    env = arm_process.child_env(3)
    assert env["TF_NUM_INTRAOP_THREADS"] == env["OMP_NUM_THREADS"] == "3"
    assert env.get("PYTHONPATH") == os.environ.get("PYTHONPATH")  # nothing injected
    assert arm_process.child_env(None).get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS")


def test_slim_training_data_drops_what_training_does_not_read() -> None:
    from ptycho.physics import SimulatedData

    fields = {f: np.zeros(1) for f in SimulatedData.__dataclass_fields__}
    data = SimulatedData(**fields)
    nll = slim_training_data(data, "nll")
    assert nll.object_patches is None and nll.counts is data.counts
    assert nll.diffraction is data.diffraction and nll.offsets is data.offsets
    mae = slim_training_data(data, "mae")
    assert mae.object_patches is None and mae.counts is None


# ----------------------------------------------------------------------------- Dask parts
def test_cluster_options_validate() -> None:
    from dose_study.cluster import ClusterOptions

    assert ClusterOptions("tcp://10.0.0.1:8786").retries == 2
    assert ClusterOptions("head-node:8786").scheduler == "head-node:8786"
    for kwargs, message in [({"scheduler": "somewhere"}, "--scheduler must be"),
                            ({"scheduler": "local", "max_parallel": 0}, "--max-parallel"),
                            ({"scheduler": "local", "retries": -1}, "--retries"),
                            ({"scheduler": "local", "threads_per_arm": 0}, "--threads-per-arm")]:
        with pytest.raises(ValueError, match=message):
            ClusterOptions(**kwargs)


def test_task_function_unpickles_without_the_study_package(tmp_path: Path) -> None:
    """The scheduler and workers unpickle the task without ``dose_study`` on their path."""
    pytest.importorskip("cloudpickle")
    import cloudpickle

    from dose_study.cluster import ShippedByValue

    cloudpickle.register_pickle_by_value(arm_process)
    try:
        payload = pickle.dumps(ShippedByValue(arm_process.arm_task))
    finally:
        cloudpickle.unregister_pickle_by_value(arm_process)
    (tmp_path / "payload.pkl").write_bytes(payload)
    code = ("import pickle, sys; fn = pickle.load(open(sys.argv[1], 'rb')); "
            "assert 'dose_study' not in sys.modules; print(fn.__name__, fn.__module__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "payload.pkl")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "arm_task"
