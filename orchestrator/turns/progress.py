"""Progress of a turn, judged from evidence whoever the agent is.

Evidence (all plain data the harness collected): the exit-criteria results before and after
the turn (criterion key → ``True`` passed / ``False`` failed / ``None`` no check), the working
plan's checkbox states before and after (item id → checked), the paths the turn's commits
changed, and how the agent process ended.

* ``progressed`` = a criterion newly passing, a newly ticked plan item, or a non-empty
  committed change.
* ``done`` = at least one exit criterion, every one passing, and no plan item open.
* ``status`` (first rule that applies): ``transient`` → ``timeout`` → ``invalid_output`` →
  ``agent_error`` (rc ≠ 0) → ``needs_review`` (the commit policy refused something) →
  ``ok`` if progressed → ``no_op``.

The agent's own claims never enter: only these observations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.turns.breaker import TurnStatus

__all__ = ["ProgressVerdict", "TurnEvidence", "judge_turn"]


@dataclass(frozen=True)
class TurnEvidence:
    """What the harness observed. ``rc``: the agent's exit status (``None`` = did not start);
    ``transient``: the transient classifier's verdict; ``invalid_problems``: validation
    problems of documents it wrote; ``refused``: paths the commit policy refused for a secret
    or size (``CommitSelection.needs_review`` paths)."""

    rc: int | None
    criteria_before: Mapping[str, bool | None] = field(default_factory=dict)
    criteria_after: Mapping[str, bool | None] = field(default_factory=dict)
    plan_before: Mapping[str, bool] = field(default_factory=dict)
    plan_after: Mapping[str, bool] = field(default_factory=dict)
    committed_paths: Sequence[str] = ()
    timed_out: bool = False
    transient: bool = False
    invalid_problems: Sequence[str] = ()
    refused: Sequence[str] = ()


@dataclass(frozen=True)
class ProgressVerdict:
    """The judgement. ``unticked`` (checked before, open after) and ``removed_items`` (present
    before, gone after) are reported for the caller to treat as suspicious plan edits."""

    status: TurnStatus
    progressed: bool
    done: bool
    newly_passing: tuple[str, ...]
    newly_ticked: tuple[str, ...]
    failing: tuple[str, ...]
    open_items: tuple[str, ...]
    unticked: tuple[str, ...]
    removed_items: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "progressed": self.progressed, "done": self.done,
                "newly_passing": list(self.newly_passing), "newly_ticked": list(self.newly_ticked),
                "failing": list(self.failing), "open_items": list(self.open_items),
                "unticked": list(self.unticked), "removed_items": list(self.removed_items), "reason": self.reason}


def judge_turn(ev: TurnEvidence) -> ProgressVerdict:
    """Apply the rules of the module docstring to ``ev``."""
    newly_passing = tuple(k for k, ok in ev.criteria_after.items()
                          if ok is True and ev.criteria_before.get(k) is not True)
    failing = tuple(k for k, ok in ev.criteria_after.items() if ok is not True)
    newly_ticked = tuple(k for k, on in ev.plan_after.items() if on and not ev.plan_before.get(k, False))
    unticked = tuple(k for k, on in ev.plan_after.items() if not on and ev.plan_before.get(k, False))
    removed = tuple(k for k in ev.plan_before if k not in ev.plan_after)
    open_items = tuple(k for k, on in ev.plan_after.items() if not on)
    committed = tuple(dict.fromkeys(ev.committed_paths))
    progressed = bool(newly_passing or newly_ticked or committed)
    done = bool(ev.criteria_after) and not failing and not open_items

    evidence = []
    if newly_passing:
        evidence.append(f"{len(newly_passing)} criterion(s) newly passing")
    if newly_ticked:
        evidence.append(f"ticked {', '.join(newly_ticked)}")
    if committed:
        evidence.append(f"{len(committed)} path(s) committed")
    summary = "; ".join(evidence) or "no evidence of progress"

    if ev.transient:
        status, reason = TurnStatus.TRANSIENT, "rate limit, usage limit or overload"
    elif ev.timed_out:
        status, reason = TurnStatus.TIMEOUT, "the agent was killed at its timeout"
    elif ev.invalid_problems:
        status, reason = TurnStatus.INVALID_OUTPUT, f"{len(ev.invalid_problems)} validation problem(s)"
    elif ev.rc is None or ev.rc != 0:
        status, reason = TurnStatus.AGENT_ERROR, ("the agent did not start" if ev.rc is None
                                                  else f"the agent exited with rc {ev.rc}")
    elif ev.refused:
        status, reason = TurnStatus.NEEDS_REVIEW, f"not committed: {', '.join(ev.refused)}"
    elif progressed:
        status, reason = TurnStatus.OK, summary
    else:
        status, reason = TurnStatus.NO_OP, "exit 0, nothing changed, no criterion newly passing"
    if status is not TurnStatus.OK and progressed:
        reason += f" ({summary})"
    return ProgressVerdict(status, progressed, done, newly_passing, newly_ticked, failing, open_items,
                           unticked, removed, reason)
