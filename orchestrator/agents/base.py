"""Agent seams: one Protocol per role and the task/result records they exchange.

A *supervisor* agent turns a :class:`SupervisorTask` into ``input.md``; a *worker* agent
executes the Do Now of a :class:`WorkerTask`. Everything around them — focus choice, dwell,
validation, ledger, exit-criteria checks, commits — is done by the harness, so a builtin
agent (:mod:`.builtin`) and an external coding-agent CLI (:mod:`.command`) are
interchangeable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from orchestrator.execution.steps import PlannedStep
from orchestrator.layout import Layout
from orchestrator.records.run_record import StepRecord
from orchestrator.turns.prompts import PromptContext
from orchestrator.turns.transient import TransientDecision
from orchestrator.turns.usage import Usage

__all__ = ["AgentResult", "AgentTraits", "HandoffValidator", "SupervisorAgent", "SupervisorTask", "WorkerAgent",
           "WorkerTask"]

#: (repo, path of the written input.md) -> problems ("file:line: message"); empty = valid
HandoffValidator = Callable[[Path, Path], list[str]]


@dataclass(frozen=True)
class SupervisorTask:
    """What a supervisor agent must produce: ``input.md`` for ``focus``.

    ``draft`` is the builtin supervisor's rendering (the builtin agent writes it as is; an
    LLM agent gets it as a starting point). ``report_dir`` is absolute, inside ``repo``.
    """

    repo: Path
    focus: str
    title: str
    dwell: int
    report_dir: Path
    draft: str
    now: datetime
    prompt_context: PromptContext | None = None
    #: called by an external agent right after its process ended, before input.md is
    #: validated: puts back documents it left invalid (fix plan, plan); returns what it did
    after_run: Callable[[], list[str]] | None = None

    @property
    def input_path(self) -> Path:
        return Layout(self.repo).handoff


@dataclass(frozen=True)
class WorkerTask:
    """Execute the Do Now of ``handoff_path``. ``done_steps`` holds records of steps that
    finished before an interruption (a resumed worker skips them); ``on_step`` is called
    after every finished step so the loop can persist progress."""

    repo: Path
    handoff_path: Path
    focus: str
    report_dir: Path
    env: Mapping[str, str]
    step_timeout_s: float
    steps: tuple[PlannedStep, ...] = ()
    done_steps: Mapping[int, StepRecord] = field(default_factory=dict)
    on_step: Callable[[StepRecord], None] | None = None
    on_start: Callable[[int, Path], None] | None = None
    prompt_context: PromptContext | None = None


@dataclass(frozen=True)
class AgentResult:
    """``status``: ``ok`` | ``invalid`` (wrote something that failed validation) |
    ``timed_out`` | ``failed`` (non-zero exit, cannot start) | ``transient`` (a rate limit,
    usage limit or overload: ``transient`` holds the decision; retry after the wait).
    ``steps`` are the commands the agent ran; ``per_step`` says they map one to one onto the
    handoff's Do-Now steps (the builtin worker) rather than being one record of the agent's
    whole run (CommandAgent). ``rc``: the external process's exit status (None: builtin or
    not started); ``usage``: its spend when its ``usage:`` kind reported one; ``error_tail``:
    the last lines of its output (for the breaker's same-error rule and the next prompt)."""

    status: str
    message: str = ""
    steps: tuple[StepRecord, ...] = ()
    per_step: bool = False
    transcript: Path | None = None
    artifacts: tuple[Path, ...] = ()
    problems: tuple[str, ...] = ()
    rc: int | None = None
    usage: Usage | None = None
    transient: TransientDecision | None = None
    error_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class AgentTraits:
    """What the harness does around an agent's turn, declared by the agent (the cycle reads
    these and never asks what type an agent is).

    ``judged_by_evidence``: the worker's turn is one opaque run, judged from evidence (exit
    criteria before and after, ticked plan items, the changes it left, committed under the
    commit policy) instead of per Do-Now step. ``prompt_context``: the agent gets a
    :class:`PromptContext` (repository state for an LLM prompt). ``metered``: its spend and
    turn status feed the loop's meter (budget, breaker). ``may_choose_focus``: a supervisor
    may name another eligible item than the one proposed."""

    judged_by_evidence: bool = False
    prompt_context: bool = False
    metered: bool = False
    may_choose_focus: bool = False


class SupervisorAgent(Protocol):
    """Writes ``task.input_path`` for ``task.focus``."""

    name: str
    traits: AgentTraits

    def supervise(self, task: SupervisorTask) -> AgentResult: ...


class WorkerAgent(Protocol):
    """Executes the Do Now of ``task.handoff_path``."""

    name: str
    traits: AgentTraits

    def work(self, task: WorkerTask) -> AgentResult: ...
