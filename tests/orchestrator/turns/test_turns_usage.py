"""orchestrator.turns.usage: Usage arithmetic and the claude-json / codex-jsonl parsers."""
from __future__ import annotations

import json

import pytest

from orchestrator.turns.errors import TurnConfigError
from orchestrator.turns.usage import ParsedUsage, Usage, check_usage_kind, parse_usage

CLAUDE_RESULT = {"type": "result", "subtype": "success", "is_error": False, "duration_ms": 5230, "num_turns": 3,
                 "result": "Done.", "session_id": "abc", "total_cost_usd": 0.0213,
                 "usage": {"input_tokens": 12, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 8000,
                           "output_tokens": 420, "server_tool_use": {"web_search_requests": 0}}}


def test_usage_adds_serialises_and_validates() -> None:
    total = Usage(0.02, 100, 10) + Usage(0.03, 5, 1)
    assert total == Usage(0.05, 105, 11) and total.total_tokens == 116
    assert total.to_dict() == {"cost_usd": 0.05, "input_tokens": 105, "output_tokens": 11}
    assert Usage.from_dict(total.to_dict()) == total
    assert sum([Usage(0.01, 1, 1)] * 3, Usage()) == Usage(0.03, 3, 3)
    for bad in (dict(cost_usd=-1.0), dict(cost_usd=float("nan")), dict(input_tokens=-1), dict(output_tokens=1.5),
                dict(input_tokens=True)):
        with pytest.raises(ValueError):
            Usage(**bad)


def test_claude_json_single_object() -> None:
    parsed = parse_usage("claude-json", json.dumps(CLAUDE_RESULT))
    assert parsed == ParsedUsage(Usage(0.0213, 12 + 1500 + 8000, 420))


def test_claude_verbose_array_and_stream_json_with_junk_lines() -> None:
    messages = [{"type": "system", "subtype": "init"}, {"type": "assistant", "message": {"content": []}},
                CLAUDE_RESULT]
    assert parse_usage("claude-json", json.dumps(messages)).usage == Usage(0.0213, 9512, 420)
    stream = "\n".join(["npm WARN something", json.dumps(messages[0]), "{not json", json.dumps(messages[1]),
                        "[1, 2", json.dumps({**CLAUDE_RESULT, "total_cost_usd": 0.5}), "bye"])
    assert parse_usage("claude-json", stream).usage == Usage(0.5, 9512, 420)


def test_claude_older_cost_field_and_missing_usage() -> None:
    old = {"type": "result", "cost_usd": 0.1, "result": "x"}
    assert parse_usage("claude-json", json.dumps(old)).usage == Usage(0.1, 0, 0)


@pytest.mark.parametrize(("output", "reason"), [
    ("", "no {\"type\": \"result\"}"),
    ("Error: something broke\n", "no {\"type\": \"result\"}"),
    (json.dumps({"type": "result", "result": "x"}), "neither total_cost_usd nor usage"),
    (json.dumps({"type": "result", "total_cost_usd": "cheap"}), "not a number"),
    (json.dumps({"type": "result", "total_cost_usd": 0.1, "usage": {"input_tokens": -5}}), "unparseable"),
    (json.dumps({"type": "result", "total_cost_usd": -0.1}), "unparseable"),
    ("[" * 5000 + "]" * 5000, "no {\"type\": \"result\"}"),
])
def test_claude_malformed_output_gives_a_reason_never_an_exception(output: str, reason: str) -> None:
    parsed = parse_usage("claude-json", output)
    assert parsed.usage is None and reason in parsed.reason


def test_codex_jsonl_sums_turns() -> None:
    events = [{"type": "thread.started", "thread_id": "0199"}, {"type": "turn.started"},
              {"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": "hi"}},
              {"type": "turn.completed", "usage": {"input_tokens": 24763, "cached_input_tokens": 24448,
                                                   "output_tokens": 122}},
              {"type": "turn.started"},
              {"type": "turn.completed", "usage": {"input_tokens": 1000, "cached_input_tokens": 0,
                                                   "output_tokens": 78}}]
    text = "\n".join(json.dumps(e) for e in events[:3]) + "\ngarbage line\n" + \
        "\n".join(json.dumps(e) for e in events[3:]) + "\n"
    assert parse_usage("codex-jsonl", text) == ParsedUsage(Usage(0.0, 25763, 200))
    failed = json.dumps({"type": "turn.failed", "error": {"message": "boom"}})
    parsed = parse_usage("codex-jsonl", failed)
    assert parsed.usage is None and "no turn.completed" in parsed.reason
    bad = json.dumps({"type": "turn.completed", "usage": {"input_tokens": "many"}})
    assert parse_usage("codex-jsonl", bad).usage is None


def test_none_and_unknown_kinds() -> None:
    parsed = parse_usage("none", json.dumps(CLAUDE_RESULT))
    assert parsed.usage is None and "usage: none" in parsed.reason
    with pytest.raises(TurnConfigError, match=r"commands\.w\.usage: unknown kind 'foo' \(expected claude-json, "
                                              r"codex-jsonl, none\)"):
        parse_usage("foo", "", where="commands.w.usage")
    assert check_usage_kind("codex-jsonl", "x") == "codex-jsonl"
