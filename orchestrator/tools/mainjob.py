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
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from orchestrator.config import HarnessConfig
from orchestrator.context import HarnessContext, identity_env
from orchestrator.cycle.loop import CycleOutcome, make_agents, run_loop
from orchestrator.cycle.supervisor import eligible_items
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.fsutil import format_ts, utc_now
from orchestrator.layout import Layout
from orchestrator.vcs.repo import GitError, GitRepo

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


_OWNED = (*Layout.OWNED_FILES, Layout.PLANS_DIR.split("/")[0])


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
    def take(cls, git: GitRepo) -> _Checkout:
        return cls(git.head_sha(), git.symbolic_ref(), frozenset(git.status_lines()), _owned_fingerprint(git.root))


def _compare(git: GitRepo, before: _Checkout, after: _Checkout) -> tuple[bool, list[str]]:
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
        subjects = [subject for _sha, subject in git.log_subjects(f"{before.head}..{after.head}")]
        harness = [s for s in subjects if s.startswith(("SUPERVISOR:", "RALPH:"))]
        touched = touched or bool(harness)
        notes.append(f"HEAD moved by {len(subjects)} commit(s) during the run"
                     + (f", {len(harness)} of them harness commits" if harness else " (none by the harness)"))
    others = sorted(after.status ^ before.status)
    if others:
        notes.append(f"{len(others)} `git status` line(s) changed during the run (not harness-owned paths)")
    return not touched, notes


def _ensure_ignored(git: GitRepo) -> None:
    if git.is_ignored(f"{Layout.STATE_DIR}/worktrees/x"):
        return
    exclude = git.common_dir() / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with open(exclude, "a", encoding="utf-8") as fh:
        fh.write(f"\n# ptycho-harness worktrees and loop state\n/{Layout.STATE_DIR}/\n")
    logger.info("added /%s/ to %s", Layout.STATE_DIR, exclude)


def _preferred_focus(worktree: Path, focus: str) -> str | None:
    """``main_job.focus`` when it is eligible; otherwise None (the normal focus rule decides,
    e.g. after the study was merged back as done), with a warning."""
    if not focus:
        return None
    plan = fix_plan_doc.load(Layout(worktree).fix_plan)
    if focus in {it.id for it in eligible_items(plan)}:
        return focus
    status = plan.item(focus).status if plan.has(focus) else "not in the fix plan"
    logger.warning("main_job.focus %s is not eligible (%s); the focus rule picks the item", focus, status)
    return None


def run_main_job(repo: Path, config: HarnessConfig, clock: Callable[[], datetime] = utc_now) -> MainJobResult:
    """Create the worktree + branch and run one cycle there (see the module docstring)."""
    t0 = time.monotonic()
    top = GitRepo.toplevel(Path(repo))
    if top is None:
        raise GitError(f"{repo}: not inside a git work tree")
    git = GitRepo(top)
    root = git.root
    before = _Checkout.take(git)
    base = git.head_sha()
    stamp = format_ts(clock())
    branch = f"harness/run-{stamp}"
    worktree = Layout(root).state_dir / "worktrees" / stamp
    _ensure_ignored(git)
    git.worktree_add(worktree, branch, base)
    logger.info("worktree %s on branch %s from %s", worktree, branch, base[:12])
    supervisor, worker = make_agents(config)
    ctx = HarnessContext(worktree, replace(config, git_sync=False), supervisor, worker, expected_branch=branch,
                         git_env=identity_env(git), clock=clock)
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
    commits = tuple(git.log_subjects(f"{base}..{branch}"))  # newest first
    unchanged, notes = _compare(git, before, _Checkout.take(git))
    if not unchanged:
        error = (error + "; " if error else "") + "the harness touched your checkout: " + "; ".join(notes)
    return MainJobResult(root, worktree, branch, base, outcome, commits, time.monotonic() - t0,  # type: ignore[arg-type]
                         unchanged, error, tuple(notes))
