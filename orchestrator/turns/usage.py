"""Spend of an agent turn, parsed from what the agent CLI printed.

Kinds (a command's ``usage:`` key):

* ``claude-json`` — Claude Code ``--output-format json`` (one result object, or with
  ``--verbose`` a JSON array of messages) or ``stream-json`` (one JSON object per line). The
  ``{"type": "result", …}`` message carries ``total_cost_usd`` (older releases: ``cost_usd``)
  and ``usage: {input_tokens, cache_creation_input_tokens, cache_read_input_tokens,
  output_tokens}``. The last result message wins.
* ``codex-jsonl`` — Codex ``exec --json`` events, one per line; every
  ``{"type": "turn.completed", "usage": {input_tokens, cached_input_tokens, output_tokens}}``
  is summed. Codex prints no price, so ``cost_usd`` is 0.
* ``none`` — no parsing.

``input_tokens`` counts every input token the model processed: for Claude the sum of
``input_tokens`` and both cache fields; for Codex ``input_tokens`` (which already contains
``cached_input_tokens``). Parsers never raise on malformed output: they return
``ParsedUsage(None, reason)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.turns.errors import TurnConfigError

__all__ = ["USAGE_KINDS", "ParsedUsage", "Usage", "check_usage_kind", "parse_usage"]

USAGE_KINDS = ("claude-json", "codex-jsonl", "none")


@dataclass(frozen=True)
class Usage:
    """Spend: ``cost_usd`` (float, ≥ 0), ``input_tokens`` and ``output_tokens`` (int, ≥ 0).
    ``a + b`` sums; ``Usage()`` is zero."""

    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.cost_usd, (int, float)) and math.isfinite(self.cost_usd) and self.cost_usd >= 0):
            raise ValueError(f"cost_usd must be a finite number >= 0, got {self.cost_usd!r}")
        for name in ("input_tokens", "output_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(self.cost_usd + other.cost_usd, self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        """``{"cost_usd": float (rounded to 1e-6), "input_tokens": int, "output_tokens": int}``."""
        return {"cost_usd": round(self.cost_usd, 6), "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(float(data.get("cost_usd", 0.0)), int(data.get("input_tokens", 0)),
                   int(data.get("output_tokens", 0)))


@dataclass(frozen=True)
class ParsedUsage:
    """``usage`` is ``None`` when nothing could be parsed; ``reason`` then says why."""

    usage: Usage | None
    reason: str = ""


def check_usage_kind(kind: object, where: str) -> str:
    """Return ``kind`` if known, else raise :class:`TurnConfigError` naming ``where``."""
    if kind not in USAGE_KINDS:
        raise TurnConfigError(f"{where}: unknown kind {kind!r} (expected {', '.join(USAGE_KINDS)})")
    return str(kind)


def parse_usage(kind: str, output: str, where: str = "usage") -> ParsedUsage:
    """Parse ``output`` (the agent's stdout, or its whole transcript) as ``kind``.
    An unknown kind raises :class:`TurnConfigError` naming ``where``; bad output never raises."""
    check_usage_kind(kind, where)
    parser: Callable[[str], ParsedUsage] = _PARSERS[kind]
    try:
        return parser(output)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:  # defensive: never crash
        return ParsedUsage(None, f"{kind}: unparseable output ({type(exc).__name__}: {exc})")


def _json_objects(text: str) -> Iterator[Any]:
    """The whole text as one JSON value if it is one, else every line that is a JSON value."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            yield json.loads(stripped)
            return
        except (ValueError, RecursionError):
            pass
    for line in text.splitlines():
        line = line.strip()
        if line[:1] not in ("{", "["):
            continue
        try:
            yield json.loads(line)
        except (ValueError, RecursionError):  # junk, or nesting too deep to decode
            continue


def _flatten(values: Iterator[Any]) -> Iterator[Mapping[str, Any]]:
    for value in values:
        if isinstance(value, Mapping):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, Mapping))


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
        raise ValueError(f"not a token count: {value!r}")
    return int(value)


def _parse_none(output: str) -> ParsedUsage:
    return ParsedUsage(None, "usage parsing is off (usage: none)")


def _parse_claude(output: str) -> ParsedUsage:
    results = [m for m in _flatten(_json_objects(output)) if m.get("type") == "result"]
    if not results:
        return ParsedUsage(None, "claude-json: no {\"type\": \"result\"} message in the output")
    last = results[-1]
    cost = last.get("total_cost_usd", last.get("cost_usd"))
    usage = last.get("usage")
    if cost is None and not isinstance(usage, Mapping):
        return ParsedUsage(None, "claude-json: the result message has neither total_cost_usd nor usage")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float))):
        return ParsedUsage(None, f"claude-json: total_cost_usd is not a number: {cost!r}")
    usage = usage if isinstance(usage, Mapping) else {}
    input_tokens = sum(_int(usage.get(k, 0) or 0) for k in
                       ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    return ParsedUsage(Usage(float(cost or 0.0), input_tokens, _int(usage.get("output_tokens", 0) or 0)))


def _parse_codex(output: str) -> ParsedUsage:
    total, turns = Usage(), 0
    for event in _flatten(_json_objects(output)):
        if event.get("type") != "turn.completed" or not isinstance(event.get("usage"), Mapping):
            continue
        usage = event["usage"]
        total = total + Usage(0.0, _int(usage.get("input_tokens", 0) or 0), _int(usage.get("output_tokens", 0) or 0))
        turns += 1
    if not turns:
        return ParsedUsage(None, "codex-jsonl: no turn.completed event with usage in the output")
    return ParsedUsage(total)


_PARSERS: dict[str, Callable[[str], ParsedUsage]] = {
    "claude-json": _parse_claude, "codex-jsonl": _parse_codex, "none": _parse_none}
