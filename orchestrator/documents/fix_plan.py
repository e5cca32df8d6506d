"""``docs/fix_plan.md`` — the backlog of focus items.

Items dialect (the harness's own): ``## [<ID>] <title>`` (also ``## <ID> — <title>``) followed by
field bullets ``- Status:`` (pending|in_progress|blocked|done, optionally ``done — note``),
``- Priority:`` (P0–P3), ``- Depends on:``, ``- Working plan:``, ``- Mapped tests:``, ``- Exit
criteria:`` and ``- Attempts History:`` with nested ``- <timestamp> <SUPERVISOR|RALPH> <sha>: text``
lines. Bold keys (``- **Status:** done``), un-bulleted ``Status: done``, inline or nested list values.
Single-focus dialect (real-world, read-only): ``## Status`` (backticked value), ``## Current Focus``
(bold ``ID — title``), ``## Completed Items`` checklist and ``## Attempts History`` with
``### <ts> — ID.sub (label)`` entries. Mutations return a **new** :class:`FixPlan`; every line they
do not touch is kept byte-for-byte.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from types import MappingProxyType

from .common import (
    FOCUS_PATTERN,
    FOCUS_RE,
    ID_PATTERN,
    PathLike,
    base_id,
    check_single_line,
    content,
    format_timestamp,
    insert_lines,
    newline_of,
    parse_timestamp,
    read_text,
    replace_line,
    require_text,
    scan_fences,
    split_lines,
    strip_md,
)
from .errors import ParseError, ReadOnlyDialectError, UnknownIdError

ITEMS = "items"
SINGLE_FOCUS = "single_focus"
STATUSES = ("pending", "in_progress", "blocked", "done")
PRIORITIES = ("P0", "P1", "P2", "P3")

_H2_RE = re.compile(r"^##(?!#)[ \t]*(?P<name>.*?)[ \t]*$")
_ITEM_RE = re.compile(r"^##[ \t]+(?:\[(?P<bid>[^\]\s]+)\][ \t]*(?P<btitle>.*?)|(?P<id>" + FOCUS_PATTERN
                      + r")(?:(?:[ \t]*[—–:]|[ \t]+-(?=[ \t])|(?=[ \t]))[ \t]*(?P<title>.*?))?)[ \t]*$")
_FIELD_RE = re.compile(r"^(?:[-*][ \t]+)?(?:\*\*)?(?P<key>[A-Za-z][A-Za-z _/-]*?)(?::\*\*|\*\*:|:)"
                       r"(?:[ \t]+|$)(?P<value>.*?)[ \t]*$")
_ATTEMPT_RE = re.compile(r"^[ \t]*[-*][ \t]+(?P<ts>\S+)[ \t]+(?P<role>SUPERVISOR|RALPH)\b[ \t]*"
                         r"(?P<sha>[^\s:]+)?[ \t]*:[ \t]*(?P<text>.*?)[ \t]*$", re.IGNORECASE)
_BULLET_RE = re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+(?:\[[ xX]\][ \t]+)?(?P<text>.*?)[ \t]*$")
_CHECK_RE = re.compile(r"^[-*][ \t]+\[(?P<mark>[ xX])\][ \t]+(?P<text>.*?)[ \t]*$")
_ATTEMPT_HEAD_RE = re.compile(r"^###[ \t]+(?P<ts>\d{4}-\S*?)(?:[ \t]+[—–-][ \t]+(?P<rest>.*?))?[ \t]*$")
_STATUS_WORD_RE = re.compile(r"^[`*_\s]*(?P<word>[A-Za-z][A-Za-z_-]*)[`*_]*(?P<note>.*)$")
_KEYS = MappingProxyType({
    "status": "status", "priority": "priority", "depends on": "depends_on", "depends_on": "depends_on",
    "dependencies": "depends_on", "working plan": "working_plan", "plan": "working_plan",
    "mapped tests": "mapped_tests", "tests": "mapped_tests", "exit criteria": "exit_criteria",
    "attempts history": "attempts", "attempts": "attempts"})
_NONE_WORDS = frozenset({"", "none", "n/a", "-", "—", "[]"})


@dataclass(frozen=True)
class Field:
    """A field bullet. ``items`` are its nested bullets; ``value_col`` is where the value starts."""

    key: str
    label: str
    value: str
    line: int
    end_line: int
    value_col: int
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attempt:
    """An Attempts History line (or a single-focus ``###`` entry). Unparsed lines keep ``raw``."""

    line: int
    raw: str
    timestamp: datetime | None
    role: str | None
    sha: str | None
    text: str
    label: str | None = None
    focus: str | None = None


@dataclass(frozen=True)
class FixPlanItem:
    id: str
    title: str
    line: int
    end_line: int
    status: str | None
    status_note: str = ""
    priority: str | None = None
    depends_on: tuple[str, ...] = ()
    working_plan: str | None = None
    mapped_tests: tuple[str, ...] = ()
    exit_criteria: tuple[str, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    fields: Mapping[str, Field] = field(default_factory=dict)


@dataclass(frozen=True)
class FixPlan:
    path: str
    lines: tuple[str, ...]
    dialect: str
    items: tuple[FixPlanItem, ...]
    status: str | None = None
    current_focus: str | None = None
    current_focus_title: str | None = None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(i.id for i in self.items)

    def item(self, item_id: str) -> FixPlanItem:
        """The item with ``item_id`` (a ``.sub`` suffix is ignored); UnknownIdError otherwise."""
        wanted = base_id(item_id.strip())
        for it in self.items:
            if it.id == wanted:
                return it
        raise UnknownIdError(self.path, "fix-plan item", item_id, self.ids)

    def has(self, item_id: str) -> bool:
        return base_id(item_id.strip()) in self.ids


def _list_value(f: Field | None) -> tuple[str, ...]:
    if f is None:
        return ()
    out = [] if strip_md(f.value).lower() in _NONE_WORDS else [strip_md(f.value)]
    out += [strip_md(x) for x in f.items if strip_md(x)]
    return tuple(out)


def _status(value: str) -> tuple[str | None, str]:
    m = _STATUS_WORD_RE.match(value)
    if m is None:
        return None, value.strip()
    note = m["note"].strip()
    note = re.sub(r"^[—–:;,-]+\s*", "", note).strip()
    return m["word"].lower().replace("-", "_"), note


def _attempt(text: str, line: int) -> Attempt:
    m = _ATTEMPT_RE.match(text)
    if m:
        try:
            ts = parse_timestamp(m["ts"])
        except ValueError:
            ts = None
        if ts is not None:
            return Attempt(line, text, ts, m["role"].upper(), m["sha"], m["text"])
    b = _BULLET_RE.match(text)
    return Attempt(line, text, None, None, None, b["text"] if b else text.strip())


def _fields(lines: Sequence[str], flags: Sequence[bool], start: int, end: int) -> dict[str, Field]:
    """Fields of one item: col-0 ``Key: value`` lines plus their indented continuation lines."""
    fields: dict[str, Field] = {}
    i = start
    while i < end:
        c = content(lines[i])
        m = None if flags[i] or c[:1] in (" ", "\t") else _FIELD_RE.match(c)
        if m is None:
            i += 1
            continue
        j = i + 1
        last = i
        while j < end:
            cj = content(lines[j])
            if cj.strip() and not (cj[:1] in (" ", "\t") or flags[j]):
                break
            if cj.strip():
                last = j
            j += 1
        items = tuple(b["text"] for k in range(i + 1, last + 1)
                      if not flags[k] and (b := _BULLET_RE.match(content(lines[k]))))
        label = m["key"].strip()
        key = _KEYS.get(label.lower(), label.lower())
        fields.setdefault(key, Field(key, label, m["value"], i + 1, last + 1, m.start("value"), items))
        i = last + 1
    return fields


def _item(lines: Sequence[str], flags: Sequence[bool], start: int, end: int, m: re.Match) -> FixPlanItem:
    fields = _fields(lines, flags, start + 1, end)
    status, note = _status(fields["status"].value) if "status" in fields else (None, "")
    prio = fields.get("priority")
    pm = re.search(r"\bP[0-3]\b", prio.value) if prio else None
    deps = fields.get("depends_on")
    attempts: list[Attempt] = []
    if "attempts" in fields:
        f = fields["attempts"]
        for k in range(f.line, f.end_line):
            c = content(lines[k])
            if c.strip() and not flags[k] and _BULLET_RE.match(c) and (not attempts or
                                                                       _indent(c) <= _indent(attempts[0].raw)):
                attempts.append(_attempt(c, k + 1))
    wp = fields.get("working_plan")
    end_line = end
    while end_line > start + 1 and not content(lines[end_line - 1]).strip():
        end_line -= 1
    return FixPlanItem(id=m["bid"] or m["id"], title=(m["btitle"] if m["bid"] else m["title"]) or "", line=start + 1,
        end_line=end_line, status=status, status_note=note, priority=pm.group(0) if pm else None,
        depends_on=tuple(FOCUS_RE.findall(deps.value + " " + " ".join(deps.items))) if deps else (),
        working_plan=(strip_md(wp.value) or None) if wp else None,
        mapped_tests=_list_value(fields.get("mapped_tests")),
        exit_criteria=_list_value(fields.get("exit_criteria")), attempts=tuple(attempts), fields=fields)


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" \t"))


