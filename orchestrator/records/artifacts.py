"""Report directories, atomic file writes, run.json/summary.md/blocked_<ts>.md files.

Layout::

    plans/active/<FOCUS>/reports/<YYYY-MM-DDTHHMMSSZ>[-N]/
        logs/step-01.log …     one log per Do-Now step / exit-criterion check
        summary.md             human summary rendered from the RunRecord
        run.json               RunRecord (see orchestrator.records.run_record), validated before writing
        blocked_<ts>.md        written when the worker or supervisor gives up

Timestamps come from the harness's UTC clock (an injectable ``clock``), never from agents.
Artifact paths in run.json are relative to the report dir; ``report_dir`` is relative to
the repository root. The record types are re-exported from :mod:`orchestrator.records.run_record`;
files are written with :mod:`orchestrator.fsutil` (atomic, plain-file modes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.fsutil import atomic_write_json, atomic_write_text, create_atomic
from orchestrator.layout import Layout
from orchestrator.records.run_record import (
    DEFAULT_PACKAGES,
    ROLES,
    RUN_RECORD_SCHEMA,
    SCHEMA_VERSION,
    STATUSES,
    ArtifactEntry,
    CriterionRecord,
    GitInfo,
    RunRecord,
    StepRecord,
    check_focus_id,
    format_ts,
    host_info,
    iso_utc,
    package_versions,
    parse_iso,
    utc_now,
    validate_run_record,
)

__all__ = [
    "DEFAULT_PACKAGES", "ROLES", "RUN_RECORD_SCHEMA", "SCHEMA_VERSION", "STATUSES",
    "ArtifactEntry", "CriterionRecord", "GitInfo", "RunRecord", "StepRecord",
    "check_focus_id", "collect_artifacts", "format_ts", "host_info", "iso_utc",
    "new_report_dir", "package_versions", "parse_iso", "read_run_record", "render_summary",
    "step_log_path", "utc_now", "validate_run_record", "write_blocked", "write_run_record",
    "write_summary",
]


def _suffixes() -> Iterator[str]:
    """'', '-2' … '-9', '-910' … '-999': names of one second sort in creation order."""
    yield ""
    yield from (f"-{n}" for n in range(2, 10))
    yield from (f"-9{n}" for n in range(10, 100))


def new_report_dir(repo_root: Path, focus_id: str, clock: Callable[[], datetime] = utc_now) -> Path:
    """Create and return a fresh ``plans/active/<FOCUS>/reports/<ts>/`` (with ``logs/``).

    Creation is atomic (``mkdir`` without exist_ok): concurrent callers in the same second
    get distinct suffixed names, and an existing directory is never reused.
    """
    base = Layout(Path(repo_root)).reports(focus_id)
    base.mkdir(parents=True, exist_ok=True)
    stamp = format_ts(clock())
    for suffix in _suffixes():
        candidate = base / f"{stamp}{suffix}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        (candidate / "logs").mkdir()
        return candidate
    raise RuntimeError(f"more than 99 report directories for {stamp} under {base}")


def step_log_path(report_dir: Path, index: int, prefix: str = "step") -> Path:
    """``<report_dir>/logs/step-NN.log`` (``prefix='check'`` for exit-criterion checks)."""
    if index < 1:
        raise ValueError(f"step index must be >= 1, got {index}")
    return Path(report_dir) / "logs" / f"{prefix}-{index:02d}.log"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def collect_artifacts(
    report_dir: Path,
    max_commit_bytes: int | None = None,
    exclude: tuple[str, ...] = ("run.json", "summary.md"),
) -> tuple[ArtifactEntry, ...]:
    """Every regular file under ``report_dir`` (sorted, symlinks skipped) with size and
    sha256; ``exclude`` names (relative paths) are the record files themselves."""
    root = Path(report_dir)
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if rel in exclude or path.name.startswith(".") and path.name.endswith(".tmp"):
            continue
        size = path.stat().st_size
        too_big = max_commit_bytes is not None and size > max_commit_bytes
        entries.append(ArtifactEntry(rel, size, _sha256(path), too_big))
    return tuple(entries)


def write_run_record(report_dir: Path, record: RunRecord) -> Path:
    """Validate and write ``<report_dir>/run.json`` atomically; ValueError if invalid."""
    data = record.to_dict()
    problems = validate_run_record(data)
    if problems:
        raise ValueError("run.json would be invalid: " + "; ".join(problems))
    return atomic_write_json(Path(report_dir) / "run.json", data)


def read_run_record(path: Path) -> RunRecord:
    """Load and validate a run.json; errors name the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read run record: {exc}") from exc
    problems = validate_run_record(data)
    if problems:
        raise ValueError(f"{path}: invalid run record: " + "; ".join(problems))
    return RunRecord.from_dict(data)


