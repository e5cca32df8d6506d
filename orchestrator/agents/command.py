"""External coding-agent CLIs as agents: :class:`CommandAgent`.

:class:`CommandAgent` runs an external CLI from an argv template (``orchestrator.yaml``,
never through a shell) with a rendered prompt file, under a timeout, with its transcript in
``<report_dir>/agent/``. Afterwards it validates what the agent wrote; anything invalid is
kept as an artifact and the previous file is restored, so nothing is lost and the cycle is
recorded as blocked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.agents.base import (
    AgentResult,
    HandoffValidator,
    SupervisorTask,
    WorkerTask,
)
from orchestrator.config import AgentCommand
from orchestrator.execution.runner import CommandInterrupted, CommandResult, run
from orchestrator.execution.steps import step_record
from orchestrator.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from orchestrator.layout import Layout
from orchestrator.records.run_record import StepRecord

__all__ = ["CommandAgent", "render_argv"]

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(prompt|prompt_file|repo|report_dir|role|focus)\}")


def render_argv(template: tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    """Substitute ``{prompt}``, ``{prompt_file}``, ``{repo}``, ``{report_dir}``, ``{role}`` and
    ``{focus}`` in one pass (text inserted for one placeholder is never re-substituted)."""
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in template]


_SUPERVISOR_PROMPT = """\
You are the SUPERVISOR of the ptycho-harness loop working in {repo}.

Focus: {focus} — {title}
Dwell (computed by the harness from git history): {dwell}
This cycle's report directory: {report_rel}/

Write the worker's handoff to `input.md` in the repository root. Keep the format of the
draft below: header lines `Mode:`, `Focus: <ID> — <title>`, `Branch:`, `Mapped tests:`,
`Artifacts: {report_rel}/`; `## Do Now` with `### Phase X: title` sections, numbered steps
and ```bash blocks (a `# Expected: N passed` comment states a pytest expectation; a leading
`timeout N` bounds a step); `## Exit Criteria` as a numbered list whose items end with
`check: `<command>`` wherever the criterion can be checked by a command.
Use only paths inside the repository. Do not edit other files and do not commit: the harness
validates input.md, appends the ledger entry and commits.

Draft from the builtin supervisor:

{draft}
"""

_WORKER_PROMPT = """\
You are the WORKER of the ptycho-harness loop working in {repo}.