def _sections(lines: Sequence[str], flags: Sequence[bool]) -> list[tuple[int, str]]:
    """(index, name) of every level-2 heading outside fences, plus a sentinel at the end."""
    out = [(i, m["name"]) for i, line in enumerate(lines)
           if line[:2] == "##" and not flags[i] and (m := _H2_RE.match(content(line)))]
    return out + [(len(lines), "")]


def _single_focus(path: PathLike, lines: Sequence[str], flags: Sequence[bool],
                  sections: list[tuple[int, str]]) -> FixPlan:
    status = focus = title = None
    focus_line = 0
    completed: list[FixPlanItem] = []
    attempts: list[Attempt] = []
    for (start, name), (end, _) in pairwise(sections):
        key = name.lower().strip(" :")
        body = [(k, content(lines[k])) for k in range(start + 1, end) if not flags[k]]
        text = next((c for _, c in body if c.strip()), "")
        if key == "status" and status is None:
            status = (_status(strip_md(text))[0] or None) if text else None
        elif key == "current focus" and focus is None:
            fm = FOCUS_RE.search(strip_md(text))
            if fm:
                focus, focus_line = fm.group(0), next(k for k, c in body if c.strip()) + 1
                rest = strip_md(text)[fm.end():].strip()
                title = strip_md(re.sub(r"^[—–:-]+\s*", "", rest)) or None
        elif key.startswith("completed"):
            for k, c in body:
                cm = _CHECK_RE.match(c)
                im = FOCUS_RE.match(strip_md(cm["text"])) if cm else None
                if im is None:
                    continue
                t = re.sub(r"^[—–:-]+\s*", "", strip_md(cm["text"])[im.end():].strip())
                completed.append(FixPlanItem(base_id(im.group(0)), t, k + 1, k + 1,
                                             "done" if cm["mark"] in "xX" else "pending"))
        elif key.startswith("attempts"):
            attempts += _attempt_sections(path, lines, flags, start + 1, end)
    items: list[FixPlanItem] = []
    if focus is not None:
        items.append(FixPlanItem(base_id(focus), title or "", focus_line, focus_line, status,
                                 attempts=tuple(a for a in attempts if a.focus and base_id(a.focus) == base_id(focus))))
    items += [c for c in completed if focus is None or c.id != base_id(focus)]
    _no_duplicates(path, items)
    return FixPlan(str(path), tuple(lines), SINGLE_FOCUS, tuple(items), status, focus, title)


