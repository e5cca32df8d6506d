"""``galph_memory.md`` — the supervisor ledger (append-only).

Entries are headed ``# <timestamp>: <title>`` or ``## <timestamp>`` (title optional) with
timestamps ``2026-01-06T14:00:00Z`` / ``2026-01-07T073000Z`` / ``2026-01-22T02:40Z``; file
order is not time order. Inside an entry the parser reads top-level ``- key: value`` bullets,
``- <Action State>: [state]`` and the state line ``focus=… state=… dwell=… … next_action=<rest>``
(optionally bulleted, optionally ending ``<Action State>=[…]``) plus a ``notes=…`` line.
Everything else is free text kept verbatim. Lines inside code fences are never interpreted.

Separator rule (file-level dialect detection): a ledger is **separated** when at least one
entry other than the first is preceded by a ``---`` line (blank lines ignored) — then *every*
entry after the first must be, and a missing separator is a :class:`ParseError`. Otherwise the
ledger is **unseparated** (the real-world ``## <compact ts>`` dialect). A ledger with at most
one entry counts as separated. :func:`append` writes in the file's own dialect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path

from orchestrator.fsutil import atomic_write_text

from .common import (
    FOCUS_RE,
    TIMESTAMP_PATTERN,
    PathLike,
    base_id,
    check_single_line,
    fence_opener,
    format_timestamp,
    is_fence_closer,
    leading_int,
    parse_timestamp,
    read_text,
    require_text,
)
from .errors import ParseError
from .ledger_state import StateLine, parse_state_line, unbracket

__all__ = ["SEPARATED", "UNSEPARATED", "Ledger", "LedgerEntry", "StateLine", "append", "entries_for_focus",
           "entries_in_time_order", "entry_to_dict", "load", "make_entry", "parse", "parse_state_line", "render",
           "render_entry"]

SEPARATED = "separated"
UNSEPARATED = "unseparated"

# Scanners run over "\n" + text with a leading \n instead of ^ + MULTILINE (several times faster).
_FENCE_SCAN = re.compile(r"\n([ \t]*(?:`{3,}|~{3,})[^\n]*)")
_HEAD_SCAN = re.compile(r"\n(#{1,2} +\d{4}-\d{2}-\d{2}[^\n]*)")
_KEY = r"[A-Za-z](?:[A-Za-z0-9 _/()&.'-]{0,79}[A-Za-z0-9_/()&.'-])?"  # a "- key: value" bullet key
_ITEM_SCAN = re.compile(
    r"\n(?:(?:- [ \t]*)?(?:(?P<state>focus=[^\n]*)|notes=(?P<notes>[^\n]*)|<Action State>:(?P<action>[^\n]*))"
    r"|- (?P<key>" + _KEY + r"):(?:[ \t]+(?P<value>[^\n]*)|(?=[ \t]*\r?(?:\n|\Z))))")
_HEADING_RE = re.compile(r"^(?P<hashes>#{1,2}) +(?P<ts>" + TIMESTAMP_PATTERN + r")(?P<rest>(?:[:\s].*)?)$")
_KEY_OK_RE = re.compile(_KEY)


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger entry. ``raw`` is the text from the heading up to the next heading (including
    any trailing ``---`` separator); the entry itself is ``raw[:text_end]``. ``line`` is the
    1-based heading line."""

    line: int
    heading: str
    level: int
    timestamp: datetime
    timestamp_text: str
    title: str
    fields: Mapping[str, str]
    action_state: str | None
    state: StateLine | None
    raw: str
    text_end: int
    separated_before: bool = False

    @property
    def text(self) -> str:
        """The entry verbatim (heading + body), without the separator after it."""
        return self.raw[:self.text_end]

    @property
    def body(self) -> str:
        """Everything after the heading line, verbatim (no trailing separator)."""
        nl = self.raw.find("\n")
        return self.raw[nl + 1:self.text_end] if 0 <= nl < self.text_end else ""

    def field_line(self, key: str) -> int | None:
        """1-based line of the first ``- key:`` bullet outside fences, or None."""
        if key not in self.fields:
            return None
        scanned = "\n" + self.raw
        for m in _items(scanned, 1, len(scanned), _fences(scanned, "<entry>")):
            if m["key"] == key:
                return self.line + scanned.count("\n", 1, m.start() + 1)
        return None

    def field(self, key: str) -> str | None:
        """Value of a ``- key: value`` bullet (case-insensitive key), or None."""
        wanted = key.strip().lower()
        for k, v in self.fields.items():
            if k.lower() == wanted:
                return v
        return None

    @property
    def focus(self) -> str | None:
        """Focus as written (may carry a sub-step): state line → ``Focus issue`` → title."""
        if self.state is not None and self.state.focus:
            return self.state.focus
        for key in ("Focus issue", "Focus"):
            value = self.field(key)
            m = FOCUS_RE.search(value or "")
            if m:
                return m.group(0)
        m = FOCUS_RE.search(self.title)
        return m.group(0) if m else None

    @property
    def focus_id(self) -> str | None:
        """The fix-plan item ID of :attr:`focus` (sub-step dropped)."""
        focus = self.focus
        return base_id(focus) if focus else None

    @property
    def state_name(self) -> str | None:
        return self.state.state if self.state is not None else None

    @property
    def dwell(self) -> int | None:
        """Recorded dwell (state line, else the ``dwell:`` bullet). Never trusted for decisions."""
        if self.state is not None and self.state.dwell is not None:
            return self.state.dwell
        value = self.field("dwell")
        return leading_int(value) if value is not None else None

    @property
    def effective_action_state(self) -> str | None:
        """``<Action State>`` bullet, else the state line's ``<Action State>=`` token."""
        if self.action_state is not None:
            return self.action_state
        return self.state.action_state if self.state is not None else None


