"""An external worker agent's turn, judged from evidence (never from the agent's claims).

Before the turn: HEAD, the working plan's checkboxes and the exit criteria
(:func:`observe_before`). After it (:func:`judge`): the agent's own commits (listed, their added
lines scanned for secrets), the working plan (it must still parse; an invalid plan is kept as
an artifact and the previous one restored), the work-tree changes split by the commit policy
(``commit: {include, exclude}``, ``max_commit_bytes``, the secret scan) into paths the RALPH
commit takes and refused paths that stay uncommitted, then
:func:`orchestrator.turns.progress.judge_turn`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.agents.base import AgentResult
from orchestrator.context import HarnessContext
from orchestrator.cycle.supervisor_agent import keep_valid_documents
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import ledger as ledger_doc
from orchestrator.documents import plan as plan_doc
from orchestrator.documents.errors import DocumentError
from orchestrator.execution.steps import PlannedCheck, run_checks
from orchestrator.fsutil import atomic_write_text
from orchestrator.layout import Layout
from orchestrator.records.artifacts import CriterionRecord
from orchestrator.turns.commit_policy import REVIEW_REASONS, Refusal, select_paths
from orchestrator.turns.progress import ProgressVerdict, TurnEvidence, judge_turn
from orchestrator.vcs.owned import is_owned
from orchestrator.vcs.secret_scan import scan_text

__all__ = ["AgentTurn", "Before", "judge", "ledger_refusals", "observe_before", "update_plans"]

logger = logging.getLogger(__name__)

#: text files above this size are not read for the secret scan (they are oversize anyway
#: unless max_commit_bytes is larger)
_SCAN_LIMIT = 8 * 1024 * 1024


@dataclass(frozen=True)
class Before:
    """What the harness saw before the turn: HEAD, the working plan (path, text, checkbox
    states by item id), the exit criteria (``"<n>" -> passed``) and the paths already
    changed in the work tree (``(mtime_ns, size)``; None = deleted): those stay the user's
    unless the agent touches them."""

    head: str
    plan_path: Path
    plan_text: str | None
    plan_states: Mapping[str, bool]
    criteria: Mapping[str, bool | None]
    dirty: Mapping[str, tuple[int, int] | None] = field(default_factory=dict)
    fix_plan: bytes | None = None


def _plan_path(ctx: HarnessContext, focus: str) -> Path:
    item = fix_plan_doc.load(ctx.layout.fix_plan).item(focus)
    return ctx.layout.plan_of(focus, item.working_plan)


def _states(plan: plan_doc.Plan) -> dict[str, bool]:
    return {it.id: it.checked for it in plan.items}


def _criteria(records: Sequence[CriterionRecord]) -> dict[str, bool | None]:
    return {str(c.index): c.ok for c in records}


def observe_before(ctx: HarnessContext, focus: str, checks: Sequence[PlannedCheck], report: Path,
                   env: Mapping[str, str]) -> Before:
    """Record HEAD, the plan's checkboxes and the criteria (logs under ``report/before/``)."""
    path = _plan_path(ctx, focus)
    text = path.read_text(encoding="utf-8") if path.exists() else None
    states = _states(plan_doc.load(path)) if text is not None else {}
    criteria = run_checks(checks, ctx.repo, report / "before", env, ctx.config.check_timeout_s) if checks else ()
    dirty = {p: _stamp(ctx.repo, p) for p in ctx.git.worktree_changes()}
    fix_plan = ctx.layout.fix_plan.read_bytes() if ctx.layout.fix_plan.exists() else None
    return Before(ctx.git.head_sha(), path, text, states, _criteria(criteria), dirty, fix_plan)


def _stamp(root: Path, rel: str) -> tuple[int, int] | None:
    try:
        st = (root / rel).lstat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class AgentTurn:
    """The judgement and what the RALPH commit takes (``stage``) or leaves (``refused``)."""

    verdict: ProgressVerdict
    stage: tuple[str, ...]
    refused: tuple[Refusal, ...]
    commits: tuple[tuple[str, str], ...]
    outcome: AgentResult
    plan_problems: tuple[str, ...] = ()

    def record(self, name: str) -> dict[str, Any]:
        """run.json's ``agent`` object."""
        usage = self.outcome.usage
        return {"name": name, "status": self.verdict.status.value, "rc": self.outcome.rc,
                "message": self.outcome.message,
                "usage": usage.to_dict() if usage is not None else None,
                "commits": [{"sha": sha, "subject": subject} for sha, subject in self.commits],
                "committed": list(self.stage), "refused": [r.to_dict() for r in self.refused],
                "plan_problems": list(self.plan_problems), "verdict": self.verdict.to_dict()}


def _size(root: Path, rel: str) -> int | None:
    path = root / rel
    return path.lstat().st_size if path.is_file() or path.is_symlink() else None


