"""Provenance of the handoff: did the supervisor write (and sign) what the worker is about to run?

Rule (issue #19): the commit that last changed ``input.md`` must be a ``SUPERVISOR:`` commit
with a good signature from a key in the allowed-signers file (``%G?`` = ``G``), and no later
commit may change ``input.md``, the plans the handoff runs (``plans/active/<FOCUS>/**`` and
``docs/fix_plan.md``) or ``orchestrator.yaml`` without such a signature. A signature covers
the commit's whole tree, so everything the signed commit holds is the supervisor's word;
only what came after it needs checking. ``input.md`` and ``orchestrator.yaml`` must also be
unmodified in the work tree (the worker reads them from disk).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.layout import Layout
from orchestrator.vcs.signatures import SignatureLog, SignedCommit

__all__ = ["HandoffRefused", "Provenance", "allowed_signers_path", "check_provenance", "protected_paths"]

logger = logging.getLogger(__name__)

HANDOFF = Layout.HANDOFF
CONFIG_FILE = "orchestrator.yaml"
FIX_PLAN = Layout.FIX_PLAN

_STATUS_TEXT = {
    "N": "has no signature",
    "B": "has a bad signature",
    "U": "is signed by a key that is not in the allowed signers",
    "X": "has a good signature that has expired",
    "Y": "is signed by an expired key",
    "R": "is signed by a revoked key",
    "E": "has a signature that cannot be checked",
}


@dataclass(frozen=True)
class Provenance:
    """The verdict on the handoff in the work tree.

    ``commit``/``author``/``committer``/``subject``: the commit that last changed ``input.md``;
    ``signature``: its ``%G?`` letter; ``signer``: the allowed-signers principal of a good
    signature; ``key``: the signing key's fingerprint. ``ok`` False means refuse; ``reason``
    then says why and ``offending``/``offending_author``/``offending_committer`` name the
    commit to blame (the handoff commit itself or a later one; an amended commit keeps its
    author, so the committer is recorded too). ``required``: whether the policy demands it.
    """

    ok: bool
    required: bool
    commit: str | None = None
    author: str | None = None
    committer: str | None = None
    subject: str | None = None
    signature: str = "not checked"
    signer: str | None = None
    key: str | None = None
    reason: str | None = None
    offending: str | None = None
    offending_author: str | None = None
    offending_committer: str | None = None
    allowed_signers: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HandoffRefused(Exception):
    """The worker refused the handoff (exit code 8); ``provenance`` holds the verdict."""

    def __init__(self, provenance: Provenance, ledger_entry: str | None = None, commit: str | None = None) -> None:
        self.provenance = provenance
        self.ledger_entry = ledger_entry
        self.commit = commit
        who = provenance.offending or provenance.commit or "-"
        super().__init__(f"handoff refused: {provenance.reason} (commit {who[:12]}, author "
                         f"{provenance.offending_author or provenance.author or 'unknown'}, committer "
                         f"{provenance.offending_committer or provenance.committer or 'unknown'}); no Do-Now step ran")


def protected_paths(focus: str | None, working_plan: str | None = None) -> tuple[str, ...]:
    """Paths whose later unsigned change voids the handoff. Without a focus every plan is."""
    plans = Layout.item_rel(focus) if focus else Layout.PLANS_DIR
    extra = (working_plan,) if working_plan and not working_plan.startswith(plans + "/") else ()
    return (HANDOFF, FIX_PLAN, CONFIG_FILE, plans, *extra)


def allowed_signers_path(repo: Path, configured: str | None) -> Path | None:
    """The configured allowed-signers file as an absolute path (relative = to the repo root).

    Raises ValueError when it lies inside the repository: anyone who can push could then add
    a key to it. Existence is checked by the caller that needs the file."""
    if configured is None:
        return None
    path = Path(configured).expanduser()
    path = (Path(repo) / path if not path.is_absolute() else path).resolve()
    try:
        path.relative_to(Path(repo).resolve())
    except ValueError:
        return path
    raise ValueError(f"trust.allowed_signers {configured!r} is inside the repository ({path}); anyone who can "
                     "push could add a key to it — keep it outside the clone, e.g. ~/.ssh/allowed_signers")


def _describe(commit: SignedCommit) -> str:
    return _STATUS_TEXT.get(commit.status, f"has signature status {commit.status!r}")


def check_provenance(git: SignatureLog, paths: tuple[str, ...], required: bool) -> Provenance:
    """Apply the module's rule; never raises for an untrusted history, only returns ``ok=False``.

    ``git.allowed_signers`` must be set for any signature to verify."""
    signers = str(git.allowed_signers) if git.allowed_signers else None
    head = git.last_commit_touching([HANDOFF])
    if head is None:
        return Provenance(False, required, reason=f"{HANDOFF} is not committed on this branch",
                          allowed_signers=signers)
    base = dict(required=required, commit=head.sha, author=head.author, committer=head.committer, subject=head.subject,
                signature=head.status, signer=head.signer or None, key=head.key or None, allowed_signers=signers)
    if not head.subject.startswith("SUPERVISOR:"):
        return Provenance(False, **base, reason=f"the commit that last changed {HANDOFF} is not a SUPERVISOR: commit "
                          f"(subject {head.subject[:80]!r})", offending=head.sha, offending_author=head.author,
                          offending_committer=head.committer)
    if not head.good:
        return Provenance(False, **base, reason=f"the SUPERVISOR: commit that last changed {HANDOFF} {_describe(head)}"
                          + (f" (key {head.key})" if head.key else ""), offending=head.sha,
                          offending_author=head.author,
                          offending_committer=head.committer)
    for later in git.commits_after(head.sha, paths):
        if not later.good:
            what = ", ".join(later.paths[:5]) or "files through a merge"
            return Provenance(False, **base, reason=f"a later commit changed {what} and {_describe(later)}"
                              + (f" (key {later.key})" if later.key else ""),
                              offending=later.sha, offending_author=later.author,
                              offending_committer=later.committer)
    dirty = git.modified([HANDOFF, CONFIG_FILE])
    if dirty:
        return Provenance(False, **base, reason=f"uncommitted changes to {', '.join(dirty)} in the work tree")
    return Provenance(True, **base)
