"""Transient agent failures: rate limits, usage limits, overload.

A failed agent turn whose output matches one of :data:`DEFAULT_PATTERNS` (or a command's extra
``transient:`` regexes) is *transient*: the harness waits and retries the same turn, and the
failure counts toward neither dwell nor escalation. When the CLI prints when the limit resets,
:func:`parse_wait_until` turns it into a UTC instant; otherwise :class:`Backoff` gives
30 s → 60 s → … → 30 min with jitter. :func:`plan_wait` combines both and bounds the wait by a
deadline (``budgets.max_wall_s``); :func:`wait_until` sleeps until then unless told to stop, and
:func:`stop_on_signals` turns SIGINT/SIGTERM into such a stop so a wait ends cleanly.

Real CLIs format for a terminal (Rich panels, wrapping at 80 columns, colour): the harness runs
agents with a wide, colourless terminal (:mod:`orchestrator.agents.agent_env`) and the
classifier also searches a *flattened* copy of the output — ANSI escapes and box-drawing
characters removed, every run of whitespace (line breaks included) one space — so
``Rate`` / ``limit reached`` split over two lines still matches.

Recognised reset times (case-insensitive): ``try again in 2 seconds``, ``resets in 37 minutes``,
``retry after 1h 5m``, ``try again in 5 days 22 hours 11 minutes``, ``Retry-After: 120``,
``"retry_after": 30``, ``'retry-after': '30'``, ``"retryDelay": "17s"``, ``resets 4pm``, ``resets 4:30pm``,
``resets 16:00``, ``resets 1:30am (Asia/Dhaka)``, ``resets May 5 at 9pm (America/New_York)``,
``try again at Jul 5th, 2026 8:19 PM``
(next occurrence; local time unless a zone is given), a Unix timestamp after ``|``
(``Claude AI usage limit reached|1750708800``) or as ``"resets_at": 1775317531``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.turns.errors import TurnConfigError

__all__ = [
    "DEFAULT_PATTERNS",
    "Backoff",
    "TransientClassifier",
    "TransientDecision",
    "TransientPattern",
    "WaitPlan",
    "compile_patterns",
    "flatten",
    "parse_wait_until",
    "plan_wait",
    "stop_on_signals",
    "wait_until",
]

logger = logging.getLogger(__name__)

_APOS = "['\u2019]"  # straight or typographic apostrophe ("You've" / "You’ve")


@dataclass(frozen=True)
class TransientPattern:
    """A named regex; ``name`` is what :class:`TransientDecision` reports."""

    name: str
    regex: re.Pattern[str]


def _p(name: str, pattern: str) -> TransientPattern:
    return TransientPattern(name, re.compile(pattern, re.IGNORECASE))


#: what precedes an HTTP status: ``HTTP/1.1 429``, ``status: 429``, ``Error: 429``, ``Error code: 429``
_STATUS = r"(?:\bHTTP(?:/[\d.]+)?|\bstatus(?:[ _]code)?[\"']?\s*[:=]?|\bError(?: code)?:|\"code\"\s*:)"

#: Messages printed by Claude Code, Codex CLI, Gemini CLI and Python SDKs (litellm, openai,
#: anthropic: ``RateLimitError``, ``Error code: 429``), HTTP 429/529 statuses and ``Retry-After``.
#: Most specific first: the first match names the decision.
DEFAULT_PATTERNS: tuple[TransientPattern, ...] = (
    _p("claude-usage-limit", r"Claude AI usage limit reached|Claude usage limit reached"),
    _p("codex-usage-limit", rf"You{_APOS}ve hit your usage limit|usage_limit_reached"),
    _p("claude-limit", rf"You{_APOS}ve hit your limit"),
    _p("anthropic-rate-limit", r"\brate_limit_error\b|API Error: Rate limit reached"),
    _p("claude-rate-limit-event", r"\"type\"\s*:\s*\"rate_limit_event\"[^\n]*?\"status\"\s*:\s*\"rejected\""),
    _p("anthropic-overloaded", r"\boverloaded_error\b|(?-i:\bOverloaded\b)"),
    _p("gemini-resource-exhausted", r"\bRESOURCE_EXHAUSTED\b|Resource has been exhausted|Resource exhausted"),
    _p("quota-exceeded", r"\bquota exceeded\b|\bexceeded your current quota\b"),
    _p("http-429", r"\b429 Too Many Requests\b|\bToo Many Requests\b|" + _STATUS + r"\s*429\b"),
    _p("http-529", _STATUS + r"\s*529\b"),
    _p("retry-after", r"\bRetry-After\s*:|[\"']retry-after[\"']\s*:"),
    _p("rate-limited", r"\brate[- _]limit(?:ed|s? exceeded|s? reached)\b"),
    _p("rate-limit-error", r"\bRateLimitError\b"),
)


def compile_patterns(regexes: Sequence[str], where: str) -> tuple[TransientPattern, ...]:
    """Compile a command's extra ``transient:`` regexes (case-insensitive).

    ``where`` is the key path used in errors, e.g. ``"orchestrator.yaml: commands.claude.transient"``;
    an invalid regex raises :class:`TurnConfigError` naming ``where[i]``. Pattern names are
    ``transient[i]``.
    """
    out: list[TransientPattern] = []
    for i, text in enumerate(regexes):
        if not isinstance(text, str) or not text:
            raise TurnConfigError(f"{where}[{i}]: expected a non-empty regex string, got {text!r}")
        try:
            out.append(TransientPattern(f"transient[{i}]", re.compile(text, re.IGNORECASE)))
        except re.error as exc:
            raise TurnConfigError(f"{where}[{i}]: invalid regex {text!r}: {exc}") from exc
    return tuple(out)


@dataclass(frozen=True)
class TransientDecision:
    """Outcome of :meth:`TransientClassifier.classify`.

    ``pattern``: the matching pattern's name; ``wait_until``: the parsed reset time (UTC) or
    ``None`` when none was printed (back off instead); ``excerpt``: the matching line (≤ 200 chars).
    """

    transient: bool
    pattern: str | None = None
    wait_until: datetime | None = None
    excerpt: str = ""


@dataclass(frozen=True)
class TransientClassifier:
    """Classifies a finished agent turn. ``extra`` patterns (a command's ``transient:``) are
    tried before the defaults. Only a failed turn is classified — rc ≠ 0, or rc 0 with a Claude
    JSON result saying ``"is_error": true`` or a last output line starting ``API Error`` (Claude
    Code's print mode can exit 0 on API errors) — and only the last ``tail_chars`` of its output
    are searched, so an agent that merely *talks* about HTTP 429 in a successful turn is never
    mistaken for a rate-limited one."""

    extra: tuple[TransientPattern, ...] = ()
    patterns: tuple[TransientPattern, ...] = DEFAULT_PATTERNS
    tail_chars: int = 20_000

    @classmethod
    def from_regexes(cls, regexes: Sequence[str], where: str) -> TransientClassifier:
        return cls(extra=compile_patterns(regexes, where))

    def classify(self, rc: int | None, output: str, now: datetime,
                 local_tz: tzinfo | None = None) -> TransientDecision:
        """``rc``: the agent's exit status (``None`` = did not start: never transient);
        ``output``: its combined stdout/stderr; ``now``: aware datetime (the harness clock)."""
        tail = output[-self.tail_chars:]
        if rc is None or (rc == 0 and not _reports_failure(tail)):
            return TransientDecision(False)
        flat = flatten(tail)
        wait = parse_wait_until(tail, now, local_tz) or parse_wait_until(flat, now, local_tz)
        for pattern in (*self.extra, *self.patterns):
            m = pattern.regex.search(tail)
            if m:
                line_start = tail.rfind("\n", 0, m.start()) + 1
                line_end = tail.find("\n", m.end())
                excerpt = tail[line_start: line_end if line_end >= 0 else len(tail)].strip()[:200]
                return TransientDecision(True, pattern.name, wait, excerpt)
        for pattern in (*self.extra, *self.patterns):  # split by wrapping, or inside a panel
            m = pattern.regex.search(flat)
            if m:
                excerpt = flat[max(0, m.start() - 80): m.end() + 80].strip()[:200]
                return TransientDecision(True, pattern.name, wait, excerpt)
        return TransientDecision(False)


_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_BOX_RE = re.compile(r"[\u2500-\u259f]+")
_SPACE_RE = re.compile(r"\s+")


def flatten(text: str) -> str:
    """``text`` as one line: ANSI escapes dropped, box-drawing characters (Rich panels) and
    every run of whitespace, line breaks included, turned into one space."""
    return _SPACE_RE.sub(" ", _BOX_RE.sub(" ", _ANSI_RE.sub("", text))).strip()


_CLAUDE_RESULT_ERROR = re.compile(r"\"type\"\s*:\s*\"result\"[^\n]*?\"is_error\"\s*:\s*true")


def _reports_failure(tail: str) -> bool:
    """A turn that exited 0 but failed all the same: Claude Code in print mode can exit 0 on an
    API error, with ``"is_error": true`` in its JSON result, or (plain text) with the error as
    the last line of its output (``API Error: Rate limit reached``)."""
    if _CLAUDE_RESULT_ERROR.search(tail):
        return True
    lines = [line for line in tail.splitlines() if line.strip()]
    return bool(lines) and lines[-1].lstrip().startswith("API Error")


# --------------------------------------------------------------------------- reset times

_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_UNIT = r"(?:days?|d|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)"
_AMOUNT = rf"\d+(?:\.\d+)?\s*{_UNIT}\b"
_DURATION = rf"{_AMOUNT}(?:(?:\s*,\s*|\s+and\s+|\s+){_AMOUNT})*"
_RELATIVE_RE = re.compile(
    rf"(?:try again|retry|resets?|reset|available again|wait)\s+(?:in|after)\s+(?P<d>{_DURATION})", re.IGNORECASE)
_AMOUNT_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)
_SECONDS_RE = re.compile(
    r"(?:retry-after\s*:\s*|[\"']retry[-_]after[\"']\s*:\s*[\"']?|[\"']resets_in_seconds[\"']\s*:\s*)"
    r"(?P<s>\d+(?:\.\d+)?)",
    re.IGNORECASE)
_RETRY_DELAY_RE = re.compile(r"[\"']retryDelay[\"']\s*:\s*[\"'](?P<s>\d+(?:\.\d+)?)s[\"']", re.IGNORECASE)
_EPOCH_RE = re.compile(r"\|\s*(?P<ts>1\d{9})\b|[\"']resets_at[\"']\s*:\s*(?P<ts2>1\d{9})\b"
                       r"|\"status\"\s*:\s*\"rejected\"[^{}\n]*?\"resetsAt\"\s*:\s*(?P<ts3>1\d{9})\b")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_CLOCK_RE = re.compile(
    r"\b(?:resets?|try again)\s+(?:at\s+)?"
    r"(?:(?P<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+"
    r"(?:(?P<year>\d{4}),?\s+)?(?:at\s+)?)?"
    r"(?P<h>\d{1,2})(?::(?P<mi>\d{2}))?\s*(?P<ampm>am|pm)?"
    r"(?:\s*\((?P<tz>[A-Za-z_]+(?:/[A-Za-z0-9_+-]+)*)\))?",
    re.IGNORECASE)


def _duration_s(text: str) -> float:
    return sum(float(n) * _UNIT_S[unit[0].lower()] for n, unit in _AMOUNT_RE.findall(text))


def _zone(name: str | None, local_tz: tzinfo | None) -> tzinfo:
    if name:
        if name.upper() == "UTC":
            return UTC
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            logger.warning("unknown time zone %r in a reset time; using local time", name)
    return local_tz or datetime.now().astimezone().tzinfo or UTC


def _clock_time(m: re.Match[str], now: datetime, local_tz: tzinfo | None) -> datetime | None:
    hour, minute, ampm = int(m["h"]), int(m["mi"] or 0), (m["ampm"] or "").lower()
    if not ampm and m["mi"] is None:
        return None  # "resets 4" alone is not a time
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    tz = _zone(m["tz"], local_tz)
    here = now.astimezone(tz)
    if m["mon"]:
        month, day = _MONTHS.index(m["mon"].lower()[:3]) + 1, int(m["day"])
        years = (int(m["year"]),) if m["year"] else (here.year, here.year + 1)
        for year in years:
            try:
                cand = datetime(year, month, day, hour, minute, tzinfo=tz)
            except ValueError:
                return None
            if m["year"] or cand > here - timedelta(days=1):
                return cand.astimezone(UTC)
        return None
    cand = here.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if cand <= here:
        cand = (cand.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)
    return cand.astimezone(UTC)


def parse_wait_until(text: str, now: datetime, local_tz: tzinfo | None = None) -> datetime | None:
    """The reset instant (aware, UTC) printed in ``text``, or ``None``.

    ``now`` is an aware datetime; ``local_tz`` the zone of a clock time printed without one
    (default: the machine's). When several are printed the last one wins (CLIs print the
    final error last).
    """
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    found: list[tuple[int, datetime]] = []
    for m in _RELATIVE_RE.finditer(text):
        found.append((m.start(), now + timedelta(seconds=_duration_s(m["d"]))))
    for m in (*_SECONDS_RE.finditer(text), *_RETRY_DELAY_RE.finditer(text)):
        found.append((m.start(), now + timedelta(seconds=float(m["s"]))))
    for m in _EPOCH_RE.finditer(text):
        found.append((m.start(), datetime.fromtimestamp(int(m["ts"] or m["ts2"] or m["ts3"]), tz=UTC)))
    for m in _CLOCK_RE.finditer(text):
        if text[m.end("h"):].lstrip().lower().startswith(("sec", "min", "hour", "day")):
            continue  # "resets 5 minutes" is a duration, not a clock time
        when = _clock_time(m, now, local_tz)
        if when is not None:
            found.append((m.start(), when))
    if not found:
        return None
    return max(found, key=lambda pair: pair[0])[1].astimezone(UTC)


# --------------------------------------------------------------------------- backoff and waits


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``attempt`` (0-based) when no reset time was printed:
    ``base_s · factor**attempt`` capped at ``cap_s``, times a uniform factor in
    ``[1 - jitter, 1 + jitter]`` (then capped again)."""

    base_s: float = 30.0
    factor: float = 2.0
    cap_s: float = 1800.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and self.factor >= 1 and self.cap_s >= self.base_s and 0 <= self.jitter < 1):
            raise ValueError(f"invalid backoff {self!r}: need base_s > 0, factor >= 1, cap_s >= base_s, "
                             "0 <= jitter < 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        raw = min(self.cap_s, self.base_s * self.factor ** min(attempt, 64))
        spread = (rng or random.Random()).uniform(1 - self.jitter, 1 + self.jitter)
        return min(self.cap_s, raw * spread)


@dataclass(frozen=True)
class WaitPlan:
    """When to retry. ``source``: ``reset-time`` (printed by the CLI) or ``backoff``;
    ``beyond_deadline``: the wanted instant lies after the deadline, so ``until`` was cut to
    the deadline and the caller should stop rather than retry."""

    until: datetime
    source: str
    beyond_deadline: bool = False

    def seconds(self, now: datetime) -> float:
        return max(0.0, (self.until - now).total_seconds())


def plan_wait(decision: TransientDecision, attempt: int, now: datetime, *, backoff: Backoff = Backoff(),
              rng: random.Random | None = None, deadline: datetime | None = None) -> WaitPlan:
    """Combine a decision's reset time (if in the future) or the backoff for ``attempt``
    (0 = first retry) with a ``deadline`` (UTC; ``None`` = unbounded)."""
    if decision.wait_until is not None and decision.wait_until > now:
        until, source = decision.wait_until, "reset-time"
    else:
        until, source = now + timedelta(seconds=backoff.delay(attempt, rng)), "backoff"
    if deadline is not None and until > deadline:
        return WaitPlan(max(deadline, now), source, beyond_deadline=True)
    return WaitPlan(until, source)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def wait_until(until: datetime, stop: threading.Event | Callable[[], bool] | None = None, *,
               clock: Callable[[], datetime] = _utc_now, poll_s: float = 0.5) -> bool:
    """Sleep until ``until`` (aware). Returns ``True`` when the time came, ``False`` as soon
    as ``stop`` is set (an Event) or returns true (a callable, polled every ``poll_s``)."""
    while True:
        remaining = (until - clock()).total_seconds()
        if remaining <= 0:
            return True
        step = min(remaining, poll_s)
        if isinstance(stop, threading.Event):
            if stop.wait(step):
                return False
        else:
            if stop is not None and stop():
                return False
            time.sleep(step)
            if stop is not None and stop():
                return False


@contextlib.contextmanager
def stop_on_signals(event: threading.Event,
                    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[threading.Event]:
    """Within the block, the given signals set ``event`` instead of raising; the previous
    handlers are restored afterwards. Main thread only (Python's rule for signal handlers)."""
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handler(signum: int, frame: object) -> None:
        logger.info("signal %d: ending the wait", signum)
        event.set()

    try:
        for sig in signals:
            signal.signal(sig, handler)
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
