"""Validators for the ``orchestrator.yaml`` keys that agent turns add.

:meth:`TurnsConfig.from_mapping` reads only these keys of the parsed YAML document and ignores
every other key (the main config loader owns those; it must accept :data:`NEW_TOP_KEYS`,
:data:`NEW_BUDGET_KEYS` under ``budgets:`` and :data:`NEW_COMMAND_KEYS` under each command)::

    commit: {include: ["**"], exclude: ["*.log"]}   # .orchestrator/** is always excluded
    breaker: {no_op: 3, same_error: 3}              # 0 disables a rule
    notify: ["notify-send", "{event}", "{focus}: {message} ({report_dir})"]
    budgets: {max_usd: 5.0, max_tokens: 2000000}
    commands:
      claude-worker:
        transient: ["my proxy says: slow down"]     # extra regexes (case-insensitive)
        usage: claude-json                          # claude-json | codex-jsonl | none | mini-swe-agent
                                                    # | {format, file, cost, input_tokens, output_tokens}
        prompt: prompts/worker.md.j2                # relative to the repository root

Every error is a :class:`TurnConfigError` naming the key path, e.g.
``orchestrator.yaml: commands.claude-worker.usage: unknown kind 'foo' (expected claude-json,
codex-jsonl, none, mini-swe-agent, …)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.turns.breaker import BreakerLimits, Budget
from orchestrator.turns.commit_policy import CommitPolicy
from orchestrator.turns.errors import TurnConfigError
from orchestrator.turns.notify import NOTIFY_PLACEHOLDERS, unknown_placeholders
from orchestrator.turns.prompts import PromptTemplate, default_template, load_template
from orchestrator.turns.transient import TransientClassifier, compile_patterns
from orchestrator.turns.usage_spec import UsageSpec

__all__ = ["NEW_BUDGET_KEYS", "NEW_COMMAND_KEYS", "NEW_TOP_KEYS", "CommandTurnConfig", "CommitConfig",
           "TurnsConfig"]

NEW_TOP_KEYS = ("commit", "breaker", "notify")
NEW_BUDGET_KEYS = ("max_usd", "max_tokens")
NEW_COMMAND_KEYS = ("transient", "usage", "prompt")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TurnConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TurnConfigError(f"{where}: expected a list of strings, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise TurnConfigError(f"{where}[{i}]: expected a non-empty string, got {item!r}")
    return tuple(value)


def _only(section: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise TurnConfigError(f"{where}: unknown key(s) {unknown} (allowed: {', '.join(allowed)})")


@dataclass(frozen=True)
class CommitConfig:
    """``commit: {include, exclude}`` (globs; see :mod:`orchestrator.turns.commit_policy`)."""

    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, raw: Any, where: str) -> CommitConfig:
        section = _mapping(raw, where)
        _only(section, ("include", "exclude"), where)
        include = _strings(section.get("include"), f"{where}.include") if "include" in section else ("**",)
        return cls(include=include, exclude=_strings(section.get("exclude"), f"{where}.exclude"))

    def policy(self, max_commit_bytes: int) -> CommitPolicy:
        return CommitPolicy(self.include, self.exclude, max_commit_bytes)


@dataclass(frozen=True)
class CommandTurnConfig:
    """A command's turn keys: extra ``transient`` regexes (validated), where its spend is
    (``usage``, :class:`~orchestrator.turns.usage_spec.UsageSpec`), and an optional ``prompt``
    template path (repo-relative or absolute). (``env:`` is validated by ``orchestrator.config``.)"""

    transient: tuple[str, ...] = ()
    usage: Any = "none"
    prompt: str | None = None

    @classmethod
    def from_mapping(cls, raw: Any, where: str) -> CommandTurnConfig:
        """``raw`` is the whole command mapping; keys other than :data:`NEW_COMMAND_KEYS` are ignored."""
        section = _mapping(raw, where)
        transient = _strings(section.get("transient"), f"{where}.transient")
        compile_patterns(transient, f"{where}.transient")
        usage = section.get("usage", "none")
        UsageSpec.from_config(usage, f"{where}.usage")
        prompt = section.get("prompt")
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
            raise TurnConfigError(f"{where}.prompt: expected a path string, got {prompt!r}")
        return cls(transient, usage, prompt)

    def usage_spec(self) -> UsageSpec:
        return UsageSpec.from_config(self.usage, "usage")

    def classifier(self) -> TransientClassifier:
        return TransientClassifier.from_regexes(self.transient, "transient")


@dataclass(frozen=True)
class TurnsConfig:
    """All turn-related settings; defaults when the keys are absent."""

    commit: CommitConfig = field(default_factory=CommitConfig)
    breaker: BreakerLimits = field(default_factory=BreakerLimits)
    notify: tuple[str, ...] = ()
    budget: Budget = field(default_factory=Budget)
    commands: Mapping[str, CommandTurnConfig] = field(default_factory=dict)
    source: str = "<defaults>"

    @classmethod
    def from_mapping(cls, raw: Any, where: str) -> TurnsConfig:
        """``raw``: the parsed ``orchestrator.yaml`` document; ``where``: its name, used as the
        prefix of every error."""
        doc = _mapping(raw, where)
        commit = CommitConfig.from_mapping(doc.get("commit"), f"{where}: commit")
        breaker_raw = _mapping(doc.get("breaker"), f"{where}: breaker")
        _only(breaker_raw, ("no_op", "same_error"), f"{where}: breaker")
        for key, value in breaker_raw.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TurnConfigError(f"{where}: breaker.{key}: expected an int >= 0 (0 = off), got {value!r}")
        notify = _strings(doc.get("notify"), f"{where}: notify")
        bad = unknown_placeholders(notify)
        if bad:
            raise TurnConfigError(f"{where}: notify: unknown placeholder(s) {sorted(set(bad))} "
                                  f"(known: {', '.join('{' + p + '}' for p in NOTIFY_PLACEHOLDERS)})")
        budgets = _mapping(doc.get("budgets"), f"{where}: budgets")
        max_usd, max_tokens = budgets.get("max_usd"), budgets.get("max_tokens")
        if max_usd is not None and (isinstance(max_usd, bool) or not isinstance(max_usd, (int, float))
                                    or not math.isfinite(max_usd) or max_usd <= 0):
            raise TurnConfigError(f"{where}: budgets.max_usd: expected a number > 0, got {max_usd!r}")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens <= 0):
            raise TurnConfigError(f"{where}: budgets.max_tokens: expected an int > 0, got {max_tokens!r}")
        commands = {str(name): CommandTurnConfig.from_mapping(spec, f"{where}: commands.{name}")
                    for name, spec in _mapping(doc.get("commands"), f"{where}: commands").items()}
        return cls(commit, BreakerLimits(**breaker_raw), notify,
                   Budget(float(max_usd) if max_usd is not None else None, max_tokens), commands, where)

    def command(self, name: str) -> CommandTurnConfig:
        """The turn keys of command ``name`` (defaults for a command without them, e.g. builtin)."""
        return self.commands.get(name, CommandTurnConfig())

    def prompt_template(self, name: str, role: str, repo: Path) -> PromptTemplate:
        """Load and validate command ``name``'s template (its ``prompt:`` relative to ``repo``,
        else the default for ``role``). Call for every configured command before the first
        turn; errors name ``<source>: commands.<name>.prompt`` and the file:line."""
        prompt = self.command(name).prompt
        if prompt is None:
            return default_template(role)
        path = Path(prompt) if Path(prompt).is_absolute() else Path(repo) / prompt
        try:
            return load_template(path)
        except TurnConfigError as exc:
            raise TurnConfigError(f"{self.source}: commands.{name}.prompt: {exc}") from exc
