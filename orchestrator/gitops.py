"""Git operations for the harness (GitPython): guards, owned-path commits, history queries,
worktrees.

The harness only ever commits the documents it owns (:func:`owned_paths`); anything else in
the checkout is left exactly as it was, staged or not. Before committing it refuses to act
on a repository in a state a human should look at (wrong branch, detached HEAD, a rebase,
merge, cherry-pick, revert or bisect in progress, or staged changes it does not own), and
it scans the added lines of what it staged for credentials.
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import git

from orchestrator.run_record import ROLES, check_focus_id
from orchestrator.secrets import SecretHit, scan_lines

__all__ = [
    "CommitInfo", "CommitResult", "GitError", "GitGuardError", "GitRepo",
    "commit_message", "is_owned", "owned_paths",
]

logger = logging.getLogger(__name__)

_OWNED_FILES = ("input.md", "galph_memory.md", "docs/fix_plan.md", "docs/findings.md")
_IN_PROGRESS = (
    ("rebase-merge", "a rebase"), ("rebase-apply", "a rebase or `git am`"),
    ("MERGE_HEAD", "a merge"), ("CHERRY_PICK_HEAD", "a cherry-pick"),
    ("REVERT_HEAD", "a revert"), ("BISECT_LOG", "a bisect"),
)
_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,64}$")
_HUNK_RE = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")
_CHUNK = 200  # paths per git invocation (command-line length)


class GitError(RuntimeError):
    """A git command failed or the repository is unusable; the message says which."""


class GitGuardError(GitError):
    """The repository is in a state the harness must not commit in."""


def run_git(repo: Path, *args: str, timeout_s: float = 120) -> str:
    """``git ARGS`` in ``repo`` without GitPython (e.g. before a repo object exists); stdout stripped.

    Raises GitError naming the command, the directory and git's stderr.
    """
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def owned_paths(focus_id: str) -> list[str]:
    """Paths the harness may commit for ``focus_id`` (``**`` = everything below)."""
    return [*_OWNED_FILES, f"plans/active/{check_focus_id(focus_id)}/**"]


def is_owned(path: str, focus_id: str | None) -> bool:
    """True if repo-relative POSIX ``path`` is one of ``owned_paths(focus_id)``."""
    if path in _OWNED_FILES:
        return True
    return focus_id is not None and path.startswith(f"plans/active/{check_focus_id(focus_id)}/")


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


class CommitInfo(NamedTuple):
    sha: str
    subject: str
    when: datetime  # committer date, timezone-aware


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


def _lit(path: str) -> str:
    return f":(literal){path}"


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class GitRepo:
    """A working tree (main checkout or linked worktree) at ``path``."""

    def __init__(self, path: Path) -> None:
        try:
            self.repo = git.Repo(Path(path))
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise GitError(f"{path}: not a git repository ({type(exc).__name__})") from exc
        if self.repo.working_tree_dir is None:
            raise GitError(f"{path}: bare repository, need a working tree")
        self.root = Path(self.repo.working_tree_dir)

    def _git(self, *args: str, **kwargs: object) -> str:
        try:
            return self.repo.git.execute(["git", *args], **kwargs)  # type: ignore[call-overload]
        except git.GitCommandError as exc:
            stderr = (exc.stderr or "").strip().removeprefix("stderr: ").strip("'\n ")
            raise GitError(f"git {' '.join(args[:3])} failed in {self.root}: {stderr}") from exc

    # ---- state -------------------------------------------------------------------------
    def has_commits(self) -> bool:
        return self.repo.git.execute(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"], with_exceptions=False
        ) != ""

    def head_sha(self) -> str:
        if not self.has_commits():
            raise GitError(f"{self.root}: repository has no commits yet")
        return self._git("rev-parse", "HEAD")

    def branch(self) -> str:
        """Current branch name; GitGuardError on a detached HEAD."""
        if self.repo.head.is_detached:
            raise GitGuardError(f"{self.root}: HEAD is detached (at {self.head_sha()[:12]}); "
                                "check out a branch first")
        return self.repo.head.ref.name

    def is_dirty(self, untracked: bool = True) -> bool:
        return self.repo.is_dirty(untracked_files=untracked)

    def operation_in_progress(self) -> str | None:
        """'a rebase', 'a merge', … if one is in progress in this worktree, else None."""
        gdir = Path(self.repo.git_dir)
        for marker, what in _IN_PROGRESS:
            if (gdir / marker).exists():
                return what
        return None

    def staged_paths(self) -> list[str]:
        out = self._git("diff", "--cached", "--name-only", "--no-renames", "-z")
        return [p for p in out.split("\0") if p]

    def guard(self, expected_branch: str | None = None, focus_id: str | None = None) -> str:
        """Refuse (GitGuardError) unless it is safe to commit; returns the branch name.

        Checks: no rebase/merge/cherry-pick/revert/bisect in progress, HEAD on a branch,
        the branch is ``expected_branch`` (when given), nothing staged outside
        ``owned_paths(focus_id)`` (with no focus, only the root documents are owned).
        """
        op = self.operation_in_progress()
        if op:
            raise GitGuardError(f"{self.root}: {op} is in progress; finish or abort it first")
        branch = self.branch()
        if expected_branch is not None and branch != expected_branch:
            raise GitGuardError(f"{self.root}: on branch {branch!r}, expected {expected_branch!r}")
        foreign = [p for p in self.staged_paths() if not is_owned(p, focus_id)]
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else "")
            raise GitGuardError(f"{self.root}: changes staged outside the harness's owned paths: "
                                f"{shown}; commit or unstage them first")
        return branch

    # ---- committing --------------------------------------------------------------------
    def changed_owned_paths(self, focus_id: str) -> list[str]:
        """Owned files that differ from HEAD (modified, added, deleted, untracked; not ignored)."""
        specs = [*_OWNED_FILES, f"plans/active/{check_focus_id(focus_id)}"]
        out = self._git("status", "--porcelain=v1", "-z", "--untracked-files=all",
                        "--no-renames", "--", *specs)
        return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})

    def _index_entries(self, paths: Sequence[str]) -> dict[str, tuple[str, str]]:
        entries: dict[str, tuple[str, str]] = {}
        for chunk in _chunks(paths):
            out = self._git("ls-files", "-s", "-z", "--", *map(_lit, chunk))
            for line in filter(None, out.split("\0")):
                meta, path = line.split("\t", 1)
                mode, sha, _stage = meta.split()
                entries[path] = (mode, sha)
        return entries

    def _restore_index(self, paths: Sequence[str], before: dict[str, tuple[str, str]]) -> None:
        """Put the index entries of ``paths`` back to ``before`` (absent = not in index)."""
        gone = [p for p in paths if p not in before]
        for chunk in _chunks(gone):
            self._git("update-index", "--force-remove", "--", *chunk)
        back = [p for p in paths if p in before]
        for chunk in _chunks(back):
            args = [a for p in chunk for a in ("--cacheinfo", f"{before[p][0]},{before[p][1]},{p}")]
            self._git("update-index", "--add", *args)

    def _head_entries(self, paths: Sequence[str]) -> dict[str, tuple[str, str]]:
        if not self.has_commits():
            return {}
        entries = {}
        for chunk in _chunks(paths):
            out = self._git("ls-tree", "-z", "HEAD", "--", *map(_lit, chunk))
            for line in filter(None, out.split("\0")):
                meta, path = line.split("\t", 1)
                mode, _kind, sha = meta.split()
                entries[path] = (mode, sha)
        return entries

    def _scan_staged(self, paths: Sequence[str]) -> list[SecretHit]:
        """Secret patterns in the lines the staged diff adds (binary files are skipped)."""
        hits: list[SecretHit] = []
        for chunk in _chunks(paths):
            raw = self._git("-c", "core.quotepath=off", "diff", "--cached", "-U0", "--no-color",
                            "--no-ext-diff", "--no-renames", "--", *map(_lit, chunk),
                            stdout_as_string=False)
            path, lineno, in_header = "", 0, False
            for line in raw.decode("utf-8", errors="replace").splitlines():  # type: ignore[union-attr]
                if line.startswith("diff --git "):
                    path, in_header = "", True
                elif in_header and line.startswith("+++ "):
                    path = line[6:] if line.startswith("+++ b/") else ""
                elif (m := _HUNK_RE.match(line)) is not None:
                    lineno, in_header = int(m.group(1)), False
                elif not in_header and line.startswith("+") and path:
                    hits += scan_lines([(lineno, line[1:])], path)
                    lineno += 1
        return hits

    def commit_owned(
        self, role: str, focus_id: str, message: str, max_commit_bytes: int | None,
        expected_branch: str | None = None, commit_args: Sequence[str] = (),
    ) -> CommitResult:
        """Stage and commit the owned files that changed, nothing else.

        Files above ``max_commit_bytes`` are left out (listed in ``skipped_large``; if they
        were already staged they are unstaged). If the added lines hold a credential, the
        index is put back as it was and the result carries ``refused_reason``.
        Raises GitGuardError when :meth:`guard` refuses, GitError if git fails (the index is
        restored first). ``commit_args``: extra ``git commit`` options (``-S`` to sign).
        """
        full_message = commit_message(role, focus_id, message)
        if max_commit_bytes is not None and max_commit_bytes <= 0:
            raise ValueError(f"max_commit_bytes must be positive or None, got {max_commit_bytes}")
        self.guard(expected_branch, focus_id)
        changed = self.changed_owned_paths(focus_id)
        to_stage: list[str] = []
        large: list[tuple[str, int]] = []
        for rel in changed:
            full = self.root / rel
            size = full.lstat().st_size if full.is_file() or full.is_symlink() else 0
            if max_commit_bytes is not None and size > max_commit_bytes:
                large.append((rel, size))
            else:
                to_stage.append(rel)
        large_paths = [p for p, _ in large]
        before = self._index_entries(changed)
        try:
            for chunk in _chunks(to_stage):
                self._git("add", "--all", "--", *map(_lit, chunk))
            if large_paths:  # pre-staged large files go back to their HEAD version
                self._restore_index(large_paths, self._head_entries(large_paths))
            staged = self.staged_paths()
            if not staged:
                return CommitResult(None, (), tuple(large))
            hits = self._scan_staged(staged)
            if hits:
                self._restore_index(changed, before)
                shown = "; ".join(str(h) for h in hits[:5])
                reason = f"refusing to commit: {len(hits)} secret-like string(s) staged: {shown}"
                logger.error("%s", reason)
                return CommitResult(None, (), tuple(large), reason, tuple(hits), full_message)
            self._git("commit", "-q", *commit_args, "-m", full_message)
        except BaseException:
            self._restore_index(changed, before)
            raise
        sha = self.head_sha()
        logger.info("committed %s (%d files): %s", sha[:12], len(staged), full_message.splitlines()[0])
        return CommitResult(sha, tuple(staged), tuple(large), None, (), full_message)

    # ---- history -----------------------------------------------------------------------
    def log_commits(
        self, grep_prefix: str, focus_id: str | None = None, rev: str = "HEAD",
        max_count: int | None = None,
    ) -> list[CommitInfo]:
        """Commits reachable from ``rev`` whose subject starts with ``grep_prefix`` (e.g.
        ``"RALPH:"``) and, when ``focus_id`` is given, names that focus right after the
        prefix (``RALPH: <ID> — …``). Newest first."""
        if not self.has_commits():
            return []
        focus_re = None
        if focus_id is not None:
            focus_re = re.compile(rf"^{re.escape(grep_prefix)}:?\s*{re.escape(focus_id)}(?:\s|$)")
        grep = [f"--grep=^{grep_prefix}"] if re.fullmatch(r"[A-Za-z0-9_ :-]+", grep_prefix) else []
        out = self._git("log", "--format=%H%x1f%s%x1f%cI%x1e", *grep, rev)
        commits: list[CommitInfo] = []
        for record in filter(None, (r.strip("\n") for r in out.split("\x1e"))):
            sha, subject, when = record.split("\x1f")
            if not subject.startswith(grep_prefix):
                continue
            if focus_re is not None and not focus_re.match(subject):
                continue
            commits.append(CommitInfo(sha, subject, datetime.fromisoformat(when)))
            if max_count is not None and len(commits) >= max_count:
                break
        return commits

    def commit_exists(self, sha: str) -> bool:
        if not isinstance(sha, str) or not _SHA_RE.match(sha):
            return False
        out = self.repo.git.execute(["git", "cat-file", "-t", sha], with_exceptions=False)
        return out.strip() == "commit"

    # ---- worktrees ---------------------------------------------------------------------
    def worktree_add(self, path: Path, branch: str, start_point: str = "HEAD") -> GitRepo:
        """Linked worktree at ``path`` on ``branch`` (created from ``start_point`` if new)."""
        self._git("check-ref-format", "--branch", branch)
        exists = self.repo.git.execute(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            with_exceptions=False,
        )
        if exists:
            self._git("worktree", "add", "--quiet", str(path), branch)
        else:
            self._git("worktree", "add", "--quiet", "-b", branch, str(path), start_point)
        return GitRepo(Path(path))

    def worktree_remove(self, path: Path, force: bool = False) -> None:
        self._git("worktree", "remove", *(["--force"] if force else []), str(path))
        self._git("worktree", "prune")
