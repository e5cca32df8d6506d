"""``input.md`` — the supervisor → worker handoff.

Header: ``Key: value`` lines before the first section (``Mode``, ``Focus: <ID> — <title>``,
``Branch``, ``Mapped tests`` (inline or a bullet list below), ``Artifacts``, ``Summary``…), also
in bold (``**Mode:** x``) or bulleted form. Sections: ``## Name`` headings, or label lines
``Name:`` / ``Name (qualifier):`` when Name is one of :data:`KNOWN_SECTIONS` (the
``Summary:``-first dialect with ``Do Now (hard validity contract):``).

Do Now: ``### Phase X: title`` phases (an implicit phase when there are none) holding steps —
numbered (``1. **title** - detail``) or bulleted items at column 0 — each with fenced blocks;
a block before any step gets an implicit step. ``# Expected: N passed`` comments inside
blocks are expectations. Exit Criteria: numbered or bulleted items, each optionally ending
with ``check: `<command>` ``.

The harness writes new handoffs with :mod:`orchestrator.documents.handoff_draft`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import (
    FOCUS_PATTERN,
    CodeBlock,
    PathLike,
    base_id,
    code_block,
    content,
    read_text,
    require_text,
    scan_fences,
    split_lines,
    strip_md,
)

KNOWN_SECTIONS = ("Summary", "Current State", "Do Now", "How-To Map", "Pitfalls To Avoid", "If Blocked",
                  "Findings Applied", "Pointers", "Exit Criteria", "Next Up")

_H2_RE = re.compile(r"^##(?!#)[ \t]*(?P<name>.*?)[ \t]*$")
_LABEL_RE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z /&-]*?)[ \t]*(?:\((?P<qual>[^()]*)\))?[ \t]*:[ \t]*$")
_QUAL_RE = re.compile(r"^(?P<name>.*?)[ \t]*(?:\((?P<qual>[^()]*)\))?[ \t]*:?[ \t]*$")
_HEADER_RE = re.compile(r"^(?:[-*][ \t]+)?(?:\*\*(?P<bkey>[A-Za-z][A-Za-z /-]*?)(?::\*\*|\*\*:)|"
                        r"(?P<key>[A-Za-z][A-Za-z /-]*?):)(?:[ \t]+(?P<value>.*?))?[ \t]*$")
_LIST_RE = re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+(?P<text>.*?)[ \t]*$")
_PHASE_RE = re.compile(r"^###(?!#)[ \t]+(?:Phase[ \t]+(?P<id>[A-Za-z0-9]+)(?![A-Za-z0-9])[ \t]*"
                       r"(?:(?:[:.—–]|-(?=\s))[ \t]*)?)?(?P<title>.*?)[ \t]*$")
_STEP_RE = re.compile(r"^(?:(?P<num>\d+)[.)]|[-*+])[ \t]+(?P<text>.*?)[ \t]*$")
_NUMBERED_RE = re.compile(r"\d+[.)][ \t]")
_BOLD_TITLE_RE = re.compile(r"^\*\*(?P<title>.+?)\*\*(?:[ \t]*(?:[—–:]|-(?=\s))?[ \t]*(?P<detail>.*))?$")
_CHECK_RE = re.compile(r"^(?P<text>.*?)[ \t]*(?:[—–;,-][ \t]*)?\bcheck:[ \t]*`(?P<cmd>[^`]+)`[ \t]*\.?$")
_FOCUS_VALUE_RE = re.compile(r"^[`*_\[\s]*(?P<id>" + FOCUS_PATTERN + r")(?![\w.-])[`*_\]]*(?P<rest>.*)$")
_FOCUS_SEP_RE = re.compile(r"^[ \t]*(?:[—–:]|-(?=\s))[ \t]*")


def section_key(name: str) -> str:
    """Normalised section name: ``How-To Map`` → ``howtomap``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_KNOWN_KEYS = frozenset(section_key(n) for n in KNOWN_SECTIONS)


@dataclass(frozen=True)
class HeaderField:
    """``key`` is normalised (``mapped_tests``); ``items`` is the bullet list under an empty value."""

    key: str
    label: str
    value: str
    line: int
    items: tuple[str, ...] = ()
    bold: bool = False


@dataclass(frozen=True)
class Section:
    name: str
    key: str
    qualifier: str | None
    style: str  # "heading" (## Name) or "label" (Name:)
    line: int
    end_line: int
    body: str

    @property
    def text(self) -> str:
        return self.body.strip()


