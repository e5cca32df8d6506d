"""What a loop measures across agent turns: spend, the circuit breaker, transient waits, the
live turn (``.orchestrator/live.json`` for ``orchestrator status``) and notifications.

One :class:`Meter` lives for one ``loop`` (or one ``supervise``/``work``) invocation:

* :meth:`Meter.call` runs an agent turn and, while the agent reports a transient failure
  (rate limit, usage limit, overload), records the wait in the ledger and in ``live.json``,
  sleeps until the printed reset time (or the backoff) and retries the same turn; a wait
  past ``budgets.max_wall_s`` raises :class:`LoopStop` (reason ``wall``). A transient failure
  never reaches the breaker, dwell or escalation.
* :meth:`Meter.record` adds a finished turn's spend (per focus and per loop) and feeds the
  breaker of its role; :meth:`Meter.check` raises :class:`LoopStop` (``breaker`` /
  ``budget``) before a new turn starts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.agents.base import AgentResult
from orchestrator.context import HarnessContext
from orchestrator.documents import ledger as ledger_doc
from orchestrator.fsutil import atomic_write_json, iso_utc
from orchestrator.layout import Layout
from orchestrator.turns.breaker import BreakerState, BreakerTrip, TurnStatus
from orchestrator.turns.notify import notify
from orchestrator.turns.transient import plan_wait, wait_until
from orchestrator.turns.usage import Usage

__all__ = ["LIVE_FILE", "LoopStop", "Meter", "read_live"]

logger = logging.getLogger(__name__)

#: The running turn and the loop's spend, under ``.orchestrator/`` (never committed).
LIVE_FILE = "live.json"


class LoopStop(Exception):
    """The loop must stop: ``reason`` is ``breaker``, ``budget`` or ``wall``."""

    def __init__(self, reason: str, message: str, focus: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.focus = reason, message, focus


def read_live(repo: Path) -> dict[str, Any] | None:
    """``live.json`` of the repository at ``repo`` (None when absent or unreadable)."""
    path = Layout(Path(repo)).state_dir / LIVE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class Meter:
    """See the module docstring. ``deadline``: the loop's wall-clock limit (UTC, None = none);
    ``sleep_until``: the wait (replaceable in tests; returns False when stopped)."""

    ctx: HarnessContext
    deadline: datetime | None = None
    sleep_until: Callable[[datetime], bool] = wait_until
    spent: Usage = field(default_factory=Usage)
    per_focus: dict[str, Usage] = field(default_factory=dict)
    breakers: dict[str, BreakerState] = field(default_factory=dict)
    turns: int = 0
    waits: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""
    last_focus: str | None = None

    def __post_init__(self) -> None:
        self.started_at = iso_utc(self.ctx.clock())
        for agent in (self.ctx.supervisor, self.ctx.worker):
            if hasattr(agent, "spend_note"):
                agent.spend_note = self.spend_note

    @classmethod
    def for_loop(cls, ctx: HarnessContext, max_wall_s: float | None = None) -> Meter:
        wall = ctx.config.budgets.max_wall_s if max_wall_s is None else max_wall_s
        return cls(ctx, deadline=ctx.clock() + timedelta(seconds=wall) if wall else None)

    # spend -------------------------------------------------------------------------------
    def spend_note(self) -> str:
        return f"spend so far ${self.spent.cost_usd:.4f}, {self.spent.total_tokens} tokens"

    def spend(self, focus: str | None = None) -> dict[str, Any]:
        """``{cost_usd, input_tokens, output_tokens}`` of the loop (or of ``focus``)."""
        usage = self.spent if focus is None else self.per_focus.get(focus, Usage())
        return usage.to_dict()

    def remaining(self) -> dict[str, Any]:
        return self.ctx.turns.budget.remaining(self.spent)

    # the gate before a turn ----------------------------------------------------------------
    def check(self, focus: str | None = None) -> None:
        """Raise :class:`LoopStop` when the breaker tripped or the budget is used."""
        focus = focus or self.last_focus
        trip = self.tripped()
        if trip is not None:
            raise LoopStop("breaker", trip.message, focus)
        stop = self.ctx.turns.budget.exceeded(self.spent)
        if stop is not None:
            raise LoopStop(stop.reason, stop.message, focus)

    def tripped(self) -> BreakerTrip | None:
        for state in self.breakers.values():
            trip = state.tripped(self.ctx.turns.breaker)
            if trip is not None:
                return trip
        return None

    # one turn ------------------------------------------------------------------------------
    def call(self, role: str, focus: str, report_rel: str, run: Callable[[], AgentResult]) -> AgentResult:
        """Run ``run`` (one agent turn), waiting out and retrying transient failures."""
        attempt = 0
        while True:
            self.live(turn={"role": role, "focus": focus, "report_dir": report_rel,
                            "started_at": iso_utc(self.ctx.clock()), "attempt": attempt + 1})
            try:
                result = run()
            except BaseException:
                self.live(turn=None)
                raise
            if result.status != "transient" or result.transient is None:
                self.live(turn=None)
                return result
            now = self.ctx.clock()
            plan = plan_wait(result.transient, attempt, now, deadline=self.deadline)
            until = iso_utc(plan.until)
            if plan.beyond_deadline:
                self.live(turn=None)
                raise LoopStop("wall", f"{role} agent: transient failure ({result.transient.excerpt}); "
                               f"the retry would start after the wall-time budget", focus)
            wait = {"role": role, "focus": focus, "until": until, "source": plan.source, "attempt": attempt + 1,
                    "pattern": result.transient.pattern, "excerpt": result.transient.excerpt}
            self.waits.append(wait)
            self._ledger_wait(wait)
            self.live(turn=None, waiting={**wait, "since": iso_utc(now)})
            logger.warning("%s agent: %s; waiting until %s (%s), then retrying the same turn", role,
                           result.transient.excerpt, until, plan.source)
            try:
                if not self.sleep_until(plan.until):
                    raise KeyboardInterrupt
            finally:
                self.live(turn=None)
            attempt += 1

    def record(self, role: str, focus: str, result: AgentResult, status: TurnStatus) -> None:
        """Add the turn's spend and feed ``role``'s breaker with its status."""
        self.turns += 1
        self.last_focus = focus
        if result.usage is not None:
            self.spent = self.spent + result.usage
            self.per_focus[focus] = self.per_focus.get(focus, Usage()) + result.usage
        error = result.error_tail or result.message
        self.breakers[role] = self.breakers.get(role, BreakerState()).feed(status, error)
        self.live(turn=None)

    # records -------------------------------------------------------------------------------
    def _ledger_wait(self, wait: dict[str, Any]) -> None:
        entry = ledger_doc.make_entry(
            self.ctx.clock(), f"{wait['focus']} — {wait['role']} agent waiting until {wait['until']}",
            fields=[("Focus issue", wait["focus"]), ("Action type", "Transient wait"),
                    ("Reason", f"{wait['pattern']}: {wait['excerpt']}"[:300]),
                    ("Waiting until", f"{wait['until']} ({wait['source']})"), ("Retry", str(wait["attempt"]))],
            body="A transient failure: the same turn is retried; it counts toward neither dwell nor escalation.")
        ledger_doc.append(self.ctx.layout.ledger, entry)

    def stopped(self, stop: LoopStop) -> None:
        """The ledger entry (left for the next SUPERVISOR commit) and ``live.json`` of a stop."""
        focus = stop.focus or "-"
        entry = ledger_doc.make_entry(
            self.ctx.clock(), f"loop stopped: {stop.reason}",
            fields=[("Focus issue", focus), ("Action type", f"Loop stopped ({stop.reason})"),
                    ("Reason", stop.message[:300]), ("Spend", self.spend_note())],
            body="Exit code 4. Reset by running the loop again after a human looked at the cause.")
        ledger_doc.append(self.ctx.layout.ledger, entry)
        self.live(turn=None, stopped={"reason": stop.reason, "message": stop.message})
        logger.error("loop stopped (%s): %s", stop.reason, stop.message)

    def live(self, *, turn: dict[str, Any] | None, waiting: dict[str, Any] | None = None,
             stopped: dict[str, Any] | None = None) -> None:
        """Write ``.orchestrator/live.json`` (the running turn or wait, and the spend)."""
        data = {"loop_started_at": self.started_at, "updated_at": iso_utc(self.ctx.clock()), "turn": turn,
                "waiting": waiting, "stopped": stopped, "turns": self.turns, "spend": self.spend(),
                "spend_per_focus": {k: v.to_dict() for k, v in self.per_focus.items()},
                "budget_left": self.remaining(), "breaker": {k: v.to_dict() for k, v in self.breakers.items()}}
        try:
            atomic_write_json(self.ctx.layout.state_dir / LIVE_FILE, data)
        except OSError as exc:  # status display only: never fatal
            logger.warning("cannot write %s: %s", LIVE_FILE, exc)

    def notify(self, event: str, focus: str | None, message: str, report_dir: str | None = None) -> None:
        notify(self.ctx.turns.notify, event, focus=focus or "", message=message, report_dir=report_dir or "",
               cwd=self.ctx.repo)
