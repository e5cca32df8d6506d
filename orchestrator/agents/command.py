"""External coding-agent CLIs as agents: :class:`CommandAgent`.

:class:`CommandAgent` runs an external CLI from an argv template (``orchestrator.yaml``,
never through a shell) with a prompt rendered from a Jinja2 template
(:mod:`orchestrator.turns.prompts`; the command's ``prompt:`` or the shipped default), under a
timeout, with its transcript in ``<report_dir>/agent/``. Its output lines go to the
``orchestrator.output`` logger prefixed ``[<role> <name>]``, with a heartbeat every 30 s.
Afterwards it parses the spend (``usage:``), classifies a failure as transient (rate/usage
limit, overload: the caller waits and retries) and validates what the agent wrote; anything
invalid is kept as an artifact and the previous file is restored, so nothing is lost.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.agents.agent_env import agent_environment
from orchestrator.agents.base import (
    AgentResult,
    AgentTraits,
    HandoffValidator,
    SupervisorTask,
    WorkerTask,
)
from orchestrator.config import AgentCommand
from orchestrator.execution.heartbeat import HEARTBEAT_S, heartbeat
from orchestrator.execution.runner import CommandInterrupted, CommandResult, run
from orchestrator.execution.steps import OUTPUT_LOG, step_record
from orchestrator.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text, iso_utc, utc_now
from orchestrator.layout import Layout
from orchestrator.records.run_record import StepRecord
from orchestrator.turns.prompts import PromptContext, PromptTemplate, default_template
from orchestrator.turns.transient import TransientClassifier, TransientDecision
from orchestrator.turns.usage import Usage
from orchestrator.turns.usage_spec import UsageSpec, read_usage

__all__ = ["CommandAgent", "render_argv"]

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(prompt|prompt_file|repo|report_dir|role|focus)\}")


def render_argv(template: tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    """Substitute ``{prompt}``, ``{prompt_file}``, ``{repo}``, ``{report_dir}``, ``{role}`` and
    ``{focus}`` in one pass (text inserted for one placeholder is never re-substituted)."""
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in template]


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


_TAIL_CHARS = 20_000


def _tail(path: Path | None, chars: int = _TAIL_CHARS) -> str:
    """The last ``chars`` characters of a transcript (the runner's ``# [runner]`` lines dropped)."""
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - chars * 4))
        text = fh.read().decode("utf-8", errors="replace")[-chars:]
    return "\n".join(line for line in text.splitlines() if not line.startswith("# [runner]")
                     and not line.startswith("# $ "))


