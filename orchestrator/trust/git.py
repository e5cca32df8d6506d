"""Every git command the trust boundary runs, in one small read-only class.

Kept apart so it can move into the harness's git gateway unchanged: signature status of
commits (``%G?``, ``%GK``, ``%GS``, ``%GF``) with ``gpg.ssh.allowedSignersFile`` passed by
``-c`` (a setting in the clone cannot widen the set of allowed signers), path-limited
history, work-tree changes of single files, and config reads.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["SignedCommit", "TrustGit", "TrustGitError"]

_FIELDS = "%H%x1f%G?%x1f%GK%x1f%GS%x1f%GF%x1f%an <%ae>%x1f%cn <%ce>%x1f%s"
_REC, _SEP = "\x1e", "\x1f"


class TrustGitError(RuntimeError):
    """A git command of the trust check failed; the message names the command and stderr."""


@dataclass(frozen=True)
class SignedCommit:
    """One commit with git's verdict on its signature.

    ``status`` is ``%G?``: ``G`` good signature from an allowed signer, ``U`` good signature
    from a key not in the allowed-signers file, ``B`` bad, ``X``/``Y`` expired, ``R`` revoked,
    ``E`` cannot be checked, ``N`` no signature. ``signer`` is the allowed-signers principal
    (empty unless ``G``); ``key`` the key's fingerprint; ``author``/``committer`` as
    ``Name <email>`` (both are whatever the committer claimed); ``paths`` the files it changed among
    those asked about (only filled by :meth:`TrustGit.commits_after`).
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


class TrustGit:
    """Read-only git queries in ``repo``; signatures are checked against ``allowed_signers``
    (absolute path) when given, otherwise no SSH signature can verify (``%G?`` is never G)."""

    def __init__(self, repo: Path, allowed_signers: Path | None = None, timeout_s: float = 60.0) -> None:
        self.repo = Path(repo)
        self.allowed_signers = Path(allowed_signers).resolve() if allowed_signers is not None else None
        self.timeout_s = timeout_s

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        signers = str(self.allowed_signers) if self.allowed_signers is not None else "/dev/null"
        argv = ["git", "-c", f"gpg.ssh.allowedSignersFile={signers}", "-c", "log.showSignature=false",
                "-c", "core.quotepath=off", *args]
        try:
            proc = subprocess.run(argv, cwd=self.repo, capture_output=True, text=True, timeout=self.timeout_s,
                                  stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TrustGitError(f"git {' '.join(args[:3])} in {self.repo}: {exc}") from exc
        if check and proc.returncode != 0:
            raise TrustGitError(f"git {' '.join(args[:3])} in {self.repo}: {proc.stderr.strip()}")
        return proc

    @staticmethod
    def _parse(record: str) -> SignedCommit:
        head, _, names = record.partition("\n")
        sha, status, key, signer, fingerprint, author, committer, subject = head.split(_SEP)
        paths = tuple(p for p in names.splitlines() if p.strip())
        return SignedCommit(sha, status, key, signer, fingerprint, author, committer, subject, paths)

    def config_get(self, key: str) -> str | None:
        """``git config --get KEY`` as seen in this clone (None when unset)."""
        proc = self._run("config", "--get", key, check=False)
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    def has_head(self) -> bool:
        return self._run("rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode == 0

    def last_commit_touching(self, paths: Sequence[str]) -> SignedCommit | None:
        """The newest commit reachable from HEAD that changed any of ``paths``."""
        if not self.has_head():
            return None
        out = self._run("log", "-1", f"--format={_FIELDS}", "HEAD", "--", *paths).stdout.strip("\n")
        return self._parse(out) if out else None

    def commits_after(self, sha: str, paths: Sequence[str]) -> list[SignedCommit]:
        """Commits in ``sha..HEAD`` that changed any of ``paths``, oldest first, each with the
        changed paths (merge commits included: an evil merge shows as its own commit)."""
        out = self._run("log", "--reverse", "--name-only", "--no-renames", "--full-history",
                        f"--format={_REC}{_FIELDS}", f"{sha}..HEAD", "--", *paths).stdout
        return [self._parse(r.strip("\n")) for r in out.split(_REC) if r.strip()]

    def modified(self, paths: Sequence[str]) -> list[str]:
        """Tracked files among ``paths`` whose work-tree or index content differs from HEAD."""
        out = self._run("status", "--porcelain=v1", "-z", "--untracked-files=no", "--", *paths).stdout
        return sorted({e[3:] for e in out.split("\0") if len(e) > 3})
