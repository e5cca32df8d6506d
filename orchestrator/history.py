"""Facts derived from git history: harness cycle commits, progress, dwell.

Dwell is never read from the ledger's text. It is the number of consecutive cycles
(``SUPERVISOR: <ID> — …`` commits, first-parent history, newest first) spent on a focus
since the last ``RALPH: <ID> — …`` commit that *made progress*, where progress is judged
from the commit's tree, not its message: it ticked at least one checklist item of the
item's working plan, or changed the item's fix-plan status to ``done``. The walk also stops
at a SUPERVISOR commit for another focus (cycles "in a row") and at the commit that marked
the focus ``blocked`` (an escalation resets the count once a human re-opens the item).
"""

from __future__ import annotations

import functools
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from orchestrator.documents.common import FOCUS_PATTERN, base_id
from orchestrator.gitops import GitError

__all__ = [
    "CycleCommit",
    "GitError",
    "ProgressJudge",
    "cycle_commits",
    "dwell",
    "git_show",
    "make_judge",
    "SUBJECT_RE",
]

logger = logging.getLogger(__name__)

SUBJECT_RE = re.compile(r"^(?P<kind>SUPERVISOR|RALPH): (?P<focus>" + FOCUS_PATTERN + r")\b")
_TRAILER_RE = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9-]*): (?P<value>.+)$")
_GIT_TIMEOUT_S = 60


