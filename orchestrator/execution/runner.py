"""Run one command with a timeout, streaming its output to a log file.

``run()`` is the only way the harness executes Do-Now steps, exit-criterion checks and
agent CLIs. Guarantees:

* a string command runs as ``bash -o pipefail -c CMD`` (so ``pytest … | tee log`` keeps
  pytest's exit code); a sequence runs as argv without a shell;
* stdin is ``/dev/null``; the child leads its own session / process group;
* stdout and stderr are merged, appended to ``log_path`` as they arrive (flushed per read,
  so the log can be tailed while the command runs) and echoed line by line;
* on timeout the whole process group gets SIGTERM, then SIGKILL after ``kill_grace_s``;
  rc is 124 and ``timed_out`` is true;
* after the command ends, left-over members of its group (background jobs) are terminated
  too, and a pipe held open by an escaped process cannot block the read loop;
* on KeyboardInterrupt (or SIGTERM converted by :func:`sigterm_as_interrupt`) the group is
  killed and :class:`CommandInterrupted` is raised, carrying the partial result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.execution.output import OutputStream, echo_function
from orchestrator.execution.pytest_summary import PytestCounts, SummaryWatcher
from orchestrator.fsutil import iso_utc, utc_now

__all__ = [
    "TIMEOUT_RC",
    "CommandInterrupted",
    "CommandResult",
    "run",
    "sigterm_as_interrupt",
]

logger = logging.getLogger(__name__)

TIMEOUT_RC = 124
_POLL_S = 0.05


@dataclass(frozen=True)
class CommandResult:
    """Record of one command. Times are timezone-aware UTC; ``rc`` follows the shell
    convention (128+N when killed by signal N, 124 on timeout)."""

    argv: tuple[str, ...]
    cmd: str
    cwd: Path
    timeout_s: float
    rc: int
    timed_out: bool
    duration_s: float
    log_path: Path
    pytest_counts: PytestCounts | None
    started_at: datetime
    ended_at: datetime
    interrupted: bool = False
    strays_killed: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and not self.interrupted and self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "argv": list(self.argv),
            "cmd": self.cmd,
            "cwd": str(self.cwd),
            "timeout_s": self.timeout_s,
            "rc": self.rc,
            "timed_out": self.timed_out,
            "duration_s": round(self.duration_s, 3),
            "log_path": str(self.log_path),
            "pytest_counts": None if self.pytest_counts is None else self.pytest_counts.to_dict(),
            "started_at": iso_utc(self.started_at),
            "ended_at": iso_utc(self.ended_at),
            "interrupted": self.interrupted,
            "strays_killed": self.strays_killed,
            "error": self.error,
        }


class CommandInterrupted(KeyboardInterrupt):
    """The harness was interrupted while a command ran; ``result`` is the partial record
    (``interrupted=True``, group already killed). Subclasses KeyboardInterrupt so callers
    that only know about Ctrl-C still stop."""

    def __init__(self, result: CommandResult) -> None:
        super().__init__(f"interrupted while running {result.cmd!r}")
        self.result = result


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM to this process raises KeyboardInterrupt (main thread only),
    so :func:`run` kills its child group and records ``interrupted``."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM are held, then delivered to the restored handlers
    when it ends (main thread only; elsewhere a no-op). Around the child's start this keeps
    an interrupt from landing inside ``Popen`` after the fork, which would leave a started
    child with no ``Popen`` object to kill it by (seen under load: the interrupt test's child
    outlived the harness)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, lambda received, frame: held.append(received))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in held:
            signal.raise_signal(signum)


def _group_alive(pgid: int) -> bool:
    """True while a non-zombie process is in group ``pgid`` (zombies are dead already and may
    linger when PID 1 does not reap)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _terminate_group(proc: subprocess.Popen[bytes], pgid: int, grace_s: float) -> None:
    """SIGTERM the group, wait up to ``grace_s`` for it to empty, then SIGKILL. A second
    Ctrl-C during the grace period skips straight to SIGKILL."""
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    try:
        while time.monotonic() < deadline:
            proc.poll()
            if proc.returncode is not None and not _group_alive(pgid):
                return
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        logger.warning("second interrupt: killing process group %d now", pgid)
    _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def run(
    cmd: str | Sequence[str],
    cwd: Path,
    timeout_s: float,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    echo: bool | Callable[[str], None] = True,
    *,
    kill_grace_s: float = 3.0,
    drain_s: float = 2.0,
    max_log_bytes: int | None = 256 * 1024 * 1024,
    base_env: Mapping[str, str] | None = None,
    shown: str | None = None,
) -> CommandResult:
    """Run ``cmd`` in ``cwd`` for at most ``timeout_s`` seconds; see the module docstring.

    ``env`` is merged over ``base_env`` (default ``os.environ``; ``PYTHONUNBUFFERED=1`` is added
    unless given, so Python children stream). ``shown``: how the command appears in the log
    header and the log line (default: the command itself; an agent's argv elides its prompt).
    The log is opened in append mode with a ``# [runner]`` header and footer per call, so a
    retried step never overwrites an earlier attempt. ``echo``: True logs each line on
    ``orchestrator.execution.runner.output`` (INFO), a callable receives each line, False is
    silent. ``drain_s``: how long to wait for the output pipe to close after
    the command exited before killing left-over group members. ``max_log_bytes``: output
    beyond this is not logged or echoed (a marker line says so); pytest counts still come
    from the full output.
    Raises ``ValueError`` for a bad timeout or an empty command, and
    :class:`CommandInterrupted` on KeyboardInterrupt. Never raises for a failing command.
    """
    launch = _Launch.of(cmd, cwd, timeout_s, log_path, env, kill_grace_s, drain_s, base_env, shown)
    launch.log_path.parent.mkdir(parents=True, exist_ok=True)
    pytest_summary = SummaryWatcher()
    with open(launch.log_path, "ab") as log:
        log.write(f"# [runner] {iso_utc(utc_now())} cwd={launch.cwd} timeout={timeout_s}s\n"
                  f"# $ {launch.shown}\n".encode())
        stream = OutputStream(log, echo_function(echo), max_log_bytes, (pytest_summary,))
        result, interrupt = _execute(launch, stream, pytest_summary)
        log.write(f"# [runner] rc={result.rc} timed_out={result.timed_out} interrupted={result.interrupted} "
                  f"duration={result.duration_s:.2f}s\n".encode())
    if isinstance(interrupt, KeyboardInterrupt):
        raise CommandInterrupted(result) from interrupt
    if interrupt is None:
        level = logging.INFO if result.ok else logging.WARNING
        logger.log(level, "rc=%d timed_out=%s %.2fs: %s", result.rc, result.timed_out, result.duration_s,
                   launch.shown)
    return result


