"""orchestrator.turns.transient: classification, reset times, backoff, cancellable waits."""
from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orchestrator.turns.errors import TurnConfigError
from orchestrator.turns.transient import (
    Backoff,
    TransientClassifier,
    TransientDecision,
    compile_patterns,
    parse_wait_until,
    plan_wait,
    wait_until,
)

NOW = datetime(2026, 11, 29, 21, 0, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")  # UTC+1 in November
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("output", "pattern"), [
    ("You've hit your limit · resets 4pm (Asia/Dhaka)", "claude-limit"),
    ("You\u2019ve hit your limit \u00b7 resets 8pm", "claude-limit"),
    ("Claude AI usage limit reached|1750708800", "claude-usage-limit"),
    ('Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed '
     "your account's rate limit.\"}}", "anthropic-rate-limit"),
    ('API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
     "anthropic-overloaded"),
    ("■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in "
     "5 days 22 hours 11 minutes.", "codex-usage-limit"),
    ('{"error":{"type":"usage_limit_reached","resets_in_seconds":602705}}', "codex-usage-limit"),
    ('[API Error: {"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).",'
     '"status":"RESOURCE_EXHAUSTED"}}]', "gemini-resource-exhausted"),
    ("Quota exceeded for quota metric 'Generate Content API requests per minute'", "quota-exceeded"),
    ("HTTP/1.1 429 Too Many Requests", "http-429"),
    ("upstream returned status code: 529", "http-529"),
    ("openai.RateLimitError: rate limit exceeded", "rate-limited"),
])
def test_default_patterns_recognise_real_cli_messages(output: str, pattern: str) -> None:
    decision = TransientClassifier().classify(1, "starting...\n" + output + "\n", NOW)
    assert decision.transient and decision.pattern == pattern
    assert decision.excerpt and decision.excerpt in output


@pytest.mark.parametrize("output", [
    "error: the overloaded operator + is ambiguous",
    "Traceback (most recent call last):\nValueError: shape mismatch (64, 64) vs (32, 32)",
    "error: tests/test_http.py line 429: assertion failed",
    "Error: ENOENT: no such file or directory",
])
def test_ordinary_failures_are_not_transient(output: str) -> None:
    assert TransientClassifier().classify(1, output, NOW) == TransientDecision(False)


def test_only_failed_turns_are_classified() -> None:
    talk = "I added handling for HTTP 429 Too Many Requests and rate_limit_error to the client."
    classifier = TransientClassifier()
    assert not classifier.classify(0, talk, NOW).transient
    assert not classifier.classify(None, talk, NOW).transient
    assert classifier.classify(2, talk, NOW).transient


def test_only_the_tail_of_the_output_is_searched() -> None:
    early = "You've hit your limit\n" + "x" * 100 + "\n"
    assert not TransientClassifier(tail_chars=50).classify(1, early, NOW).transient
    assert TransientClassifier(tail_chars=500).classify(1, early, NOW).transient


def test_extra_regexes_come_first_and_bad_ones_name_the_key() -> None:
    classifier = TransientClassifier.from_regexes([r"proxy says: slow down", r"too many"], "cfg: commands.c.transient")
    decision = classifier.classify(1, "Too Many Requests; proxy says: SLOW DOWN", NOW)
    assert decision.pattern == "transient[0]"
    with pytest.raises(TurnConfigError, match=r"cfg: commands\.c\.transient\[1\]: invalid regex '\(unclosed'"):
        compile_patterns(["fine", "(unclosed"], "cfg: commands.c.transient")
    with pytest.raises(TurnConfigError, match=r"x\[0\]: expected a non-empty regex"):
        compile_patterns([""], "x")


