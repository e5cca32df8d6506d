"""Plain data behind the HTML review page.

Everything the templates show lives in these frozen dataclasses, built by
:mod:`orchestrator.report.build` and rendered by :mod:`orchestrator.report.render`.
Templates never read files or compute anything beyond formatting, so the page
content can be tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Notice:
    """A visible warning row: something in the repo could not be read or looks wrong.

    source: repo-relative path of the offending file; line: 1-based line or None.
    """

    source: str
    line: int | None
    message: str

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass(frozen=True)
class AttemptView:
    """One `Attempts History` line of a fix-plan item."""

    timestamp: str
    role: str
    sha: str
    text: str
    result: str  # pass | fail | timeout | blocked | interrupted | note (or a linked run's outcome)
    run_id: str = ""  # the run card this attempt produced, when it can be matched


@dataclass(frozen=True)
class PlanItemView:
    """One fix-plan item on the board."""

    item_id: str
    title: str
    status: str
    priority: str
    depends_on: tuple[str, ...]
    unmet_dependencies: tuple[str, ...]
    working_plan: str
    attempts: int
    last_attempt: AttemptView | None
    line: int | None = None


@dataclass(frozen=True)
class BoardColumn:
    status: str
    items: tuple[PlanItemView, ...]


@dataclass(frozen=True)
class Board:
    source: str
    columns: tuple[BoardColumn, ...]
    notices: tuple[Notice, ...] = ()

    @property
    def item_count(self) -> int:
        return sum(len(c.items) for c in self.columns)


@dataclass(frozen=True)
class LedgerFlag:
    """One `ledger --check` finding attached to an entry."""

    kind: str  # e.g. "dwell_mismatch", "missing_artifacts", "unknown_commit"
    message: str


@dataclass(frozen=True)
class TimelineEntry:
    """One ledger entry. `timestamp` is UTC-aware; `file_index` is its position in the file."""

    timestamp: datetime
    timestamp_text: str
    title: str
    focus: str
    state: str
    action_state: str
    recorded_dwell: int | None
    computed_dwell: int | None
    dwell_source: str  # "git" (history before the entry's SUPERVISOR commit) | "ledger" | "none"
    ralph_last_commit: str
    artifacts: str
    next_action: str
    line: int | None
    file_index: int
    flags: tuple[LedgerFlag, ...] = ()

    @property
    def dwell_mismatch(self) -> bool:
        return (
            self.recorded_dwell is not None
            and self.computed_dwell is not None
            and self.recorded_dwell != self.computed_dwell
        )


@dataclass(frozen=True)
class Timeline:
    source: str
    entries: tuple[TimelineEntry, ...]  # sorted by timestamp, oldest first
    notices: tuple[Notice, ...] = ()
    checks_available: bool = True

    @property
    def focuses(self) -> tuple[str, ...]:
        return tuple(sorted({e.focus for e in self.entries if e.focus}))


@dataclass(frozen=True)
class StepView:
    index: int
    title: str
    command: str
    cwd: str
    rc: int | None
    timed_out: bool
    duration_s: float | None
    timeout_s: float | None
    pytest_counts: str
    expectation: str
    expectation_ok: bool | None
    log_href: str | None
    log_exists: bool
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and self.expectation_ok is not False


@dataclass(frozen=True)
class CriterionView:
    text: str
    check: str
    passed: bool | None  # None: not executable / not evaluated
    detail: str = ""
    log_href: str | None = None
    log_exists: bool = False


@dataclass(frozen=True)
class RunCard:
    run_id: str
    focus: str
    role: str
    outcome: str  # pass | fail | blocked | timeout | interrupted | unknown | unreadable
    started: str
    ended: str
    duration_s: float | None
    sha_before: str
    sha_after: str
    branch: str
    dirty: bool | None
    steps: tuple[StepView, ...]
    criteria: tuple[CriterionView, ...]
    source: str  # repo-relative path of run.json
    dir_href: str
    artifacts: int = 0
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True)
class Escalation:
    """A ``blocked_<ts>.md`` file the harness wrote when it gave up on a focus."""

    focus: str
    title: str
    source: str  # repo-relative path
    href: str


@dataclass(frozen=True)
class StudyView:
    source: str  # repo-relative path of summary.json
    metric_columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]  # (arm, formatted cells)
    facts: tuple[tuple[str, str], ...]  # (label, value): config, figure_ok, versions…
    figure_data_uri: str | None
    figure_name: str
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True)
class HandoffView:
    source: str
    header: tuple[tuple[str, str], ...]
    html: str  # already rendered and sanitised by markdown-it (raw HTML disabled)
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True)
class ReportData:
    """Everything on the page."""

    title: str
    generated_at: datetime
    repo_root: str
    head: str
    board: Board
    timeline: Timeline
    runs: tuple[RunCard, ...]
    studies: tuple[StudyView, ...]
    handoff: HandoffView
    notices: tuple[Notice, ...] = field(default=())  # page-level (e.g. no report dirs)
    escalations: tuple[Escalation, ...] = ()

    @property
    def all_notices(self) -> tuple[Notice, ...]:
        out = list(self.notices) + list(self.board.notices) + list(self.timeline.notices)
        for run in self.runs:
            out.extend(run.notices)
        for study in self.studies:
            out.extend(study.notices)
        out.extend(self.handoff.notices)
        return tuple(out)

    @property
    def focuses(self) -> tuple[str, ...]:
        names = set(self.timeline.focuses) | {r.focus for r in self.runs if r.focus}
        return tuple(sorted(names))