@dataclass(frozen=True)
class Ledger:
    """A parsed ledger: ``render`` is ``preamble`` + every entry's ``raw``; ``dialect`` is
    :data:`SEPARATED` or :data:`UNSEPARATED` (see the module docstring)."""

    path: str
    preamble: str
    entries: tuple[LedgerEntry, ...]
    dialect: str


def _fences(scanned: str, path: PathLike) -> list[tuple[int, int]]:
    """Fenced regions as (start, end) offsets into ``scanned``; unterminated → ParseError."""
    spans = []
    opener: tuple[str, int, str] | None = None
    start = 0
    for m in _FENCE_SCAN.finditer(scanned):
        text = m.group(1).rstrip("\r")
        if opener is None:
            opener = fence_opener(text)
            start = m.start()
        elif is_fence_closer(text, opener[0], opener[1]):
            spans.append((start, m.end()))
            opener = None
    if opener is not None:
        end = scanned.find("\n", start + 1)
        opener_text = scanned[start + 1:end if end >= 0 else len(scanned)].strip()
        raise ParseError(path, scanned.count("\n", 0, start + 1), f"unterminated code fence {opener_text!r}")
    return spans


def _items(scanned: str, start: int, end: int, fences: list[tuple[int, int]]):
    """Item matches in ``scanned[start:end]`` outside ``fences``: one C-level scan per gap."""
    if not fences:
        return _ITEM_SCAN.finditer(scanned, start, end)
    gaps, pos = [], start
    for a, b in fences:
        if a > pos:
            gaps.append(_ITEM_SCAN.finditer(scanned, pos, min(a, end)))
        pos = max(pos, b)
    if pos < end:
        gaps.append(_ITEM_SCAN.finditer(scanned, pos, end))
    return chain.from_iterable(gaps)


def _text_end(raw: str) -> int:
    """Length of the entry proper: drop trailing blank lines and one ``---`` separator."""
    body = raw.rstrip()
    cut = body.rfind("\n") + 1
    if cut and body[cut:].strip() == "---":
        body = body[:cut].rstrip()
    nl = raw.find("\n", len(body))
    return nl + 1 if nl >= 0 else len(raw)