def _git(repo: Path, *args: str, check: bool = True) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              timeout=_GIT_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {' '.join(args)} in {repo}: {exc}") from exc
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} in {repo} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def git_show(repo: Path, sha: str, path: str) -> str | None:
    """Content of ``path`` at commit ``sha`` (None when the file does not exist there)."""
    proc = subprocess.run(["git", "show", f"{sha}:{path}"], cwd=repo, capture_output=True,
                          timeout=_GIT_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class CycleCommit:
    """A harness commit. ``focus`` is the fix-plan ID (sub-step dropped); ``trailers`` are
    the ``Key: value`` lines of the message's last paragraph (e.g. ``Ledger-Entry``)."""

    sha: str
    parent: str | None
    kind: str
    focus: str
    subject: str
    committed_at: str
    trailers: dict[str, str] = field(default_factory=dict)
    changed: frozenset[str] | None = None  # paths changed vs the first parent (None: not known)


def _trailers(body: str) -> dict[str, str]:
    paragraphs = [p for p in body.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return {}
    out = {}
    for line in paragraphs[-1].splitlines():
        m = _TRAILER_RE.match(line.strip())
        if m is None:
            return {}
        out[m["key"]] = m["value"].strip()
    return out


def cycle_commits(repo: Path, rev: str = "HEAD") -> Iterator[CycleCommit]:
    """Harness commits reachable from ``rev`` along first parents, newest first, each with
    the paths it changed (one ``git log`` process for the whole history). An empty
    repository (no commits) yields nothing."""
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False).strip() == "":
        return
    out = _git(repo, "log", "--first-parent", "-z", "--name-only",
               "--format=%x1e%H%x1f%P%x1f%cI%x1f%s%x1f%b%x1f", rev)
    for record in out.split("\x1e"):
        header, _, files = record.partition("\x1f\0")
        if not header.strip():
            continue
        sha, parents, date, subject, body = (header.split("\x1f") + [""] * 5)[:5]
        m = SUBJECT_RE.match(subject)
        if m is None:
            continue
        parent = parents.split()[0] if parents.split() else None
        changed = frozenset(f for f in files.lstrip("\n").split("\0") if f)
        yield CycleCommit(sha, parent, m["kind"], base_id(m["focus"]), subject, date, _trailers(body), changed)


def changed_paths(repo: Path, sha: str) -> set[str]:
    out = _git(repo, "diff-tree", "--root", "--no-commit-id", "--name-only", "-r", "-z", sha)
    return {p for p in out.split("\0") if p}


class BlobReader:
    """``<rev>:<path>`` contents through one long-lived ``git cat-file --batch`` process."""

    def __init__(self, repo: Path) -> None:
        self.repo = Path(repo)
        self._proc: subprocess.Popen[bytes] | None = None
        self._cache: dict[str, str | None] = {}

    def read(self, rev: str, path: str) -> str | None:
        spec = f"{rev}:{path}"
        if spec not in self._cache:
            self._cache[spec] = self._query(spec)
        return self._cache[spec]

    def _query(self, spec: str) -> str | None:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(["git", "cat-file", "--batch"], cwd=self.repo, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(spec.encode() + b"\n")
        self._proc.stdin.flush()
        header = self._proc.stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            return None  # "<spec> missing" / not a file
        data = self._proc.stdout.read(int(header[2]))
        self._proc.stdout.read(1)  # trailing newline
        return data.decode("utf-8", errors="replace")

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            self._proc.wait(timeout=10)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    def __del__(self) -> None:  # a forgotten reader must not leave a git process behind
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


@dataclass
class ProgressJudge:
    """Decides progress/escalation of a commit from its tree.

    ``status_of(text, focus)`` → the item's status in a fix_plan.md text (None if absent);
    ``plan_path_of(text, focus)`` → its working-plan path; ``ticked(text)`` → number of ticked
    checklist items in an implementation.md text. Results are cached per commit.
    """

    repo: Path
    status_of: Callable[[str, str], str | None]
    plan_path_of: Callable[[str, str], str | None]
    ticked: Callable[[str], int]
    fix_plan_path: str = "docs/fix_plan.md"
    _cache: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    _blobs: BlobReader | None = None

    def _show(self, sha: str, path: str) -> str | None:
        if self._blobs is None:
            self._blobs = BlobReader(self.repo)
        return self._blobs.read(sha, path)

    def _status(self, sha: str | None, focus: str) -> str | None:
        text = self._show(sha, self.fix_plan_path) if sha else None
        if text is None:
            return None
        try:
            return self.status_of(text, focus)
        except ValueError as exc:  # a malformed historical fix plan: no verdict from it
            logger.warning("%s at %s: %s", self.fix_plan_path, sha[:10] if sha else "-", exc)
            return None

    def _ticked(self, sha: str | None, path: str) -> int:
        text = self._show(sha, path) if sha else None
        if text is None:
            return 0
        try:
            return self.ticked(text)
        except ValueError as exc:
            logger.warning("%s at %s: %s", path, sha[:10] if sha else "-", exc)
            return 0

    def _plan_path(self, sha: str, focus: str) -> str:
        text = self._show(sha, self.fix_plan_path)
        path = None
        if text is not None:
            try:
                path = self.plan_path_of(text, focus)
            except ValueError:
                path = None
        return path or f"plans/active/{focus}/implementation.md"

    def _changed(self, commit: CycleCommit) -> frozenset[str]:
        return commit.changed if commit.changed is not None else frozenset(changed_paths(self.repo, commit.sha))

    def made_progress(self, commit: CycleCommit) -> bool:
        """RALPH commit ticked plan items or set the item ``done``."""
        key = ("progress", commit.sha, commit.focus)
        if key not in self._cache:
            changed = self._changed(commit)
            result = False
            if self.fix_plan_path not in changed and not any(p.endswith(".md") and p.startswith("plans/")
                                                             for p in changed):
                self._cache[key] = False  # neither the fix plan nor any plan file: nothing to read
                return False
            if self.fix_plan_path in changed:
                result = (self._status(commit.sha, commit.focus) == "done"
                          and self._status(commit.parent, commit.focus) != "done")
            plan = self._plan_path(commit.sha, commit.focus)
            if not result and plan in changed:
                result = self._ticked(commit.sha, plan) > self._ticked(commit.parent, plan)
            self._cache[key] = result
        return self._cache[key]

    def escalated(self, commit: CycleCommit, focus: str) -> bool:
        """The commit changed ``focus``'s status to ``blocked``."""
        key = ("blocked", commit.sha, focus)
        if key not in self._cache:
            result = False
            if self.fix_plan_path in self._changed(commit):
                result = (self._status(commit.sha, focus) == "blocked"
                          and self._status(commit.parent, focus) != "blocked")
            self._cache[key] = result
        return self._cache[key]


def dwell(commits: Iterable[CycleCommit], focus: str, judge: ProgressJudge) -> int:
    """Consecutive cycles on ``focus`` without progress; ``commits`` newest first."""
    focus = base_id(focus)
    count = 0
    for commit in commits:
        if commit.kind == "RALPH":
            if commit.focus == focus and judge.made_progress(commit):
                break
            continue
        if judge.escalated(commit, focus):
            break
        if commit.focus != focus:
            break
        count += 1
    return count


def make_judge(repo: Path) -> ProgressJudge:
    """A :class:`ProgressJudge` reading the harness's fix plan and working plans."""
    from orchestrator.documents import fix_plan as fix_plan_doc
    from orchestrator.documents import plan as plan_doc
    from orchestrator.documents.errors import DocumentError

    @functools.lru_cache(maxsize=256)
    def parsed(text: str) -> fix_plan_doc.FixPlan:
        try:
            return fix_plan_doc.parse(text)
        except DocumentError as exc:
            raise ValueError(str(exc)) from exc

    def status_of(text: str, focus: str) -> str | None:
        doc = parsed(text)
        return doc.item(focus).status if doc.has(focus) else None

    def plan_path_of(text: str, focus: str) -> str | None:
        doc = parsed(text)
        return doc.item(focus).working_plan if doc.has(focus) else None

    def ticked(text: str) -> int:
        try:
            return sum(1 for it in plan_doc.parse(text).items if it.checked)
        except DocumentError as exc:
            raise ValueError(str(exc)) from exc

    return ProgressJudge(Path(repo), status_of, plan_path_of, ticked)
