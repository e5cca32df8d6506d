"""``report --html PATH [--repo-root DIR]``: argparse wiring shared by ``orchestrator`` and
``python -m orchestrator.report`` (prints)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from orchestrator.cli.exit_codes import Exit

__all__ = ["add_report_arguments", "main", "run_report"]


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--html", required=True, type=Path, metavar="PATH",
                        help="where to write the self-contained HTML page (written atomically)")
    parser.add_argument("--repo-root", "--repo", dest="repo", type=Path, default=Path("."), metavar="DIR",
                        help="repository root to report on (default: current directory)")


def run_report(args: argparse.Namespace) -> int:
    """Write the page; print its path. 0 ok, 1 write failed, 2 bad arguments."""
    from orchestrator.report.build import (
        write_report,  # jinja2/markdown-it only when used
    )

    repo = args.repo
    if not repo.is_dir():
        print(f"report: --repo-root {repo} is not a directory", file=sys.stderr)
        return Exit.USAGE
    if args.html.is_dir():
        print(f"report: --html {args.html} is a directory; give a file path", file=sys.stderr)
        return Exit.USAGE
    try:
        out = write_report(repo, args.html)
    except OSError as exc:
        print(f"report: cannot write {args.html}: {exc}", file=sys.stderr)
        return Exit.FAILED
    print(out)
    return Exit.OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.report",
                                     description="Write the self-contained HTML review page.")
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_report(args)