class CommandAgent:
    """An external agent CLI for one role (``spec.role``). See the module docstring.

    ``template``: the prompt template (default: the shipped one for the role). ``spend_note``:
    called by the heartbeat for "spend so far". ``clock``: UTC now (for reset times)."""

    #: one record of its whole run, judged from evidence; an LLM prompt; spend and status metered
    traits = AgentTraits(judged_by_evidence=True, prompt_context=True, metered=True, may_choose_focus=True)

    def __init__(self, spec: AgentCommand, validate_handoff: HandoffValidator,
                 protected: tuple[str, ...] = (Layout.HANDOFF,), *, template: PromptTemplate | None = None,
                 heartbeat_s: float = HEARTBEAT_S, spend_note: Callable[[], str] | None = None,
                 clock: Callable[[], Any] = utc_now) -> None:
        self.spec = spec
        self.name = spec.name
        self._validate_handoff = validate_handoff
        self._protected = protected
        self.template = template if template is not None else default_template(spec.role)
        where = f"commands.{spec.name}"
        self.usage = UsageSpec.from_config(spec.usage, f"{where}.usage")
        self.classifier = TransientClassifier.from_regexes(spec.transient, f"{where}.transient")
        self.heartbeat_s = heartbeat_s
        self.spend_note = spend_note
        self.clock = clock

    # the two role entry points ------------------------------------------------------
    def supervise(self, task: SupervisorTask) -> AgentResult:
        self._require_role("supervisor")
        report_rel = task.report_dir.relative_to(task.repo).as_posix()
        context = task.prompt_context or PromptContext(
            role="supervisor", repo=str(task.repo), focus=task.focus, report_dir=report_rel,
            focus_title=task.title, dwell=task.dwell, draft=task.draft)
        prompt = self.template.render(context)
        before = _Snapshot.take(task.input_path)
        result = self._run(task.repo, task.report_dir, task.focus, prompt, restore=(before,),
                           turn_vars={"ARTIFACTS": report_rel})
        agent_dir = task.report_dir / "agent"
        restored = task.after_run() if task.after_run is not None else []
        for note in restored:
            logger.warning("%s: %s", self.name, note)
        decision = self._transient(result)
        if decision is not None:
            kept = _keep_copy(task.input_path, agent_dir, "transient_input") if before.changed() else None
            before.restore()
            return self._finish(task.report_dir, "transient", f"{self.name} hit a transient limit "
                                f"({decision.pattern}): {decision.excerpt}", result, kept, decision=decision)
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
        context = task.prompt_context or PromptContext(role="worker", repo=str(task.repo), focus=task.focus,
                                                       report_dir=report_rel)
        prompt = self.template.render(context)
        snapshots = tuple(_Snapshot.take(task.repo / p) for p in self._protected)
        # the harness's per-turn variables, not the PATH/PYTHONPATH it gives its own steps
        turn_vars = {k: v for k, v in task.env.items() if k not in ("PATH", "PYTHONPATH")}
        result = self._run(task.repo, task.report_dir, task.focus, prompt, restore=snapshots, turn_vars=turn_vars)
        touched = [s for s in snapshots if s.changed()]
        kept = [_keep_copy(s.path, task.report_dir / "agent", f"worker_edited_{s.path.stem}") for s in touched]
        for snap in touched:
            snap.restore()
        problems = tuple(f"{s.path}: the worker agent must not edit this file (restored; its version kept)"
                         for s in touched)
        step = step_record(1, result, task.report_dir, title=f"agent {self.name}")
        if task.on_step is not None:
            task.on_step(step)
        decision = self._transient(result)
        status = "timed_out" if result.timed_out else ("ok" if result.ok else "failed")
        if decision is not None:
            status = "transient"
        elif problems and status == "ok":
            status = "invalid"
        message = (f"{self.name} hit a transient limit ({decision.pattern}): {decision.excerpt}" if decision
                   else f"{self.name} {_describe(result)}")
        return self._finish(task.report_dir, status, message, result, *[k for k in kept if k is not None],
                            problems=problems, steps=(step,), decision=decision)

    # helpers ----------------------------------------------------------------------------
    def _transient(self, result: CommandResult) -> TransientDecision | None:
        if result.timed_out:
            return None
        decision = self.classifier.classify(result.rc, _tail(result.log_path), self.clock())
        return decision if decision.transient else None

    def _require_role(self, role: str) -> None:
        if self.spec.role != role:
            raise ValueError(f"agent command {self.name!r} has role {self.spec.role!r}, cannot act as {role}")

    def _run(self, repo: Path, report_dir: Path, focus: str, prompt: str,
             restore: tuple[_Snapshot, ...], turn_vars: Mapping[str, str]) -> CommandResult:
        agent_dir = report_dir / "agent"
        prompt_file = agent_dir / f"{self.spec.role}-prompt.md"
        atomic_write_text(prompt_file, prompt)
        values = {"prompt_file": str(prompt_file), "repo": str(repo), "report_dir": str(report_dir),
                  "role": self.spec.role, "focus": focus}
        argv = render_argv(self.spec.argv, {**values, "prompt": prompt})
        # the prompt is in prompt_file: logs and the transcript show the command without it
        shown = shlex.join(render_argv(self.spec.argv, {**values, "prompt": f"<prompt: {len(prompt)} chars, "
                                                                           f"{prompt_file}>"}))
        env = agent_environment(self.spec.env, values, turn_vars)
        transcript = agent_dir / f"{self.spec.role}-transcript.log"
        logger.info("running %s agent %s (timeout %ss)", self.spec.role, self.name, self.spec.timeout_s)
        prefix = f"[{self.spec.role} {self.name}]"
        try:
            with heartbeat(prefix, transcript, self.heartbeat_s, self.spend_note):
                return run(argv, cwd=repo, timeout_s=self.spec.timeout_s, log_path=transcript, env=env,
                           base_env={}, shown=shown, echo=lambda line: OUTPUT_LOG.info("%s %s", prefix, line))
        except CommandInterrupted as exc:
            for snap in restore:
                if snap.changed():
                    _keep_copy(snap.path, agent_dir, f"interrupted_{snap.path.stem}")
                    snap.restore()
            self._record(report_dir, "interrupted", "interrupted by a signal", exc.result, ())
            raise

    def _record(self, report_dir: Path, status: str, message: str, result: CommandResult,
                problems: tuple[str, ...] | list[str], kept: tuple[Path, ...] = (),
                usage: Usage | None = None, decision: TransientDecision | None = None) -> Path:
        data: dict[str, Any] = {"agent": self.name, "role": self.spec.role, "status": status,
                                "message": message, "problems": list(problems),
                                "kept": [str(k.relative_to(report_dir)) for k in kept],
                                "usage": usage.to_dict() if usage is not None else None,
                                "transient": None if decision is None else {
                                    "pattern": decision.pattern, "excerpt": decision.excerpt,
                                    "wait_until": iso_utc(decision.wait_until) if decision.wait_until else None},
                                "command": result.to_dict()}
        data["command"]["argv"] = [a if len(a) < 200 else a[:200] + "…" for a in data["command"]["argv"]]
        return atomic_write_json(report_dir / "agent" / f"{self.spec.role}.json", data)

    def _finish(self, report_dir: Path, status: str, message: str, result: CommandResult,
                *kept: Path | None, problems: tuple[str, ...] | list[str] = (),
                steps: tuple[StepRecord, ...] = (), decision: TransientDecision | None = None) -> AgentResult:
        kept_paths = tuple(k for k in kept if k is not None)
        tail = _tail(result.log_path)
        parsed = read_usage(self.usage, tail, {"repo": str(result.cwd), "report_dir": str(report_dir)})
        if parsed.usage is None and not self.usage.off:
            logger.warning("%s: no spend in its output (%s)", self.name, parsed.reason)
        record = self._record(report_dir, status, message, result, problems, kept_paths, parsed.usage, decision)
        level = logging.INFO if status == "ok" else logging.WARNING
        logger.log(level, "%s: %s", self.name, message)
        error_tail = "\n".join(tail.splitlines()[-5:]) if status != "ok" else ""
        return AgentResult(status=status, message=message, steps=steps, transcript=result.log_path,
                           artifacts=(record, result.log_path, *kept_paths), problems=tuple(problems),
                           rc=None if result.error else result.rc, usage=parsed.usage, transient=decision,
                           error_tail=error_tail)


def _describe(result: CommandResult) -> str:
    if result.timed_out:
        return f"timed out after {result.timeout_s:g}s and was killed"
    if result.error:
        return f"could not run: {result.error}"
    return f"exited with rc {result.rc} after {result.duration_s:.1f}s"
