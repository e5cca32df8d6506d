"""The study's arms on a real Dask cluster: ``dask scheduler`` + two ``dask worker`` processes
on localhost, the study CLI as a subprocess (tiny sizes, as in test_dose_study_cli.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # starts a Dask cluster

pytest.importorskip("distributed")

ARMS = ["high_nll", "high_mae", "low_nll", "low_mae"]
ARM_FILES = ("wts.h5.zip", "history.csv", "metrics.json", "recon.npz", "complete")
# tiny sizes as in test_dose_study_cli.py: a few training steps per arm
# the four PINN arms only, whether or not the [baseline] extra is installed
NO_BASELINE = ["--baseline", "none"]
TINY = ["--quick", "--patch-size", "16", "--n-images", "16", "--n-test-images", "64",
        "--nepochs", "1", "--batch-size", "8"]
STUDY_CMD = [sys.executable, "-m", "dose_study"]  # the installed package, by name
# no PYTHONPATH: the scheduler, the workers (started in a temporary directory) and the arm
# processes find ptycho and dose_study by their installed names
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "TF_CPP_MIN_LOG_LEVEL": "2",
       "PYTHONUNBUFFERED": "1"}


def study_cmd(out: Path, *extra: str, sizes: list[str] = TINY) -> list[str]:
    return [*STUDY_CMD, "--output-dir", str(out), *NO_BASELINE, *sizes,
            *extra]


def looks_complete(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob("*/complete")
                  if not p.parent.name.startswith("."))


def assert_complete_arm(arm_dir: Path, arm: str, nepochs: int = 1) -> None:
    for name in ARM_FILES:
        assert (arm_dir / name).is_file(), f"{arm_dir / name} missing"
    metrics = json.loads((arm_dir / "metrics.json").read_text())
    assert metrics["arm"] == arm and metrics["history"]["epochs"] == nepochs
    assert len((arm_dir / "history.csv").read_text().splitlines()) == nepochs + 1


def _scheduler_address(scheduler_file: Path, scheduler: subprocess.Popen, timeout_s: float = 90) -> str:
    """The address a scheduler started with ``--port 0 --scheduler-file`` bound (the kernel
    picks the port, so parallel test processes never race for one)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):  # not written yet, or half written
            if scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited with {scheduler.returncode}") from None
            time.sleep(0.1)
    raise TimeoutError(f"no scheduler address in {scheduler_file} after {timeout_s} s")


@dataclass
class LocalDask:
    address: str
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen]  # worker address -> process
    local_dirs: dict[str, Path]  # worker address -> its --local-directory

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def start_dask(root: Path, n_workers: int = 2) -> LocalDask:
    """A real scheduler and ``n_workers`` single-threaded workers (no nanny: killing the worker
    process kills the worker)."""
    root.mkdir(parents=True, exist_ok=True)
    log = (root / "dask.log").open("w")
    common = dict(stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                  start_new_session=True, cwd=root, env=ENV)
    scheduler_file = root / "scheduler.json"
    scheduler = subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--scheduler-file", str(scheduler_file),
                                  "--no-dashboard"], **common)
    try:
        address = _scheduler_address(scheduler_file, scheduler)
    except BaseException:
        LocalDask("", scheduler, {}, {}).stop()
        raise
    procs = []
    for i in range(n_workers):
        (root / f"w{i}").mkdir()
        procs.append((root / f"w{i}", subprocess.Popen(
            [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1", "--no-nanny",
             "--name", f"w{i}", "--no-dashboard", "--local-directory", str(root / f"w{i}")],
            **common)))
    from distributed import Client

    cluster = LocalDask(address, scheduler, {}, {})
    try:
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(n_workers, timeout=90)
            info = client.scheduler_info()["workers"]
        for addr, w in info.items():
            i = int(w["name"][1:])
            cluster.workers[addr], cluster.local_dirs[addr] = procs[i][1], procs[i][0]
    except BaseException:
        cluster.workers = {f"w{i}": p for i, (_, p) in enumerate(procs)}
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDask]:
    cluster = start_dask(tmp_path_factory.mktemp("dask"))
    yield cluster
    cluster.stop()


def run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV,
                          stdin=subprocess.DEVNULL)


def test_arms_spread_over_two_workers(dask_cluster: LocalDask, tmp_path: Path) -> None:
    out = tmp_path / "dask_study"
    proc = run(study_cmd(out, "--scheduler", dask_cluster.address))
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arms_missing"] == [] and summary["figure_ok"] is True
    workers = {arm: summary["per_arm"][arm]["worker"] for arm in ARMS}
    assert set(workers.values()) == set(dask_cluster.workers), workers
    assert summary["run"]["scheduler"]["address"] == dask_cluster.address
    assert summary["run"]["scheduler"]["workers"] == 2
    for arm in ARMS:
        assert_complete_arm(out / arm, arm)
        process = summary["per_arm"][arm]["process"]
        assert process["peak_rss_mb"] > 100 and process["threads"] >= 1
        assert process["attempts"] == 1 and process["host"] == socket.gethostname()
    # one line per state change on the client
    for arm in ARMS:
        assert re.search(rf"arm {arm} \([^)]*\): queued", proc.stderr)
        assert re.search(rf"arm {arm}: running on tcp://127\.0\.0\.1:\d+", proc.stderr)
        assert re.search(rf"arm {arm}: epoch 1 of 1 on tcp://", proc.stderr)
        assert re.search(rf"arm {arm}: done in \d+\.\d s", proc.stderr)
    assert not list(out.glob(".staging-*"))


