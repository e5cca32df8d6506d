"""Agents are built by name from the registry and declare what the cycle does around them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.agents import AgentTraits, BuiltinSupervisor, BuiltinWorker, CommandAgent
from orchestrator.agents.registry import KINDS, build_agent, kind_of
from orchestrator.config import AgentCommand

CYCLE = Path(__file__).parents[3] / "orchestrator" / "cycle"


def _valid(repo: Path, path: Path) -> list[str]:
    return []


@pytest.mark.parametrize(("role", "cls"), [("supervisor", BuiltinSupervisor), ("worker", BuiltinWorker)])
def test_builtin_by_name_has_default_traits(role: str, cls: type) -> None:
    agent = build_agent(role, "builtin", {}, _valid, {})
    assert isinstance(agent, cls) and agent.traits == AgentTraits()


def test_a_command_by_name_is_judged_from_evidence_and_metered() -> None:
    spec = AgentCommand(name="my-cli", role="worker", argv=("my-cli", "{prompt}"))
    agent = build_agent("worker", "my-cli", {"my-cli": spec}, _valid, {})
    assert isinstance(agent, CommandAgent) and agent.name == "my-cli"
    assert agent.traits.judged_by_evidence and agent.traits.prompt_context and agent.traits.metered
    assert kind_of("my-cli") == "command" and set(KINDS) == {"builtin", "command"}


def test_the_cycle_never_asks_an_agent_its_type() -> None:
    for path in CYCLE.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"getattr\([^)]*(supervisor|worker)", text), path
        assert not re.search(r"isinstance\([^)]*(Builtin|CommandAgent)", text), path
        assert "CommandAgent" not in text and "BuiltinWorker" not in text, path
