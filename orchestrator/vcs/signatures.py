"""The read-only git queries of the trust boundary (:mod:`orchestrator.trust`), as a topic class
of the one gateway: :class:`SignatureLog` builds the arguments and runs them through
:class:`~orchestrator.vcs.repo.GitRepo`'s runner (only ``vcs/repo.py`` starts git).

Signature status of commits (``%G?``, ``%GK``, ``%GS``, ``%GF``) with
``gpg.ssh.allowedSignersFile`` passed by ``-c`` (a setting in the clone cannot widen the set of
allowed signers), path-limited history and work-tree changes of single files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.vcs.repo import GitRepo

__all__ = ["SignatureLog", "SignedCommit"]

_FIELDS = "%H%x1f%G?%x1f%GK%x1f%GS%x1f%GF%x1f%an <%ae>%x1f%cn <%ce>%x1f%s"
_REC, _SEP = "\x1e", "\x1f"


@dataclass(frozen=True)
class SignedCommit:
    """One commit with git's verdict on its signature.

    ``status`` is ``%G?``: ``G`` good signature from an allowed signer, ``U`` good signature
    from a key not in the allowed-signers file, ``B`` bad, ``X``/``Y`` expired, ``R`` revoked,
    ``E`` cannot be checked, ``N`` no signature. ``signer`` is the allowed-signers principal
    (empty unless ``G``); ``key`` the key's fingerprint; ``author``/``committer`` as
    ``Name <email>`` (both are whatever the committer claimed); ``paths`` the files it changed among
    those asked about (only filled by :meth:`SignatureLog.commits_after`).
    """

    sha: str
    status: str
    key: str
    signer: str
    fingerprint: str
    author: str
    committer: str
    subject: str
    paths: tuple[str, ...] = ()

    @property
    def good(self) -> bool:
        return self.status == "G"


class SignatureLog:
    """Read-only queries in the work tree ``git``; signatures are checked against
    ``allowed_signers`` (absolute path) when given, otherwise no SSH signature can verify
    (``%G?`` is never G). Failures raise :class:`~orchestrator.vcs.repo.GitError`."""

    def __init__(self, git: GitRepo, allowed_signers: Path | None = None, timeout_s: float = 60.0) -> None:
        self.git = git
        self.allowed_signers = Path(allowed_signers).resolve() if allowed_signers is not None else None
        self.timeout_s = timeout_s

    def _log(self, *args: str) -> str:
        signers = str(self.allowed_signers) if self.allowed_signers is not None else "/dev/null"
        return self.git._run("-c", f"gpg.ssh.allowedSignersFile={signers}", "-c", "log.showSignature=false",
                             "-c", "core.quotepath=off", "log", *args, timeout_s=self.timeout_s).stdout

    @staticmethod
    def _parse(record: str) -> SignedCommit:
        head, _, names = record.partition("\n")
        sha, status, key, signer, fingerprint, author, committer, subject = head.split(_SEP)
        paths = tuple(p for p in names.splitlines() if p.strip())
        return SignedCommit(sha, status, key, signer, fingerprint, author, committer, subject, paths)

    def last_commit_touching(self, paths: Sequence[str]) -> SignedCommit | None:
        """The newest commit reachable from HEAD that changed any of ``paths``."""
        if not self.git.rev_exists("HEAD"):
            return None
        out = self._log("-1", f"--format={_FIELDS}", "HEAD", "--", *paths).strip("\n")
        return self._parse(out) if out else None

    def commits_after(self, sha: str, paths: Sequence[str]) -> list[SignedCommit]:
        """Commits in ``sha..HEAD`` that changed any of ``paths``, oldest first, each with the
        changed paths (merge commits included: an evil merge shows as its own commit)."""
        out = self._log("--reverse", "--name-only", "--no-renames", "--full-history",
                        f"--format={_REC}{_FIELDS}", f"{sha}..HEAD", "--", *paths)
        return [self._parse(r.strip("\n")) for r in out.split(_REC) if r.strip()]

    def modified(self, paths: Sequence[str]) -> list[str]:
        """Tracked files among ``paths`` whose work-tree or index content differs from HEAD."""
        out = self.git._run("-c", "core.quotepath=off", "status", "--porcelain=v1", "-z", "--untracked-files=no",
                            "--", *paths, timeout_s=self.timeout_s).stdout
        return sorted({e[3:] for e in out.split("\0") if len(e) > 3})