@pytest.mark.slow
def test_arm_through_dask_matches_sequential(dask_cluster: LocalDask, tmp_path: Path) -> None:
    """The same arm through Dask and sequentially (fresh subprocess, no Dask): same metrics."""
    runs = {}
    for mode, extra in (("dask", ["--scheduler", dask_cluster.address]), ("sequential", [])):
        proc = run(study_cmd(tmp_path / mode, "--arm", "low_nll", *extra))
        assert proc.returncode == 0, proc.stderr[-4000:]
        runs[mode] = json.loads((tmp_path / mode / "low_nll" / "metrics.json").read_text())
    a, b = runs["dask"], runs["sequential"]
    assert a["worker"] in dask_cluster.workers and b["worker"].startswith("local-subprocess@")
    assert a["metrics"].keys() == b["metrics"].keys()
    for key, value in a["metrics"].items():
        assert value == pytest.approx(b["metrics"][key], rel=1e-4, abs=1e-6), key
    assert a["history"] == pytest.approx(b["history"], rel=1e-4)
    assert a["counts"] == b["counts"]


def test_unreachable_scheduler_exits_1_naming_the_address(tmp_path: Path) -> None:
    out = tmp_path / "study"
    start = time.monotonic()
    proc = run(study_cmd(out, "--scheduler", "tcp://127.0.0.1:1"), timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert elapsed < 30, elapsed
    assert re.search(r"error: cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1\b",
                     proc.stderr), proc.stderr[-3000:]
    assert looks_complete(out) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--scheduler", "somewhere"], "--scheduler must be none, local or a scheduler address"),
    (["--max-parallel", "2"], "--max-parallel needs --scheduler local"),
    (["--scheduler", "local", "--max-parallel", "0"], "--max-parallel must be >= 1, got 0"),
    (["--scheduler", "local", "--retries", "-1"], "--retries must be >= 0, got -1"),
])
def test_bad_cluster_arguments(tmp_path: Path, args: list[str], message: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from dose_study.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--output-dir", str(tmp_path / "study"), *TINY, *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err, err[-2000:]
    assert not (tmp_path / "study").exists()


def _arm_processes_under(path: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``path`` (arm processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if str(path) in cmdline and "dose_study.arm_process" in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_worker_killed_mid_arm_is_retried_on_the_other(tmp_path: Path) -> None:
    cluster = start_dask(tmp_path / "dask")
    try:
        out = tmp_path / "study"
        log_path = tmp_path / "study.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(study_cmd(out, "--scheduler", cluster.address,
                                              sizes=[*TINY[:-4], "--nepochs", "3",
                                                     "--batch-size", "8"]),
                                    stdout=subprocess.DEVNULL, stderr=log, env=ENV,
                                    stdin=subprocess.DEVNULL)
            victim = None
            deadline = time.monotonic() + 180
            while victim is None:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "no arm started"
                match = re.search(r"arm (\w+): epoch 1 of 3 on (tcp://[\d.:]+)",
                                  log_path.read_text())
                if match:
                    victim = match.group(1), match.group(2)
                time.sleep(0.1)
            arm, address = victim
            cluster.workers[address].kill()  # SIGKILL the worker process mid-arm
            cluster.workers[address].wait(timeout=30)
            rc = proc.wait(timeout=300)
        stderr = log_path.read_text()
        assert rc == 0, stderr[-4000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["arms_missing"] == [] and summary["run"]["failed"] == {}
        survivor = next(a for a in cluster.workers if a != address)
        assert summary["per_arm"][arm]["worker"] == survivor
        assert looks_complete(out) == sorted(ARMS) and not list(out.glob(".staging-*"))
        for name in ARMS:
            assert_complete_arm(out / name, name, nepochs=3)
        time.sleep(1)
        assert _arm_processes_under(cluster.local_dirs[address]) == [], "orphaned arm process"
    finally:
        cluster.stop()


def _descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        children = [p for p, pp in parents.items() if pp in frontier]
        out += children
        frontier = children
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_ctrl_c_cancels_submitted_arms_of_a_local_cluster(tmp_path: Path) -> None:
    out = tmp_path / "study"
    log_path = tmp_path / "study.log"
    with log_path.open("w") as log:
        sizes = [*TINY[:-4], "--nepochs", "4", "--batch-size", "8"]
        proc = subprocess.Popen(study_cmd(out, "--scheduler", "local", "--max-parallel", "2",
                                          sizes=sizes),
                                stdout=subprocess.DEVNULL, stderr=log, env=ENV,
                                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while not re.search(r"arm \w+: epoch 1 of 4", log_path.read_text()):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "no arm started"
            time.sleep(0.1)
        arm_pids = [p for p in _descendants(proc.pid)
                    if b"dose_study.arm_process" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert arm_pids, "no arm process found under the study"
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        rc = proc.wait(timeout=90)
    stderr = log_path.read_text()
    assert rc == 130, stderr[-4000:]
    assert time.monotonic() - start < 60
    assert "cancelling 4 submitted arm(s)" in stderr, stderr[-3000:]
    assert re.search(r"interrupted \(KeyboardInterrupt\) while running arm", stderr)
    assert looks_complete(out) == [] and not list(out.glob(".staging-*"))
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in arm_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in arm_pids), "arm processes survived Ctrl-C"