@dataclass(frozen=True)
class Step:
    """A Do Now step. ``number`` is None for bullets and implicit steps."""

    number: int | None
    text: str
    title: str
    detail: str
    line: int
    blocks: tuple[CodeBlock, ...] = ()

    @property
    def command_blocks(self) -> tuple[CodeBlock, ...]:
        return tuple(b for b in self.blocks if b.is_command)


@dataclass(frozen=True)
class Phase:
    """A Do Now phase; ``id`` is None for the implicit phase of phase-less handoffs."""

    id: str | None
    title: str
    line: int
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class ExitCriterion:
    number: int | None
    text: str
    check: str | None
    line: int


@dataclass(frozen=True)
class Handoff:
    path: str
    lines: tuple[str, ...]
    header: tuple[HeaderField, ...]
    sections: tuple[Section, ...]
    phases: tuple[Phase, ...]
    exit_criteria: tuple[ExitCriterion, ...]

    def field(self, key: str) -> HeaderField | None:
        """First header field with normalised ``key`` (``mode``, ``mapped_tests``…)."""
        return next((f for f in self.header if f.key == key), None)

    def _value(self, key: str) -> str | None:
        f = self.field(key)
        return strip_md(f.value) if f is not None else None

    def section(self, name: str) -> Section | None:
        key = section_key(name)
        return next((s for s in self.sections if s.key == key), None)

    @property
    def mode(self) -> str | None:
        return self._value("mode")

    @property
    def focus_id(self) -> str | None:
        """Focus as written, possibly with a sub-step (``STUDY-X-001.F1``)."""
        m = _FOCUS_VALUE_RE.match(self._value("focus") or "")
        return m["id"] if m else None

    @property
    def focus_item_id(self) -> str | None:
        """The fix-plan item ID of the focus (sub-step dropped)."""
        focus = self.focus_id
        return base_id(focus) if focus else None

    @property
    def focus_title(self) -> str | None:
        m = _FOCUS_VALUE_RE.match(self._value("focus") or "")
        return (strip_md(_FOCUS_SEP_RE.sub("", m["rest"], count=1)) or None) if m else None

    @property
    def branch(self) -> str | None:
        return self._value("branch")

    @property
    def artifacts(self) -> str | None:
        return self._value("artifacts")

    @property
    def mapped_tests(self) -> str | list[str]:
        """Inline value (str) or the bullet list under ``Mapped tests:`` (list); "" if absent."""
        f = self.field("mapped_tests")
        if f is None:
            return ""
        return [strip_md(x) for x in f.items] if f.items and not f.value else strip_md(f.value)

    @property
    def summary(self) -> str:
        f = self.field("summary")
        if f is not None and f.value:
            return f.value.strip()
        sec = self.section("Summary")
        return sec.text if sec is not None else ""

    @property
    def do_now(self) -> Section | None:
        return self.section("Do Now")

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(s for ph in self.phases for s in ph.steps)

    @property
    def command_blocks(self) -> tuple[CodeBlock, ...]:
        """Every shell block of Do Now, in order."""
        return tuple(b for s in self.steps for b in s.command_blocks)


def _starts(lines, flags) -> list[tuple[int, str, str | None, str]]:
    out = []
    for i, line in enumerate(lines):
        if flags[i]:
            continue
        c = content(line)
        if c.startswith("##"):
            m = _H2_RE.match(c)
            if m:
                q = _QUAL_RE.match(m["name"])
                out.append((i, q["name"] or m["name"], q["qual"], "heading"))
        elif c[:1].isalpha() and c.rstrip().endswith(":"):
            m = _LABEL_RE.match(c)
            key = section_key(m["name"]) if m else ""
            if key in _KNOWN_KEYS and (out or key != "summary"):  # a leading "Summary:" is a header field
                out.append((i, m["name"].strip(), m["qual"], "label"))
    return out


