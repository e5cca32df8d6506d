"""Loop subcommands of the ``orchestrator`` CLI: ``supervise``, ``work``, ``loop``,
``replay``, ``status``, ``main-job`` and ``ledger --check`` (argument handling and printing
only; the logic lives in the library modules). A CLI module: it prints.

Exit codes: :class:`orchestrator.cli.exit_codes.Exit`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.cli.exit_codes import Exit
from orchestrator.config import CONFIG_NAME, ConfigError, HarnessConfig, load_config
from orchestrator.records.state import LockHeld

__all__ = ["LOOP_SUBCOMMANDS", "add_check_arguments", "run_ledger_check"]


class _Usage(Exception):
    """Bad arguments or an unusable repository: exit 2 with the message."""


def _repo(args: argparse.Namespace) -> Path:
    from orchestrator.vcs.repo import GitRepo

    start = Path(args.repo) if args.repo else Path.cwd()
    top = GitRepo.toplevel(start)
    if top is None:
        raise _Usage(f"{start}: not inside a git repository (use --repo DIR)")
    return top


def _config(args: argparse.Namespace, repo: Path) -> HarnessConfig:
    return load_config(Path(args.config) if args.config else repo / CONFIG_NAME)


def _context(args: argparse.Namespace):
    from orchestrator.context import HarnessContext, identity_env
    from orchestrator.cycle.loop import load_turns, make_agents

    repo = _repo(args)
    config = _config(args, repo)
    sup, wrk = make_agents(config, repo)  # every command and prompt template validated before any turn
    return HarnessContext(repo, config, sup, wrk, expected_branch=None, git_env=identity_env(repo),
                          turns=load_turns(config))


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
        from orchestrator.cycle.meter import LoopStop
        from orchestrator.documents.errors import DocumentError
        from orchestrator.trust.verify import HandoffRefused
        from orchestrator.vcs.repo import GitError

        try:
            return func(args)
        except HandoffRefused as exc:
            print(f"orchestrator: {exc}", file=sys.stderr)
            if exc.ledger_entry:
                print(f"  recorded in galph_memory.md, entry {exc.ledger_entry}"
                      + (f"; commit {exc.commit[:12]}" if exc.commit else " (not committed)"), file=sys.stderr)
            return Exit.REFUSED
        except LockHeld as exc:
            print(f"orchestrator: {exc}", file=sys.stderr)
            return Exit.LOCKED
        except LoopStop as exc:
            print(f"orchestrator: stopped ({exc.reason}): {exc.message}", file=sys.stderr)
            return Exit.STOPPED
        except (_Usage, ConfigError) as exc:
            print(f"orchestrator: {exc}", file=sys.stderr)
            return Exit.USAGE
        except (DocumentError, GitError, ValueError, RuntimeError, OSError) as exc:
            print(f"orchestrator: {exc}", file=sys.stderr)
            return Exit.FAILED
    wrapper.__doc__ = func.__doc__
    return wrapper


@_guarded
def cmd_turn(args: argparse.Namespace) -> int:
    """``supervise`` / ``work``: one role's turn."""
    from orchestrator.cycle.loop import run_turn

    ctx = _context(args)
    outcome = run_turn(ctx, args.command, getattr(args, "focus", None), getattr(args, "phases", None))
    _print_outcome(outcome)
    return Exit.OK if outcome.status in ("supervised", "done", "progress", "idle") else Exit.FAILED


@_guarded
def cmd_loop(args: argparse.Namespace) -> int:
    """``loop [--cycles N]``: cycles until the budget is used or nothing is eligible."""
    from orchestrator.cycle.loop import run_loop

    if args.role or args.remote or args.branch:
        return _role_loop(args)
    ctx = _context(args)
    result = run_loop(ctx, args.cycles, args.max_wall_s, args.focus, args.phases, on_cycle=_print_outcome)
    spend = result.spend or {}
    print(f"loop stopped: {result.stopped_because} ({len(result.cycles)} cycle(s); spend "
          f"${spend.get('cost_usd', 0.0):.4f}, {spend.get('input_tokens', 0)} in / "
          f"{spend.get('output_tokens', 0)} out tokens)")
    if result.cycles and result.cycles[-1].status == "interrupted":
        return Exit.INTERRUPTED
    if result.stop_reason:
        return Exit.STOPPED
    return Exit.OK if result.ok else Exit.FAILED


