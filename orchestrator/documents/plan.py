"""``plans/active/<ID>/implementation.md`` — a phased checklist.

``## Phase A: title`` sections (``###`` and ``Phase A — title`` accepted) hold checklist items
``- [ ] A1: text`` / ``- [x] A1: text`` (the ``ID:`` prefix is optional) and fenced bash blocks.
A block belongs to the checklist item above it (and always to its phase). A phase ends at the
next phase heading or the next heading of the same or a higher level.

The builtin supervisor turns :func:`first_unfinished_phase` into Do Now; the worker calls
:func:`tick`. Mutations return a **new** :class:`Plan`; other bytes stay unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import (
    CodeBlock,
    PathLike,
    code_block,
    content,
    read_text,
    replace_line,
    require_text,
    scan_fences,
    split_lines,
)
from .errors import ParseError, UnknownIdError

_PHASE_RE = re.compile(r"^(?P<hashes>#{2,3})[ \t]+Phase[ \t]+(?P<id>[A-Za-z0-9]+)(?![A-Za-z0-9])[ \t]*"
                       r"(?:(?:[:.—–]|-(?=\s))[ \t]*)?(?P<title>.*?)[ \t]*$")
_HEADING_RE = re.compile(r"^(?P<hashes>#{1,6})[ \t]")
_ITEM_RE = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+\[(?P<mark>[ xX])\][ \t]+"
                      r"(?:(?:\*\*)?(?P<id>[A-Z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*)(?:\*\*)?:(?:\*\*)?[ \t]+)?"
                      r"(?P<text>.*?)[ \t]*$")


@dataclass(frozen=True)
class PlanItem:
    """A checklist item; ``blocks`` are the fenced blocks between it and the next item."""

    id: str | None
    text: str
    checked: bool
    line: int
    phase: str | None
    blocks: tuple[CodeBlock, ...] = ()


@dataclass(frozen=True)
class Phase:
    id: str
    title: str
    line: int
    end_line: int
    items: tuple[PlanItem, ...]
    blocks: tuple[CodeBlock, ...]

    @property
    def done(self) -> bool:
        """True when the phase has checklist items and all are checked."""
        return bool(self.items) and all(i.checked for i in self.items)

    @property
    def unfinished(self) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if not i.checked)


@dataclass(frozen=True)
class Plan:
    path: str
    lines: tuple[str, ...]
    title: str
    phases: tuple[Phase, ...]
    items: tuple[PlanItem, ...]

    def item(self, item_id: str) -> PlanItem:
        for it in self.items:
            if it.id == item_id:
                return it
        raise UnknownIdError(self.path, "plan item", item_id, [i.id for i in self.items if i.id])

    def phase(self, phase_id: str) -> Phase:
        for ph in self.phases:
            if ph.id == phase_id:
                return ph
        raise UnknownIdError(self.path, "phase", phase_id, [p.id for p in self.phases])


def _phase(lines, flags, fences, start: int, end: int, m: re.Match, path: PathLike) -> Phase:
    items: list[PlanItem] = []
    pending: list[CodeBlock] = []
    blocks: list[CodeBlock] = []
    by_start = {f.start: f for f in fences}

    def flush() -> None:
        if items and pending:
            last = items[-1]
            items[-1] = PlanItem(last.id, last.text, last.checked, last.line, last.phase,
                                 last.blocks + tuple(pending))
        pending.clear()

    for i in range(start + 1, end):
        if i in by_start:
            block = code_block(lines, by_start[i])
            blocks.append(block)
            pending.append(block)
            continue
        if flags[i]:
            continue
        im = _ITEM_RE.match(content(lines[i]))
        if im:
            flush()
            items.append(PlanItem(im["id"], im["text"], im["mark"] in "xX", i + 1, m["id"]))
    flush()
    end_line = end
    while end_line > start + 1 and not content(lines[end_line - 1]).strip():
        end_line -= 1
    return Phase(m["id"], m["title"], start + 1, end_line, tuple(items), tuple(blocks))


def parse(text: str, path: PathLike = "implementation.md") -> Plan:
    """Parse an implementation plan; ParseError for no phases, duplicate IDs, bad fences."""
    require_text(text, path)
    lines = split_lines(text)
    flags, fences = scan_fences(lines, path)
    heads: list[tuple[int, int, re.Match | None]] = []  # (index, level, phase match or None)
    title = ""
    for i, line in enumerate(lines):
        if line[:1] != "#" or flags[i]:
            continue
        c = content(line)
        hm = _HEADING_RE.match(c)
        if hm is None:
            continue
        if not title and len(hm["hashes"]) == 1:
            title = c[1:].strip()
        heads.append((i, len(hm["hashes"]), _PHASE_RE.match(c)))
    phases = []
    for k, (start, level, m) in enumerate(heads):
        if m is None:
            continue
        end = next((s for s, lv, pm in heads[k + 1:] if pm is not None or lv <= level), len(lines))
        phases.append(_phase(lines, flags, fences, start, end, m, path))
    if not phases:
        raise ParseError(path, 1, "no phases found (expected '## Phase A: title' sections)")
    seen: dict[str, int] = {}
    for ph in phases:
        if ph.id in seen:
            raise ParseError(path, ph.line, f"duplicate phase {ph.id!r} (first at line {seen[ph.id]})")
        seen[ph.id] = ph.line
    items = tuple(it for ph in phases for it in ph.items)
    seen = {}
    for it in items:
        if it.id is not None and it.id in seen:
            raise ParseError(path, it.line, f"duplicate plan item {it.id!r} (first at line {seen[it.id]})")
        if it.id is not None:
            seen[it.id] = it.line
    return Plan(str(path), tuple(lines), title, tuple(phases), items)


def render(doc: Plan) -> str:
    return "".join(doc.lines)


def load(path: PathLike) -> Plan:
    return parse(read_text(path), path)


def first_unfinished_phase(doc: Plan) -> Phase | None:
    """The first phase with an unchecked item (phases without checklist items are skipped)."""
    return next((ph for ph in doc.phases if ph.items and not ph.done), None)


def tick(doc: Plan, item_id: str, checked: bool = True) -> Plan:
    """New plan with item ``item_id`` checked (``[x]``) or unchecked (``[ ]``)."""
    it = doc.item(item_id)
    c = content(doc.lines[it.line - 1])
    m = _ITEM_RE.match(c)
    if m is None:  # cannot happen for a parsed item; guard against hand-built Plans
        raise ParseError(doc.path, it.line, f"not a checklist item: {c!r}")
    col = m.start("mark")
    new = c[:col] + ("x" if checked else " ") + c[col + 1:]
    return parse("".join(replace_line(doc.lines, it.line - 1, new)), doc.path)