def _attempt_sections(path: PathLike, lines: Sequence[str], flags: Sequence[bool], start: int,
                      end: int) -> list[Attempt]:
    heads = [k for k in range(start, end) if not flags[k] and lines[k].startswith("###")]
    out = []
    for k, nxt in zip(heads, heads[1:] + [end], strict=False):  # unequal only when there is no head
        c = content(lines[k])
        m = _ATTEMPT_HEAD_RE.match(c)
        if m is None:
            continue
        try:
            ts = parse_timestamp(m["ts"])
        except ValueError as exc:
            raise ParseError(path, k + 1, f"{exc} in attempt heading") from None
        rest = m["rest"] or ""
        fm = FOCUS_RE.match(rest)
        lm = re.search(r"\(([^()]*)\)\s*$", rest)
        label = lm.group(1) if lm else None
        role = next((r for r in ("RALPH", "SUPERVISOR") if label and r.lower() in label.lower()), None)
        text = "\n".join(content(x) for x in lines[k + 1:nxt]).strip()
        out.append(Attempt(k + 1, c, ts, role, None, text, label, fm.group(0) if fm else None))
    return out


def _no_duplicates(path: PathLike, items: Sequence[FixPlanItem]) -> None:
    seen: dict[str, int] = {}
    for it in items:
        if it.id in seen:
            raise ParseError(path, it.line, f"duplicate focus ID {it.id!r} (first defined at line {seen[it.id]})")
        seen[it.id] = it.line


