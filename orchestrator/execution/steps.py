"""Executing Do-Now steps and exit-criterion checks: timeouts, environment, orphan cleanup.

Every step is one bash script (the fenced block without its ``# Expected:`` lines), run by
:func:`orchestrator.execution.runner.run` as ``bash -o pipefail -c 'set -e …'`` in the repository (or
worktree) root, so a failing command inside a block fails the step (finding
CHECK-CANNOT-FAIL-001). The environment puts the harness's own Python first on ``PATH``,
the root first on ``PYTHONPATH`` (a worktree runs its own code, not the checkout the
harness was installed from), ``ARTIFACTS`` = the report dir (relative) and a marker
``ORCHESTRATOR_STEP=<run-id>:<n>`` inherited by every descendant, so a resumed cycle can
find and kill processes orphaned by a hard kill of the previous loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.documents import handoff as handoff_doc
from orchestrator.execution.heartbeat import heartbeat
from orchestrator.execution.pytest_summary import evaluate_expectation
from orchestrator.execution.runner import CommandResult, run
from orchestrator.records.artifacts import CriterionRecord, StepRecord, step_log_path

__all__ = [
    "PlannedCheck",
    "PlannedStep",
    "TIMEOUT_GRACE_S",
    "harness_bin",
    "kill_marked_processes",
    "planned_checks",
    "planned_steps",
    "run_checks",
    "run_steps",
    "step_env",
    "step_item_id",
    "step_record",
    "step_timeout",
]

logger = logging.getLogger(__name__)
#: Output lines of steps and agents, prefixed with the step or role (``--quiet`` silences it).
OUTPUT_LOG = logging.getLogger("orchestrator.output")

#: Added to the sum of ``timeout N`` prefixes so the inner ``timeout`` fires first.
TIMEOUT_GRACE_S = 60.0
MARKER_VAR = "ORCHESTRATOR_STEP"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TIMEOUT_OPTS_WITH_ARG = {"-k", "-s", "--kill-after", "--signal"}
_ITEM_ID_RE = re.compile(r"^\**(?P<id>[A-Z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*):")


@dataclass(frozen=True)
class PlannedStep:
    """One Do-Now step: ``number`` (1-based, as in the handoff), its title, the phase it
    belongs to, the script and the ``# Expected:`` text (None when there is none)."""

    number: int
    title: str
    phase: str
    script: str
    expected: str | None = None
    line: int = 0


@dataclass(frozen=True)
class PlannedCheck:
    """An exit criterion; ``check`` is its command (None when it is not executable)."""

    number: int
    text: str
    check: str | None


def planned_steps(doc: handoff_doc.Handoff) -> tuple[PlannedStep, ...]:
    """One step per Do-Now step with command blocks (blocks of a step are joined);
    steps are numbered 1..n in file order."""
    out: list[PlannedStep] = []
    for phase in doc.phases:
        for step in phase.steps:
            blocks = step.command_blocks
            if not blocks:
                continue
            expected = [e.raw for b in blocks for e in b.expected]
            script = "\n".join(b.script for b in blocks if b.script.strip())
            out.append(PlannedStep(len(out) + 1, step.title or step.text, phase.id or phase.title, script,
                                   expected[-1] if expected else None, step.line))
    return tuple(out)


def planned_checks(doc: handoff_doc.Handoff) -> tuple[PlannedCheck, ...]:
    """The handoff's exit criteria, numbered 1..n."""
    return tuple(PlannedCheck(i, c.text, c.check) for i, c in enumerate(doc.exit_criteria, 1))


def step_item_id(title: str) -> str | None:
    """``"A1: Sanity …"`` → ``"A1"`` (the plan item a builtin handoff step came from)."""
    m = _ITEM_ID_RE.match(title.strip())
    return m.group("id") if m else None


def step_record(index: int, result: CommandResult, report_dir: Path, title: str = "",
                expectation: str | None = None) -> StepRecord:
    """The run.json record of a finished command; evaluates ``expectation`` (the step's
    ``# Expected:`` text) against the command's pytest counts."""
    ok = reason = None
    if expectation:
        try:
            ok, reason = evaluate_expectation(expectation, result.pytest_counts)
        except ValueError as exc:
            ok, reason = False, str(exc)
    try:
        log = result.log_path.resolve().relative_to(Path(report_dir).resolve()).as_posix()
    except ValueError:
        log = str(result.log_path)
    counts = result.pytest_counts.to_dict() if result.pytest_counts else None
    return StepRecord(
        index=index, title=title, argv=result.argv, cmd=result.cmd, cwd=str(result.cwd),
        timeout_s=result.timeout_s, rc=result.rc, timed_out=result.timed_out,
        duration_s=round(result.duration_s, 3), started_at=result.started_at,
        ended_at=result.ended_at, log=log, interrupted=result.interrupted,
        pytest_counts=counts, expectation=expectation, expectation_ok=ok,
        expectation_reason=reason, error=result.error,
    )


def _duration_s(text: str) -> float | None:
    m = _DURATION.match(text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def _timeout_of_line(line: str) -> float | None:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    while words and ("=" in words[0] and not words[0].startswith("-")):
        words = words[1:]  # VAR=value prefixes
    if not words or words[0] != "timeout":
        return None
    i = 1
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] in _TIMEOUT_OPTS_WITH_ARG else 1
    return _duration_s(words[i]) if i < len(words) else None