@dataclass(frozen=True)
class _Launch:
    """A validated command: argv, how it is shown, where and how long it runs."""

    argv: tuple[str, ...]
    shown: str
    cwd: Path
    env: dict[str, str]
    timeout_s: float
    log_path: Path
    kill_grace_s: float
    drain_s: float

    @classmethod
    def of(cls, cmd: str | Sequence[str], cwd: Path, timeout_s: float, log_path: Path,
           env: Mapping[str, str] | None, kill_grace_s: float, drain_s: float,
           base_env: Mapping[str, str] | None = None, shown: str | None = None) -> _Launch:
        if not timeout_s > 0 or timeout_s == float("inf"):
            raise ValueError(f"timeout_s must be a positive finite number of seconds, got {timeout_s!r}")
        if kill_grace_s < 0 or drain_s < 0:
            raise ValueError(f"kill_grace_s and drain_s must be >= 0, got {kill_grace_s!r}, {drain_s!r}")
        if isinstance(cmd, str):
            if not cmd.strip():
                raise ValueError("empty command")
            argv: tuple[str, ...] = ("bash", "-o", "pipefail", "-c", cmd)
            shown = shown or cmd
        else:
            argv = tuple(str(a) for a in cmd)
            if not argv:
                raise ValueError("empty argv")
            shown = shown or shlex.join(argv)
        bad = [k for k, v in (env or {}).items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise ValueError(f"env values must be strings; bad entries: {bad}")
        full_env = {**(os.environ if base_env is None else base_env), **(env or {})}
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        return cls(argv, shown, Path(cwd), full_env, float(timeout_s), Path(log_path), kill_grace_s, drain_s)


def _execute(launch: _Launch, stream: OutputStream,
             pytest_summary: SummaryWatcher) -> tuple[CommandResult, BaseException | None]:
    """Start, pump and reap the command; always returns its result (and the exception that
    stopped it: a KeyboardInterrupt, or a harness bug recorded in ``error``)."""
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    rc: int | None = None
    timed_out = interrupted = strays = False
    error: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    interrupt: BaseException | None = None
    try:
        try:
            with _signals_held():  # an interrupt now is raised once ``proc`` is known
                proc = subprocess.Popen(launch.argv, cwd=launch.cwd, env=launch.env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:  # missing executable or cwd, permission denied
            rc = 126 if isinstance(exc, PermissionError) else 127
            error = f"cannot start {launch.shown!r} in {launch.cwd}: {exc}"
            stream.feed(f"# [runner] {error}\n".encode())
        else:
            timed_out, strays = _pump(proc, stream, t0 + launch.timeout_s, launch.kill_grace_s, launch.drain_s)
    except KeyboardInterrupt as exc:
        interrupted, interrupt = True, exc
        logger.warning("interrupted: killing process group of %r", launch.shown)
    except Exception as exc:  # a harness bug still leaves a record (error set), not a hang
        error, interrupt = f"runner failure: {exc!r}", exc
        logger.exception("runner failed while running %r", launch.shown)
    finally:
        if proc is not None:
            if proc.poll() is None or _group_alive(proc.pid):
                _terminate_group(proc, proc.pid, launch.kill_grace_s)
            if proc.stdout is not None:
                proc.stdout.close()
            if rc is None:
                rc = _shell_rc(proc.wait())
        stream.close()
    result = CommandResult(
        argv=launch.argv, cmd=launch.shown, cwd=launch.cwd, timeout_s=launch.timeout_s,
        rc=TIMEOUT_RC if timed_out else rc if rc is not None else -1, timed_out=timed_out,
        duration_s=time.monotonic() - t0, log_path=launch.log_path, pytest_counts=pytest_summary.counts,
        started_at=started_at, ended_at=datetime.now(UTC), interrupted=interrupted, strays_killed=strays,
        error=error,
    )
    return result, interrupt


def _shell_rc(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _pump(
    proc: subprocess.Popen[bytes],
    stream: OutputStream,
    deadline: float,
    grace_s: float,
    drain_s: float,
) -> tuple[bool, bool]:
    """Copy output until EOF and exit; enforce the deadline. Returns (timed_out, strays_killed)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    eof = False
    timed_out = strays = False
    exited_at: float | None = None
    while True:
        now = time.monotonic()
        if proc.poll() is None and now >= deadline:
            timed_out = True
            logger.warning("timeout: terminating process group %d", proc.pid)
            _terminate_group(proc, proc.pid, grace_s)
            _drain(fd, stream, min(drain_s, 1.0))
            return timed_out, strays
        if proc.returncode is not None:
            exited_at = exited_at if exited_at is not None else now
            if eof or now - exited_at >= drain_s:
                # the leader is gone; anything left in its group is a stray background job
                if _group_alive(proc.pid):
                    strays = True
                    logger.warning("command exited but left processes in group %d; killing", proc.pid)
                    _terminate_group(proc, proc.pid, grace_s)
                if not eof:
                    _drain(fd, stream, min(drain_s, 1.0))
                return timed_out, strays
        if eof:
            time.sleep(_POLL_S)
            continue
        ready, _, _ = select.select([fd], [], [], _POLL_S)
        if ready:
            eof = _read_available(fd, stream)


def _read_available(fd: int, stream: OutputStream) -> bool:
    """Read what is available (at most 1 MiB, so the deadline is checked); True at EOF."""
    for _ in range(16):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        stream.feed(chunk)
    return False


def _drain(fd: int, stream: OutputStream, limit_s: float) -> None:
    """Read remaining output for at most ``limit_s`` (a process outside the group may hold
    the pipe open forever)."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], _POLL_S)
        if ready and _read_available(fd, stream):
            return
