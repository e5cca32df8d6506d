"""``python -m orchestrator`` / ``orchestrator`` command line (the only module that prints).

Layout for adding subcommands: write ``_add_<name>(subparsers)`` that registers the parser and
sets ``func=cmd_<name>``, write ``cmd_<name>(args) -> int`` (argument handling and printing
only; the logic lives in the library), and list the adder in :data:`SUBCOMMANDS`.
Exit codes: 0 ok · 1 a check or validation failed · 2 usage error · 3 lock held · 8 handoff
refused by the worker (trust boundary) · 124 timeout · 130 interrupted (state saved; the same command resumes). The loop subcommands (supervise, work,
loop, replay, status, main-job, ledger --check) live in :mod:`orchestrator.cli_loop`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator.cli_loop import LOOP_SUBCOMMANDS, add_check_arguments, run_ledger_check
from orchestrator.documents import ledger as ledger_doc
from orchestrator.documents import validate as validate_doc
from orchestrator.documents.errors import ParseError
from orchestrator.report.command import add_report_arguments, run_report

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_REFUSED, EXIT_TIMEOUT = 0, 1, 2, 3, 8, 124


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate each FILE; print ``file:line: message`` per issue (``--json``: one JSON list)."""
    status = EXIT_OK
    found: list[validate_doc.Issue] = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            print(f"{name}: no such file", file=sys.stderr)
            return EXIT_USAGE
        try:
            issues = validate_doc.validate_path(path, args.kind, repo_root=args.repo_root,
                                                fix_plan_path=args.fix_plan)
        except ValueError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        found += issues
        if validate_doc.has_errors(issues):
            status = EXIT_FAILED
        if args.json:
            continue
        for issue in issues:
            print(issue)
        if not validate_doc.has_errors(issues) and not args.quiet:
            print(f"{name}: ok ({args.kind or validate_doc.detect_kind(path)})")
    if args.json:
        print(json.dumps([dataclasses.asdict(i) for i in found], indent=2, ensure_ascii=False))
    return status


def cmd_ledger(args: argparse.Namespace) -> int:
    """List ledger entries in time order (``--json`` for a JSON list); ``--check`` compares
    recorded with computed dwell and looks for missing artifacts and unknown commits."""
    path = Path(args.ledger)
    if args.repo is not None and not Path(args.ledger).is_absolute() and not path.is_file():
        path = args.repo / args.ledger
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        doc = ledger_doc.load(path)
    except ParseError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    if args.check:
        return run_ledger_check(args, doc)
    entries = ledger_doc.entries_in_time_order(doc)
    if args.focus:
        entries = ledger_doc.entries_for_focus(entries, args.focus)
    records = [ledger_doc.entry_to_dict(e) for e in entries]
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return EXIT_OK
    for r in records:
        dwell = "-" if r["dwell"] is None else r["dwell"]
        print(f"{r['timestamp']}  {r['focus'] or '-'}  state={r['state'] or r['action_state'] or '-'}  "
              f"dwell={dwell}  {path}:{r['line']}  {r['title']}")
    return EXIT_OK


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="validate harness documents (exit 1 on errors)",
                       description="Kinds are detected from file names (input*.md, galph_memory*.md, "
                                   "fix_plan*.md, implementation*.md, findings*.md) unless --kind is given.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--kind", choices=validate_doc.KINDS, help="document kind for every FILE")
    p.add_argument("--repo-root", type=Path, help="repo root for path checks (default: enclosing git work tree)")
    p.add_argument("--fix-plan", type=Path, help="fix plan for focus checks (default: <repo-root>/docs/fix_plan.md)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only issues")
    p.add_argument("--json", action="store_true", help="print the issues as a JSON list")
    p.set_defaults(func=cmd_validate)


def _add_ledger(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ledger", help="list supervisor ledger entries in time order")
    p.add_argument("--ledger", default="galph_memory.md", metavar="FILE", help="ledger file (default: %(default)s)")
    p.add_argument("--focus", metavar="ID", help="only entries for this focus (ID or ID.sub)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    add_check_arguments(p)
    p.set_defaults(func=cmd_ledger)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the self-contained HTML review page (board, ledger, runs)")
    add_report_arguments(p)
    p.set_defaults(func=run_report)


#: Parser adders, one per subcommand, in help order.
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    *LOOP_SUBCOMMANDS, _add_validate, _add_ledger, _add_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description="Supervisor/worker harness.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "progress", False) and not args.verbose:
        logging.getLogger("orchestrator").setLevel(logging.INFO)  # step/commit progress lines
        logging.getLogger("orchestrator.runner.output").setLevel(logging.WARNING)  # not every output line
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; the cycle state is saved — run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `orchestrator ledger --json | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at interpreter exit
        return EXIT_OK
