"""Fix-plan board: ``docs/fix_plan.md`` items grouped by status, highest priority first.

Parsing is :mod:`orchestrator.documents.fix_plan`'s job. Like the ledger, a plan that does
not parse strictly is cut at ``## `` headings and each item parsed alone, so one bad item
is a warning row and the rest of the board still shows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.documents import fix_plan as plan_doc
from orchestrator.documents import validate
from orchestrator.documents.common import base_id, decode, format_timestamp
from orchestrator.documents.errors import ParseError
from orchestrator.layout import Layout
from orchestrator.report.links import Linker
from orchestrator.report.model import (
    AttemptView,
    Board,
    BoardColumn,
    Notice,
    PlanItemView,
    RunCard,
)

log = logging.getLogger(__name__)

FIX_PLAN = Path(Layout.FIX_PLAN)
STATUS_ORDER = ("pending", "in_progress", "blocked", "done")
_PRIORITY_RANK = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}
_ITEM_START = re.compile(r"^##(?!#)")
_NOT_A_FAILURE = re.compile(r"\b0\s+(?:failed|errors?|failures?)\b")
_RESULT_WORDS = (
    ("blocked", re.compile(r"\bblocked\b|\bescalat", re.I)),
    ("timeout", re.compile(r"timed?[ -]?out", re.I)),
    ("fail", re.compile(r"\bfail|\berror|✗|❌", re.I)),
    ("pass", re.compile(r"\bpass|\bdone\b|\bok\b|\bsucce|✓|✅|\bcomplete", re.I)),
)


_FRACTION = re.compile(r"\b(\d+)\s*/\s*(\d+)\b")
_REPORT_REF = re.compile(r"plans/active/[^\s()]+?/reports/[^\s/()]+")


def attempt_result(text: str) -> str:
    """pass | fail | timeout | blocked | note — read from an Attempts History line's text.

    ``2/3 steps ok`` counts as a failure (a fraction below one), ``0 failed`` does not."""
    cleaned = _NOT_A_FAILURE.sub("", text)
    for result, pattern in _RESULT_WORDS[:2]:
        if pattern.search(cleaned):
            return result
    if any(int(a) < int(b) for a, b in _FRACTION.findall(cleaned)):
        return "fail"
    for result, pattern in _RESULT_WORDS[2:]:
        if pattern.search(cleaned):
            return result
    return "note"


def _run_of(item_id: str, attempt: plan_doc.Attempt, runs: Sequence[RunCard]) -> RunCard | None:
    """The run a worker's attempt line describes: the report dir it names, else the run whose
    ``sha_before`` is the attempt's commit (the worker records the handoff commit), else the
    run whose report dir is named after the attempt's timestamp."""
    if attempt.role == "SUPERVISOR":  # handoffs and escalations produce no run.json
        return None
    ref = _REPORT_REF.search(attempt.text)
    if ref:
        source = ref.group(0).rstrip("/") + "/run.json"
        for run in runs:
            if run.source == source:
                return run
    mine = [r for r in runs if base_id(r.focus) == item_id]
    sha = (attempt.sha or "").lower()
    if len(sha) >= 7 and sha != "none":
        for run in mine:
            before = run.sha_before.lower()
            if before and (before.startswith(sha) or sha.startswith(before)):
                return run
    if attempt.timestamp is not None:
        stamp = format_timestamp(attempt.timestamp, "compact")
        for run in mine:
            if run.source.rsplit("/", 2)[-2] == stamp:
                return run
    return None


def _parse_leniently(text: str, path: Path, source: str) -> tuple[list[plan_doc.FixPlanItem], list[Notice]]:
    try:
        return list(plan_doc.parse(text, path).items), []
    except ParseError as strict:
        strict_notice = Notice(source, strict.line or None, strict.message)
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _ITEM_START.match(line)]
    items: list[plan_doc.FixPlanItem] = []
    notices: list[Notice] = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        chunk = "".join(lines[start:end])
        try:
            piece = plan_doc.parse(chunk, path)
        except ParseError as exc:
            if piece_is_item(chunk):
                notices.append(Notice(source, start + exc.line if exc.line else start + 1,
                                      f"item skipped: {exc.message}"))
            continue
        if piece.dialect == plan_doc.ITEMS:
            items.extend(replace(p, line=p.line + start) for p in piece.items)
    if not any(n.line == strict_notice.line for n in notices):
        notices.insert(0, strict_notice)
    return items, notices


