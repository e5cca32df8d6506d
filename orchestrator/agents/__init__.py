"""Agents: the role Protocols (:mod:`.base`), the builtin agents (:mod:`.builtin`),
external agent CLIs (:mod:`.command`) and the registry that builds them by name (:mod:`.registry`)."""

from orchestrator.agents.base import (
                                      AgentResult,
                                      AgentTraits,
                                      HandoffValidator,
                                      SupervisorAgent,
                                      SupervisorTask,
                                      WorkerAgent,
                                      WorkerTask,
)
from orchestrator.agents.builtin import BuiltinSupervisor, BuiltinWorker
from orchestrator.agents.command import CommandAgent, render_argv

__all__ = ["AgentResult", "AgentTraits", "BuiltinSupervisor", "BuiltinWorker", "CommandAgent", "HandoffValidator",
           "SupervisorAgent", "SupervisorTask", "WorkerAgent", "WorkerTask", "render_argv"]
