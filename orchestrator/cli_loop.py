"""Loop subcommands of the ``orchestrator`` CLI: ``supervise``, ``work``, ``loop``,
``replay``, ``status``, ``main-job`` and ``ledger --check`` (argument handling and printing
only; the logic lives in the library modules). A CLI module: it prints.

Exit codes: 0 ok · 1 the cycle/check failed · 2 usage error · 3 lock held · 8 handoff refused
(trust boundary: not signed by an allowed supervisor key, or a command outside
``worker.allow_commands``; nothing ran) · 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.config import CONFIG_NAME, ConfigError, HarnessConfig, load_config
from orchestrator.state import LockHeld

__all__ = ["LOOP_SUBCOMMANDS", "add_check_arguments", "run_ledger_check"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3
EXIT_REFUSED = 8  # the worker refused an untrusted handoff (orchestrator.trust)


class _Usage(Exception):
    """Bad arguments or an unusable repository: exit 2 with the message."""


def _repo(args: argparse.Namespace) -> Path:
    start = Path(args.repo) if args.repo else Path.cwd()
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start if start.is_dir() else None,
                          capture_output=True, text=True, check=False)
    if not start.is_dir() or proc.returncode != 0:
        raise _Usage(f"{start}: not inside a git repository (use --repo DIR)")
    return Path(proc.stdout.strip())


def _config(args: argparse.Namespace, repo: Path) -> HarnessConfig:
    return load_config(Path(args.config) if args.config else repo / CONFIG_NAME)


def _context(args: argparse.Namespace):
    from orchestrator.context import HarnessContext, identity_env
    from orchestrator.loop import make_agents

    repo = _repo(args)
    config = _config(args, repo)
    sup, wrk = make_agents(config)
    return HarnessContext(repo, config, sup, wrk, expected_branch=None, git_env=identity_env(repo))


def _print_outcome(o: Any) -> None:
    print(f"cycle {o.cycle_id}: {o.status}{' (resumed)' if o.resumed else ''} — focus {o.focus or '-'}")
    for name, sha in (("supervisor commit", o.supervisor_commit), ("worker commit", o.worker_commit)):
        if sha:
            print(f"  {name}: {sha[:12]}")
    if o.escalated:
        print(f"  escalated to blocked: {', '.join(o.escalated)}")
    if o.report_dir:
        print(f"  artifacts: {o.report_dir}/")
    print(f"  {o.message}")


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapper(args: argparse.Namespace) -> int:
        from orchestrator.documents.errors import DocumentError
        from orchestrator.gitops import GitError
        from orchestrator.trust.verify import HandoffRefused

        try:
            return func(args)
        except HandoffRefused as exc:
            print(f"orchestrator: {exc}", file=sys.stderr)
            if exc.ledger_entry:
                print(f"  recorded in galph_memory.md, entry {exc.ledger_entry}"
                      + (f"; commit {exc.commit[:12]}" if exc.commit else " (not committed)"), file=sys.stderr)
            return EXIT_REFUSED
        except LockHeld as exc:
            print(f"orchestrator: {exc}", file=sys.stderr)
            return EXIT_LOCKED
        except (_Usage, ConfigError) as exc:
            print(f"orchestrator: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (DocumentError, GitError, ValueError, RuntimeError, OSError) as exc:
            print(f"orchestrator: {exc}", file=sys.stderr)
            return EXIT_FAILED
    wrapper.__doc__ = func.__doc__
    return wrapper


@_guarded
def cmd_turn(args: argparse.Namespace) -> int:
    """``supervise`` / ``work``: one role's turn."""
    from orchestrator.loop import run_turn

    ctx = _context(args)
    outcome = run_turn(ctx, args.command, getattr(args, "focus", None), getattr(args, "phases", None))
    _print_outcome(outcome)
    return EXIT_OK if outcome.status in ("supervised", "done", "progress", "idle") else EXIT_FAILED


