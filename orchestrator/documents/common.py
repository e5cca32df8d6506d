"""Line-level helpers shared by the document parsers.

Every parser works on ``lines``: the text split after each ``\\n`` with line endings kept,
so ``"".join(lines) == text`` and rendering an unmodified document is byte-identical.
Line numbers are 1-based everywhere in the public API; list indices are 0-based.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.fsutil import format_ts, iso_utc

from .errors import ParseError

PathLike = Path | str

#: Focus/item IDs such as ``FIX-GRIDSIZE-TRANSLATE-BATCH-001`` (at least one dash).
ID_PATTERN = r"[A-Z][A-Z0-9]*(?:[-_][A-Z0-9]+)+"
#: The same with an optional sub-step suffix: ``STUDY-SYNTH-DOSE-COMPARISON-001.F1``.
FOCUS_PATTERN = ID_PATTERN + r"(?:\.[A-Za-z0-9][A-Za-z0-9_-]*)*"
FOCUS_RE = re.compile(FOCUS_PATTERN)

#: Unnamed timestamp pattern, embeddable in other regexes. Accepts ``2026-01-06T14:00:00Z``,
#: compact ``2026-01-07T073000Z``, minutes-only ``2026-01-22T02:40Z`` / ``2026-01-22T0240Z``,
#: optional fractional seconds and ``±HH:MM`` offsets instead of ``Z``.
TIMESTAMP_PATTERN = (
    r"\d{4}-\d{2}-\d{2}T\d{2}:?\d{2}(?::?\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})"
)
_TIMESTAMP_RE = re.compile(
    r"(?P<Y>\d{4})-(?P<M>\d{2})-(?P<D>\d{2})T(?P<h>\d{2}):?(?P<m>\d{2})"
    r"(?::?(?P<s>\d{2})(?:\.(?P<f>\d{1,6}))?)?(?P<tz>Z|[+-]\d{2}:?\d{2})"
)
_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")
_EXPECTED_RE = re.compile(r"^\s*#\s*Expected\s*:\s*(?P<raw>.*?)\s*$", re.IGNORECASE)
_COUNT_RE = re.compile(r"(?P<count>\d+)\s+(?P<word>[A-Za-z_]+)")

#: Fence languages whose content is a shell script (unlabeled fences count too).
COMMAND_LANGS = frozenset({"", "bash", "sh", "shell", "console", "zsh"})


# --------------------------------------------------------------------------- text & files
def split_lines(text: str) -> list[str]:
    """Split after each ``\\n`` keeping endings; only ``\\n`` counts (not U+2028 etc.)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def content(line: str) -> str:
    """A raw line without its ``\\n`` / ``\\r\\n`` ending."""
    if line.endswith("\n"):
        line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
    return line


def newline_of(lines: Sequence[str]) -> str:
    """The line ending the document uses (``\\r\\n`` if its first line has one)."""
    return "\r\n" if lines and lines[0].endswith("\r\n") else "\n"


def decode(data: bytes, path: PathLike) -> str:
    """Strict UTF-8 decode; a bad byte raises :class:`ParseError` naming its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ParseError(path, line, f"invalid UTF-8 byte 0x{data[exc.start]:02x} at offset {exc.start}") from None


def read_text(path: PathLike) -> str:
    """Read a document as strict UTF-8 (``OSError`` such as FileNotFoundError propagates)."""
    return decode(Path(path).read_bytes(), path)


def require_text(text: str, path: PathLike) -> None:
    """Reject empty or whitespace-only documents."""
    if not text.strip():
        raise ParseError(path, 1, "empty file")


def replace_line(lines: Sequence[str], index: int, new_content: str) -> list[str]:
    """Copy of ``lines`` with line ``index`` replaced, keeping that line's ending."""
    out = list(lines)
    old = out[index]
    out[index] = new_content + old[len(content(old)):]
    return out


def insert_lines(lines: Sequence[str], index: int, new_contents: Sequence[str]) -> list[str]:
    """Copy of ``lines`` with ``new_contents`` inserted before ``index`` (endings added).

    Inserting at the end of a file that lacks a final newline first terminates its last line.
    """
    nl = newline_of(lines)
    out = list(lines)
    if index == len(out) and out and not out[-1].endswith("\n"):
        out[-1] += nl
    out[index:index] = [c + nl for c in new_contents]
    return out


