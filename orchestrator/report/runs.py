"""Run cards from ``plans/active/*/reports/*/run.json``.

run.json is written by :mod:`orchestrator.records.artifacts`; the reader here is tolerant on
purpose: a missing or malformed file, or a field of the wrong type, becomes a visible
:class:`Notice` on the page instead of an exception, because the report is most useful
exactly when a run went wrong.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.fsutil import parse_iso
from orchestrator.layout import Layout
from orchestrator.records.run_record import validate_run_record
from orchestrator.report.links import Linker
from orchestrator.report.model import (
    CriterionView,
    Escalation,
    Notice,
    RunCard,
    StepView,
)

log = logging.getLogger(__name__)

#: Report directory names are UTC timestamps, optionally with a collision suffix.
REPORT_DIR_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{4,6}Z(?:-\d+)?$")
_COUNT_FIELDS = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed", "deselected")


class _Fields:
    """Typed access to one JSON object; type problems are collected, not raised."""

    def __init__(self, data: Mapping[str, Any], where: str, problems: list[str]) -> None:
        self.data = data
        self.where = where
        self.problems = problems

    def get(self, *keys: str) -> Any:
        for key in keys:
            if key in self.data and self.data[key] is not None:
                return self.data[key]
        return None

    def text(self, *keys: str) -> str:
        value = self.get(*keys)
        if value is None:
            return ""
        if isinstance(value, (list, tuple)):
            return " ".join(str(v) for v in value)
        return str(value)

    def number(self, *keys: str) -> float | None:
        value = self.get(*keys)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problems.append(f"{self.where}: {keys[0]} should be a number, got {value!r}")
            return None
        return float(value)

    def integer(self, *keys: str) -> int | None:
        value = self.number(*keys)
        return None if value is None else int(value)

    def flag(self, *keys: str) -> bool | None:
        value = self.get(*keys)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.problems.append(f"{self.where}: {keys[0]} should be true/false, got {value!r}")
            return None
        return value


def format_counts(counts: Any) -> str:
    """`3 passed, 1 failed` from a PytestCounts dict (or its summary line)."""
    if not isinstance(counts, Mapping):
        return str(counts) if counts else ""
    parts = [f"{counts[k]} {k}" for k in _COUNT_FIELDS if isinstance(counts.get(k), int) and counts[k]]
    if isinstance(counts.get("collected"), int):
        parts.insert(0, f"{counts['collected']} collected")
    if not parts and counts.get("no_tests_ran"):
        return "no tests ran"
    return ", ".join(parts) or str(counts.get("line") or "")


def _expectation(step: _Fields) -> tuple[str, bool | None]:
    """(text, ok) from whichever shape the step records its `# Expected:` result in."""
    raw = step.get("expectation", "expectations", "expected")
    items = raw if isinstance(raw, list) else [raw] if raw is not None else []
    texts: list[str] = []
    oks: list[bool] = []
    for item in items:
        if isinstance(item, Mapping):
            texts.append(str(item.get("expected") or item.get("text") or item.get("raw") or ""))
            ok = item.get("ok", item.get("passed"))
            if isinstance(ok, bool):
                oks.append(ok)
            reason = item.get("reason") or item.get("detail")
            if reason and ok is False:
                texts[-1] = f"{texts[-1]} ({reason})"
        elif item:
            texts.append(str(item))
    top = step.flag("expectation_ok", "expected_ok")  # run.json (artifacts.StepRecord) form
    if top is not None:
        oks.append(top)
    ok_value = None if not oks else all(oks)
    return "; ".join(t for t in texts if t), ok_value


def _log_link(raw: str, run_dir: Path, linker: Linker) -> tuple[str | None, bool]:
    """(href, exists) for a log path recorded relative to the report dir (or repo, or absolute)."""
    if not raw:
        return None, False
    path = Path(raw)
    if not path.is_absolute():
        candidate = run_dir / path
        path = candidate if candidate.exists() or not (linker.repo_root / path).exists() \
            else linker.repo_root / path
    return linker.href(path), path.is_file()


def _step(raw: Any, index: int, run_dir: Path, linker: Linker, problems: list[str]) -> StepView:
    where = f"step {index}"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: expected an object, got {type(raw).__name__}")
        raw = {}
    f = _Fields(raw, where, problems)
    log_href, log_exists = _log_link(f.text("log", "log_path"), run_dir, linker)
    text, ok = _expectation(f)
    reason = f.text("expectation_reason")
    if reason and ok is False:
        text = f"{text} — {reason}" if text else reason
    return StepView(
        index=f.integer("index", "n", "step") or index,
        title=f.text("title"),
        command=f.text("cmd", "command", "argv") or "(command not recorded)",
        cwd=f.text("cwd"),
        rc=f.integer("rc", "returncode", "exit_code"),
        timed_out=bool(f.flag("timed_out")),
        duration_s=f.number("duration_s", "duration"),
        timeout_s=f.number("timeout_s", "timeout"),
        pytest_counts=format_counts(f.get("pytest_counts", "pytest")),
        expectation=text,
        expectation_ok=ok,
        log_href=log_href,
        log_exists=log_exists,
        error=f.text("error"),
    )


def _criterion(raw: Any, index: int, run_dir: Path, linker: Linker, problems: list[str]) -> CriterionView:
    if isinstance(raw, str):
        return CriterionView(text=raw, check="", passed=None)
    if not isinstance(raw, Mapping):
        problems.append(f"exit criterion {index}: expected an object, got {type(raw).__name__}")
        return CriterionView(text=str(raw), check="", passed=None)
    f = _Fields(raw, f"exit criterion {index}", problems)
    passed = f.flag("ok", "passed")
    log_href, log_exists = _log_link(f.text("log"), run_dir, linker)
    return CriterionView(text=f.text("text", "criterion") or f"criterion {index}",
                         check=f.text("check", "command"), passed=passed,
                         detail=f.text("reason", "detail"), log_href=log_href, log_exists=log_exists)


_STATUS_OUTCOME = {"ok": "pass", "failed": "fail", "blocked": "blocked", "interrupted": "interrupted"}


def _outcome(f: _Fields, steps: tuple[StepView, ...], criteria: tuple[CriterionView, ...]) -> str:
    """Run status (artifacts.STATUSES) as a badge; a timed-out step shows as `timeout`."""
    status = _STATUS_OUTCOME.get(f.text("status").lower())
    if status == "interrupted" or f.flag("interrupted"):
        return "interrupted"
    if any(s.timed_out for s in steps) and status != "pass":
        return "timeout"
    if status is not None:
        return status
    if not steps and not criteria:
        return "unknown"
    if all(s.ok for s in steps) and all(c.passed is not False for c in criteria):
        return "pass"
    return "fail"


def _schema_problems(data: Any) -> list[str]:
    """run.json schema violations, judged by the writer's own validator."""
    return [f"schema: {p}" for p in validate_run_record(data)]


