"""One arm in a fresh Python process: the child entry point and the parent-side launcher.

The child (``python -m dose_study.arm_process --arm NAME --staging DIR --config JSON``) trains
one arm with ``runner.PtychoArmRunner`` (a baseline-engine arm with
``baseline_runner.BaselineArmRunner``) and writes ``store.arm_files(arm)`` into ``DIR``; it never
commits, the parent does (``ArmStore.commit``). When the child ends, TensorFlow's memory goes
back to the operating system, so a study peaks no higher than its largest arm.

Child exit codes: 0 arm written; 1 the arm failed (reason in ``DIR/.arm-result.json``);
130/143 interrupted by SIGINT/SIGTERM. The child also ends itself when its parent process dies
(a killed study or Dask worker leaves no orphan training on).

This module imports only the standard library at module level, so a Dask client can ship it
to workers by value (``cloudpickle.register_pickle_by_value``): the scheduler never imports
the study, and a worker whose Python lacks the installed ``dose_study`` package reports that
instead of failing to unpickle (docs/dask.md). The child is ``python -m dose_study.arm_process``
with the worker's own interpreter, found by its installed name from any working directory.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_FILE = ".arm-result.json"
TERM_GRACE_S = 10.0


class ArmProcessError(RuntimeError):
    """The arm process ended without a result (killed, crashed, could not start)."""


@dataclass(frozen=True)
class ArmProcessResult:
    """How one arm process ended.

    status:       "ok" (ARM_FILES written into staging) | "failed" (the arm itself failed)
    reason:       failure reason ("" when ok)
    returncode:   the child's exit code
    peak_rss_mb:  the child's peak resident set size (wait4 ru_maxrss), MB
    wall_s:       seconds from start to exit
    tail:         the last lines of the child's output
    """

    status: str
    reason: str
    returncode: int
    pid: int
    peak_rss_mb: float
    wall_s: float
    tail: list[str] = field(default_factory=list)


def child_env(threads: int | None) -> dict[str, str]:
    """Environment of an arm process: this one's, with TF quiet, unbuffered output and the
    TensorFlow/OpenMP thread counts capped to ``threads`` (None: TensorFlow's default)."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    if threads:
        for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            env[name] = str(threads)
        env["TF_NUM_INTEROP_THREADS"] = "1" if threads < 3 else "2"
    return env


def launch_arm(arm: str, staging: Path, config: dict[str, Any], *,
               on_line: Callable[[str], None] = lambda line: None,
               should_stop: Callable[[], bool] = lambda: False,
               threads: int | None = None, python: str = sys.executable,
               poll_s: float = 0.5) -> ArmProcessResult:
    """Run arm ``arm`` in a fresh process writing into ``staging``; wait for it.

    ``config`` is ``StudyConfig.to_dict()``; every output line of the child goes to
    ``on_line``. A signal exception raised in the caller's thread while waiting (Ctrl-C, the
    study's SIGTERM handler), or ``should_stop()`` turning true, terminates the child (SIGTERM,
    then SIGKILL after TERM_GRACE_S): the exception is re-raised, a stop gives status
    "interrupted". Raises ArmProcessError when the child dies without a result.
    """
    staging = Path(staging)
    cmd = [python, "-m", "dose_study.arm_process", "--arm", arm, "--staging", str(staging),
           "--config", json.dumps(config), "--parent-pid", str(os.getpid())]
    lines: queue.Queue[str | None] = queue.Queue()
    tail: deque[str] = deque(maxlen=40)
    stopped = False
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=child_env(threads),
                                start_new_session=True, text=True, errors="replace")
    except OSError as exc:
        raise ArmProcessError(f"arm {arm}: cannot start {python}: {exc}") from exc
    # From here on a signal exception terminates the child (before, the child's watch of this
    # process, --parent-pid, ends it once this process exits).
    try:
        reader = threading.Thread(target=_pump, args=(proc, lines), daemon=True)
        reader.start()
        next_check = time.monotonic() + poll_s
        while True:
            try:
                line = lines.get(timeout=poll_s)
            except queue.Empty:
                line = ""
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + poll_s
                if should_stop():
                    stopped = True
                    break
            if line is None:
                break
            if line:
                tail.append(line)
                on_line(line)
    except BaseException:
        _terminate(proc)
        raise
    if stopped:
        _terminate(proc)
    rusage_kb, returncode = _reap(proc)
    reader.join(timeout=5)
    wall = time.perf_counter() - start
    if stopped:
        return ArmProcessResult("interrupted", "stop requested", returncode, proc.pid,
                                rusage_kb / 1024, wall, list(tail))
    result = _read_result(staging)
    peak = rusage_kb / 1024
    if returncode == 0 and result.get("status") == "ok":
        return ArmProcessResult("ok", "", 0, proc.pid, peak, wall, list(tail))
    if returncode == 1 and result.get("status") == "failed":
        return ArmProcessResult("failed", str(result.get("reason", "unknown")), 1, proc.pid,
                                peak, wall, list(tail))
    how = (f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}")
    last = next((ln for ln in reversed(tail) if ln.strip()), "(no output)")
    raise ArmProcessError(f"arm {arm}: process {proc.pid} ended without a result ({how}); "
                          f"last output: {last.strip()}")