@_guarded
def cmd_loop(args: argparse.Namespace) -> int:
    """``loop [--cycles N]``: cycles until the budget is used or nothing is eligible."""
    from orchestrator.loop import run_loop

    ctx = _context(args)
    result = run_loop(ctx, args.cycles, args.max_wall_s, args.focus, args.phases, on_cycle=_print_outcome)
    print(f"loop stopped: {result.stopped_because} ({len(result.cycles)} cycle(s))")
    if result.cycles and result.cycles[-1].status == "interrupted":
        return 130
    return EXIT_OK if result.ok else EXIT_FAILED


@_guarded
def cmd_replay(args: argparse.Namespace) -> int:
    """``replay``: re-run recorded step(s) in a worktree at the recorded commit; never commits."""
    from orchestrator.replay import find_recorded, replay

    repo = _repo(args)
    if (args.ledger_entry is None) == (args.input is None):
        raise _Usage("give exactly one of --ledger-entry TS or --input FILE")
    recorded = find_recorded(repo, args.ledger_entry, Path(args.input) if args.input else None, args.at)
    result = replay(repo, recorded, args.step, _config(args, repo).step_timeout_s, keep_worktree=args.keep)
    print(f"replayed {recorded.source} at {result.at[:12]} → {result.out_dir}")
    for c in result.steps:
        verdict = "same as recorded" if c.matches else "; ".join(c.differences)
        print(f"  step {c.index} ({c.title}): rc {c.replayed['rc']} — {verdict}")
    if args.json:
        print((result.out_dir / "replay.json").read_text(encoding="utf-8"), end="")
    return EXIT_OK if result.matches else EXIT_FAILED


@_guarded
def cmd_status(args: argparse.Namespace) -> int:
    """``status [--json]``."""
    from orchestrator.status import collect_status, format_status

    repo = _repo(args)
    status = collect_status(repo, _config(args, repo))
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return EXIT_OK


@_guarded
def cmd_main_job(args: argparse.Namespace) -> int:
    """``main-job``: one full cycle in a fresh worktree/branch (what ``make run`` calls)."""
    from orchestrator.mainjob import run_main_job

    repo = _repo(args)
    config = _config(args, repo)
    print(f"main job: one builtin cycle on {repo} (focus {config.main_job.focus or 'by priority'}), "
          "in a new worktree — your checkout is not touched", flush=True)
    r = run_main_job(repo, config)
    o = r.outcome
    print(f"  worktree:  {r.worktree}")
    print(f"  branch:    {r.branch} (from {r.base_commit[:12]})")
    for i, (sha, subject) in enumerate(reversed(r.commits)):
        print(f"  {'commits:' if i == 0 else '':<10} {sha[:12]} {subject}")
    if r.report_dir is not None:
        print(f"  artifacts: {r.report_dir}/ (run.json, summary.md, logs/)")
    if o is not None:
        print(f"  result:    {o.status} — {o.message}")
    print(f"  wall time: {r.wall_s:.1f} s")
    print(f"  your checkout: {'untouched by the harness' if r.user_checkout_unchanged else 'TOUCHED (a bug)'}")
    for note in r.notes:
        print(f"    note: {note}")
    if r.error:
        print(f"  error: {r.error}", file=sys.stderr)
    print(f"inspect: git -C {r.repo} log --stat {r.branch}")
    print(f"discard: git -C {r.repo} worktree remove --force {r.worktree} && git -C {r.repo} branch -D {r.branch}")
    return EXIT_OK if r.ok else EXIT_FAILED


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    """``ledger --check [--repo DIR]`` options (added to the documents' ``ledger`` parser)."""
    p.add_argument("--check", action="store_true",
                   help="compare recorded with computed dwell; flag missing artifacts and unknown commits (exit 1)")
    p.add_argument("--repo", type=Path, default=None, metavar="DIR",
                   help="repository for --check (default: the git work tree containing the ledger)")


