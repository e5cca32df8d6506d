"""Agents: the role Protocols (:mod:`.base`), the builtin agents (:mod:`.builtin`) and
external agent CLIs (:mod:`.command`)."""

from orchestrator.agents.base import (
                                      AgentResult,
                                      HandoffValidator,
                                      SupervisorAgent,
                                      SupervisorTask,
                                      WorkerAgent,
                                      WorkerTask,
)
from orchestrator.agents.builtin import BuiltinSupervisor, BuiltinWorker
from orchestrator.agents.command import CommandAgent, render_argv

__all__ = ["AgentResult", "BuiltinSupervisor", "BuiltinWorker", "CommandAgent", "HandoffValidator",
           "SupervisorAgent", "SupervisorTask", "WorkerAgent", "WorkerTask", "render_argv"]
