"""What the harness may commit and how its commits are named (pure rules, no git).

The harness only ever commits the documents it owns (:func:`owned_paths`): the root documents
of :class:`orchestrator.layout.Layout` and everything under its focus's ``plans/active/<ID>/``.
Its commit subjects read ``SUPERVISOR: <ID> — …`` or ``RALPH: <ID> — …`` (:data:`ROLES`).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.layout import Layout, check_focus_id
from orchestrator.vcs.secret_scan import SecretHit

__all__ = ["ROLES", "CommitResult", "commit_message", "is_owned", "owned_paths"]

#: Commit roles: the supervisor and the worker (RALPH).
ROLES = ("SUPERVISOR", "RALPH")
_OWNED_FILES = Layout.OWNED_FILES


def owned_paths(focus_id: str) -> list[str]:
    """Paths the harness may commit for ``focus_id`` (``**`` = everything below)."""
    return [*_OWNED_FILES, f"{Layout.item_rel(focus_id)}/**"]


def is_owned(path: str, focus_id: str | None) -> bool:
    """True if repo-relative POSIX ``path`` is one of ``owned_paths(focus_id)``."""
    if path in _OWNED_FILES:
        return True
    return focus_id is not None and path.startswith(f"{Layout.item_rel(focus_id)}/")


def commit_message(role: str, focus_id: str, message: str) -> str:
    """``SUPERVISOR: <ID> — <subject>`` (+ the rest of ``message`` as the body)."""
    if role not in ROLES:
        raise ValueError(f"commit role must be one of {ROLES}, got {role!r}")
    check_focus_id(focus_id)
    subject, _, body = message.strip().partition("\n")
    if not subject.strip():
        raise ValueError("commit message text is empty")
    text = f"{role}: {focus_id} — {subject.strip()}"
    return f"{text}\n\n{body.strip()}\n" if body.strip() else text


@dataclass(frozen=True)
class CommitResult:
    """Outcome of :meth:`GitRepo.commit_owned`. ``sha`` is None when nothing was committed:
    either nothing owned changed (``refused_reason`` None) or the commit was refused."""

    sha: str | None
    committed_paths: tuple[str, ...] = ()
    skipped_large: tuple[tuple[str, int], ...] = ()
    refused_reason: str | None = None
    secret_hits: tuple[SecretHit, ...] = ()
    message: str = ""

    @property
    def committed(self) -> bool:
        return self.sha is not None