def _ends_with_separator(raw: str) -> bool:
    body = raw.rstrip()
    cut = body.rfind("\n") + 1
    return cut > 0 and body[cut:].strip() == "---"


def _make_entry(scanned: str, pos: int, end: int, line: int, m: re.Match, dt: datetime, separated: bool,
                fences: list[tuple[int, int]]) -> LedgerEntry:
    """Entry whose text is ``scanned[pos + 1:end + 1]`` (``scanned`` = "\\n" + file text)."""
    fields: dict[str, str] = {}
    action = state_text = notes = None
    state_line = 0
    nl = scanned.find("\n", pos + 1, end + 1)
    if nl < 0:
        nl = end + 1
    for im in _items(scanned, nl, end + 1, fences):
        st, nt, act, key, value = im.groups()
        if key is not None:
            if key not in fields:
                fields[key] = (value or "").strip()
        elif st is not None:
            state_text, state_line = st.rstrip(), line + scanned.count("\n", nl, im.start() + 1)
        elif nt is not None:
            notes = nt.strip()
        else:
            action = unbracket(act)
    state = None
    if state_text is not None:
        state = parse_state_line(state_text, state_line, notes)
    elif notes is not None:
        state = StateLine(notes=notes)
    rest = m["rest"].strip()
    if rest[:1] == ":":
        rest = rest[1:].strip()
    elif rest[:1] in ("—", "–", "-") and rest[1:2] in (" ", ""):
        rest = rest[1:].strip()
    raw = scanned[pos + 1:end + 1]
    return LedgerEntry(line, m.group(0), len(m["hashes"]), dt, m["ts"], rest, fields, action, state,
                       raw, _text_end(raw), separated)


def parse(text: str, path: PathLike = "galph_memory.md") -> Ledger:
    """Parse a ledger; raises :class:`ParseError` for bad timestamps, fences, separators."""
    require_text(text, path)
    scanned = "\n" + text
    fences = _fences(scanned, path)
    heads: list[tuple[int, int, re.Match, datetime]] = []  # (scanned offset of "\n", line, m, dt)
    line, last, k = 0, 0, 0
    for hm in _HEAD_SCAN.finditer(scanned):
        pos = hm.start()
        while k < len(fences) and fences[k][1] <= pos:
            k += 1
        if k < len(fences) and fences[k][0] <= pos:
            continue
        line += scanned.count("\n", last, pos + 1)
        last = pos + 1
        c = hm.group(1).rstrip("\r")
        m = _HEADING_RE.match(c)
        if m is None:
            raise ParseError(path, line, f"bad timestamp in ledger heading {c!r} "
                             "(expected e.g. '# 2026-01-06T14:00:00Z: title' or '## 2026-01-07T073000Z')")
        try:
            dt = parse_timestamp(m["ts"])
        except ValueError as exc:
            raise ParseError(path, line, f"{exc} in ledger heading") from None
        heads.append((pos, line, m, dt))
    entries: list[LedgerEntry] = []
    j = 0
    for k, (pos, line, m, dt) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(text)
        while j < len(fences) and fences[j][1] <= pos:
            j += 1
        i = j
        while i < len(fences) and fences[i][0] < end:
            i += 1
        separated = bool(k) and _ends_with_separator(entries[-1].raw)
        entries.append(_make_entry(scanned, pos, end, line, m, dt, separated, fences[j:i]))
    dialect = SEPARATED
    if len(entries) > 1 and not any(e.separated_before for e in entries[1:]):
        dialect = UNSEPARATED
    if dialect == SEPARATED:
        for e in entries[1:]:
            if not e.separated_before:
                raise ParseError(path, e.line, "missing '---' separator before this entry "
                                 "(the file separates entries with '---')")
    return Ledger(str(path), text[:heads[0][0]] if heads else text, tuple(entries), dialect)


def render(doc: Ledger) -> str:
    """The document text; byte-identical to the parsed input."""
    return doc.preamble + "".join([e.raw for e in doc.entries])


def load(path: PathLike) -> Ledger:
    return parse(read_text(path), path)