def _text(root: Path, rel: str) -> str | None:
    path = root / rel
    try:
        if path.stat().st_size > _SCAN_LIMIT:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def _plan_after(ctx: HarnessContext, before: Before, report: Path) -> tuple[dict[str, bool], tuple[str, ...]]:
    """Checkbox states after the turn; an unparseable plan is kept and the previous restored."""
    try:
        return _states(plan_doc.load(before.plan_path)), ()
    except (DocumentError, OSError, ValueError) as exc:
        keep = report / "agent" / "invalid_implementation.md"
        keep.parent.mkdir(parents=True, exist_ok=True)
        if before.plan_path.exists():
            keep.write_bytes(before.plan_path.read_bytes())
        if before.plan_text is not None:
            atomic_write_text(before.plan_path, before.plan_text)
        logger.warning("%s: the agent left an invalid plan (%s); kept as %s, previous restored",
                       before.plan_path, exc, keep)
        return dict(before.plan_states), (f"{ctx.rel(before.plan_path)}: {exc}",)


def judge(ctx: HarnessContext, focus: str, before: Before, outcome: AgentResult,
          criteria: Sequence[CriterionRecord], report: Path) -> AgentTurn:
    """Collect the evidence of the turn and judge it (see the module docstring)."""
    git = ctx.git
    commits = tuple(git.log_subjects(f"{before.head}..HEAD")) if git.head_sha() != before.head else ()
    refused: list[Refusal] = []
    committed: set[str] = set()
    for sha, _subject in commits:
        committed |= git.changed_paths(sha)
        refused += [Refusal(h.path, "secret", f"in agent commit {sha[:10]}: {h}") for h in git.commit_secret_hits(sha)]
    plan_after, plan_problems = _plan_after(ctx, before, report)
    if before.fix_plan is not None:  # the worker must leave docs/fix_plan.md parseable
        plan_problems += tuple(keep_valid_documents(ctx, report, {ctx.layout.fix_plan: before.fix_plan}))
    plan_rel = ctx.rel(before.plan_path)
    changes = [p for p in git.worktree_changes() if p not in Layout.OWNED_FILES and p != plan_rel
               and (p not in before.dirty or _stamp(ctx.repo, p) != before.dirty[p])]
    policy = ctx.turns.commit.policy(ctx.config.max_commit_bytes)
    selection = select_paths([p for p in changes if not is_owned(p, focus)], policy,
                             size_of=lambda p: _size(ctx.repo, p), read_text=lambda p: _text(ctx.repo, p),
                             scan=scan_text)
    # the harness's own report files are committed with the RALPH commit anyway; only refusals count
    owned = select_paths([p for p in changes if is_owned(p, focus)], policy,
                         size_of=lambda p: _size(ctx.repo, p), read_text=lambda p: _text(ctx.repo, p), scan=scan_text)
    refused += [*selection.refused, *(r for r in owned.refused if r.reason != "excluded")]
    review = [r.path for r in refused if r.reason in REVIEW_REASONS]
    verdict = judge_turn(TurnEvidence(
        rc=outcome.rc, criteria_before=before.criteria, criteria_after=_criteria(criteria),
        plan_before=before.plan_states, plan_after=plan_after, committed_paths=sorted(committed | set(selection.stage)),
        timed_out=outcome.status == "timed_out", transient=outcome.status == "transient",
        invalid_problems=(*outcome.problems, *plan_problems), refused=review))
    logger.info("agent turn judged %s: %s", verdict.status, verdict.reason)
    return AgentTurn(verdict, selection.stage, tuple(refused), commits, outcome, plan_problems)


def update_plans(ctx: HarnessContext, focus: str, done: bool, attempt_line: str) -> str | None:
    """Set the item ``done`` (or ``in_progress``) and append the attempt line; returns the status."""
    plan = fix_plan_doc.load(ctx.layout.fix_plan)
    item = plan.item(focus)
    status = "done" if done else ("in_progress" if item.status in ("pending", "done", None) else item.status)
    if status != item.status and status is not None:
        plan = fix_plan_doc.set_status(plan, focus, status)
    plan = fix_plan_doc.append_attempt(plan, focus, attempt_line)
    atomic_write_text(ctx.layout.fix_plan, fix_plan_doc.render(plan))
    return status


def ledger_refusals(ctx: HarnessContext, focus: str, report_rel: str, refused: Sequence[Refusal]) -> None:
    """A ledger entry listing what the commit policy left uncommitted (the turn needs review)."""
    listed = "\n".join(f"- `{r.path}`: {r.reason} ({r.detail})"[:400] for r in refused)
    entry = ledger_doc.make_entry(
        ctx.clock(), f"{focus} — agent changes not committed (needs review)",
        fields=[("Focus issue", focus), ("Action type", "Commit policy refusal"),
                ("Artifacts", f"{report_rel}/"), ("Not committed", str(len(refused)))],
        body=listed)
    ledger_doc.append(ctx.layout.ledger, entry)
