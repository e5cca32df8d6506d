"""Pytest summary parsing against real pytest 8 output captured in tests/fixtures/runner/."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.execution.pytest_summary import (
    PytestCounts,
    evaluate_expectation,
    parse_pytest_output,
    parse_summary_line,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "runner"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("pytest_v_pass.txt", dict(passed=2)),
        (
            "pytest_q_mixed.txt",
            dict(passed=5, failed=1, skipped=1, xfailed=1, xpassed=1, warnings=1, errors=1),
        ),
        (
            "pytest_v_mixed.txt",
            dict(passed=3, failed=1, skipped=1, xfailed=1, xpassed=1, warnings=1, errors=1),
        ),
        ("pytest_v_skips.txt", dict(skipped=1, deselected=5, xfailed=1, xpassed=1)),
        ("pytest_collect_q.txt", dict(collected=10)),
        ("pytest_collect_single.txt", dict(collected=1)),
        ("pytest_collect_desel.txt", dict(collected=1, deselected=1)),
        ("pytest_collect_error.txt", dict(collected=2, errors=1)),
        ("pytest_q_collect_error.txt", dict(errors=1)),
        ("pytest_q_two_errors.txt", dict(errors=2)),
        ("pytest_q_none.txt", dict(deselected=2, no_tests_ran=True)),
        ("pytest_q_no_tests.txt", dict(no_tests_ran=True)),
        ("pytest_default_no_tests.txt", dict(no_tests_ran=True)),
        ("pytest_collect_none.txt", dict(collected=0, no_tests_ran=True)),
    ],
)
def test_parses_real_pytest_output(fixture: str, expected: dict) -> None:
    counts = parse_pytest_output((FIXTURES / fixture).read_text())
    assert counts is not None, fixture
    want = PytestCounts(**expected)
    for name in (
        "passed", "failed", "errors", "skipped", "xfailed", "xpassed",
        "deselected", "warnings", "collected", "no_tests_ran",
    ):
        assert getattr(counts, name) == getattr(want, name), (fixture, name)
    assert counts.duration_s is not None and counts.duration_s >= 0


def test_last_summary_line_wins_and_noise_is_ignored() -> None:
    text = "\n".join(
        [
            "collected 10 items",
            "3 passed, 1 failed in 0.50s",
            "the docs say 2 passed in review",  # 'review' is not a timing
            "!!!! Interrupted: 1 error during collection !!!!",
            "\x1b[32m==== \x1b[1m7 passed\x1b[0m, 2 warnings in 62.01s (0:01:02) ====\x1b[0m",
            "done",
        ]
    )
    counts = parse_pytest_output(text)
    assert counts is not None
    assert (counts.passed, counts.failed, counts.warnings) == (7, 0, 2)
    assert counts.duration_s == pytest.approx(62.01)
    assert parse_pytest_output("no summary here\nat all") is None


@pytest.mark.parametrize(
    "line",
    [
        "collected 3 items / 1 deselected / 2 selected",
        "2 passed",  # pytest always prints the timing; without it this is just prose
        "2 apples, 1 passed in 0.1s",
        "",
    ],
)
def test_lines_that_only_mention_counts_are_not_summaries(line: str) -> None:
    assert parse_summary_line(line) is None


def test_counts_round_trip_dict() -> None:
    counts = parse_summary_line("2 passed, 1 rerun in 1.0 seconds")
    assert counts is not None and counts.rerun == 1
    assert PytestCounts.from_dict(counts.to_dict()) == counts


def _c(line: str) -> PytestCounts:
    counts = parse_summary_line(line)
    assert counts is not None
    return counts


@pytest.mark.parametrize(
    ("expected", "line", "ok"),
    [
        ("2 passed", "2 passed in 0.1s", True),
        ("# Expected: 2 passed", "== 2 passed in 0.1s ==", True),
        ("2 passed", "3 passed in 0.1s", False),
        ("2 passed", "2 passed, 1 failed in 0.1s", False),  # failures are implied zero
        ("2 passed", "2 passed, 1 error in 0.1s", False),
        ("2 passed", "2 passed, 1 skipped, 3 warnings in 0.1s", True),
        ("N passed", "14 passed in 0.1s", True),
        ("N passed", "no tests ran in 0.1s", False),
        ("N passed, 0 failed", "1 passed in 0.1s", True),
        ("0 failed", "1 failed in 0.1s", False),
        (">=3 passed", "4 passed in 0.1s", True),
        ("at least 5 passed", "4 passed in 0.1s", False),
        ("1 passed, 1 failed", "1 failed, 1 passed in 0.1s", True),
        ("12 tests collected", "12 tests collected in 0.3s", True),
        ("12 tests collected", "11 tests collected in 0.3s", False),
        ("1 test collected", "1/4 tests collected (3 deselected) in 0.3s", True),
        ("12 tests collected", "12 passed in 0.3s", False),  # not a collect-only run
        ("12 tests collected", "12 tests collected, 1 error in 0.3s", False),
        ("no tests ran", "no tests ran in 0.01s", True),
        ("2 passed in 0.5s", "2 passed in 0.1s", True),
    ],
)
def test_expectation_is_checked_against_pytest_counts(expected: str, line: str, ok: bool) -> None:
    result = evaluate_expectation(expected, _c(line))
    assert result.ok is ok, result.reason
    got_ok, reason = result  # unpacks as (ok, reason)
    assert got_ok is ok and reason


def test_expectation_failure_reason_names_the_mismatch() -> None:
    ok, reason = evaluate_expectation("2 passed", _c("2 passed, 1 failed in 0.1s"))
    assert not ok
    assert "failed" in reason and "got 1" in reason


def test_expectation_without_summary_fails() -> None:
    ok, reason = evaluate_expectation("2 passed", None)
    assert not ok and "no pytest summary" in reason


@pytest.mark.parametrize("bad", ["", "all good", "2 bananas", "passed"])
def test_unknown_expectation_raises(bad: str) -> None:
    with pytest.raises(ValueError):
        evaluate_expectation(bad, _c("2 passed in 0.1s"))
