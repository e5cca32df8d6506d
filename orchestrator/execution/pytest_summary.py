"""Parse pytest's final summary line and check ``# Expected:`` lines against it.

Recognised summary lines (after stripping ANSI colours and the ``====`` rule)::

    3 passed, 1 failed in 0.12s                       (-q)
    ==== 2 passed, 1 warning in 1.20s ====            (default / -v)
    12 tests collected in 0.30s                       (--collect-only -q)
    1/2 tests collected (1 deselected) in 0.01s
    2 tests collected, 1 error in 0.12s
    no tests ran in 0.01s / no tests collected in 0.01s
    1 failed in 62.01s (0:01:02)

A line only counts when every comma-separated item is a known pytest outcome and it ends
with the ``in <seconds>s`` timing pytest always prints, so test output that merely mentions
"2 passed" is not mistaken for a summary. The LAST such line of an output wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

__all__ = [
    "ExpectationResult",
    "PytestCounts",
    "SummaryWatcher",
    "evaluate_expectation",
    "parse_pytest_output",
    "parse_summary_line",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LINE = re.compile(
    r"^=*\s*(?P<items>.+?)\s+in\s+(?P<secs>\d+(?:\.\d+)?)\s*(?:s|seconds)"
    r"(?:\s+\(\d+:\d{2}:\d{2}(?:\.\d+)?\))?\s*=*$"
)
_COLLECTED = re.compile(
    r"^(?P<n>\d+)(?:/(?P<total>\d+))?\s+tests?\s+collected(?:\s+\((?P<desel>\d+)\s+deselected\))?$"
)
_ITEM = re.compile(r"^(?P<n>\d+)\s+(?P<word>[a-z]+)$")
# pytest's words (singular and plural) -> PytestCounts field
_WORDS = {
    "passed": "passed",
    "failed": "failed",
    "error": "errors",
    "errors": "errors",
    "skipped": "skipped",
    "xfailed": "xfailed",
    "xpassed": "xpassed",
    "deselected": "deselected",
    "warning": "warnings",
    "warnings": "warnings",
    "rerun": "rerun",
    "reruns": "rerun",
}
_OUTCOME_FIELDS = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed")


@dataclass(frozen=True)
class PytestCounts:
    """Counts from one pytest summary line.

    ``collected`` is set only by ``--collect-only`` summaries (the number of *selected*
    tests for ``N/M tests collected``); ``no_tests_ran`` is true for "no tests ran/collected"
    and for run summaries with no test outcome at all (e.g. ``5 deselected in 0.01s``).
    """

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0
    deselected: int = 0
    warnings: int = 0
    rerun: int = 0
    collected: int | None = None
    no_tests_ran: bool = False
    duration_s: float | None = None
    line: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PytestCounts:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def parse_summary_line(line: str) -> PytestCounts | None:
    """Counts from one line if it is a pytest summary line, else ``None``."""
    text = _ANSI.sub("", line).strip()
    m = _LINE.match(text)
    if m is None:
        return None
    values: dict[str, Any] = {}
    no_tests = False
    for raw in m.group("items").split(","):
        item = raw.strip()
        if item in ("no tests ran", "no tests collected"):
            no_tests = True
            if item == "no tests collected":
                values["collected"] = 0
            continue
        c = _COLLECTED.match(item)
        if c is not None:
            values["collected"] = int(c.group("n"))
            if c.group("desel") is not None:
                values["deselected"] = int(c.group("desel"))
            continue
        i = _ITEM.match(item)
        if i is None or i.group("word") not in _WORDS:
            return None
        values[_WORDS[i.group("word")]] = int(i.group("n"))
    if "collected" not in values and not any(values.get(f, 0) for f in _OUTCOME_FIELDS):
        no_tests = True
    return PytestCounts(
        **values, no_tests_ran=no_tests, duration_s=float(m.group("secs")), line=text.strip("= ")
    )


def parse_pytest_output(text: str | Iterable[str]) -> PytestCounts | None:
    """Counts from the LAST summary line in ``text`` (a string or an iterable of lines)."""
    lines = text.splitlines() if isinstance(text, str) else text
    last: PytestCounts | None = None
    for line in lines:
        counts = parse_summary_line(line)
        if counts is not None:
            last = counts
    return last


class SummaryWatcher:
    """Fed a command's output line by line; ``counts`` is the last summary line seen."""

    def __init__(self) -> None:
        self.counts: PytestCounts | None = None

    def __call__(self, line: str) -> None:
        counts = parse_summary_line(line) if " in " in line else None
        if counts is not None:
            self.counts = counts


