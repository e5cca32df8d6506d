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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from orchestrator.documents.common import FOCUS_PATTERN, base_id
from orchestrator.layout import Layout
from orchestrator.vcs.repo import GitRepo

__all__ = ["SUBJECT_RE", "CycleCommit", "ProgressJudge", "cycle_commits", "dwell", "make_judge"]

logger = logging.getLogger(__name__)

SUBJECT_RE = re.compile(r"^(?P<kind>SUPERVISOR|RALPH): (?P<focus>" + FOCUS_PATTERN + r")\b")
_TRAILER_RE = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9-]*): (?P<value>.+)$")


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


def cycle_commits(git: GitRepo, rev: str = "HEAD") -> Iterator[CycleCommit]:
    """Harness commits reachable from ``rev`` along first parents, newest first, each with
    the paths it changed (one ``git log`` process for the whole history). An empty
    repository (no commits) yields nothing."""
    if not git.rev_exists(rev):
        return
    for record in git.log_first_parent(rev).split("\x1e"):
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


@dataclass
class ProgressJudge:
    """Decides progress/escalation of a commit from its tree.

    ``status_of(text, focus)`` → the item's status in a fix_plan.md text (None if absent);
    ``plan_path_of(text, focus)`` → its working-plan path; ``ticked(text)`` → number of ticked
    checklist items in an implementation.md text. Results are cached per commit.
    """

    git: GitRepo
    status_of: Callable[[str, str], str | None]
    plan_path_of: Callable[[str, str], str | None]
    ticked: Callable[[str], int]
    fix_plan_path: str = Layout.FIX_PLAN
    _cache: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    _blobs: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def _show(self, sha: str, path: str) -> str | None:
        if (sha, path) not in self._blobs:
            self._blobs[(sha, path)] = self.git.read_blob(sha, path)
        return self._blobs[(sha, path)]

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
        return Layout.plan_rel(focus, path)

    def _changed(self, commit: CycleCommit) -> frozenset[str]:
        return commit.changed if commit.changed is not None else frozenset(self.git.changed_paths(commit.sha))

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


def make_judge(git: GitRepo) -> ProgressJudge:
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

    return ProgressJudge(git, status_of, plan_path_of, ticked)
