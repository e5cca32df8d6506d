"""``orchestrator replay``'s reading of a ledger timestamp, as typed, pasted or from a trailer."""

from __future__ import annotations

import pytest

from orchestrator.tools.replay import clean_entry


@pytest.mark.parametrize(("typed", "clean"), [
    ("2026-01-07T07:30:00Z", "2026-01-07T07:30:00Z"),
    ("2026-01-07T07:30:00Z@12", "2026-01-07T07:30:00Z@12"),
    ("# 2026-01-07T07:30:00Z:", "2026-01-07T07:30:00Z"),
    ("# 2026-01-07T07:30:00Z: A-001 — Phase A handoff", "2026-01-07T07:30:00Z"),
    ("2026-01-07T073000Z:@3", "2026-01-07T073000Z@3"),
    ("2026-01-07T07:30:00Z (line 5)", "2026-01-07T07:30:00Z@5"),
])
def test_replay_accepts_a_ledger_timestamp_as_typed_pasted_or_from_a_trailer(typed: str, clean: str) -> None:
    assert clean_entry(typed) == clean
