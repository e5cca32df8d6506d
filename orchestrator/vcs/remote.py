"""The git commands of the two-machine mode (:mod:`orchestrator.sync`), as a topic class of the
one gateway: :class:`RemoteBranch` builds the arguments and runs every command through
:class:`~orchestrator.vcs.repo.GitRepo`'s runner (only ``vcs/repo.py`` starts git).

Fetch, push with rejection detection, rebase (and its abort), the first-parent history and the
lease refs, lease commits, a conflict branch. Refs: the shared branch is fetched into
``refs/remotes/<remote>/<branch>``; the leases live on the remote as
``refs/orchestrator/lease/<role>`` and are fetched into
``refs/orchestrator/remotes/<remote>/lease/<role>`` (out of ``git branch -r``'s way) by
:meth:`RemoteBranch.fetch` only.

Failures are sorted: :class:`RemoteOffline` (the remote could not be reached or read; the caller
retries), :class:`PushRejected` (not a fast-forward; the caller fetches, rebases and retries),
:class:`RebaseConflict`, and :class:`~orchestrator.vcs.repo.GitError` for anything else (with
git's stderr). All three are GitErrors.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.vcs.repo import GitError, GitRepo, GitTimeout

__all__ = ["LogEntry", "PushRejected", "RebaseConflict", "RemoteBranch", "RemoteOffline"]

_REJECTED = re.compile(r"\[rejected\]|non-fast-forward|fetch first|stale info", re.IGNORECASE)
_OFFLINE = re.compile(
    r"could not read from remote|does not appear to be a git repository|unable to access|"
    r"could not resolve host|connection (refused|reset|timed out)|network is unreachable|"
    r"the remote end hung up|early eof|no route to host|operation timed out|not a git repository|"
    r"cannot lock ref|unable to update local ref|unable to create '[^']*\.lock'",  # transient: retried likewise
    re.IGNORECASE)
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's well-known empty tree (sha1)
#: No prompts, no editor, untranslated messages (the sorting above reads them).
_ENV: Mapping[str, str] = {"GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "LC_ALL": "C"}


class RemoteOffline(GitError):
    """The remote could not be reached (or read) just now."""


class PushRejected(GitError):
    """The remote refused a push because it is not a fast-forward."""


class RebaseConflict(GitError):
    """``git rebase`` stopped on conflicts; it was aborted. ``files``: the conflicting paths."""

    def __init__(self, message: str, files: tuple[str, ...]) -> None:
        super().__init__(message)
        self.files = files


@dataclass(frozen=True)
class LogEntry:
    """One first-parent commit: sha, subject, full message, paths changed vs its first parent."""

    sha: str
    subject: str
    message: str
    paths: frozenset[str]


class RemoteBranch:
    """Git operations of the work tree ``git`` against ``remote``/``branch``.

    ``timeout_s``: limit of one network command; a timeout counts as the remote being offline.
    Thread-safe (plain subprocesses): the heartbeat thread and the loop share one instance.
    """

    def __init__(self, git: GitRepo, remote: str, branch: str, timeout_s: float = 60.0) -> None:
        self.git, self.remote, self.branch, self.timeout_s = git, remote, branch, timeout_s
        self.root = git.root

    # ---- refs ---------------------------------------------------------------------------
    @property
    def tracking_ref(self) -> str:
        return f"refs/remotes/{self.remote}/{self.branch}"

    @staticmethod
    def lease_ref(role: str) -> str:
        return f"refs/orchestrator/lease/{role}"

    def lease_tracking_ref(self, role: str) -> str:
        return f"refs/orchestrator/remotes/{self.remote}/lease/{role}"

    # ---- plumbing -----------------------------------------------------------------------
    def _run(self, *args: str, input_text: str | None = None, timeout_s: float | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            return self.git._run(*args, check=check, input=input_text, timeout_s=timeout_s or self.timeout_s,
                                 env=_ENV)
        except GitTimeout as exc:
            raise RemoteOffline(str(exc)) from exc

    def _network(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command that talks to the remote: sorts failures into offline / rejected / other."""
        proc = self._run(*args, check=False)
        if proc.returncode == 0:
            return proc
        err = proc.stderr.strip()
        if _REJECTED.search(proc.stdout + "\n" + err):  # `push --porcelain` reports refs on stdout
            raise PushRejected(f"git {args[0]} to {self.remote} rejected (not a fast-forward): "
                               f"{' '.join((proc.stdout + ' ' + err).split())[:300]}")
        if _OFFLINE.search(err):
            raise RemoteOffline(f"remote {self.remote!r} unreachable: {' '.join(err.split())[:300]}")
        raise GitError(f"git {' '.join(args)} failed in {self.root} (rc {proc.returncode}): {err}")

    def _rev(self, ref: str) -> str | None:
        proc = self._run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    # ---- the clone ----------------------------------------------------------------------
    def remote_url(self) -> str:
        """The remote's URL; GitError when no such remote is configured."""
        proc = self._run("remote", "get-url", self.remote, check=False)
        if proc.returncode != 0:
            names = self._run("remote").stdout.split()
            raise GitError(f"{self.root}: no git remote named {self.remote!r} "
                           f"(configured: {', '.join(names) or 'none'}; add one with `git remote add`)")
        return proc.stdout.strip()

    def head(self) -> str | None:
        return self._rev("HEAD")

    def remote_tip(self) -> str | None:
        """The fetched tip of the shared branch (None before it exists on the remote)."""
        return self._rev(self.tracking_ref)

    def dirty_paths(self) -> list[str]:
        """Tracked files with staged or unstaged changes (untracked files are not counted)."""
        out = self._run("status", "--porcelain=v1", "-z", "--untracked-files=no").stdout
        return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})

    def commits_ahead(self) -> list[str]:
        """Local commits the remote branch does not have, oldest first."""
        tip = self.remote_tip()
        return self._run("rev-list", "--reverse", "HEAD" if tip is None else f"{tip}..HEAD").stdout.split()

    def commits_behind(self) -> int:
        tip = self.remote_tip()
        return 0 if tip is None else int(self._run("rev-list", "--count", f"HEAD..{tip}").stdout.strip() or 0)

    def first_parent_log(self, ref: str, limit: int = 500) -> list[LogEntry]:
        """Newest first; at most ``limit`` commits of ``ref``'s first-parent history."""
        if self._rev(ref) is None:
            return []
        out = self._run("log", "--first-parent", f"-n{limit}", "--name-only", "--format=%x1e%H%x1f%s%x1f%B%x1f",
                        ref).stdout
        entries = []
        for record in out.split("\x1e")[1:]:
            sha, subject, message, paths = record.split("\x1f", 3)
            entries.append(LogEntry(sha, subject, message, frozenset(p for p in paths.split("\n") if p.strip())))
        return entries

    def find_commit(self, prefix: str, cycle_id: str, ref: str = "HEAD", limit: int = 200) -> str | None:
        """Newest first-parent commit of ``ref`` whose subject starts with ``prefix`` and whose
        message has the trailer ``Cycle-Id: <cycle_id>``."""
        for entry in self.first_parent_log(ref, limit):
            if entry.subject.startswith(prefix) and f"\nCycle-Id: {cycle_id}\n" in f"\n{entry.message}\n":
                return entry.sha
        return None

    # ---- talking to the remote ----------------------------------------------------------
    def fetch(self) -> None:
        """The shared branch and every ``refs/orchestrator/*`` ref of the remote."""
        try:
            self._network("fetch", "--quiet", "--prune", "--no-write-fetch-head", self.remote,
                          f"+refs/heads/{self.branch}:{self.tracking_ref}",
                          f"+refs/orchestrator/*:refs/orchestrator/remotes/{self.remote}/*")
        except (RemoteOffline, PushRejected):
            raise
        except GitError as exc:
            if "couldn't find remote ref" in str(exc):
                raise GitError(f"remote {self.remote!r} has no branch {self.branch!r}: push it once "
                               f"(`git push {self.remote} {self.branch}`) before starting the loops") from exc
            raise

    def ls_remote(self) -> dict[str, str]:
        """``{ref: sha}`` of the remote's branch and orchestrator refs (no objects fetched)."""
        out = self._network("ls-remote", self.remote, f"refs/heads/{self.branch}", "refs/orchestrator/*").stdout
        return {ref: sha for sha, ref in (line.split("\t", 1) for line in out.splitlines() if "\t" in line)}

    def push_branch(self) -> str:
        """Push HEAD to the shared branch (never forced); returns the pushed sha."""
        sha = self._run("rev-parse", "HEAD").stdout.strip()
        self._network("push", "--quiet", "--porcelain", self.remote, f"{sha}:refs/heads/{self.branch}")
        self._run("update-ref", self.tracking_ref, sha)
        return sha

    def rebase_onto_remote(self) -> None:
        """``git rebase <remote>/<branch>`` (a fast-forward when there is nothing local).
        On conflicts the rebase is aborted and :class:`RebaseConflict` names the files."""
        tip = self.remote_tip()
        if tip is None:
            return
        proc = self._run("rebase", "--quiet", tip, check=False, timeout_s=300)
        if proc.returncode == 0:
            return
        if self.git.operation_in_progress():
            out = self._run("diff", "--name-only", "--diff-filter=U", "-z", check=False).stdout
            files = tuple(sorted(p for p in out.split("\0") if p))
            self._run("rebase", "--abort", check=False)
            raise RebaseConflict(f"rebase onto {self.remote}/{self.branch} stopped on conflicts in "
                                 f"{', '.join(files) or '(unknown files)'}; aborted", files)
        raise GitError(f"git rebase onto {self.remote}/{self.branch} failed in {self.root}: "
                       f"{(proc.stderr or proc.stdout).strip()}")

    def keep_branch(self, name: str) -> str:
        """Create branch ``name`` at HEAD (never moves an existing one); returns its sha."""
        self._run("check-ref-format", "--branch", name)
        self._run("branch", name, "HEAD")
        return self._run("rev-parse", "HEAD").stdout.strip()

    # ---- leases -------------------------------------------------------------------------
    def fetched_refs(self) -> dict[str, str]:
        """``{ref: sha}`` of the fetched branch and leases, in one git call (the poll loop's read)."""
        out = self._run("for-each-ref", "--format=%(objectname) %(refname)", self.tracking_ref,
                        f"refs/orchestrator/remotes/{self.remote}/").stdout
        return {ref: sha for sha, ref in (line.split(" ", 1) for line in out.splitlines() if " " in line)}

    def lease_message(self, sha: str) -> str:
        return self._run("cat-file", "commit", sha).stdout.split("\n\n", 1)[-1]

    def read_lease(self, role: str) -> tuple[str, str] | None:
        """``(sha, message)`` of the fetched lease of ``role``, None when there is none."""
        sha = self._rev(self.lease_tracking_ref(role))
        return None if sha is None else (sha, self.lease_message(sha))

    def make_lease_commit(self, message: str, parent: str | None) -> str:
        """A commit with the empty tree, ``message`` and (optionally) ``parent``."""
        self._run("hash-object", "-t", "tree", "-w", "--stdin", input_text="")  # make sure the tree exists
        return self._run("commit-tree", _EMPTY_TREE, *(["-p", parent] if parent else []),
                         input_text=message).stdout.strip()

    def push_lease(self, role: str, sha: str) -> None:
        """Fast-forward ``refs/orchestrator/lease/<role>`` on the remote to ``sha`` (never forced)."""
        self._network("push", "--quiet", "--porcelain", self.remote, f"{sha}:{self.lease_ref(role)}")
        # the tracking ref is left to fetch(): the heartbeat thread must not race the poll loop's fetch for it

    def fetch_lease(self, role: str) -> str | None:
        """Fetch only the lease of ``role`` (into a ref of the writer's own, so the poll loop's
        fetch is never raced); returns its sha (None if the remote has none)."""
        if self.lease_ref(role) not in self.ls_remote():
            return None
        private = f"refs/orchestrator/writer/{self.remote}/{role}"
        self._network("fetch", "--quiet", "--no-write-fetch-head", self.remote, f"+{self.lease_ref(role)}:{private}")
        return self._rev(private)
