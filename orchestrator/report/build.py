"""Collect a :class:`ReportData` from a repo and write the HTML page atomically."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.fsutil import atomic_write_text
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
    from orchestrator.vcs.repo import (  # GitPython only when there is a repository
        GitError,
        GitRepo,
    )

    try:
        return GitRepo(repo_root).describe_head()
    except GitError:
        return ""


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
        generated_at=now or datetime.now(UTC),
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
    atomic_write_text(out_path, html)
    log.info("wrote %s (%d bytes, %d runs, %d ledger entries, %d warnings)", out_path, len(html),
             len(data.runs), len(data.timeline.entries), len(data.all_notices))
    return out_path
