"""``make run``: one full builtin cycle on the repository's own fix plan, in a git worktree.

The user's checkout is never touched: the cycle runs in ``.orchestrator/worktrees/<ts>`` on
a new branch ``harness/run-<ts>`` made from HEAD (``.orchestrator/`` is git-ignored; if a
repository does not ignore it, the harness adds it to ``.git/info/exclude``, not to any
tracked file). Commits get the harness identity when git has no user configured. The
result says where the branch, commits and artifacts are; the worktree is left in place for
inspection (``git worktree remove <path>`` and ``git branch -D <branch>`` discard it).
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Callable

from orchestrator.artifacts import format_ts, utc_now
from orchestrator.config import HarnessConfig
from orchestrator.context import HarnessContext, identity_env
from orchestrator.gitops import GitRepo, run_git
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.loop import CycleOutcome, make_agents, run_loop
from orchestrator.supervisor import FIX_PLAN, eligible_items

__all__ = ["MainJobResult", "run_main_job"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MainJobResult:
    repo: Path
    worktree: Path
    branch: str
    base_commit: str
    outcome: CycleOutcome | None
    commits: tuple[tuple[str, str], ...]
    wall_s: float
    user_checkout_unchanged: bool
    error: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def report_dir(self) -> Path | None:
        if self.outcome is None or not self.outcome.report_dir:
            return None
        return self.worktree / self.outcome.report_dir

    @property
    def ok(self) -> bool:
        """The cycle finished the focus: every step and every exit criterion passed."""
        return (self.error is None and self.user_checkout_unchanged and self.outcome is not None
                and self.outcome.status == "done")


_git = run_git  # GitError is a RuntimeError: the cycle's error handling below catches it


_OWNED = ("input.md", "galph_memory.md", "docs/fix_plan.md", "docs/findings.md", "plans")


def _owned_fingerprint(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file the harness could write in a checkout — what a harness
    bug that escaped the worktree would touch."""
    out: dict[str, tuple[int, int]] = {}
    for rel in _OWNED:
        path = root / rel
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for f in files:
            st = f.stat()
            out[f.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


@dataclass(frozen=True)
class _Checkout:
    head: str
    ref: str
    status: frozenset[str]
    owned: dict[str, tuple[int, int]]

    @classmethod
    def take(cls, root: Path) -> _Checkout:
        ref = subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=60, check=False).stdout.strip() or "(detached)"
        status = _git(root, "status", "--porcelain=v1", "--untracked-files=all")
        return cls(_git(root, "rev-parse", "HEAD"), ref, frozenset(status.splitlines()), _owned_fingerprint(root))


def _compare(root: Path, before: _Checkout, after: _Checkout) -> tuple[bool, list[str]]:
    """(untouched by the harness, notes). Changes to harness-owned files, a branch switch or a
    harness commit on the user's branch count against the harness; anything else (another
    person's commit or edit during the run) is only reported."""
    notes: list[str] = []
    touched = False
    changed_owned = sorted(k for k in set(before.owned) | set(after.owned) if before.owned.get(k) != after.owned.get(k))
    if changed_owned:
        touched = True
        notes.append("harness-owned files changed in your checkout: " + ", ".join(changed_owned[:10]))
    if after.ref != before.ref:
        touched = True
        notes.append(f"the checked-out branch changed: {before.ref} → {after.ref}")
    if after.head != before.head:
        subjects = _git(root, "log", "--format=%h %s", f"{before.head}..{after.head}").splitlines()
        harness = [s for s in subjects if s.split(" ", 1)[-1].startswith(("SUPERVISOR:", "RALPH:"))]
        touched = touched or bool(harness)
        notes.append(f"HEAD moved by {len(subjects)} commit(s) during the run"
                     + (f", {len(harness)} of them harness commits" if harness else " (none by the harness)"))
    others = sorted(after.status ^ before.status)
    if others:
        notes.append(f"{len(others)} `git status` line(s) changed during the run (not harness-owned paths)")
    return not touched, notes


def _ensure_ignored(root: Path) -> None:
    probe = subprocess.run(["git", "check-ignore", "-q", ".orchestrator/worktrees/x"], cwd=root,
                           capture_output=True, timeout=60, check=False)
    if probe.returncode == 0:
        return
    exclude = Path(_git(root, "rev-parse", "--git-common-dir"))
    exclude = (exclude if exclude.is_absolute() else root / exclude) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with open(exclude, "a", encoding="utf-8") as fh:
        fh.write("\n# ptycho-harness worktrees and loop state\n/.orchestrator/\n")
    logger.info("added /.orchestrator/ to %s", exclude)


def _preferred_focus(worktree: Path, focus: str) -> str | None:
    """``main_job.focus`` when it is eligible; otherwise None (the normal focus rule decides,
    e.g. after the study was merged back as done), with a warning."""
    if not focus:
        return None
    plan = fix_plan_doc.load(worktree / FIX_PLAN)
    if focus in {it.id for it in eligible_items(plan)}:
        return focus
    status = plan.item(focus).status if plan.has(focus) else "not in the fix plan"
    logger.warning("main_job.focus %s is not eligible (%s); the focus rule picks the item", focus, status)
    return None


def run_main_job(repo: Path, config: HarnessConfig, clock: Callable[[], datetime] = utc_now) -> MainJobResult:
    """Create the worktree + branch and run one cycle there (see the module docstring)."""
    t0 = time.monotonic()
    root = Path(_git(Path(repo), "rev-parse", "--show-toplevel"))
    before = _Checkout.take(root)
    base = _git(root, "rev-parse", "HEAD")
    stamp = format_ts(clock())
    branch = f"harness/run-{stamp}"
    worktree = root / ".orchestrator" / "worktrees" / stamp
    _ensure_ignored(root)
    GitRepo(root).worktree_add(worktree, branch, base)
    logger.info("worktree %s on branch %s from %s", worktree, branch, base[:12])
    supervisor, worker = make_agents(config)
    ctx = HarnessContext(worktree, replace(config, git_sync=False), supervisor, worker, expected_branch=branch,
                         git_env=identity_env(root), clock=clock)
    outcome: CycleOutcome | None = None
    error = None
    try:
        focus = _preferred_focus(worktree, config.main_job.focus)
        result = run_loop(ctx, cycles=1, max_wall_s=0, forced_focus=focus,
                          phases_per_cycle=config.main_job.phases_per_cycle)
        outcome = result.cycles[0] if result.cycles else None
        if outcome is None:
            error = f"no cycle ran: {result.stopped_because}"
    except (RuntimeError, ValueError, OSError) as exc:  # a refused commit, a bad document, git failure
        error = f"{type(exc).__name__}: {exc}"
        logger.error("main job failed: %s", error)
    log = _git(root, "log", "--format=%H%x1f%s", f"{base}..{branch}")
    commits = tuple(tuple(line.split("\x1f", 1)) for line in log.splitlines() if line)  # newest first
    unchanged, notes = _compare(root, before, _Checkout.take(root))
    if not unchanged:
        error = (error + "; " if error else "") + "the harness touched your checkout: " + "; ".join(notes)
    return MainJobResult(root, worktree, branch, base, outcome, commits, time.monotonic() - t0,  # type: ignore[arg-type]
                         unchanged, error, tuple(notes))