def _pump(proc: subprocess.Popen, lines: queue.Queue) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM the child's process group, SIGKILL it after TERM_GRACE_S; reap it."""
    for sig, grace in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _reap(proc: subprocess.Popen) -> tuple[float, int]:
    """Wait for the child; (peak RSS in kB, exit code like Popen.returncode)."""
    if proc.returncode is not None:  # already reaped by _terminate: no rusage left
        return 0.0, proc.returncode
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return float(usage.ru_maxrss), proc.returncode


def _read_result(staging: Path) -> dict[str, Any]:
    path = staging / RESULT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        path.unlink()
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ----------------------------------------------------------------------------- Dask task
EPOCH_RE = re.compile(r"\bepoch (\d+)/(\d+)\b")


def arm_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One arm as a Dask task: run it in a fresh process on this worker, return its files.

    spec: arm, config (StudyConfig.to_dict()), files (names to return), topic (event topic
    for progress), cancel_event (name of a distributed.Event that stops the arm), threads
    (TensorFlow threads; None: this worker's cores / its thread count).
    Returns {"status": "ok", "files": {name: bytes}, "worker", "process": {...}} or
    {"status": "failed" | "interrupted", "reason"}; raises ArmProcessError (retried by the
    client) when the process died without a result.
    """
    import importlib.util
    import resource
    import socket
    import tempfile

    from distributed import Event, get_worker

    worker = get_worker()
    arm = spec["arm"]

    def event(kind: str, **info: Any) -> None:
        worker.log_event(spec["topic"], {"arm": arm, "kind": kind, "worker": worker.address,
                                         **info})

    cancel = Event(spec["cancel_event"])
    if cancel.is_set():
        return {"status": "interrupted", "reason": "study cancelled"}
    if importlib.util.find_spec("dose_study") is None:
        return {"status": "failed", "reason": f"the dose_study package is not installed in "
                f"{sys.executable} on worker {worker.address} ({socket.gethostname()}): "
                "install ptycho-harness in the workers' environment (docs/dask.md)"}
    threads = spec.get("threads") or max(1, (os.cpu_count() or 1) // max(1, worker.state.nthreads))
    event("running", threads=threads)

    def on_line(line: str) -> None:
        match = EPOCH_RE.search(line)
        if match:
            event("epoch", epoch=int(match.group(1)), nepochs=int(match.group(2)))

    with tempfile.TemporaryDirectory(prefix=f"dose-study-{arm}-",
                                     dir=worker.local_directory) as tmp:
        res = launch_arm(arm, Path(tmp), spec["config"], on_line=on_line,
                         should_stop=cancel.is_set, threads=threads)
        if res.status != "ok":
            return {"status": res.status, "reason": res.reason}
        files = {name: (Path(tmp) / name).read_bytes() for name in spec["files"]}
    return {"status": "ok", "files": files, "worker": worker.address,
            "process": {"pid": res.pid, "host": socket.gethostname(),
                        "worker_name": str(worker.name),
                        "peak_rss_mb": round(res.peak_rss_mb, 1), "wall_s": round(res.wall_s, 3),
                        "threads": threads,
                        "worker_peak_rss_mb": round(
                            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}}


# ----------------------------------------------------------------------------- the child
class _Terminated(BaseException):
    """SIGTERM in the child."""


def _watch_parent(parent_pid: int, interval_s: float = 0.2) -> None:
    """End this process (SIGKILL) as soon as the parent is gone (re-parented)."""
    while True:
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(interval_s)


def child_main(argv: list[str] | None = None) -> int:
    import argparse
    import logging

    p = argparse.ArgumentParser(prog="dose_study.arm_process",
                                description="Train one study arm into a staging directory.")
    p.add_argument("--arm", required=True)
    p.add_argument("--staging", required=True, type=Path)
    p.add_argument("--config", required=True, help="StudyConfig.to_dict() as JSON")
    p.add_argument("--parent-pid", type=int, default=0)
    args = p.parse_args(argv)
    if args.parent_pid:
        if os.getppid() != args.parent_pid:
            return 143
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")

    def on_sigterm(signum: int, frame: object) -> None:
        raise _Terminated()

    signal.signal(signal.SIGTERM, on_sigterm)
    from .arms import StudyConfig, get_arm  # noqa: PLC0415 -- child only

    try:
        raw = json.loads(args.config)
        raw.pop("test_seed", None)
        cfg = StudyConfig(**raw)
        arm = get_arm(args.arm)
        if arm.is_baseline:
            from .baseline_runner import BaselineArmRunner  # noqa: PLC0415 -- torch, child only

            BaselineArmRunner(cfg).run(arm, args.staging)
        else:
            from .runner import PtychoArmRunner  # noqa: PLC0415 -- TensorFlow, child only

            PtychoArmRunner(cfg).run(arm, args.staging)
    except _Terminated:
        return 143
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the arm failed: the parent records the reason
        logging.getLogger("dose_study.arm_process").exception("arm %s failed", args.arm)
        _write_result(args.staging, {"status": "failed",
                                     "reason": f"{type(exc).__name__}: {exc}"})
        return 1
    _write_result(args.staging, {"status": "ok"})
    return 0


def _write_result(staging: Path, obj: dict[str, Any]) -> None:
    tmp = staging / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(obj), encoding="utf-8")
    os.replace(tmp, staging / RESULT_FILE)


if __name__ == "__main__":
    sys.exit(child_main())
