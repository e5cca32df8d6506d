"""The harness's one git gateway: every git command of the orchestrator runs here.

:class:`GitRepo` wraps one working tree (main checkout or linked worktree) and is created once
per command (the harness context holds it). It offers state queries (head, branch, dirty,
tracked/ignored paths, config), history reads (``show``, ``read_blob``, ``changed_paths``,
logs), guarded owned-path commits, worktrees and ``pull_rebase``; fetch and push with
rejection handling live in :mod:`orchestrator.vcs.remote`. GitPython backs the repository
object; plain ``git`` subprocesses (bounded by a timeout, stdin closed) serve porcelain reads and
the gateway's topic classes (:mod:`orchestrator.vcs.remote`, :mod:`orchestrator.vcs.signatures`),
which build arguments and run them through :meth:`GitRepo._run`. No other module runs git.

Commits (:meth:`GitRepo.commit_owned`) stage only the harness's owned paths
(:mod:`orchestrator.vcs.owned`) and the agent changes the commit policy accepted, leave
everything else as it was, refuse a repository a human should look at (wrong branch, detached
HEAD, an operation in progress, foreign staged changes) and staged text holding a credential.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import git

from orchestrator.layout import Layout
from orchestrator.vcs.owned import CommitResult, commit_message, is_owned
from orchestrator.vcs.secret_scan import SecretHit, scan_diff

__all__ = ["GitError", "GitGuardError", "GitRepo", "GitTimeout"]

logger = logging.getLogger(__name__)

_OWNED_FILES = Layout.OWNED_FILES
_IN_PROGRESS = (("rebase-merge", "a rebase"), ("rebase-apply", "a rebase or `git am`"), ("MERGE_HEAD", "a merge"),
                ("CHERRY_PICK_HEAD", "a cherry-pick"), ("REVERT_HEAD", "a revert"), ("BISECT_LOG", "a bisect"))
_CHUNK = 200  # paths per git invocation (command-line length)
_TIMEOUT_S = 120


class GitError(RuntimeError):
    """A git command failed or the repository is unusable; the message says which."""


class GitGuardError(GitError):  # the repository is in a state the harness must not commit in
    pass


class GitTimeout(GitError):
    """A git command ran past its time limit (for a network command: the remote is unreachable)."""


def _lit(path: str) -> str:
    return f":(literal){path}"


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _run_git(cwd: Path, *args: str, check: bool = True, input: str | None = None,
             timeout_s: float = _TIMEOUT_S, text: bool = True,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """``git ARGS`` in ``cwd`` as a bounded subprocess; GitError (naming the command, the
    directory and git's stderr) when it cannot run, times out, or (``check``) fails."""
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=text, input=input,
                              timeout=timeout_s, stdin=None if input is not None else subprocess.DEVNULL,
                              check=False, env=full_env)
    except subprocess.TimeoutExpired as exc:
        raise GitTimeout(f"git {' '.join(args[:3])} in {cwd} timed out after {exc.timeout:g} s") from exc
    except OSError as exc:
        raise GitError(f"git {' '.join(args)} in {cwd}: {exc}") from exc
    if check and proc.returncode != 0:
        stderr = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode("utf-8", "replace")
        raise GitError(f"git {' '.join(args)} in {cwd} failed ({proc.returncode}): {stderr.strip()}")
    return proc