def run_ledger_check(args: argparse.Namespace, doc: Any) -> int:
    from orchestrator.ledger_check import check_ledger

    repo = args.repo
    if repo is None:
        proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=Path(doc.path).resolve().parent,
                              capture_output=True, text=True, check=False)
        repo = Path(proc.stdout.strip()) if proc.returncode == 0 else Path(doc.path).resolve().parent
    result = check_ledger(repo, doc)
    entries = [e for e in result.entries if not args.focus or (e.focus or "").split(".")[0] == args.focus.split(".")[0]]
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
    else:
        for e in entries:
            mark = "ok " if not e.flags else "BAD"
            print(f"{mark} {e.timestamp_text}  {e.focus or '-'}  dwell recorded={e.recorded_dwell} "
                  f"computed={e.computed_dwell} ({e.dwell_source})  {doc.path}:{e.line}")
            for f in e.flags:
                print(f"      {f.kind}: {f.message}")
        print(f"{sum(1 for e in entries if e.flags)} of {len(entries)} entries flagged"
              + ("" if result.git_checked else " (not a git repository: commits not checked)"))
    return EXIT_FAILED if any(e.flags for e in entries) else EXIT_OK


def _common(p: argparse.ArgumentParser, progress: bool = False) -> None:
    p.add_argument("--repo", default=None, metavar="DIR", help="repository (default: the one containing the cwd)")
    p.add_argument("--config", default=None, metavar="FILE", help=f"config (default: <repo>/{CONFIG_NAME})")
    p.set_defaults(progress=progress)


def _add_turns(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("supervise", help="supervisor turn: choose the focus, write input.md, ledger, commit")
    _common(p, progress=True)
    p.add_argument("--focus", metavar="ID", help="supervise this (eligible) item instead of the rule's choice")
    p.add_argument("--phases", type=int, metavar="N", help="plan phases in the Do Now (0 = all remaining)")
    p.set_defaults(func=cmd_turn)
    p = sub.add_parser("work", help="worker turn: run the Do Now of input.md, verify, record, commit")
    _common(p, progress=True)
    p.set_defaults(func=cmd_turn)


def _add_loop(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loop", help="run supervise→work cycles (resumes an interrupted cycle first)")
    _common(p, progress=True)
    p.add_argument("--cycles", type=int, metavar="N", help="number of cycles (default: budgets.max_cycles)")
    p.add_argument("--max-wall-s", type=float, metavar="S", help="wall-time budget (default: budgets.max_wall_s)")
    p.add_argument("--focus", metavar="ID", help="work on this item")
    p.add_argument("--phases", type=int, metavar="N", help="plan phases per Do Now (0 = all remaining)")
    p.set_defaults(func=cmd_loop)


def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="re-run recorded Do-Now step(s) in a worktree at the recorded commit")
    _common(p, progress=True)
    p.add_argument("--ledger-entry", metavar="TS", help="the ledger entry (timestamp) whose handoff to replay")
    p.add_argument("--input", metavar="FILE", help="a handoff file to replay")
    p.add_argument("--step", type=int, metavar="N", help="only this step (default: all)")
    p.add_argument("--at", metavar="SHA", help="commit to run at (default: the recorded one / HEAD)")
    p.add_argument("--keep", action="store_true", help="keep the replay worktree")
    p.add_argument("--json", action="store_true", help="also print replay.json")
    p.set_defaults(func=cmd_replay)


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="lock, cycle state, focus and dwell, items, recent runs and commits")
    _common(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_status)


def _add_main_job(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("main-job", help="`make run`: one full cycle in a new worktree on branch harness/run-<ts>")
    _common(p, progress=True)
    p.set_defaults(func=cmd_main_job)


#: Added to the CLI's parser (see orchestrator.cli.SUBCOMMANDS).
LOOP_SUBCOMMANDS = (_add_turns, _add_loop, _add_replay, _add_status, _add_main_job)
