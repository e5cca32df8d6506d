"""Self-contained HTML review page: fix-plan board, ledger timeline, run cards, studies, handoff.

Public API::

    write_report(repo_root: Path, out_path: Path) -> Path    # build + render + atomic write
    build_report(repo_root: Path, page_dir: Path | None = None) -> ReportData
    render_html(data: ReportData) -> str

Nothing here fetches from the network; the page references no external URL.
"""

from orchestrator.report.build import build_report, write_report
from orchestrator.report.model import ReportData
from orchestrator.report.render import render_html

__all__ = ["ReportData", "build_report", "render_html", "write_report"]