class GitRepo:
    """A working tree (main checkout or linked worktree) at ``path``.

    ``env``: extra environment for every git command (e.g. the harness's commit identity,
    see :func:`orchestrator.context.identity_env`).
    """

    def __init__(self, path: Path, env: Mapping[str, str] | None = None) -> None:
        try:
            self.repo = git.Repo(Path(path))
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise GitError(f"{path}: not a git repository ({type(exc).__name__})") from exc
        if self.repo.working_tree_dir is None:
            raise GitError(f"{path}: bare repository, need a working tree")
        self.root = Path(self.repo.working_tree_dir)
        self.env = dict(env or {})
        if self.env:
            self.repo.git.update_environment(**self.env)

    @staticmethod
    def toplevel(start: Path) -> Path | None:
        """The root of the work tree containing directory ``start``; None outside any."""
        start = Path(start)
        if not start.is_dir():
            return None
        proc = _run_git(start, "rev-parse", "--show-toplevel", check=False)
        return Path(proc.stdout.strip()) if proc.returncode == 0 else None

    def _git(self, *args: str, **kwargs: object) -> str:
        try:
            return self.repo.git.execute(["git", *args], **kwargs)  # type: ignore[call-overload]
        except git.GitCommandError as exc:
            stderr = (exc.stderr or "").strip().removeprefix("stderr: ").strip("'\n ")
            raise GitError(f"git {' '.join(args[:3])} failed in {self.root}: {stderr}") from exc

    def _run(self, *args: str, check: bool = True, input: str | None = None, timeout_s: float = _TIMEOUT_S,
             text: bool = True, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """``git ARGS`` as a thread-safe subprocess, ``env`` added to :attr:`env` (topic classes too)."""
        return _run_git(self.root, *args, check=check, input=input, timeout_s=timeout_s, text=text,
                        env={**self.env, **(env or {})})

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

    def current_branch(self) -> str | None:
        """Current branch name; None on a detached HEAD."""
        return None if self.repo.head.is_detached else self.repo.head.ref.name

    def symbolic_ref(self) -> str:
        """``refs/heads/<branch>``, or ``(detached)``."""
        return self._run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip() or "(detached)"

    def is_dirty(self, untracked: bool = True) -> bool:
        return self.repo.is_dirty(untracked_files=untracked)

    def status_lines(self) -> list[str]:
        """``git status --porcelain=v1`` lines, untracked files listed one by one."""
        return self._run("status", "--porcelain=v1", "--untracked-files=all").stdout.splitlines()

    def rev_parse(self, rev: str) -> str:
        """Full sha of the commit ``rev`` names (GitError if it names none)."""
        return self._run("rev-parse", "--verify", f"{rev}^{{commit}}").stdout.strip()

    def rev_exists(self, rev: str) -> bool:
        return self._run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False).stdout.strip() != ""

    def common_dir(self) -> Path:
        """The git directory shared by all worktrees (absolute)."""
        out = Path(self._run("rev-parse", "--git-common-dir").stdout.strip())
        return out if out.is_absolute() else self.root / out

    def is_tracked(self, path: str) -> bool:
        return self._run("ls-files", "--error-unmatch", "--", path, check=False).returncode == 0

    def is_ignored(self, path: str) -> bool:
        return self._run("check-ignore", "-q", "--", path, check=False).returncode == 0

    def checkout_paths(self, paths: Sequence[str], rev: str = "HEAD") -> None:
        """Put ``paths`` (tracked at ``rev``) back to their content at ``rev``."""
        if paths:
            self._run("checkout", rev, "--", *paths)

    def config_get(self, key: str) -> str | None:
        """``git config --get KEY`` (None when unset or empty)."""
        proc = self._run("config", "--get", key, check=False, timeout_s=30)
        return proc.stdout.strip() or None if proc.returncode == 0 else None

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
    def worktree_changes(self, *specs: str) -> list[str]:
        """Paths (under ``specs``, default all) that differ from HEAD in the work tree:
        modified, added, deleted, untracked; git-ignored files left out. Sorted."""
        out = self._git("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", "--", *specs)
        return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})

    def changed_owned_paths(self, focus_id: str) -> list[str]:  # owned files that differ from HEAD
        return self.worktree_changes(*_OWNED_FILES, Layout.item_rel(focus_id))

    def commit_secret_hits(self, sha: str) -> list[SecretHit]:  # in the lines ``sha`` adds (binary skipped)
        raw = self._run("-c", "core.quotepath=off", "show", "--format=", "-U0", "--no-color", "--no-ext-diff",
                        "--no-renames", sha, text=False).stdout
        return scan_diff(raw.decode("utf-8", errors="replace"))

    def diff_stat(self, since: str) -> str:  # work tree against ``since`` (untracked files not shown)
        return self._run("diff", "--stat", "--no-color", since, check=False).stdout.rstrip()

    def _entries(self, paths: Sequence[str], *args: str) -> dict[str, tuple[str, str]]:
        """``path -> (mode, blob sha)`` from ``ls-files -s`` (the index) or ``ls-tree HEAD``."""
        entries: dict[str, tuple[str, str]] = {}
        for chunk in _chunks(paths):
            out = self._git(*args, "-z", *(["HEAD"] if args[0] == "ls-tree" else []), "--", *map(_lit, chunk))
            for line in filter(None, out.split("\0")):
                meta, path = line.split("\t", 1)
                mode, *rest = meta.split()
                entries[path] = (mode, rest[0] if args[0] == "ls-files" else rest[1])
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

    def _scan_staged(self, paths: Sequence[str]) -> list[SecretHit]:
        """Secret patterns in the lines the staged diff adds (binary files are skipped)."""
        hits: list[SecretHit] = []
        for chunk in _chunks(paths):
            raw = self._git("-c", "core.quotepath=off", "diff", "--cached", "-U0", "--no-color",
                            "--no-ext-diff", "--no-renames", "--", *map(_lit, chunk),
                            stdout_as_string=False)
            hits += scan_diff(raw.decode("utf-8", errors="replace"))  # type: ignore[union-attr]
        return hits

    def commit_owned(
        self, role: str, focus_id: str, message: str, max_commit_bytes: int | None,
        expected_branch: str | None = None, extra_paths: Sequence[str] = (), skip_paths: Sequence[str] = (),
        commit_args: Sequence[str] = (),
    ) -> CommitResult:
        """Stage and commit the owned files that changed, and ``extra_paths`` (an agent's
        changes its commit policy accepted), nothing else; ``skip_paths`` (refused by the
        policy) stay uncommitted.

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
        changed = sorted({*self.changed_owned_paths(focus_id), *extra_paths} - set(skip_paths))
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
        before = self._entries(changed, "ls-files", "-s")
        try:
            for chunk in _chunks(to_stage):
                self._git("add", "--all", "--", *map(_lit, chunk))
            if large_paths:  # pre-staged large files go back to their HEAD version
                self._restore_index(large_paths, (self._entries(large_paths, "ls-tree") if self.has_commits() else {}))
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
    def log_first_parent(self, rev: str = "HEAD") -> str:
        """Raw first-parent log of ``rev`` with changed paths: records separated by ``\\x1e``,
        fields ``sha, parents, committer date, subject, body`` by ``\\x1f``, then the NUL-
        separated names (parsed by :func:`orchestrator.vcs.history.cycle_commits`)."""
        return self._run("log", "--first-parent", "-z", "--name-only",
                         "--format=%x1e%H%x1f%P%x1f%cI%x1f%s%x1f%b%x1f", rev).stdout

    def log_subjects(self, rev_range: str) -> list[tuple[str, str]]:
        """``(sha, subject)`` of the commits in ``rev_range`` (e.g. ``base..branch``), newest first."""
        out = self._run("log", "--format=%H%x1f%s", rev_range).stdout
        return [tuple(line.split("\x1f", 1)) for line in out.splitlines() if line]  # type: ignore[misc]

    def describe_head(self) -> str:
        """``<short sha> (<refs>)`` of HEAD, for page footers."""
        return self._run("log", "-1", "--format=%h%d", timeout_s=10).stdout.strip()

    def show(self, rev: str, path: str) -> str | None:
        """Content of ``path`` at ``rev`` (None when the file does not exist there)."""
        proc = self._run("show", f"{rev}:{path}", check=False, text=False)
        return proc.stdout.decode("utf-8", errors="replace") if proc.returncode == 0 else None

    def changed_paths(self, sha: str) -> set[str]:
        """Paths commit ``sha`` changed against its first parent (all of them for a root commit)."""
        out = self._run("diff-tree", "--root", "--no-commit-id", "--name-only", "-r", "-z", sha).stdout
        return {p for p in out.split("\0") if p}

    def known_commits(self, shas: Iterable[str]) -> set[str] | None:
        """Which of ``shas`` name commits of this repository (None when git cannot tell)."""
        wanted = sorted(shas)
        if not wanted:
            return set()
        proc = self._run("cat-file", "--batch-check=%(objecttype)", check=False,
                         input="".join(f"{s}^{{commit}}\n" for s in wanted), timeout_s=60)
        answers = proc.stdout.splitlines()
        if proc.returncode != 0 or len(answers) != len(wanted):
            return None
        return {sha for sha, kind in zip(wanted, answers, strict=True) if kind.strip() == "commit"}

    def read_blob(self, rev: str, path: str) -> str | None:
        """Like :meth:`show`, through GitPython's long-lived ``cat-file --batch`` process (for
        many reads); None when ``path`` is no file at ``rev``."""
        try:
            _sha, kind, _size, data = self.repo.git.get_object_data(f"{rev}:{path}")
        except ValueError:  # "<rev>:<path> missing"
            return None
        return data.decode("utf-8", errors="replace") if kind in (b"blob", "blob") else None

    # ---- remotes -----------------------------------------------------------------------
    def upstream(self) -> str | None:
        """The upstream of the current branch (``origin/main``), None when there is none."""
        proc = self._run("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def pull_rebase(self, timeout_s: float = _TIMEOUT_S) -> subprocess.CompletedProcess:
        """``git pull --rebase --no-autostash`` (not checked). GitError on a timeout."""
        return self._run("pull", "--rebase", "--no-autostash", check=False, timeout_s=timeout_s)

    # ---- worktrees ---------------------------------------------------------------------
    def worktree_add(self, path: Path, branch: str, start_point: str = "HEAD") -> GitRepo:
        """Linked worktree at ``path`` on ``branch`` (created from ``start_point`` if new)."""
        self._git("check-ref-format", "--branch", branch)
        if self.rev_exists(f"refs/heads/{branch}"):
            self._git("worktree", "add", "--quiet", str(path), branch)
        else:
            self._git("worktree", "add", "--quiet", "-b", branch, str(path), start_point)
        return GitRepo(Path(path), self.env)

    def worktree_add_detached(self, path: Path, rev: str) -> None:
        """Linked worktree at ``path`` with a detached HEAD at ``rev``."""
        self._run("worktree", "add", "--quiet", "--detach", str(path), rev)

    def worktree_remove(self, path: Path, force: bool = False, check: bool = True) -> None:
        """Remove the linked worktree at ``path`` and prune stale entries (``check=False``:
        best effort, failures ignored)."""
        self._run("worktree", "remove", *(["--force"] if force else []), str(path), check=check)
        self._run("worktree", "prune", check=check)