def parse(text: str, path: PathLike = "docs/fix_plan.md") -> FixPlan:
    """Parse a fix plan (either dialect); ParseError on duplicates, bad fences, no items."""
    require_text(text, path)
    lines = split_lines(text)
    flags, _ = scan_fences(lines, path)
    sections = _sections(lines, flags)
    items = []
    for (start, _name), (end, _) in pairwise(sections):
        m = _ITEM_RE.match(content(lines[start]))
        if m:
            items.append(_item(lines, flags, start, end, m))
    if not items:
        names = {n.lower().strip(" :") for _, n in sections}
        if names & {"status", "current focus"}:
            return _single_focus(path, lines, flags, sections)
        raise ParseError(path, 1, "no fix-plan items found (expected '## [ID] title' headings)")
    _no_duplicates(path, items)
    return FixPlan(str(path), tuple(lines), ITEMS, tuple(items))


def render(doc: FixPlan) -> str:
    return "".join(doc.lines)


def load(path: PathLike) -> FixPlan:
    return parse(read_text(path), path)


def _writable(doc: FixPlan) -> None:
    if doc.dialect != ITEMS:
        raise ReadOnlyDialectError(f"{doc.path}: the {doc.dialect} fix-plan dialect is read-only")


def set_status(doc: FixPlan, item_id: str, status: str) -> FixPlan:
    """New plan with the item's ``Status:`` value replaced (a trailing note is dropped)."""
    _writable(doc)
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    it = doc.item(item_id)
    f = it.fields.get("status")
    if f is None:
        lines = insert_lines(doc.lines, it.line, [f"- Status: {status}"])
    else:
        lines = replace_line(doc.lines, f.line - 1, content(doc.lines[f.line - 1])[:f.value_col] + status)
    return parse("".join(lines), doc.path)


def format_attempt(timestamp: datetime, role: str, sha: str | None, text: str) -> str:
    """``2026-01-07T07:30:00Z RALPH 347ce7d6: text`` (sha ``none`` when unknown)."""
    if role.upper() not in ("SUPERVISOR", "RALPH"):
        raise ValueError(f"role must be SUPERVISOR or RALPH, got {role!r}")
    return f"{format_timestamp(timestamp)} {role.upper()} {sha or 'none'}: {check_single_line(text, 'text')}"


def append_attempt(doc: FixPlan, item_id: str, line_text: str) -> FixPlan:
    """New plan with ``- <line_text>`` appended to the item's Attempts History (created if absent)."""
    _writable(doc)
    check_single_line(line_text, "attempt line")
    text = line_text.strip().removeprefix("- ")
    it = doc.item(item_id)
    f = it.fields.get("attempts")
    if f is None:
        after = max((x.end_line for x in it.fields.values()), default=it.line)
        lines = insert_lines(doc.lines, after, ["- Attempts History:", f"  - {text}"])
    else:
        indent = next((a.raw[:_indent(a.raw)] for a in it.attempts), "  ")
        lines = insert_lines(doc.lines, f.end_line, [f"{indent}- {text}"])
    return parse("".join(lines), doc.path)


def render_item(item_id: str, title: str, *, status: str = "pending", priority: str = "P2",
                depends_on: Sequence[str] = (), working_plan: str | None = None,
                mapped_tests: Sequence[str] = (), exit_criteria: Sequence[str] = ()) -> str:
    """Markdown for a new item in the harness's own format."""
    if not re.fullmatch(ID_PATTERN, item_id):
        raise ValueError(f"bad item ID {item_id!r} (expected e.g. FIX-SOMETHING-001)")
    if status not in STATUSES or priority not in PRIORITIES:
        raise ValueError(f"bad status/priority {status!r}/{priority!r}")
    out = [f"## [{item_id}] {check_single_line(title, 'title')}", f"- Status: {status}",
           f"- Priority: {priority}", f"- Depends on: {', '.join(depends_on) or 'none'}"]
    if working_plan:
        out.append(f"- Working plan: {check_single_line(working_plan, 'working_plan')}")
    for label, values in (("Mapped tests", mapped_tests), ("Exit criteria", exit_criteria)):
        out.append(f"- {label}:" if values else f"- {label}: none")
        out += [f"  - {check_single_line(v, label)}" for v in values]
    out.append("- Attempts History:")
    return "\n".join(out) + "\n"


def add_item(doc: FixPlan, item_id: str, title: str, **kwargs) -> FixPlan:
    """New plan with an item (see :func:`render_item`) appended at the end of the file."""
    _writable(doc)
    if doc.has(item_id):
        raise ValueError(f"{doc.path}: item {item_id!r} already exists")
    nl = newline_of(doc.lines)
    block = render_item(item_id, title, **kwargs).replace("\n", nl)
    text = "".join(doc.lines)
    text += nl if text and not text.endswith("\n") else ""
    return parse(text + ("" if not text or text.endswith(nl * 2) else nl) + block, doc.path)
