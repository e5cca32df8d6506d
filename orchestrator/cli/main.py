"""``python -m orchestrator`` / ``orchestrator``: the parser and ``main``.

Layout for adding subcommands: write ``_add_<name>(subparsers)`` that registers the parser and
sets ``func=cmd_<name>``, write ``cmd_<name>(args) -> int`` (argument handling and printing
only; the logic lives in the library), and list the adder in :data:`SUBCOMMANDS`. Exit codes
are :class:`orchestrator.cli.exit_codes.Exit`. The loop subcommands (supervise, work, loop,
replay, status, main-job, ledger --check) live in :mod:`orchestrator.cli.loop`, validate and
ledger in :mod:`orchestrator.cli.documents`, report in :mod:`orchestrator.cli.report`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from orchestrator.cli.documents import DOCUMENT_SUBCOMMANDS
from orchestrator.cli.exit_codes import Exit
from orchestrator.cli.loop import LOOP_SUBCOMMANDS
from orchestrator.cli.report import add_report_arguments, run_report

__all__ = ["SUBCOMMANDS", "build_parser", "main"]


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the self-contained HTML review page (board, ledger, runs)")
    add_report_arguments(p)
    p.set_defaults(func=run_report)


#: Parser adders, one per subcommand, in help order.
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    *LOOP_SUBCOMMANDS, *DOCUMENT_SUBCOMMANDS, _add_report)


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
        return int(exc.code or 0) if isinstance(exc.code, int) else Exit.USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "progress", False) and not args.verbose:
        logging.getLogger("orchestrator").setLevel(logging.INFO)  # step/commit progress lines
        logging.getLogger("orchestrator.execution.runner.output").setLevel(logging.WARNING)  # not every output line
        if getattr(args, "quiet", False):  # agent/step output lines (prefixed [worker …] / [step N])
            logging.getLogger("orchestrator.output").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; the cycle state is saved — run the same command again to resume", file=sys.stderr)
        return Exit.INTERRUPTED
    except BrokenPipeError:  # e.g. `orchestrator ledger --json | head`
        sys.stdout = open(os.devnull, "w")  # silence the flush at interpreter exit
        return Exit.OK