def _cell(text: object, limit: int = 100) -> str:
    s = " ".join(str(text).split()).replace("|", "\\|")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _yn(flag: bool | None) -> str:
    return {True: "✅ pass", False: "❌ fail", None: "—"}[flag]


def render_summary(record: RunRecord) -> str:
    """Markdown summary: header facts, a table of steps, exit criteria and artifacts."""
    g = record.git
    ended = iso_utc(record.ended_at) if record.ended_at else "(running)"
    lines = [
        f"# Run {record.run_id} — {record.focus} ({record.role})", "",
        f"- Status: **{record.status}**",
        f"- Started: {iso_utc(record.started_at)} · Ended: {ended}",
        f"- Git: branch `{g.branch}` · `{(g.sha_before or '-')[:12]}` → "
        f"`{(g.sha_after or '-')[:12]}` · dirty: {'yes' if g.dirty else 'no'}",
        f"- Host: {record.host.get('hostname', '?')} · Python {record.python}",
    ]
    if record.notes:
        lines += ["", record.notes.strip()]
    lines += ["", "## Steps", ""]
    if record.steps:
        lines += ["| # | Step | Command | rc | Timed out | Duration (s) | Pytest | Expectation | Log |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in record.steps:
            pytest_line = (s.pytest_counts or {}).get("line", "") or "—"
            expect = f"{_yn(s.expectation_ok)} {s.expectation}" if s.expectation else "—"
            lines.append(
                f"| {s.index} | {_cell(s.title, 40) or '—'} | `{_cell(s.cmd, 80)}` | {s.rc} | "
                f"{'yes' if s.timed_out else 'no'} | {s.duration_s:.2f} | {_cell(pytest_line, 60)} | "
                f"{_cell(expect, 60)} | [{s.log}]({s.log}) |"
            )
    else:
        lines.append("(no steps ran)")
    lines += ["", "## Exit criteria", ""]
    if record.exit_criteria:
        lines += ["| # | Criterion | Check | Result |", "|---|---|---|---|"]
        for c in record.exit_criteria:
            check = f"`{_cell(c.check, 60)}`" if c.check else "—"
            lines.append(f"| {c.index} | {_cell(c.text)} | {check} | {_yn(c.ok)} {_cell(c.reason, 60)} |")
    else:
        lines.append("(none)")
    total = sum(a.size for a in record.artifacts)
    lines += ["", "## Artifacts", "", f"{len(record.artifacts)} files, {total} bytes."]
    for a in (a for a in record.artifacts if a.over_commit_limit):
        lines.append(f"- `{a.path}` ({a.size} bytes) is over the commit size limit: not committed")
    return "\n".join(lines) + "\n"


def write_summary(report_dir: Path, record: RunRecord) -> Path:
    return atomic_write_text(Path(report_dir) / "summary.md", render_summary(record))


def write_blocked(
    report_dir: Path, reason: str, context: Mapping[str, Any] | str = "",
    clock: Callable[[], datetime] = utc_now,
) -> Path:
    """Write ``<report_dir>/blocked_<ts>.md`` (never overwriting an existing one) and return it."""
    if not reason.strip():
        raise ValueError("write_blocked needs a non-empty reason")
    now = clock()
    body = [f"# Blocked: {reason.strip().splitlines()[0]}", "", f"- When: {iso_utc(now)}"]
    if isinstance(context, str):
        tail = ["", "## Context", "", context.strip()] if context.strip() else []
    else:
        body += [f"- {key}: {value}" for key, value in context.items()]
        tail = []
    text = "\n".join(body + ["", "## Reason", "", reason.strip()] + tail) + "\n"
    Path(report_dir).mkdir(parents=True, exist_ok=True)
    for suffix in _suffixes():
        path = Path(report_dir) / f"blocked_{format_ts(now)}{suffix}.md"
        try:
            create_atomic(path, text)
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"too many blocked_ files for {format_ts(now)} in {report_dir}")