def _header(lines, flags, end: int) -> tuple[HeaderField, ...]:
    """Header fields; an empty value takes the bullet list below it, and ``Summary:`` also
    takes the non-blank, non-field lines that follow it (joined with newlines)."""
    fields: list[HeaderField] = []
    i = 0
    while i < end:
        c = content(lines[i])
        m = None if flags[i] else _HEADER_RE.match(c)
        line = i + 1
        i += 1
        if m is None:
            continue
        label = (m["bkey"] or m["key"]).strip()
        key = re.sub(r"[\s/-]+", "_", label.lower())
        value = m["value"] or ""
        items = []
        if not value:
            while i < end and not flags[i] and (lm := _LIST_RE.match(content(lines[i]))):
                items.append(lm["text"])
                i += 1
        if key == "summary" and not items:
            more = [value] if value else []
            while i < end and not flags[i] and content(lines[i]).strip() and not _HEADER_RE.match(content(lines[i])):
                more.append(content(lines[i]).strip())
                i += 1
            value = "\n".join(more)
        fields.append(HeaderField(key, label, value, line, tuple(items), m["bkey"] is not None))
    return tuple(fields)


def _step(m: re.Match, line: int) -> Step:
    text = m["text"]
    bm = _BOLD_TITLE_RE.match(text)
    title, detail = (bm["title"].strip(), (bm["detail"] or "").strip()) if bm else (text, "")
    return Step(int(m["num"]) if m["num"] else None, text, title, detail, line)


def _do_now(lines, flags, fences, sec_start: int, end: int) -> tuple[Phase, ...]:
    """Phases → steps → blocks. When any step is numbered, only numbered items start steps
    (bullets are notes inside a step); otherwise every column-0 bullet is a step."""
    by_start = {f.start: f for f in fences}
    numbered = any(not flags[i] and _NUMBERED_RE.match(lines[i]) for i in range(sec_start + 1, end))
    phases: list[tuple[str | None, str, int, list[Step]]] = []
    i = sec_start + 1
    while i < end:
        if i in by_start:
            fence = by_start[i]
            block = code_block(lines, fence)
            if not phases:
                phases.append((None, "", sec_start + 1, []))
            steps = phases[-1][3]
            if not steps:
                steps.append(Step(None, "", "", "", block.line))
            last = steps[-1]
            steps[-1] = Step(last.number, last.text, last.title, last.detail, last.line, last.blocks + (block,))
            i = fence.end + 1
            continue
        c = content(lines[i])
        if not flags[i]:
            if c.startswith("###") and (pm := _PHASE_RE.match(c)):
                phases.append((pm["id"], pm["title"], i + 1, []))
            elif (sm := _STEP_RE.match(c)) is not None and (sm["num"] or not numbered):
                if not phases:
                    phases.append((None, "", sec_start + 1, []))
                phases[-1][3].append(_step(sm, i + 1))
        i += 1
    return tuple(Phase(pid, title, line, tuple(steps)) for pid, title, line, steps in phases)


def _exit_criteria(lines, flags, start: int, end: int) -> tuple[ExitCriterion, ...]:
    raw: list[tuple[int | None, list[str], int]] = []
    for i in range(start + 1, end):
        if flags[i]:
            continue
        c = content(lines[i])
        m = _STEP_RE.match(c)
        if m:
            raw.append((int(m["num"]) if m["num"] else None, [m["text"]], i + 1))
        elif raw and c[:1] in (" ", "\t") and c.strip():
            raw[-1][1].append(c.strip())
    out = []
    for num, parts, line in raw:
        text = " ".join(parts)
        cm = _CHECK_RE.match(text)
        out.append(ExitCriterion(num, cm["text"].strip() if cm else text, cm["cmd"].strip() if cm else None, line))
    return tuple(out)


def parse(text: str, path: PathLike = "input.md") -> Handoff:
    """Parse a handoff; ParseError for empty files and unterminated fences."""
    require_text(text, path)
    lines = split_lines(text)
    flags, fences = scan_fences(lines, path)
    starts = _starts(lines, flags)
    header = _header(lines, flags, starts[0][0] if starts else len(lines))
    sections, phases, criteria = [], (), ()
    for k, (start, name, qual, style) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        last = end
        while last > start + 1 and not content(lines[last - 1]).strip():
            last -= 1
        sec = Section(name, section_key(name), qual, style, start + 1, last, "".join(lines[start + 1:end]))
        sections.append(sec)
        if sec.key == "donow" and not phases:
            phases = _do_now(lines, flags, fences, start, end)
        elif sec.key == "exitcriteria" and not criteria:
            criteria = _exit_criteria(lines, flags, start, end)
    return Handoff(str(path), tuple(lines), header, tuple(sections), phases, criteria)


def render(doc: Handoff) -> str:
    return "".join(doc.lines)


def load(path: PathLike) -> Handoff:
    return parse(read_text(path), path)
