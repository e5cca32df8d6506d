"""orchestrator.turns.breaker: TurnStatus, the circuit breaker and the spend budget."""
from __future__ import annotations

import pytest

from orchestrator.turns.breaker import BreakerLimits, BreakerState, BreakerTrip, Budget, TurnStatus, error_signature
from orchestrator.turns.usage import Usage

LIMITS = BreakerLimits()


def feed(state: BreakerState, *turns: tuple[str, str] | str) -> BreakerState:
    for turn in turns:
        status, text = (turn, "") if isinstance(turn, str) else turn
        state = state.feed(status, text)
    return state


def test_turn_status_values() -> None:
    assert [s.value for s in TurnStatus] == ["ok", "no_op", "agent_error", "transient", "timeout",
                                             "invalid_output", "needs_review"]
    assert TurnStatus("no_op") is TurnStatus.NO_OP and f"{TurnStatus.OK}" == "ok"


def test_error_signature_normalises_volatile_parts() -> None:
    a = error_signature("2026-11-29T21:00:01Z ERROR at /tmp/pytest-7/repo/src/feature.py:41 (pid 1234) sha 1a2b3c4d5e")
    b = error_signature("2026-11-30T08:13:59Z ERROR at /tmp/pytest-9/repo2/src/feature.py:97 (pid 88) sha 9f8e7d6c5b")
    assert a == b == "<TS> ERROR at <PATH>:<N> (pid <N>) sha <HEX>"
    assert error_signature("ValueError: bad shape") != error_signature("KeyError: 'x'")
    assert len(error_signature("x " * 1000)) == 400


def test_three_no_ops_in_a_row_trip() -> None:
    state = feed(BreakerState(), "no_op", "no_op")
    assert state.tripped(LIMITS) is None
    state = feed(state, "no_op")
    assert state.tripped(LIMITS) == BreakerTrip("no_op", 3)
    assert "3 turns in a row changed nothing" in state.tripped(LIMITS).message


def test_progress_or_an_error_resets_the_no_op_run_and_transients_are_neutral() -> None:
    assert feed(BreakerState(), "no_op", "no_op", "ok", "no_op", "no_op").tripped(LIMITS) is None
    assert feed(BreakerState(), "no_op", "no_op", ("agent_error", "x"), "no_op").tripped(LIMITS) is None
    state = feed(BreakerState(), "no_op", "transient", "no_op", "transient", "transient", "no_op")
    assert state.tripped(LIMITS) == BreakerTrip("no_op", 3)


def test_three_identical_errors_trip_with_normalised_text() -> None:
    state = feed(BreakerState(),
                 ("agent_error", "Error at 2026-11-29T10:00:00Z: failed after 12s"),
                 ("transient", "You've hit your limit"),
                 ("agent_error", "Error at 2026-11-29T11:00:00Z: failed after 7s"),
                 ("agent_error", "Error at 2026-11-29T12:30:00Z: failed after 3s"))
    trip = state.tripped(LIMITS)
    assert trip is not None and trip.reason == "same_error" and trip.count == 3
    assert trip.signature == "agent_error: Error at <TS>: failed after <N>s"


def test_different_errors_or_statuses_do_not_trip() -> None:
    mixed = feed(BreakerState(), ("agent_error", "A"), ("agent_error", "B"), ("agent_error", "A"))
    assert mixed.tripped(LIMITS) is None
    assert feed(BreakerState(), ("timeout", ""), ("agent_error", ""), ("timeout", "")).tripped(LIMITS) is None
    assert feed(BreakerState(), ("timeout", "killed"), ("timeout", "killed"), ("timeout", "killed")).tripped(LIMITS) \
        == BreakerTrip("same_error", 3, "timeout: killed")
    assert feed(BreakerState(), ("agent_error", "A"), ("agent_error", "A"), "needs_review",
                ("agent_error", "A")).tripped(LIMITS) is None


def test_limits_validate_disable_and_state_round_trips() -> None:
    state = feed(BreakerState(), *["no_op"] * 5)
    assert state.tripped(BreakerLimits(no_op=0)) is None
    assert state.tripped(BreakerLimits(no_op=5)) is not None
    assert BreakerState.from_dict(state.to_dict()) == state
    for bad in (dict(no_op=-1), dict(same_error=1.5), dict(no_op=True)):
        with pytest.raises(ValueError, match="breaker"):
            BreakerLimits(**bad)
    with pytest.raises(ValueError):
        BreakerState().feed("bogus")


def test_budget_stops_after_three_turns_of_two_cents_at_five_cents() -> None:
    budget = Budget(max_usd=0.05)
    spent, turns = Usage(), 0
    while budget.exceeded(spent) is None:
        spent = spent + Usage(0.02, 1000, 100)
        turns += 1
    stop = budget.exceeded(spent)
    assert turns == 3 and stop is not None and stop.reason == "budget" and "max_usd" in stop.message
    assert budget.remaining(spent) == {"cost_usd": 0.0, "tokens": None}


def test_token_budget_and_remaining() -> None:
    budget = Budget(max_tokens=1000)
    assert budget.exceeded(Usage(0, 500, 499)) is None
    assert budget.remaining(Usage(0, 500, 400)) == {"cost_usd": None, "tokens": 100}
    assert "max_tokens 1000" in budget.exceeded(Usage(0, 500, 500)).message
    assert Budget().exceeded(Usage(1e6, 10**9, 10**9)) is None
    for bad in (dict(max_usd=0), dict(max_usd=-1.0), dict(max_tokens=0), dict(max_tokens=2.5),
                dict(max_usd=float("inf"))):
        with pytest.raises(ValueError, match="budgets"):
            Budget(**bad)