def entries_in_time_order(doc: Ledger) -> list[LedgerEntry]:
    """Entries sorted by timestamp; ties keep file order."""
    return sorted(doc.entries, key=lambda e: e.timestamp)


def entries_for_focus(entries: Iterable[LedgerEntry], focus_id: str) -> list[LedgerEntry]:
    """Entries whose focus is ``focus_id`` (or a sub-step of it; ``X.F1`` matches only X.F1)."""
    wanted = focus_id.strip()
    key = base_id(wanted) if "." not in wanted else None
    return [e for e in entries
            if e.focus is not None and (e.focus == wanted or (key is not None and e.focus_id == key))]


def make_entry(timestamp: datetime, title: str, *, fields: Mapping[str, str] | Sequence[tuple[str, str]] = (),
               body: str = "", action_state: str | None = None, state: StateLine | None = None,
               level: int = 1, style: str = "extended") -> LedgerEntry:
    """Build a new entry (rendered in the harness's own format, then parsed back).

    Layout: heading, ``- key: value`` bullets, free ``body`` (verbatim, blank-line framed),
    ``- <Action State>: [state]``, ``- focus=… next_action=…`` and ``- notes=…``.
    """
    if level not in (1, 2):
        raise ValueError(f"heading level must be 1 or 2, got {level}")
    check_single_line(title, "title")
    heading = "#" * level + " " + format_timestamp(timestamp, style) + (f": {title}" if title else "")
    out = [heading]
    for key, value in (fields.items() if isinstance(fields, Mapping) else fields):
        if not _KEY_OK_RE.fullmatch(key) or key.startswith(("focus=", "notes=")):
            raise ValueError(f"bad ledger field key {key!r}")
        out.append(f"- {key}: {check_single_line(value, key)}".rstrip())
    if body.strip():
        out += ["", body.strip("\n"), ""]
    if action_state is not None:
        out.append(f"- <Action State>: [{check_single_line(action_state, 'action_state')}]")
    if state is not None:
        out += [f"- {s}" for s in state.render()]
    text = "\n".join(out) + "\n"
    doc = parse(text, "<new entry>")
    if len(doc.entries) != 1 or doc.preamble:
        raise ValueError("entry body must not contain ledger headings")
    return doc.entries[0]


def render_entry(entry: LedgerEntry) -> str:
    """The entry's text (no separator), newline-terminated."""
    text = entry.text
    return text if text.endswith("\n") else text + "\n"


def append(path: PathLike, entry: LedgerEntry) -> int:
    """Append ``entry`` atomically (temp + replace) without changing any earlier byte.

    A missing or 0-byte file becomes a one-entry ledger. The existing file must parse (fail
    closed). Uses a ``---`` separator unless the file is in the unseparated dialect.
    Returns the 1-based line number of the new entry's heading.
    """
    target = Path(path)
    old = read_text(target) if target.exists() else ""
    doc = parse(old, target) if old else None
    parts = [old]
    if old and not old.endswith("\n"):
        parts.append("\n")
    if doc is not None:
        parts.append("\n" if doc.dialect == UNSEPARATED else "\n---\n\n")
    prefix = "".join(parts)
    atomic_write_text(target, prefix + render_entry(entry))
    return prefix.count("\n") + 1


def entry_to_dict(entry: LedgerEntry) -> dict:
    """JSON-friendly summary used by ``orchestrator ledger --json``."""
    state = entry.state
    return {
        "timestamp": format_timestamp(entry.timestamp), "timestamp_text": entry.timestamp_text,
        "title": entry.title, "focus": entry.focus, "focus_id": entry.focus_id,
        "state": entry.state_name, "action_state": entry.effective_action_state, "dwell": entry.dwell,
        "ralph_last_commit": state.ralph_last_commit if state else None,
        "artifacts": state.artifacts if state else None,
        "next_action": state.next_action if state else None,
        "notes": state.notes if state else None, "state_extra": dict(state.extra) if state else {},
        "line": entry.line, "heading": entry.heading, "fields": dict(entry.fields),
    }
