"""Agents chosen by name: ``agents: {supervisor: NAME, worker: NAME}`` in ``orchestrator.yaml``.

``builtin`` names the harness's own agent for the role; any other name is an entry of
``commands:`` and becomes a :class:`CommandAgent`. :data:`KINDS` maps each kind to its
factory, so a new kind of agent is one entry here and the cycle never changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.agents.base import HandoffValidator, SupervisorAgent, WorkerAgent
from orchestrator.agents.builtin import BuiltinSupervisor, BuiltinWorker
from orchestrator.agents.command import CommandAgent
from orchestrator.config import BUILTIN, AgentCommand
from orchestrator.turns.prompts import PromptTemplate

__all__ = ["KINDS", "AgentSpec", "build_agent", "kind_of"]

Agent = SupervisorAgent | WorkerAgent


@dataclass(frozen=True)
class AgentSpec:
    """Everything a factory may need: the role, the configured name, its ``commands:`` entry
    (None for ``builtin``), the handoff validator and its prompt template."""

    role: str
    name: str
    command: AgentCommand | None = None
    validate_handoff: HandoffValidator | None = None
    template: PromptTemplate | None = None


def _builtin(spec: AgentSpec) -> Agent:
    return BuiltinSupervisor() if spec.role == "supervisor" else BuiltinWorker()


def _command(spec: AgentSpec) -> Agent:
    if spec.command is None or spec.validate_handoff is None:
        raise ValueError(f"{spec.role} agent {spec.name!r}: a command agent needs its commands: entry and a validator")
    return CommandAgent(spec.command, spec.validate_handoff, template=spec.template)


#: kind → factory
KINDS: Mapping[str, Callable[[AgentSpec], Agent]] = {BUILTIN: _builtin, "command": _command}


def kind_of(name: str) -> str:
    """``builtin`` for the harness's own agent, ``command`` for a ``commands:`` entry."""
    return BUILTIN if name == BUILTIN else "command"


def build_agent(role: str, name: str, commands: Mapping[str, AgentCommand], validate_handoff: HandoffValidator,
                templates: Mapping[str, PromptTemplate]) -> Agent:
    """The agent configured as ``name`` for ``role`` (the config was validated on load:
    ``name`` is ``builtin`` or a command of that role)."""
    spec = AgentSpec(role, name, commands.get(name), validate_handoff, templates.get(name))
    return KINDS[kind_of(name)](spec)
