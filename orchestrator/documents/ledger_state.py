"""The ledger's state line: ``focus=… state=… dwell=… ralph_last_commit=… artifacts=…
next_action=<rest of line>`` (optionally ending ``<Action State>=[…]``), plus ``notes=…``.

Re-exported by :mod:`orchestrator.documents.ledger`; use it from there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .common import check_single_line, leading_int

_REST_RE = re.compile(r"(?<!\S)(next_action|notes)=")
_HEAD_ACTION_RE = re.compile(r"(?<!\S)<Action State>=(\S*)")
_STATE_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_TRAILING_ACTION_RE = re.compile(r"\s+<Action State>=(?P<value>\S*)\s*$")
_STATE_ORDER = ("focus", "state", "dwell", "ralph_last_commit", "artifacts")
_KNOWN = frozenset({"focus", "state", "dwell", "ralph_last_commit", "artifacts", "next_action",
                    "<Action State>", "notes"})


def unbracket(value: str) -> str:
    value = value.strip()
    return value[1:-1].strip() if value.startswith("[") and value.endswith("]") else value


@dataclass(frozen=True)
class StateLine:
    """``focus=… state=… dwell=… ralph_last_commit=… artifacts=… next_action=<rest of line>``.

    ``extra`` holds any other ``key=value`` tokens in file order (``action_type``, ``summary``…);
    ``notes`` comes from a separate ``notes=…`` line; ``line`` is 1-based (0 for new entries).
    """

    focus: str | None = None
    state: str | None = None
    dwell: int | None = None
    ralph_last_commit: str | None = None
    artifacts: str | None = None
    next_action: str | None = None
    action_state: str | None = None
    notes: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    line: int = 0

    def render(self) -> list[str]:
        """The state line (and a ``notes=`` line when set), without bullets or endings."""
        parts = []
        for key in _STATE_ORDER:
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{key}={_token(key, str(value))}")
        parts += [f"{k}={_token(k, v)}" for k, v in self.extra.items()]
        if self.next_action is not None:
            parts.append(f"next_action={check_single_line(self.next_action, 'next_action')}")
        if self.action_state is not None:
            parts.append(f"<Action State>=[{_token('<Action State>', self.action_state)}]")
        if parts and self.focus is None:
            raise ValueError("a state line needs focus=… first (otherwise it would not parse back)")
        out = [" ".join(parts)] if parts else []
        if self.notes is not None:
            out.append(f"notes={check_single_line(self.notes, 'notes')}")
        return out


def _token(key: str, value: str) -> str:
    if not value or any(ch.isspace() for ch in value):
        raise ValueError(f"state line value for {key!r} must be one non-empty token, got {value!r}")
    if key != "<Action State>" and not _STATE_KEY_RE.fullmatch(key):
        raise ValueError(f"bad state line key {key!r}")
    return value


def parse_state_line(text: str, line: int = 0, notes: str | None = None) -> StateLine:
    """Parse ``focus=… k=v … next_action=rest`` (a bare word extends the previous value)."""
    values: dict[str, str] = {}
    m = _REST_RE.search(text)
    head = text[:m.start()] if m else text
    if m is not None:
        rest = text[m.end():]
        tail = _TRAILING_ACTION_RE.search(" " + rest) if "<Action State>=" in rest else None
        if tail:
            values["<Action State>"] = tail["value"]
            rest = (" " + rest)[:tail.start()]
        values[m.group(1)] = rest.strip()
    if "<Action State>=" in head:
        am = _HEAD_ACTION_RE.search(head)
        if am:
            values.setdefault("<Action State>", am.group(1))
            head = head[:am.start()] + " " + head[am.end():]
    prev: str | None = None
    for tok in head.split():
        eq = tok.find("=")
        if eq > 0 and _STATE_KEY_RE.fullmatch(tok, 0, eq):
            prev = tok[:eq]
            values[prev] = tok[eq + 1:]
        elif prev is not None:
            values[prev] += " " + tok
    action = values.get("<Action State>")
    return StateLine(
        focus=values.get("focus"), state=values.get("state"),
        dwell=leading_int(values["dwell"]) if "dwell" in values else None,
        ralph_last_commit=values.get("ralph_last_commit"), artifacts=values.get("artifacts"),
        next_action=values.get("next_action"),
        action_state=unbracket(action) if action is not None else None,
        notes=values.get("notes", notes),
        extra={k: v for k, v in values.items() if k not in _KNOWN}, line=line)
