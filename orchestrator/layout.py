"""Where the harness's files live in a repository: one :class:`Layout` per repository root.

Every repository path the harness reads or writes is spelled here once: the root documents
(``input.md``, ``galph_memory.md``, ``docs/fix_plan.md``, ``docs/findings.md``), an item's
working plan and report directories under ``plans/active/<ID>/``, and the loop's private
``.orchestrator/`` directory. Relative POSIX paths are class attributes (for git and for
messages); the methods return absolute paths under ``root``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

__all__ = ["FOCUS_ID_RE", "Layout", "check_focus_id"]

#: A focus ID that is safe as one path component.
FOCUS_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_focus_id(focus_id: str) -> str:
    """Return ``focus_id`` if it is safe as a path component (``[A-Za-z0-9][A-Za-z0-9._-]*``)."""
    if not isinstance(focus_id, str) or not FOCUS_ID_RE.match(focus_id) or ".." in focus_id:
        raise ValueError(f"invalid focus id {focus_id!r}: expected letters, digits, '.', '_', '-'")
    return focus_id


@dataclass(frozen=True)
class Layout:
    """The harness's paths in the repository (or worktree) at ``root``."""

    root: Path

    HANDOFF: ClassVar[str] = "input.md"
    LEDGER: ClassVar[str] = "galph_memory.md"
    FIX_PLAN: ClassVar[str] = "docs/fix_plan.md"
    FINDINGS: ClassVar[str] = "docs/findings.md"
    STATE_DIR: ClassVar[str] = ".orchestrator"
    PLANS_DIR: ClassVar[str] = "plans/active"
    #: Root documents the harness owns (commits, restores, watches).
    OWNED_FILES: ClassVar[tuple[str, ...]] = (HANDOFF, LEDGER, FIX_PLAN, FINDINGS)

    # ---- relative paths (git pathspecs, messages) -----------------------------------
    @classmethod
    def item_rel(cls, item: str) -> str:
        """``plans/active/<ID>`` (ValueError for an ID unsafe as a path component)."""
        return f"{cls.PLANS_DIR}/{check_focus_id(item)}"

    @classmethod
    def plan_rel(cls, item: str, working_plan: str | None = None) -> str:
        """The item's working plan: ``working_plan`` from the fix plan, else the default
        ``plans/active/<ID>/implementation.md``."""
        return working_plan or f"{cls.item_rel(item)}/implementation.md"

    @classmethod
    def reports_rel(cls, focus: str) -> str:
        return f"{cls.item_rel(focus)}/reports"

    # ---- absolute paths ----------------------------------------------------------------
    @property
    def handoff(self) -> Path:
        return self.root / self.HANDOFF

    @property
    def ledger(self) -> Path:
        return self.root / self.LEDGER

    @property
    def fix_plan(self) -> Path:
        return self.root / self.FIX_PLAN

    @property
    def findings(self) -> Path:
        return self.root / self.FINDINGS

    @property
    def state_dir(self) -> Path:
        return self.root / self.STATE_DIR

    @property
    def plans(self) -> Path:
        return self.root / self.PLANS_DIR

    def plan_of(self, item: str, working_plan: str | None = None) -> Path:
        return self.root / self.plan_rel(item, working_plan)

    def reports(self, focus: str) -> Path:
        return self.root / self.reports_rel(focus)

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, POSIX separators (ValueError when outside it)."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
