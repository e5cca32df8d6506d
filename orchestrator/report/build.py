"""Collect a :class:`ReportData` from a repo and write the HTML page atomically."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from orchestrator.report.board import collect_board, load_plan
from orchestrator.report.handoff import collect_handoff
from orchestrator.report.links import Linker
from orchestrator.report.model import ReportData
from orchestrator.report.render import render_html
from orchestrator.report.runs import collect_runs
from orchestrator.report.studies import collect_studies
from orchestrator.report.timeline import collect_timeline

log = logging.getLogger(__name__)


def _head(repo_root: Path) -> str:
    """Short HEAD sha and branch (``abc1234 (main)``), or "" outside a git repo."""
    if not (repo_root / ".git").exists():
        return ""
    try:
        proc = subprocess.run(["git", "log", "-1", "--format=%h%d"], cwd=repo_root, capture_output=True,
                              text=True, timeout=10, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def build_report(repo_root: Path, page_dir: Path | None = None, *, now: datetime | None = None) -> ReportData:
    """Everything the page shows. ``page_dir``: where the HTML will live (for relative links).

    Never raises for bad repo content: unreadable or malformed documents become notices.
    """
    repo_root = repo_root.resolve()
    linker = Linker(repo_root, (page_dir or repo_root).resolve())
    t0 = time.perf_counter()
    runs, run_notices, escalations = collect_runs(repo_root, linker)
    plan = load_plan(repo_root, linker)
    data = ReportData(
        title=f"ptycho-harness review — {repo_root.name}",
        generated_at=now or datetime.now(timezone.utc),
        repo_root=str(repo_root),
        head=_head(repo_root),
        board=collect_board(repo_root, linker, runs, plan),
        timeline=collect_timeline(repo_root, linker),
        runs=runs,
        studies=collect_studies(repo_root, linker),
        handoff=collect_handoff(repo_root, linker, plan.doc),
        notices=run_notices,
        escalations=escalations,
    )
    log.debug("collected report data in %.3f s", time.perf_counter() - t0)
    return data


def write_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text via a temp file in the same directory + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(repo_root: Path, out_path: Path, *, now: datetime | None = None) -> Path:
    """Build and render the page for ``repo_root`` into ``out_path`` (atomic); returns the path.

    Raises NotADirectoryError if ``repo_root`` is not a directory and OSError if the page
    cannot be written; a failed render leaves any previous page untouched.
    """
    repo_root = Path(repo_root)
    if not repo_root.is_dir():
        raise NotADirectoryError(f"repo root {repo_root} is not a directory")
    out_path = Path(out_path).resolve()
    data = build_report(repo_root, out_path.parent, now=now)
    html = render_html(data)
    write_atomic(out_path, html)
    log.info("wrote %s (%d bytes, %d runs, %d ledger entries, %d warnings)", out_path, len(html),
             len(data.runs), len(data.timeline.entries), len(data.all_notices))
    return out_path
