"""orchestrator.turns.config: validators for the new orchestrator.yaml keys."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.turns.breaker import BreakerLimits, Budget
from orchestrator.turns.commit_policy import CommitPolicy
from orchestrator.turns.config import CommandTurnConfig, CommitConfig, TurnsConfig
from orchestrator.turns.errors import TurnConfigError

SRC = "orchestrator.yaml"
FULL = """
agents: {supervisor: claude-supervisor, worker: claude-worker}
max_commit_bytes: 1000000
commit: {include: ["src/**", "tests/**", "docs/**", "plans/**"], exclude: ["*.log"]}
breaker: {no_op: 2, same_error: 4}
notify: ["notify-send", "orchestrator {event}", "{focus}: {message} ({report_dir})"]
budgets: {max_cycles: 6, max_usd: 5, max_tokens: 2000000}
commands:
  claude-worker:
    role: worker
    argv: [claude, -p, "{prompt}", --output-format, json]
    transient: ["my proxy says: slow down"]
    usage: claude-json
    prompt: prompts/worker.md.j2
  codex-supervisor:
    role: supervisor
    argv: [codex, exec, --json, "{prompt}"]
    usage: codex-jsonl
"""


def test_full_document_parses_and_ignores_keys_it_does_not_own() -> None:
    cfg = TurnsConfig.from_mapping(yaml.safe_load(FULL), SRC)
    assert cfg.commit == CommitConfig(("src/**", "tests/**", "docs/**", "plans/**"), ("*.log",))
    assert cfg.commit.policy(1000) == CommitPolicy(("src/**", "tests/**", "docs/**", "plans/**"), ("*.log",), 1000)
    assert cfg.breaker == BreakerLimits(2, 4)
    assert cfg.notify[1] == "orchestrator {event}"
    assert cfg.budget == Budget(5.0, 2000000)
    assert cfg.commands["claude-worker"] == CommandTurnConfig(("my proxy says: slow down",), "claude-json",
                                                              "prompts/worker.md.j2")
    assert cfg.command("codex-supervisor").usage == "codex-jsonl"
    assert cfg.command("builtin") == CommandTurnConfig()
    assert cfg.command("claude-worker").classifier().extra[0].name == "transient[0]"


def test_defaults() -> None:
    for raw in (None, {}):
        cfg = TurnsConfig.from_mapping(raw, SRC)
        assert cfg.commit.include == ("**",) and cfg.commit.exclude == ()
        assert cfg.breaker == BreakerLimits(3, 3) and cfg.notify == () and cfg.budget == Budget()


@pytest.mark.parametrize(("raw", "message"), [
    ({"commands": {"claude-worker": {"usage": "foo"}}},
     "orchestrator.yaml: commands.claude-worker.usage: unknown kind 'foo' (expected claude-json, codex-jsonl, none)"),
    ({"commands": {"w": {"transient": ["ok", "(bad"]}}}, "orchestrator.yaml: commands.w.transient[1]: invalid regex"),
    ({"commands": {"w": {"transient": "not a list"}}}, "orchestrator.yaml: commands.w.transient: expected a list"),
    ({"commands": {"w": {"prompt": ""}}}, "orchestrator.yaml: commands.w.prompt: expected a path string"),
    ({"commands": {"w": "argv"}}, "orchestrator.yaml: commands.w: expected a mapping"),
    ({"commit": {"include": ["src/**"], "exlude": ["x"]}}, "orchestrator.yaml: commit: unknown key(s) ['exlude']"),
    ({"commit": {"exclude": [3]}}, "orchestrator.yaml: commit.exclude[0]: expected a non-empty string"),
    ({"commit": ["src/**"]}, "orchestrator.yaml: commit: expected a mapping"),
    ({"breaker": {"no_op": -1}}, "orchestrator.yaml: breaker.no_op: expected an int >= 0"),
    ({"breaker": {"no_ops": 3}}, "orchestrator.yaml: breaker: unknown key(s) ['no_ops']"),
    ({"notify": "notify-send"}, "orchestrator.yaml: notify: expected a list of strings"),
    ({"notify": ["x", "{evnt}"]}, "orchestrator.yaml: notify: unknown placeholder(s) ['evnt']"),
    ({"budgets": {"max_usd": 0}}, "orchestrator.yaml: budgets.max_usd: expected a number > 0"),
    ({"budgets": {"max_usd": "5$"}}, "orchestrator.yaml: budgets.max_usd: expected a number > 0"),
    ({"budgets": {"max_tokens": 1.5}}, "orchestrator.yaml: budgets.max_tokens: expected an int > 0"),
])
def test_errors_name_the_key_path(raw: dict, message: str) -> None:
    with pytest.raises(TurnConfigError) as info:
        TurnsConfig.from_mapping(raw, SRC)
    assert str(info.value).startswith(message), str(info.value)


def test_prompt_templates_are_checked_before_any_turn(tmp_path: Path) -> None:
    cfg = TurnsConfig.from_mapping(yaml.safe_load(FULL), SRC)
    with pytest.raises(TurnConfigError, match=r"^orchestrator\.yaml: commands\.claude-worker\.prompt: "
                                              r".*prompts/worker\.md\.j2: prompt template not found"):
        cfg.prompt_template("claude-worker", "worker", tmp_path)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "worker.md.j2").write_text("Do {{ focus }}\n{{ budget_left }}\n", encoding="utf-8")
    with pytest.raises(TurnConfigError, match=r"commands\.claude-worker\.prompt: .*worker\.md\.j2:2: "
                                              r"unknown variable 'budget_left'"):
        cfg.prompt_template("claude-worker", "worker", tmp_path)
    (tmp_path / "prompts" / "worker.md.j2").write_text("Do {{ focus }}\n", encoding="utf-8")
    assert cfg.prompt_template("claude-worker", "worker", tmp_path).source.endswith("prompts/worker.md.j2")
    assert cfg.prompt_template("codex-supervisor", "supervisor", tmp_path).source == \
        "orchestrator/prompts/supervisor.md.j2"
