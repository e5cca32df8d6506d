"""The dirty-tree checks of a role loop: nothing is ever stashed or discarded, a clone with
uncommitted changes to tracked files is refused with the list of files."""

from __future__ import annotations

from orchestrator.context import HarnessContext
from orchestrator.records.state import load_state
from orchestrator.sync.stops import DirtyTree
from orchestrator.vcs.owned import is_owned
from orchestrator.vcs.remote import RemoteBranch

__all__ = ["preflight", "refuse_dirty", "require_clean"]


def refuse_dirty(ctx: HarnessContext, files: list[str], when: str) -> None:
    """Raise :class:`DirtyTree` listing (up to 50 of) ``files``."""
    shown = "\n  ".join(files[:50]) + (f"\n  (+{len(files) - 50} more)" if len(files) > 50 else "")
    raise DirtyTree(f"{ctx.repo}: refusing to sync {when}: tracked files have uncommitted changes "
                    f"(nothing was stashed or discarded; commit or revert them, then run again):\n  {shown}", files)


def require_clean(ctx: HarnessContext, remote: RemoteBranch, when: str) -> None:
    dirty = remote.dirty_paths()
    if dirty:
        refuse_dirty(ctx, dirty, when)


def preflight(ctx: HarnessContext, remote: RemoteBranch) -> None:
    """At start: no rebase/merge in progress, and a clean tree — except the harness's own files
    of an unfinished cycle, which the resumed turn deals with."""
    if ctx.git.operation_in_progress():
        raise DirtyTree(f"{ctx.repo}: a rebase/merge/cherry-pick is in progress; finish or abort it", [])
    dirty = remote.dirty_paths()
    state = load_state(ctx.repo)
    if dirty and state is not None and not state.finished and all(is_owned(p, state.focus) for p in dirty):
        return
    if dirty:
        refuse_dirty(ctx, dirty, "at start")