def step_timeout(script: str, default_s: float) -> tuple[float, str]:
    """The runner limit for ``script`` and where it came from.

    Lines starting with ``timeout N`` (coreutils syntax: ``600``, ``10m``, options allowed)
    bound the step at the sum of their durations plus :data:`TIMEOUT_GRACE_S`; without any,
    the configured default applies.
    """
    limits = [t for t in (_timeout_of_line(ln.strip()) for ln in script.splitlines()) if t]
    if limits:
        return sum(limits) + TIMEOUT_GRACE_S, f"timeout prefix ({' + '.join(f'{t:g}' for t in limits)}s + grace)"
    return default_s, "configured default"


def harness_bin() -> str:
    """The bin dir of the Python running the harness (the venv's, symlinks not resolved)."""
    return str(Path(sys.executable).parent)


def step_env(repo: Path, report_rel: str, marker: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment additions for steps and checks (merged over ``os.environ`` by the runner)."""
    base = os.environ if base is None else base
    bin_dir = harness_bin()
    path = base.get("PATH", "")
    pythonpath = base.get("PYTHONPATH", "")
    return {
        "PATH": bin_dir + (os.pathsep + path if path else ""),
        "PYTHONPATH": str(repo) + (os.pathsep + pythonpath if pythonpath else ""),
        "ARTIFACTS": report_rel,
        MARKER_VAR: marker,
    }


def _script(body: str) -> str:
    return "set -e\n" + body.strip("\n") + "\n"


def run_steps(
    steps: Sequence[PlannedStep],
    repo: Path,
    report_dir: Path,
    env: Mapping[str, str],
    default_timeout_s: float,
    done: Mapping[int, StepRecord] | None = None,
    on_start: Callable[[int, Path], None] | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
) -> tuple[StepRecord, ...]:
    """Run ``steps`` in order, stopping after the first failure (rc ≠ 0, timeout, or an
    unmet expectation). Steps whose number is in ``done`` are not re-run: their records are
    reused (a resumed cycle). Logs go to ``logs/step-NN.log`` (appended on a retry, never
    overwritten). :class:`~orchestrator.execution.runner.CommandInterrupted` propagates."""
    done = dict(done or {})
    records: list[StepRecord] = []
    for step in steps:
        if step.number in done:
            record = done[step.number]
            logger.info("step %d already ran (rc %d); not re-running", step.number, record.rc)
        else:
            timeout_s, source = step_timeout(step.script, default_timeout_s)
            log_path = step_log_path(report_dir, step.number)
            logger.info("step %d (%s): %s, limit %gs from %s", step.number, step.phase, step.title, timeout_s, source)
            if on_start is not None:
                on_start(step.number, log_path)
            step_env_ = {**env, MARKER_VAR: f"{env.get(MARKER_VAR, 'run')}:{step.number}"}
            prefix = f"[step {step.number}]"
            with heartbeat(f"{prefix} {step.title}", log_path):
                result = run(_script(step.script), cwd=repo, timeout_s=timeout_s, log_path=log_path, env=step_env_,
                             echo=lambda line, p=prefix: OUTPUT_LOG.info("%s %s", p, line))
            record = step_record(step.number, result, report_dir, title=step.title,
                                            expectation=step.expected)
            if on_step is not None:
                on_step(record)
        records.append(record)
        if not record.ok:
            logger.warning("step %d failed (rc %d%s); later steps are not run", step.number, record.rc,
                           ", timed out" if record.timed_out else "")
            break
    return tuple(records)


def run_checks(
    checks: Sequence[PlannedCheck],
    repo: Path,
    report_dir: Path,
    env: Mapping[str, str],
    timeout_s: float,
) -> tuple[CriterionRecord, ...]:
    """Evaluate exit criteria: a criterion with a command passes iff it exits 0 within
    ``timeout_s`` (log ``logs/check-NN.log``); one without a command is recorded with
    ``ok=None`` (not verifiable, so never counted as passed)."""
    records = []
    for check in checks:
        if not check.check:
            records.append(CriterionRecord(check.number, check.text, None, None, "no executable check"))
            continue
        log_path = step_log_path(report_dir, check.number, prefix="check")
        result = run(_script(check.check), cwd=repo, timeout_s=timeout_s, log_path=log_path,
                     env={**env, MARKER_VAR: f"{env.get(MARKER_VAR, 'run')}:check{check.number}"})
        if result.timed_out:
            reason = f"timed out after {timeout_s:g}s"
        elif result.error:
            reason = result.error
        else:
            reason = f"exit code {result.rc}"
        records.append(CriterionRecord(check.number, check.text, check.check, result.ok, reason, result.rc,
                                       log_path.relative_to(report_dir).as_posix()))
    return tuple(records)


def kill_marked_processes(marker_prefix: str) -> list[int]:
    """SIGKILL every process of this user whose environment carries
    ``ORCHESTRATOR_STEP=<marker_prefix>…`` — leftovers of a loop that was killed hard while a
    step ran. Returns the pids signalled."""
    wanted = f"{MARKER_VAR}={marker_prefix}".encode()
    killed = []
    proc = Path("/proc")
    if not proc.is_dir():
        return killed
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(wanted) for item in env.split(b"\0")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    if killed:
        logger.warning("killed %d process(es) left by an interrupted step: %s", len(killed), killed)
    return killed
