"""Every git command the two-machine mode needs, in one class (a future git gateway can take
it over unchanged): fetch, push with rejection detection, rebase (and its abort), reading
the first-parent history and lease refs, writing lease commits, keeping a conflict branch.

Refs: the shared branch is fetched into ``refs/remotes/<remote>/<branch>``; the leases live on
the remote as ``refs/orchestrator/lease/<role>`` and are fetched into
``refs/orchestrator/remotes/<remote>/lease/<role>`` (out of ``git branch -r``'s way) by
:meth:`SyncRemote.fetch` only.

Failures are sorted into three exceptions: :class:`RemoteOffline` (the remote could not be
reached or read; the caller retries), :class:`PushRejected` (not a fast-forward; the caller
fetches, rebases and retries) and :class:`SyncGitError` (anything else, with git's stderr).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

__all__ = ["LogEntry", "PushRejected", "RebaseConflict", "RemoteOffline", "SyncGitError", "SyncRemote"]

logger = logging.getLogger(__name__)

_REJECTED = re.compile(r"\[rejected\]|non-fast-forward|fetch first|stale info", re.IGNORECASE)
_OFFLINE = re.compile(
    r"could not read from remote|does not appear to be a git repository|unable to access|"
    r"could not resolve host|connection (refused|reset|timed out)|network is unreachable|"
    r"the remote end hung up|early eof|no route to host|operation timed out|not a git repository|"
    r"cannot lock ref|unable to update local ref|unable to create '[^']*\.lock'",  # transient: retried likewise
    re.IGNORECASE)
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's well-known empty tree (sha1)


class SyncGitError(RuntimeError):
    """A git command failed for a reason other than an unreachable remote or a rejected push."""


class RemoteOffline(SyncGitError):
    """The remote could not be reached (or read) just now."""


class PushRejected(SyncGitError):
    """The remote refused a push because it is not a fast-forward."""


class RebaseConflict(SyncGitError):
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


class SyncRemote:
    """Git operations on the clone ``repo`` against ``remote``/``branch``.

    ``env``: extra environment (e.g. the harness identity for rebased commits).
    ``timeout_s``: limit of one network command; a timeout counts as the remote being offline.
    """

    def __init__(self, repo: Path, remote: str, branch: str, env: Mapping[str, str] | None = None,
                 timeout_s: float = 60.0) -> None:
        self.repo = Path(repo)
        self.remote = remote
        self.branch = branch
        self.timeout_s = timeout_s
        self._env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "LC_ALL": "C",
                     **(env or {})}

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
            proc = subprocess.run(["git", *args], cwd=self.repo, capture_output=True, text=True,
                                  input=input_text, stdin=None if input_text is not None else subprocess.DEVNULL,
                                  timeout=timeout_s or self.timeout_s, env=self._env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RemoteOffline(f"git {' '.join(args[:2])} timed out after {exc.timeout:g} s") from exc
        except OSError as exc:
            raise SyncGitError(f"git {' '.join(args[:2])} in {self.repo}: {exc}") from exc
        if check and proc.returncode != 0:
            raise SyncGitError(f"git {' '.join(args)} failed in {self.repo} (rc {proc.returncode}): "
                               f"{proc.stderr.strip()}")
        return proc

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
        raise SyncGitError(f"git {' '.join(args)} failed in {self.repo} (rc {proc.returncode}): {err}")

    def _rev(self, ref: str) -> str | None:
        proc = self._run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    # ---- the clone ----------------------------------------------------------------------
    def remote_url(self) -> str:
        """The remote's URL; SyncGitError when no such remote is configured."""
        proc = self._run("remote", "get-url", self.remote, check=False)
        if proc.returncode != 0:
            names = self._run("remote").stdout.split()
            raise SyncGitError(f"{self.repo}: no git remote named {self.remote!r} "
                               f"(configured: {', '.join(names) or 'none'}; add one with `git remote add`)")
        return proc.stdout.strip()

    def current_branch(self) -> str | None:
        proc = self._run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    def head(self) -> str | None:
        return self._rev("HEAD")

    def remote_tip(self) -> str | None:
        """The fetched tip of the shared branch (None before it exists on the remote)."""
        return self._rev(self.tracking_ref)

    def dirty_paths(self) -> list[str]:
        """Tracked files with staged or unstaged changes (untracked files are not counted)."""
        out = self._run("status", "--porcelain=v1", "-z", "--untracked-files=no").stdout
        return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})

    def operation_in_progress(self) -> bool:
        git_dir = Path(self._run("rev-parse", "--absolute-git-dir").stdout.strip())
        return any((git_dir / m).exists() for m in ("rebase-merge", "rebase-apply", "MERGE_HEAD", "CHERRY_PICK_HEAD"))

    def commits_ahead(self) -> list[str]:
        """Local commits the remote branch does not have, oldest first."""
        tip = self.remote_tip()
        spec = ["HEAD"] if tip is None else [f"{tip}..HEAD"]
        out = self._run("rev-list", "--reverse", *spec).stdout
        return out.split()

    def commits_behind(self) -> int:
        tip = self.remote_tip()
        if tip is None:
            return 0
        return int(self._run("rev-list", "--count", f"HEAD..{tip}").stdout.strip() or 0)

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
        except RemoteOffline:
            raise
        except SyncGitError as exc:
            if "couldn't find remote ref" in str(exc):
                raise SyncGitError(f"remote {self.remote!r} has no branch {self.branch!r}: push it once "
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
        files: tuple[str, ...] = ()
        if self.operation_in_progress():
            out = self._run("diff", "--name-only", "--diff-filter=U", "-z", check=False).stdout
            files = tuple(sorted(p for p in out.split("\0") if p))
            self._run("rebase", "--abort", check=False)
            raise RebaseConflict(f"rebase onto {self.remote}/{self.branch} stopped on conflicts in "
                                 f"{', '.join(files) or '(unknown files)'}; aborted", files)
        raise SyncGitError(f"git rebase onto {self.remote}/{self.branch} failed in {self.repo}: "
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
        if sha is None:
            return None
        return sha, self.lease_message(sha)

    def make_lease_commit(self, message: str, parent: str | None) -> str:
        """A commit with the empty tree, ``message`` and (optionally) ``parent``."""
        args = ["commit-tree", _EMPTY_TREE, *(["-p", parent] if parent else [])]
        self._run("hash-object", "-t", "tree", "-w", "--stdin", input_text="")  # make sure the tree exists
        return self._run(*args, input_text=message).stdout.strip()

    def push_lease(self, role: str, sha: str) -> None:
        """Fast-forward ``refs/orchestrator/lease/<role>`` on the remote to ``sha`` (never forced)."""
        self._network("push", "--quiet", "--porcelain", self.remote, f"{sha}:{self.lease_ref(role)}")
        # the tracking ref is left to fetch(): the heartbeat thread must not race the poll loop's fetch for it

    def fetch_lease(self, role: str) -> str | None:
        """Fetch only the lease of ``role`` (into a ref of the writer's own, so the poll loop's
        fetch is never raced); returns its sha (None if the remote has none)."""
        refs = self.ls_remote()
        if self.lease_ref(role) not in refs:
            return None
        private = f"refs/orchestrator/writer/{self.remote}/{role}"
        self._network("fetch", "--quiet", "--no-write-fetch-head", self.remote, f"+{self.lease_ref(role)}:{private}")
        return self._rev(private)