def check_single_line(value: str, what: str) -> str:
    """Refuse values that would break a one-line markdown construct."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"{what} must be a single line, got {value!r}")
    return value


def strip_md(value: str) -> str:
    """Trim whitespace, surrounding backticks and bold/italic markers: ``**`x`**`` → ``x``."""
    value = value.strip()
    for _ in range(3):
        before = value
        for mark in ("**", "__", "`", "*"):
            if len(value) >= 2 * len(mark) and value.startswith(mark) and value.endswith(mark):
                value = value[len(mark):-len(mark)].strip()
        if value == before:
            break
    return value


def base_id(focus: str) -> str:
    """``STUDY-X-001.F1`` → ``STUDY-X-001`` (drop sub-step suffixes)."""
    return focus.split(".", 1)[0]


def leading_int(value: str) -> int | None:
    """``"2 (second loop)"`` → 2; None when the value does not start with a number."""
    m = re.match(r"\s*(-?\d+)", value)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- timestamps
def parse_timestamp(text: str) -> datetime:
    """Parse one of the accepted forms into an aware UTC datetime; ValueError otherwise."""
    m = _TIMESTAMP_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"bad timestamp {text!r} (expected e.g. 2026-01-06T14:00:00Z or 2026-01-07T073000Z)")
    frac = (m["f"] or "").ljust(6, "0")
    try:
        dt = datetime(int(m["Y"]), int(m["M"]), int(m["D"]), int(m["h"]), int(m["m"]),
                      int(m["s"] or 0), int(frac or 0), tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"bad timestamp {text!r}: {exc}") from None
    tz = m["tz"]
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        dt -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return dt


def format_timestamp(dt: datetime, style: str = "extended") -> str:
    """``extended`` → ``2026-01-06T14:00:00Z``; ``compact`` → ``2026-01-06T140000Z``."""
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {dt!r} must be timezone-aware (UTC)")
    if style == "extended":
        return iso_utc(dt, "seconds")
    if style == "compact":
        return format_ts(dt)
    raise ValueError(f"unknown timestamp style {style!r} (extended|compact)")


# --------------------------------------------------------------------------- code fences
@dataclass(frozen=True)
class Fence:
    """A fenced code block: ``start``/``end`` are 0-based indices of the fence lines."""

    start: int
    end: int
    lang: str
    info: str


def fence_opener(text: str) -> tuple[str, int, str] | None:
    """``(char, length, info)`` when ``text`` (one line, no ending) opens a fence, else None.

    Openers are ``` or ~~~ (≥3, any indentation); a backtick opener whose info string holds
    a backtick is an inline code span, not a fence (CommonMark rule).
    """
    m = _FENCE_RE.match(text)
    if m is None:
        return None
    marker, info = m.group(1), m.group(2).strip()
    if marker[0] == "`" and "`" in info:
        return None
    return marker[0], len(marker), info


def is_fence_closer(text: str, char: str, size: int) -> bool:
    """A closer uses the opener's character, at least as many, and nothing else."""
    closer = text.strip()
    return len(closer) >= size and closer == char * len(closer)


def scan_fences(lines: Sequence[str], path: PathLike, first_line: int = 1) -> tuple[list[bool], list[Fence]]:
    """Find fenced blocks. Returns (flags, fences): ``flags[i]`` is True for fence lines.

    An unterminated fence raises :class:`ParseError` at its opener.
    """
    flags = [False] * len(lines)
    fences: list[Fence] = []
    open_at = -1
    char = lang = info = ""
    size = 0
    for i, line in enumerate(lines):
        head = line.lstrip(" \t")[:3]
        if open_at < 0:
            if head == "```" or head == "~~~":
                opener = fence_opener(content(line))
                if opener is None:
                    continue
                char, size, info = opener
                open_at = i
                lang = info.split()[0].lower() if info else ""
                flags[i] = True
        else:
            flags[i] = True
            if head == char * 3 and is_fence_closer(content(line), char, size):
                fences.append(Fence(open_at, i, lang, info))
                open_at = -1
    if open_at >= 0:
        raise ParseError(path, first_line + open_at,
                         f"unterminated code fence {content(lines[open_at]).strip()!r}")
    return flags, fences


@dataclass(frozen=True)
class Expectation:
    """A ``# Expected: 2 passed`` comment: raw text, the first ``<count> <word>`` pair, and
    all pairs in ``counts`` (``"2 passed, 0 failed"`` → ``{"passed": 2, "failed": 0}``)."""

    raw: str
    line: int
    count: int | None
    outcome: str | None
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CodeBlock:
    """A fenced block. ``code`` excludes the fence lines; lines are 1-based."""

    lang: str
    code: str
    line: int
    end_line: int
    expected: tuple[Expectation, ...]

    @property
    def is_command(self) -> bool:
        """True for shell blocks (``bash``/``sh``/``shell``/``console``/unlabeled)."""
        return self.lang in COMMAND_LANGS

    @property
    def has_command(self) -> bool:
        """True when the block holds a line that is neither blank nor a ``#`` comment."""
        return any(ln.strip() and not ln.lstrip().startswith("#") for ln in self.code.split("\n"))

    @property
    def script(self) -> str:
        """The code without ``# Expected:`` lines and surrounding blank lines."""
        kept = [ln for ln in self.code.split("\n") if not _EXPECTED_RE.match(ln)]
        return "\n".join(kept).strip("\n")


def parse_expectation(raw: str, line: int) -> Expectation:
    """``"2 passed"`` → Expectation(count=2, outcome="passed")."""
    pairs = [(m["word"].lower(), int(m["count"])) for m in _COUNT_RE.finditer(raw)]
    if not pairs:
        return Expectation(raw, line, None, None)
    return Expectation(raw, line, pairs[0][1], pairs[0][0], dict(pairs))


def code_block(lines: Sequence[str], fence: Fence, first_line: int = 1) -> CodeBlock:
    """Build a :class:`CodeBlock` from a fence found by :func:`scan_fences`."""
    body = [content(ln) for ln in lines[fence.start + 1:fence.end]]
    expected = []
    for offset, text in enumerate(body):
        m = _EXPECTED_RE.match(text)
        if m:
            expected.append(parse_expectation(m["raw"], first_line + fence.start + 1 + offset))
    return CodeBlock(fence.lang, "\n".join(body), first_line + fence.start,
                     first_line + fence.end, tuple(expected))