@pytest.mark.parametrize(("text", "expected"), [
    ("try again in 2 seconds", NOW + timedelta(seconds=2)),
    ("Rate limited; resets in 37 minutes.", NOW + timedelta(minutes=37)),
    ("retry after 1h 5m", NOW + timedelta(hours=1, minutes=5)),
    ("or try again in 5 days 22 hours 11\nminutes.", NOW + timedelta(days=5, hours=22, minutes=11)),
    ("try again in 1.5s", NOW + timedelta(seconds=1.5)),
    ("HTTP/1.1 429\nRetry-After: 120\n", NOW + timedelta(seconds=120)),
    ('{"retry_after": 30}', NOW + timedelta(seconds=30)),
    ('"retryDelay": "17s"', NOW + timedelta(seconds=17)),
    ('{"resets_at":1775317531}', datetime.fromtimestamp(1775317531, tz=UTC)),
    ("Claude AI usage limit reached|1764457200", datetime.fromtimestamp(1764457200, tz=UTC)),
    # clock times: NOW is 22:00 in Berlin (the local zone of these cases)
    ("You've hit your limit · resets 11pm", datetime(2026, 11, 29, 22, 0, tzinfo=UTC)),
    ("resets 4pm", datetime(2026, 11, 30, 15, 0, tzinfo=UTC)),  # 4pm passed: tomorrow
    ("resets 4:30pm", datetime(2026, 11, 30, 15, 30, tzinfo=UTC)),
    ("resets 23:15", datetime(2026, 11, 29, 22, 15, tzinfo=UTC)),
    ("resets 16:00 (UTC)", datetime(2026, 11, 30, 16, 0, tzinfo=UTC)),
    ("resets 1:30am (Asia/Dhaka)", datetime(2026, 11, 29, 19, 30, tzinfo=UTC) + timedelta(days=1)),
    ("resets 12am (Europe/Berlin)", datetime(2026, 11, 29, 23, 0, tzinfo=UTC)),
    ("resets May 5 at 9pm (America/New_York)", datetime(2027, 5, 6, 1, 0, tzinfo=UTC)),
    ("resets Dec 1 at 9am", datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
    ("or try again at Jul 5th, 2026 8:19 PM.", datetime(2026, 7, 5, 18, 19, tzinfo=UTC)),
    ("Your limit will reset at 3pm (America/Bogota).", datetime(2026, 11, 30, 20, 0, tzinfo=UTC)),
])
def test_reset_times(text: str, expected: datetime) -> None:
    got = parse_wait_until(text, NOW, local_tz=BERLIN)
    assert got == expected
    assert got.tzinfo == UTC


@pytest.mark.parametrize("text", ["You've hit your limit", "resets 4", "resets 25:00", "resets 13pm",
                                  "try again later", "resets soon"])
def test_no_reset_time(text: str) -> None:
    assert parse_wait_until(text, NOW, local_tz=BERLIN) is None


def test_unknown_zone_falls_back_to_local_and_last_time_wins() -> None:
    assert parse_wait_until("resets 11pm (Mars/Olympus)", NOW, local_tz=BERLIN) == \
        datetime(2026, 11, 29, 22, 0, tzinfo=UTC)
    assert parse_wait_until("try again in 10 minutes ... try again in 2 seconds", NOW) == NOW + timedelta(seconds=2)
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_wait_until("try again in 2 seconds", NOW.replace(tzinfo=None))


def test_classify_carries_the_reset_time() -> None:
    out = "API Error: Rate limit reached. You've hit your limit · try again in 2 seconds"
    decision = TransientClassifier().classify(1, out, NOW)
    assert decision == TransientDecision(True, "claude-limit", NOW + timedelta(seconds=2), out)


def test_backoff_doubles_to_the_cap_without_jitter() -> None:
    delays = [Backoff(jitter=0).delay(k) for k in range(8)]
    assert delays == [30, 60, 120, 240, 480, 960, 1800, 1800]
    assert Backoff(jitter=0).delay(10_000) == 1800


def test_backoff_jitter_is_bounded_and_seeded() -> None:
    b = Backoff()
    first = [b.delay(k, random.Random(7)) for k in range(6)]
    assert first == [b.delay(k, random.Random(7)) for k in range(6)]
    for k, d in enumerate(first):
        base = min(1800, 30 * 2 ** k)
        assert 0.9 * base <= d <= min(1800, 1.1 * base)
    assert len({b.delay(2, random.Random(s)) for s in range(20)}) > 1
    with pytest.raises(ValueError):
        Backoff(base_s=0)
    with pytest.raises(ValueError):
        b.delay(-1)


def test_plan_wait_prefers_the_printed_reset_then_backs_off_and_respects_the_deadline() -> None:
    reset = TransientDecision(True, "claude-limit", NOW + timedelta(seconds=2))
    plan = plan_wait(reset, 0, NOW)
    assert (plan.until, plan.source, plan.beyond_deadline, plan.seconds(NOW)) == (NOW + timedelta(seconds=2),
                                                                                 "reset-time", False, 2.0)
    stale = TransientDecision(True, "claude-limit", NOW - timedelta(seconds=5))
    plan = plan_wait(stale, 2, NOW, backoff=Backoff(jitter=0))
    assert (plan.until, plan.source) == (NOW + timedelta(seconds=120), "backoff")
    far = TransientDecision(True, "claude-limit", NOW + timedelta(hours=5))
    plan = plan_wait(far, 0, NOW, deadline=NOW + timedelta(hours=1))
    assert (plan.until, plan.beyond_deadline) == (NOW + timedelta(hours=1), True)


def test_wait_until_elapses_or_stops_on_event_or_callable() -> None:
    t0 = time.monotonic()
    assert wait_until(datetime.now(UTC) + timedelta(seconds=0.2), threading.Event(), poll_s=0.05)
    assert 0.15 <= time.monotonic() - t0 < 2
    event = threading.Event()
    threading.Timer(0.1, event.set).start()
    t0 = time.monotonic()
    assert not wait_until(datetime.now(UTC) + timedelta(seconds=30), event)
    assert time.monotonic() - t0 < 2
    calls = iter([False, False, True])
    assert not wait_until(datetime.now(UTC) + timedelta(seconds=30), lambda: next(calls), poll_s=0.01)
    # a fake clock: no real sleeping needed when the time has come
    assert wait_until(NOW, None, clock=lambda: NOW + timedelta(seconds=1))


_SIGNAL_SCRIPT = """
import signal, sys, threading, time
from datetime import datetime, timedelta, timezone
from orchestrator.turns.transient import stop_on_signals, wait_until
before = signal.getsignal(signal.SIGINT)
event = threading.Event()
with stop_on_signals(event):
    print("waiting", flush=True)
    t0 = time.monotonic()
    came = wait_until(datetime.now(timezone.utc) + timedelta(seconds=60), event)
print("elapsed" if came else "stopped", f"{time.monotonic() - t0:.2f}", signal.getsignal(signal.SIGINT) == before,
      flush=True)
"""


def test_sigint_ends_a_wait_cleanly_in_a_real_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _SIGNAL_SCRIPT], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        proc.send_signal(2)  # SIGINT
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    word, seconds, restored = out.split()
    assert proc.returncode == 0, err
    assert word == "stopped" and float(seconds) < 10 and restored == "True"
    assert "KeyboardInterrupt" not in err


def test_claude_print_mode_errors_that_exit_zero_are_still_classified() -> None:
    classifier = TransientClassifier()
    result = ('{"type":"result","subtype":"success","is_error":true,"duration_api_ms":0,'
              '"result":"API Error: Rate limit reached","total_cost_usd":0,"usage":{"input_tokens":0}}')
    assert classifier.classify(0, result, NOW).pattern == "anthropic-rate-limit"
    assert classifier.classify(0, "working...\nAPI Error: Rate limit reached\n", NOW).transient
    ok = result.replace('"is_error":true', '"is_error":false')
    assert not classifier.classify(0, ok, NOW).transient


def test_stream_json_rate_limit_events() -> None:
    allowed = ('{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":1784283600,'
               '"rateLimitType":"five_hour"}}')
    rejected = allowed.replace('"allowed"', '"rejected"')
    classifier = TransientClassifier()
    assert not classifier.classify(1, allowed + "\nError: ENOENT\n", NOW).transient
    decision = classifier.classify(1, allowed + "\n" + rejected + "\n", NOW)
    assert decision.pattern == "claude-rate-limit-event"
    assert decision.wait_until == datetime.fromtimestamp(1784283600, tz=UTC)
    assert parse_wait_until(allowed, NOW) is None