def _role_loop(args: argparse.Namespace) -> int:
    """``loop --role supervisor|worker --remote NAME [--branch B] [--cycles N]``: one side of
    the two-machine loop (see orchestrator.sync)."""
    from orchestrator.sync import role_loop as rl

    if not args.role or not args.remote:
        raise _Usage("--role and --remote go together (and --branch needs both)")
    options = rl.RoleOptions(args.role, args.remote, args.branch, args.cycles, args.focus, args.phases)
    ctx = _context(args)
    codes = ((rl.PeerDead, Exit.PEER_DEAD), (rl.SyncConflict, Exit.CONFLICT), (rl.RemoteUnreachable, Exit.OFFLINE),
             (rl.SyncUsage, Exit.USAGE), (rl.SyncStop, Exit.FAILED))
    try:
        result = rl.run_role_loop(ctx, options, on_turn=_print_outcome)
    except rl.SyncStop as exc:
        code = next(c for kind, c in codes if isinstance(exc, kind))
        print(f"orchestrator ({args.role}): {exc}", file=sys.stderr)
        return code
    print(f"{args.role} loop stopped: {result.stopped_because} ({len(result.turns)} turn(s))")
    return Exit.OK if result.ok else Exit.FAILED


@_guarded
def cmd_replay(args: argparse.Namespace) -> int:
    """``replay``: re-run recorded step(s) in a worktree at the recorded commit; never commits."""
    from orchestrator.tools.replay import find_recorded, latest_entry, replay

    repo = _repo(args)
    if args.ledger_entry is not None and args.input is not None:
        raise _Usage("give at most one of --ledger-entry TS or --input FILE")
    entry = args.ledger_entry
    if entry is None and args.input is None:
        entry = latest_entry(repo)
        print(f"no --ledger-entry or --input: replaying the latest harness ledger entry, {entry}")
    recorded = find_recorded(repo, entry, Path(args.input) if args.input else None, args.at)
    result = replay(repo, recorded, args.step, _config(args, repo).step_timeout_s, keep_worktree=args.keep)
    print(f"replayed {recorded.source} at {result.at[:12]} → {result.out_dir}")
    for c in result.steps:
        verdict = "same as recorded" if c.matches else "; ".join(c.differences)
        print(f"  step {c.index} ({c.title}): rc {c.replayed['rc']} — {verdict}")
    if args.json:
        print((result.out_dir / "replay.json").read_text(encoding="utf-8"), end="")
    return Exit.OK if result.matches else Exit.FAILED


@_guarded
def cmd_status(args: argparse.Namespace) -> int:
    """``status [--json]``."""
    from orchestrator.tools.status import collect_status, format_status

    repo = _repo(args)
    status = collect_status(repo, _config(args, repo))
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return Exit.OK


@_guarded
def cmd_main_job(args: argparse.Namespace) -> int:
    """``main-job``: one full cycle in a fresh worktree/branch (what ``make run`` calls)."""
    from orchestrator.tools.mainjob import run_main_job

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
    return Exit.OK if r.ok else Exit.FAILED


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    """``ledger --check [--repo DIR]`` options (added to the documents' ``ledger`` parser)."""
    p.add_argument("--check", action="store_true",
                   help="compare recorded with computed dwell; flag missing artifacts and unknown commits (exit 1)")
    p.add_argument("--repo", type=Path, default=None, metavar="DIR",
                   help="repository for --check (default: the git work tree containing the ledger)")


def run_ledger_check(args: argparse.Namespace, doc: Any) -> int:
    from orchestrator.tools.ledger_check import check_ledger

    repo = args.repo
    if repo is None:
        from orchestrator.vcs.repo import GitRepo

        here = Path(doc.path).resolve().parent
        repo = GitRepo.toplevel(here) or here
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
    return Exit.FAILED if any(e.flags for e in entries) else Exit.OK


def _common(p: argparse.ArgumentParser, progress: bool = False) -> None:
    p.add_argument("--repo", default=None, metavar="DIR", help="repository (default: the one containing the cwd)")
    p.add_argument("--config", default=None, metavar="FILE", help=f"config (default: <repo>/{CONFIG_NAME})")
    if progress:
        p.add_argument("--quiet", action="store_true",
                       help="do not echo agent and step output lines (heartbeats and progress stay)")
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
    p.add_argument("--role", choices=("supervisor", "worker"),
                   help="two machines: run only this side, taking turns with the other over --remote")
    p.add_argument("--remote", metavar="NAME", help="git remote shared with the other side (with --role)")
    p.add_argument("--branch", metavar="B", help="shared branch (default: the checked-out one; with --role)")
    p.set_defaults(func=cmd_loop)


def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="re-run recorded Do-Now step(s) in a worktree at the recorded commit")
    _common(p, progress=True)
    p.add_argument("--ledger-entry", metavar="TS",
                   help="the ledger entry whose handoff to replay: its timestamp (TS or TS@LINE; pasting the "
                        "heading's '# TS:' works); default: the latest one the harness wrote")
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