def _duration(f: _Fields, steps: tuple[StepView, ...]) -> float | None:
    start, end = f.text("started_at"), f.text("ended_at")
    if start and end:
        try:
            a, b = parse_iso(start), parse_iso(end)
            return max((b - a).total_seconds(), 0.0)
        except ValueError:
            pass
    durations = [s.duration_s for s in steps if s.duration_s is not None]
    return sum(durations) if durations else None


def read_run(path: Path, linker: Linker) -> RunCard:
    """One card from one run.json. Never raises for bad content; see ``RunCard.notices``."""
    source = linker.rel(path)
    run_dir = path.parent
    problems: list[str] = []
    data: Any = {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"cannot read run.json: {exc}")
    except json.JSONDecodeError as exc:
        problems.append(f"malformed run.json: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(data, Mapping):
        problems.append(f"run.json should hold an object, got {type(data).__name__}")
        data = {}
    f = _Fields(data, "run.json", problems)
    raw_steps = f.get("steps")
    if raw_steps is None and data:
        problems.append("run.json has no 'steps' list")
    if raw_steps is not None and not isinstance(raw_steps, list):
        problems.append(f"'steps' should be a list, got {type(raw_steps).__name__}")
        raw_steps = None
    steps = tuple(_step(s, i, run_dir, linker, problems) for i, s in enumerate(raw_steps or [], 1))
    raw_criteria = f.get("exit_criteria", "criteria")
    if raw_criteria is not None and not isinstance(raw_criteria, list):
        problems.append(f"'exit_criteria' should be a list, got {type(raw_criteria).__name__}")
        raw_criteria = None
    criteria = tuple(_criterion(c, i, run_dir, linker, problems) for i, c in enumerate(raw_criteria or [], 1))
    if data:
        problems.extend(_schema_problems(data))
    git = f.get("git")
    g = _Fields(git if isinstance(git, Mapping) else data, "git", problems)
    artifacts = f.get("artifacts")
    focus_default = run_dir.parent.parent.name if run_dir.parent.name == "reports" else ""
    notices = tuple(Notice(source, _json_line(p), p) for p in problems)
    return RunCard(
        run_id=f.text("run_id", "id") or run_dir.name,
        focus=f.text("focus") or focus_default,
        role=f.text("role") or "?",
        outcome="unreadable" if not data else _outcome(f, steps, criteria),
        started=f.text("started_at"),
        ended=f.text("ended_at"),
        duration_s=_duration(f, steps),
        sha_before=g.text("sha_before")[:12],
        sha_after=g.text("sha_after")[:12],
        branch=g.text("branch"),
        dirty=g.flag("dirty"),
        steps=steps,
        criteria=criteria,
        source=source,
        dir_href=linker.href(run_dir) + "/",
        artifacts=len(artifacts) if isinstance(artifacts, (list, Mapping)) else 0,
        notices=notices,
    )


def _json_line(problem: str) -> int | None:
    m = re.search(r"at line (\d+)", problem)
    return int(m.group(1)) if m else None


def _escalation(path: Path, linker: Linker) -> Escalation:
    try:
        first = path.read_text(encoding="utf-8", errors="replace").lstrip().splitlines()[0]
    except (OSError, IndexError):
        first = ""
    title = first.lstrip("# ").strip() or path.name
    focus = path.parent.parent.parent.name if path.parent.parent.name == "reports" else ""
    return Escalation(focus, title, linker.rel(path), linker.href(path))


def _has_step_logs(run_dir: Path) -> bool:
    logs = run_dir / "logs"
    return logs.is_dir() and any(p.is_file() for p in logs.iterdir())


def collect_runs(repo_root: Path,
                 linker: Linker) -> tuple[tuple[RunCard, ...], tuple[Notice, ...], tuple[Escalation, ...]]:
    """Run cards (newest first), notices for report dirs whose step logs have no run.json,
    and the ``blocked_<ts>.md`` escalation files (newest first)."""
    cards: list[RunCard] = []
    notices: list[Notice] = []
    escalations: list[Escalation] = []
    for reports in sorted(Layout(repo_root).plans.glob("*/reports")):
        for run_dir in sorted(p for p in reports.iterdir() if p.is_dir()):
            escalations.extend(_escalation(b, linker) for b in sorted(run_dir.glob("blocked_*.md")))
            run_json = run_dir / "run.json"
            if run_json.is_file():
                cards.append(read_run(run_json, linker))
            elif REPORT_DIR_RE.match(run_dir.name) and _has_step_logs(run_dir):
                notices.append(Notice(linker.rel(run_dir), None,
                                      "report dir has step logs but no run.json (run interrupted "
                                      "before its record was written?)"))
    cards.sort(key=lambda c: (c.started or c.run_id, c.run_id), reverse=True)
    escalations.sort(key=lambda e: e.source, reverse=True)
    return tuple(cards), tuple(notices), tuple(escalations)
