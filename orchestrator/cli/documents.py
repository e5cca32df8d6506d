"""``orchestrator validate`` and ``orchestrator ledger``: document commands (argument handling
and printing only; ``ledger --check`` is in :mod:`orchestrator.cli.loop`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from orchestrator.cli.exit_codes import Exit
from orchestrator.cli.loop import add_check_arguments, run_ledger_check
from orchestrator.documents import ledger as ledger_doc
from orchestrator.documents import validate as validate_doc
from orchestrator.documents.errors import ParseError
from orchestrator.layout import Layout

__all__ = ["DOCUMENT_SUBCOMMANDS", "cmd_ledger", "cmd_validate"]


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate each FILE; print ``file:line: message`` per issue (``--json``: one JSON list)."""
    status = Exit.OK
    found: list[validate_doc.Issue] = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            print(f"{name}: no such file", file=sys.stderr)
            return Exit.USAGE
        try:
            issues = validate_doc.validate_path(path, args.kind, repo_root=args.repo_root,
                                                fix_plan_path=args.fix_plan)
        except ValueError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return Exit.USAGE
        found += issues
        if validate_doc.has_errors(issues):
            status = Exit.FAILED
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
        return Exit.USAGE
    try:
        doc = ledger_doc.load(path)
    except ParseError as exc:
        print(exc, file=sys.stderr)
        return Exit.FAILED
    if args.check:
        return run_ledger_check(args, doc)
    entries = ledger_doc.entries_in_time_order(doc)
    if args.focus:
        entries = ledger_doc.entries_for_focus(entries, args.focus)
    records = [ledger_doc.entry_to_dict(e) for e in entries]
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return Exit.OK
    for r in records:
        dwell = "-" if r["dwell"] is None else r["dwell"]
        print(f"{r['timestamp']}  {r['focus'] or '-'}  state={r['state'] or r['action_state'] or '-'}  "
              f"dwell={dwell}  {path}:{r['line']}  {r['title']}")
    return Exit.OK


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
    p.add_argument("--ledger", default=Layout.LEDGER, metavar="FILE", help="ledger file (default: %(default)s)")
    p.add_argument("--focus", metavar="ID", help="only entries for this focus (ID or ID.sub)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    add_check_arguments(p)
    p.set_defaults(func=cmd_ledger)


#: Added to the CLI's parser (see orchestrator.cli.main.SUBCOMMANDS).
DOCUMENT_SUBCOMMANDS = (_add_validate, _add_ledger)
