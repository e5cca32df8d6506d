"""Turn statuses, the circuit breaker and the spend budget.

The breaker (``breaker: {no_op: 3, same_error: 3}``) stops the loop after that many ``no_op``
turns in a row, or that many *identical* failures in a row (``agent_error``, ``timeout`` and
``invalid_output`` turns, compared by :func:`error_signature`, which normalises numbers,
timestamps, hex ids and paths). ``transient`` turns count toward neither and reset nothing;
``ok`` and ``needs_review`` turns reset both runs; a ``no_op`` resets the error run and an
error resets the ``no_op`` run. :class:`BreakerState` is immutable and JSON-serialisable, so the
loop can keep it in ``.orchestrator/state.json`` across restarts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator.turns.usage import Usage

__all__ = ["BreakerLimits", "BreakerState", "Budget", "BudgetStop", "BreakerTrip", "TurnStatus", "error_signature"]


class TurnStatus(StrEnum):
    """How an agent turn ended, judged by the harness (see :mod:`orchestrator.turns.progress`)."""

    OK = "ok"                          # progressed, nothing refused
    NO_OP = "no_op"                    # exit 0, nothing changed, no criterion newly passing
    AGENT_ERROR = "agent_error"        # non-zero exit that is not transient
    TRANSIENT = "transient"            # rate/usage limit or overload: wait and retry
    TIMEOUT = "timeout"                # killed at its timeout
    INVALID_OUTPUT = "invalid_output"  # wrote a document that failed validation
    NEEDS_REVIEW = "needs_review"      # the commit policy refused something (secret, oversize)


_ERROR_STATUSES = (TurnStatus.AGENT_ERROR, TurnStatus.TIMEOUT, TurnStatus.INVALID_OUTPUT)

_NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:?\d{2}:?\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<TS>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<UUID>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[\w.~-]*/)+[\w.-]+"), "<PATH>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b", re.I), "<HEX>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<N>"),
    (re.compile(r"\s+"), " "),
)


def error_signature(text: str, max_chars: int = 400) -> str:
    """Normalised form of an error text: timestamps, UUIDs, paths, hex ids and numbers
    replaced by placeholders, whitespace collapsed, the last ``max_chars`` kept."""
    out = text
    for pattern, repl in _NORMALISERS:
        out = pattern.sub(repl, out)
    return out.strip()[-max_chars:]


@dataclass(frozen=True)
class BreakerLimits:
    """``no_op`` / ``same_error``: turns in a row that trip the breaker (0 disables that rule)."""

    no_op: int = 3
    same_error: int = 3

    def __post_init__(self) -> None:
        for name in ("no_op", "same_error"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"breaker.{name} must be an int >= 0 (0 = off), got {value!r}")


@dataclass(frozen=True)
class BreakerTrip:
    """Why the breaker tripped: ``reason`` is ``no_op`` or ``same_error``."""

    reason: str
    count: int
    signature: str = ""

    @property
    def message(self) -> str:
        if self.reason == "no_op":
            return f"{self.count} turns in a row changed nothing"
        return f"{self.count} identical agent errors in a row: {self.signature[:200]}"


@dataclass(frozen=True)
class BreakerState:
    """Runs so far. Use :meth:`feed` after every turn, then :meth:`tripped`."""

    no_op_run: int = 0
    error_run: int = 0
    last_error: str = ""

    def feed(self, status: TurnStatus | str, error_text: str = "") -> BreakerState:
        """The state after a turn with ``status``; ``error_text`` (the error message or the
        tail of the agent's output) is used for error statuses only."""
        status = TurnStatus(status)
        if status is TurnStatus.TRANSIENT:
            return self
        if status is TurnStatus.NO_OP:
            return BreakerState(self.no_op_run + 1, 0, "")
        if status in _ERROR_STATUSES:
            signature = f"{status.value}: {error_signature(error_text)}"
            run = self.error_run + 1 if signature == self.last_error else 1
            return BreakerState(0, run, signature)
        return BreakerState()

    def tripped(self, limits: BreakerLimits) -> BreakerTrip | None:
        if limits.no_op and self.no_op_run >= limits.no_op:
            return BreakerTrip("no_op", self.no_op_run)
        if limits.same_error and self.error_run >= limits.same_error:
            return BreakerTrip("same_error", self.error_run, self.last_error)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"no_op_run": self.no_op_run, "error_run": self.error_run, "last_error": self.last_error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerState:
        return cls(int(data.get("no_op_run", 0)), int(data.get("error_run", 0)), str(data.get("last_error", "")))


@dataclass(frozen=True)
class BudgetStop:
    """``reason`` is always ``budget``; ``message`` says which limit was reached."""

    message: str
    reason: str = "budget"


@dataclass(frozen=True)
class Budget:
    """``budgets.max_usd`` / ``budgets.max_tokens`` (``None`` = unlimited). Reached when the
    summed spend is ≥ the limit; then no new turn may start. Tokens = input + output."""

    max_usd: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_usd is not None and (isinstance(self.max_usd, bool) or not isinstance(self.max_usd, (int, float))
                                         or not math.isfinite(self.max_usd) or self.max_usd <= 0):
            raise ValueError(f"budgets.max_usd must be a number > 0, got {self.max_usd!r}")
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int)
                                            or self.max_tokens <= 0):
            raise ValueError(f"budgets.max_tokens must be an int > 0, got {self.max_tokens!r}")

    def exceeded(self, spent: Usage) -> BudgetStop | None:
        if self.max_usd is not None and spent.cost_usd >= self.max_usd - 1e-12:
            return BudgetStop(f"spent ${spent.cost_usd:.4f} of max_usd ${self.max_usd:.4f}")
        if self.max_tokens is not None and spent.total_tokens >= self.max_tokens:
            return BudgetStop(f"used {spent.total_tokens} tokens of max_tokens {self.max_tokens}")
        return None

    def remaining(self, spent: Usage) -> dict[str, float | int | None]:
        """``{"cost_usd": float | None, "tokens": int | None}`` (``None`` = unlimited; never < 0)."""
        return {"cost_usd": None if self.max_usd is None else max(0.0, round(self.max_usd - spent.cost_usd, 6)),
                "tokens": None if self.max_tokens is None else max(0, self.max_tokens - spent.total_tokens)}