Execute the `## Do Now` of `input.md` (focus {focus}) step by step, keeping every output
under {report_rel}/. Do not edit `input.md`, `galph_memory.md` or `docs/fix_plan.md` and do
not commit: the harness checks the exit criteria itself, records run.json, updates the plan
and commits. If you cannot proceed, write {report_rel}/blocked_<UTC-ts>.md saying why.
"""


@dataclass(frozen=True)
class _Snapshot:
    path: Path
    data: bytes | None

    @classmethod
    def take(cls, path: Path) -> _Snapshot:
        return cls(path, path.read_bytes() if path.exists() else None)

    def changed(self) -> bool:
        now = self.path.read_bytes() if self.path.exists() else None
        return now != self.data

    def restore(self) -> None:
        if self.data is None:
            self.path.unlink(missing_ok=True)
        else:
            atomic_write_bytes(self.path, self.data)


def _keep_copy(src: Path, dest_dir: Path, stem: str) -> Path | None:
    """Copy ``src`` into ``dest_dir`` as ``stem.md`` (``stem-2.md``… never overwriting)."""
    if not src.exists():
        return None
    dest_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        dest = dest_dir / (f"{stem}.md" if n == 1 else f"{stem}-{n}.md")
        if not dest.exists():
            dest.write_bytes(src.read_bytes())
            return dest
    raise RuntimeError(f"too many copies of {stem} in {dest_dir}")


class CommandAgent:
    """An external agent CLI for one role (``spec.role``). See the module docstring."""

    def __init__(self, spec: AgentCommand, validate_handoff: HandoffValidator,
                 protected: tuple[str, ...] = (Layout.HANDOFF,)) -> None:
        self.spec = spec
        self.name = spec.name
        self._validate_handoff = validate_handoff
        self._protected = protected

    # the two role entry points ------------------------------------------------------
    def supervise(self, task: SupervisorTask) -> AgentResult:
        self._require_role("supervisor")
        report_rel = task.report_dir.relative_to(task.repo).as_posix()
        prompt = _SUPERVISOR_PROMPT.format(repo=task.repo, focus=task.focus, title=task.title,
                                           dwell=task.dwell, report_rel=report_rel, draft=task.draft)
        before = _Snapshot.take(task.input_path)
        result = self._run(task.repo, task.report_dir, task.focus, prompt, restore=(before,))
        agent_dir = task.report_dir / "agent"
        if result.timed_out or not result.ok:
            kept = _keep_copy(task.input_path, agent_dir, "unvalidated_input") if before.changed() else None
            before.restore()
            status = "timed_out" if result.timed_out else "failed"
            return self._finish(task.report_dir, status, f"{self.name} {_describe(result)}; input.md restored",
                                result, kept)
        problems: list[str] = []
        if not before.changed():
            problems.append(f"{task.input_path}: the agent did not write input.md")
        else:
            problems.extend(self._validate_handoff(task.repo, task.input_path))
        if problems:
            kept = _keep_copy(task.input_path, agent_dir, "invalid_input") if before.changed() else None
            before.restore()
            return self._finish(task.report_dir, "invalid",
                                f"{self.name} wrote an invalid input.md ({len(problems)} problem(s)); "
                                "kept as an artifact, previous input.md restored", result, kept, problems=problems)
        return self._finish(task.report_dir, "ok", f"{self.name} wrote a valid input.md", result)

    def work(self, task: WorkerTask) -> AgentResult:
        self._require_role("worker")
        report_rel = task.report_dir.relative_to(task.repo).as_posix()
        prompt = _WORKER_PROMPT.format(repo=task.repo, focus=task.focus, report_rel=report_rel)
        snapshots = tuple(_Snapshot.take(task.repo / p) for p in self._protected)
        result = self._run(task.repo, task.report_dir, task.focus, prompt, restore=snapshots, env=task.env)
        touched = [s for s in snapshots if s.changed()]
        kept = [_keep_copy(s.path, task.report_dir / "agent", f"worker_edited_{s.path.stem}") for s in touched]
        for snap in touched:
            snap.restore()
        problems = tuple(f"{s.path}: the worker agent must not edit this file (restored; its version kept)"
                         for s in touched)
        step = step_record(1, result, task.report_dir, title=f"agent {self.name}")
        if task.on_step is not None:
            task.on_step(step)
        status = "timed_out" if result.timed_out else ("ok" if result.ok else "failed")
        if problems and status == "ok":
            status = "invalid"
        return self._finish(task.report_dir, status, f"{self.name} {_describe(result)}", result,
                            *[k for k in kept if k is not None], problems=problems, steps=(step,))

    # helpers ----------------------------------------------------------------------------
    def _require_role(self, role: str) -> None:
        if self.spec.role != role:
            raise ValueError(f"agent command {self.name!r} has role {self.spec.role!r}, cannot act as {role}")

    def _run(self, repo: Path, report_dir: Path, focus: str, prompt: str,
             restore: tuple[_Snapshot, ...], env: Mapping[str, str] | None = None) -> CommandResult:
        agent_dir = report_dir / "agent"
        prompt_file = agent_dir / f"{self.spec.role}-prompt.md"
        atomic_write_text(prompt_file, prompt)
        argv = render_argv(self.spec.argv, {
            "prompt": prompt, "prompt_file": str(prompt_file), "repo": str(repo),
            "report_dir": str(report_dir), "role": self.spec.role, "focus": focus})
        transcript = agent_dir / f"{self.spec.role}-transcript.log"
        logger.info("running %s agent %s (timeout %ss)", self.spec.role, self.name, self.spec.timeout_s)
        try:
            return run(argv, cwd=repo, timeout_s=self.spec.timeout_s, log_path=transcript, env=env, echo=False)
        except CommandInterrupted as exc:
            for snap in restore:
                if snap.changed():
                    _keep_copy(snap.path, agent_dir, f"interrupted_{snap.path.stem}")
                    snap.restore()
            self._record(report_dir, "interrupted", "interrupted by a signal", exc.result, ())
            raise

    def _record(self, report_dir: Path, status: str, message: str, result: CommandResult,
                problems: tuple[str, ...] | list[str], kept: tuple[Path, ...] = ()) -> Path:
        data: dict[str, Any] = {"agent": self.name, "role": self.spec.role, "status": status,
                                "message": message, "problems": list(problems),
                                "kept": [str(k.relative_to(report_dir)) for k in kept],
                                "command": result.to_dict()}
        data["command"]["argv"] = [a if len(a) < 200 else a[:200] + "…" for a in data["command"]["argv"]]
        return atomic_write_json(report_dir / "agent" / f"{self.spec.role}.json", data)

    def _finish(self, report_dir: Path, status: str, message: str, result: CommandResult,
                *kept: Path | None, problems: tuple[str, ...] | list[str] = (),
                steps: tuple[StepRecord, ...] = ()) -> AgentResult:
        kept_paths = tuple(k for k in kept if k is not None)
        record = self._record(report_dir, status, message, result, problems, kept_paths)
        level = logging.INFO if status == "ok" else logging.WARNING
        logger.log(level, "%s: %s", self.name, message)
        return AgentResult(status=status, message=message, steps=steps, transcript=result.log_path,
                           artifacts=(record, result.log_path, *kept_paths), problems=tuple(problems))


def _describe(result: CommandResult) -> str:
    if result.timed_out:
        return f"timed out after {result.timeout_s:g}s and was killed"
    if result.error:
        return f"could not run: {result.error}"
    return f"exited with rc {result.rc} after {result.duration_s:.1f}s"