def piece_is_item(chunk: str) -> bool:
    return bool(re.match(r"^##[ \t]+(?:\[[^\]\s]+\]|[A-Z][A-Z0-9]*[-_])", chunk))


def _last_attempt(item: plan_doc.FixPlanItem, runs: Sequence[RunCard]) -> AttemptView | None:
    if not item.attempts:
        return None
    a = item.attempts[-1]  # the harness appends: last line is the latest
    run = _run_of(item.id, a, runs)
    return AttemptView(
        timestamp=format_timestamp(a.timestamp) if a.timestamp else "",
        role=a.role or "", sha=(a.sha or "")[:10] if (a.sha or "").lower() != "none" else "",
        text=a.text, result=run.outcome if run is not None else attempt_result(a.text),
        run_id=run.run_id if run is not None else "")


def build_board(items: Sequence[plan_doc.FixPlanItem], source: str, notices: Sequence[Notice],
                runs: Sequence[RunCard] = ()) -> Board:
    status_of = {it.id: it.status for it in items}
    views: dict[str, list[tuple[int, int, PlanItemView]]] = {}
    for order, it in enumerate(items):
        status = it.status or "unknown"
        unmet = tuple(d for d in it.depends_on if status_of.get(base_id(d)) != "done")
        view = PlanItemView(
            item_id=it.id, title=it.title, status=status, priority=it.priority or "",
            depends_on=it.depends_on, unmet_dependencies=unmet, working_plan=it.working_plan or "",
            attempts=len(it.attempts), last_attempt=_last_attempt(it, runs), line=it.line)
        views.setdefault(status, []).append((_PRIORITY_RANK.get(it.priority or "", 9), order, view))
    statuses = list(STATUS_ORDER) + sorted(s for s in views if s not in STATUS_ORDER)
    columns = tuple(BoardColumn(s, tuple(v for _, _, v in sorted(views.get(s, [])))) for s in statuses)
    return Board(source, columns, tuple(notices))


@dataclass(frozen=True)
class PlanSource:
    """The fix plan as read for the page. ``doc`` is set only when it parsed strictly."""

    source: str
    doc: plan_doc.FixPlan | None
    items: tuple[plan_doc.FixPlanItem, ...]
    notices: tuple[Notice, ...]


def load_plan(repo_root: Path, linker: Linker) -> PlanSource:
    """Read docs/fix_plan.md leniently and validate it (issues become notices)."""
    path = repo_root / FIX_PLAN
    source = linker.rel(path)
    if not path.is_file():
        return PlanSource(source, None, (), (Notice(source, None, "no fix plan (docs/fix_plan.md)"),))
    try:
        text = decode(path.read_bytes(), path)
    except ParseError as exc:
        return PlanSource(source, None, (), (Notice(source, exc.line or None, exc.message),))
    except OSError as exc:
        return PlanSource(source, None, (), (Notice(source, None, f"cannot read fix plan: {exc}"),))
    if not text.strip():
        return PlanSource(source, None, (), (Notice(source, None, "fix plan is empty"),))
    items, notices = _parse_leniently(text, path, source)
    doc = None
    if not notices:
        doc = plan_doc.parse(text, path)
        notices = [_issue_notice(i, source) for i in validate.validate_fix_plan(doc, repo_root)]
    return PlanSource(source, doc, tuple(items), tuple(notices))


def _issue_notice(issue: validate.Issue, source: str) -> Notice:
    prefix = "" if issue.severity == validate.ERROR else f"{issue.severity}: "
    return Notice(source, issue.line or None, prefix + issue.message)


def collect_board(repo_root: Path, linker: Linker, runs: Sequence[RunCard] = (),
                  plan: PlanSource | None = None) -> Board:
    plan = plan or load_plan(repo_root, linker)
    return build_board(plan.items, plan.source, plan.notices, runs)