class ExpectationResult(NamedTuple):
    """Outcome of checking one ``# Expected:`` text; unpacks as ``(ok, reason)``."""

    ok: bool
    reason: str


_EXP_ITEM = re.compile(
    r"^(?P<op>>=|≥|at least)?\s*(?P<n>\d+|n)\s+(?P<what>tests?\s+collected|[a-z]+)$"
)
_EXP_TIMING = re.compile(r"\s+in\s+\d+(?:\.\d+)?\s*s(?:econds)?$")


def evaluate_expectation(expected: str, counts: PytestCounts | None) -> ExpectationResult:
    """Check an expectation such as ``2 passed``, ``N passed, 0 failed``, ``12 tests collected``.

    Items are separated by ``,``, ``;`` or ``and``. ``N`` (or ``>=k`` / ``at least k``) means
    "at least 1" (or at least k); a plain number means exactly that many. Unless the text
    names ``failed``/``errors`` itself, ``failed == 0`` and ``errors == 0`` are implied, so
    "2 passed" does not accept ``2 passed, 1 failed``. ``no tests ran`` expects no tests.
    Unknown wording raises ``ValueError`` naming the text.
    """
    text = re.sub(r"^[#\s]*(?:expected\s*:)?", "", expected.strip(), flags=re.IGNORECASE)
    text = text.strip().strip("=").strip().rstrip(".")
    text = _EXP_TIMING.sub("", text)
    if not text:
        raise ValueError("empty pytest expectation")
    items = [p.strip() for p in re.split(r",|;|\band\b", text) if p.strip()]
    checks: list[tuple[str, str, int, str]] = []  # (field, op, value, original item)
    for item in items:
        low = item.lower()
        if low in ("no tests ran", "no tests collected"):
            checks.append(("no_tests_ran", "==", 1, item))
            continue
        m = _EXP_ITEM.match(low)
        if m is None:
            raise ValueError(f"cannot understand pytest expectation item {item!r} in {expected!r}")
        what = m.group("what")
        field = "collected" if "collected" in what else _WORDS.get(what)
        if field is None:
            raise ValueError(f"unknown pytest outcome {what!r} in expectation {expected!r}")
        if m.group("n") == "n":
            checks.append((field, ">=", 1, item))
        else:
            checks.append((field, ">=" if m.group("op") else "==", int(m.group("n")), item))
    if counts is None:
        return ExpectationResult(False, f"expected {text!r} but no pytest summary line was found")
    named = {c[0] for c in checks}
    implied = [(f, "==", 0, f"0 {f} (implied)") for f in ("failed", "errors") if f not in named]
    failures = []
    for field, op, value, item in checks + implied:
        if field == "no_tests_ran":
            actual: int = int(counts.no_tests_ran)
        elif field == "collected":
            actual = -1 if counts.collected is None else counts.collected
        else:
            actual = getattr(counts, field)
        ok = actual >= value if op == ">=" else actual == value
        if not ok:
            shown = "not a collect-only run" if actual == -1 else actual
            failures.append(f"{item}: got {shown}")
    summary = counts.line or "(summary)"
    if failures:
        return ExpectationResult(False, f"expected {text!r}, got {summary!r}: " + "; ".join(failures))
    return ExpectationResult(True, f"{summary!r} satisfies {text!r}")
