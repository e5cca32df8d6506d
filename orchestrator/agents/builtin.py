"""The builtin agents: the harness's own handoff rendering and its step-by-step worker."""

from __future__ import annotations

from orchestrator.agents.base import AgentResult, AgentTraits, SupervisorTask, WorkerTask
from orchestrator.execution.steps import run_steps
from orchestrator.fsutil import atomic_write_text

__all__ = ["BuiltinSupervisor", "BuiltinWorker"]


class BuiltinSupervisor:
    """Writes the harness's own rendering of the handoff (``task.draft``)."""

    name = "builtin"
    traits = AgentTraits()

    def supervise(self, task: SupervisorTask) -> AgentResult:
        atomic_write_text(task.input_path, task.draft)
        return AgentResult(status="ok", message="builtin supervisor wrote input.md")


class BuiltinWorker:
    """Runs each Do-Now step with its timeout, stopping at the first failure."""

    name = "builtin"
    traits = AgentTraits()

    def work(self, task: WorkerTask) -> AgentResult:
        records = run_steps(task.steps, task.repo, task.report_dir, task.env, task.step_timeout_s,
                            done=task.done_steps, on_start=task.on_start, on_step=task.on_step)
        failed = [r.index for r in records if not r.ok]
        ran = f"{len(records)}/{len(task.steps)} step(s) run"
        if failed:
            return AgentResult(status="failed", message=f"{ran}; step {failed[0]} failed", steps=records,
                               per_step=True)
        return AgentResult(status="ok", message=f"{ran}, all passed", steps=records, per_step=True)
