"""Harness configuration: ``orchestrator.yaml`` parsed into frozen dataclasses.

Every value has a default, so a repository without ``orchestrator.yaml`` runs the builtin
agents. Unknown keys and out-of-range values raise :class:`ConfigError` naming the file,
the key and the expected range.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "AgentCommand",
    "Budgets",
    "ConfigError",
    "HarnessConfig",
    "MainJobConfig",
    "SyncConfig",
    "TrustConfig",
    "WorkerSettings",
    "load_config",
    "CONFIG_NAME",
]

logger = logging.getLogger(__name__)

CONFIG_NAME = "orchestrator.yaml"
BUILTIN = "builtin"
#: top-level keys of the agent-turn settings (validated by orchestrator.turns.config; the
#: names equal its NEW_TOP_KEYS, which test_agent_loop.py checks)
TURN_TOP_KEYS = ("commit", "breaker", "notify")
PLACEHOLDERS = ("{prompt}", "{prompt_file}", "{repo}", "{report_dir}", "{role}", "{focus}")
#: placeholders a command's ``env:`` values may use
ENV_PLACEHOLDERS = ("{prompt_file}", "{repo}", "{report_dir}", "{role}", "{focus}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


class ConfigError(ValueError):
    """Invalid configuration; the message names the file and key."""


@dataclass(frozen=True)
class AgentCommand:
    """An external agent CLI. ``argv`` is a template: each element may contain the
    placeholders ``{prompt}`` (prompt text), ``{prompt_file}``, ``{repo}``, ``{report_dir}``,
    ``{role}`` and ``{focus}``; it is never passed through a shell. ``env``: variables added to
    the agent's environment (values may use :data:`ENV_PLACEHOLDERS`; see
    :mod:`orchestrator.agents.agent_env`). ``transient`` (extra regexes), ``usage`` (a kind
    name or a mapping, :mod:`orchestrator.turns.usage_spec`) and ``prompt`` (template path) are
    validated by :class:`orchestrator.turns.config.TurnsConfig` before any turn."""

    name: str
    role: str
    argv: tuple[str, ...]
    timeout_s: float = 3600.0
    description: str = ""
    transient: tuple[str, ...] = ()
    usage: Any = "none"
    prompt: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role not in ("supervisor", "worker"):
            raise ConfigError(f"agent command {self.name!r}: role must be supervisor|worker, got {self.role!r}")
        if not self.argv or not all(isinstance(a, str) and a for a in self.argv):
            raise ConfigError(f"agent command {self.name!r}: argv must be a non-empty list of strings")
        if not self.timeout_s > 0:
            raise ConfigError(f"agent command {self.name!r}: timeout_s must be > 0, got {self.timeout_s!r}")


@dataclass(frozen=True)
class Budgets:
    """Limits of one ``loop`` invocation: cycles and wall-clock seconds (0 = unlimited);
    ``max_usd`` / ``max_tokens``: agent spend after which no new turn starts (None = none;
    validated by :class:`orchestrator.turns.config.TurnsConfig`)."""

    max_cycles: int = 10
    max_wall_s: float = 4 * 3600.0
    max_usd: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_cycles < 1:
            raise ConfigError(f"budgets.max_cycles must be >= 1, got {self.max_cycles!r}")
        if self.max_wall_s < 0:
            raise ConfigError(f"budgets.max_wall_s must be >= 0 (0 = unlimited), got {self.max_wall_s!r}")


@dataclass(frozen=True)
class MainJobConfig:
    """``make run``: the focus the main job expects and how many phases become its Do Now."""

    focus: str = "STUDY-SYNTH-DOSE-COMPARISON-001"
    phases_per_cycle: int = 0


# ---- trust boundary (issue #19; logic in orchestrator/trust/) -----------------------------
@dataclass(frozen=True)
class TrustConfig:
    """``trust:`` — who may hand the worker commands.

    ``require_signed_handoff``: the worker runs a Do Now only when the commit that last
    changed ``input.md`` is a ``SUPERVISOR:`` commit signed by a key in ``allowed_signers``
    (git's SSH allowed-signers file) and no later commit without such a signature changed the
    handoff, the plans it runs or ``orchestrator.yaml``; the supervisor signs its commits.
    ``None`` = not set: off in the single-process loop, on for the role loop
    (:func:`orchestrator.trust.signing.resolve_trust`).
    """

    require_signed_handoff: bool | None = None
    allowed_signers: str | None = None
    source: str = "<defaults>"

    def __post_init__(self) -> None:
        if self.require_signed_handoff is not None and not isinstance(self.require_signed_handoff, bool):
            raise ConfigError(f"{self.source}: trust.require_signed_handoff must be true or false, "
                              f"got {self.require_signed_handoff!r}")
        if self.allowed_signers is not None and (not isinstance(self.allowed_signers, str)
                                                 or not self.allowed_signers.strip()):
            raise ConfigError(f"{self.source}: trust.allowed_signers must be a file path, got {self.allowed_signers!r}")

    @property
    def required(self) -> bool:
        return self.require_signed_handoff is True


@dataclass(frozen=True)
class WorkerSettings:
    """``worker:`` — ``allow_commands``: regular expressions; when given, every command line
    of the Do Now (and every exit-criterion check) must match one of them in full, else the
    worker refuses the handoff before any step runs."""

    allow_commands: tuple[str, ...] = ()
    source: str = "<defaults>"

    def __post_init__(self) -> None:
        for i, pattern in enumerate(self.allow_commands):
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"{self.source}: worker.allow_commands[{i}] must be a non-empty string, "
                                  f"got {pattern!r}")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{self.source}: worker.allow_commands[{i}] {pattern!r} is not a valid "
                                  f"regular expression: {exc}") from exc


def _parse_trust(raw: Mapping[str, Any], source: str) -> TrustConfig:
    data = _take({k: v for k, v in raw.items() if k != "source"}, TrustConfig, "trust", source)
    if "source" in raw:
        raise ConfigError(f"{source}: unknown key(s) ['source'] in trust")
    return TrustConfig(**data, source=source)


def _parse_worker_settings(raw: Mapping[str, Any], source: str) -> WorkerSettings:
    data = _take({k: v for k, v in raw.items() if k != "source"}, WorkerSettings, "worker", source)
    if "source" in raw:
        raise ConfigError(f"{source}: unknown key(s) ['source'] in worker")
    allow = data.get("allow_commands", ())
    if allow is None:
        allow = ()
    if not isinstance(allow, (list, tuple)):
        raise ConfigError(f"{source}: worker.allow_commands must be a list of regular expressions, "
                          f"got {type(allow).__name__}")
    return WorkerSettings(allow_commands=tuple(allow), source=source)
# ---- end trust boundary ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyncConfig:
    """Two machines (``loop --role … --remote …``), all in seconds: how often the waiting side
    polls the remote, how often the side holding the turn renews its lease, after how long
    without a renewal (or without the peer taking a handed-over turn) the peer is dead, the
    longest wait for one turn, and how long the remote may stay unreachable."""

    poll_s: float = 10.0
    heartbeat_s: float = 30.0
    lease_s: float = 120.0
    max_wait_s: float = 86400.0
    max_offline_s: float = 600.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"sync.{f.name} must be a number > 0 (seconds), got {value!r}")
        if self.lease_s < 2 * self.heartbeat_s:
            raise ConfigError(f"sync.lease_s must be >= 2 x sync.heartbeat_s ({2 * self.heartbeat_s:g}), "
                              f"got {self.lease_s!r}")


@dataclass(frozen=True)
class HarnessConfig:
    """Everything the loop needs besides the repository documents.

    ``phases_per_cycle``: how many unfinished plan phases the builtin supervisor puts into
    one Do Now (0 = all remaining). ``step_timeout_s`` applies to a Do-Now step without a
    ``timeout N`` prefix; ``check_timeout_s`` to each exit-criterion check.
    """

    supervisor: str = BUILTIN
    worker: str = BUILTIN
    dwell_limit: int = 3
    step_timeout_s: float = 900.0
    check_timeout_s: float = 300.0
    max_commit_bytes: int = 5_000_000
    phases_per_cycle: int = 1
    git_sync: bool = True
    budgets: Budgets = field(default_factory=Budgets)
    main_job: MainJobConfig = field(default_factory=MainJobConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    commands: Mapping[str, AgentCommand] = field(default_factory=dict)
    trust: TrustConfig = field(default_factory=TrustConfig)
    worker_settings: WorkerSettings = field(default_factory=WorkerSettings)
    source: str = "<defaults>"
    #: the parsed document (for the agent-turn keys: ``commit``, ``breaker``, ``notify``,
    #: ``budgets.max_usd``/``max_tokens``, per-command ``transient``/``usage``/``prompt``),
    #: read by :class:`orchestrator.turns.config.TurnsConfig`; empty for the defaults
    document: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dwell_limit < 1:
            raise ConfigError(f"{self.source}: dwell_limit must be >= 1, got {self.dwell_limit!r}")
        for name in ("step_timeout_s", "check_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{self.source}: {name} must be > 0, got {getattr(self, name)!r}")
        if self.max_commit_bytes < 1:
            raise ConfigError(f"{self.source}: max_commit_bytes must be >= 1, got {self.max_commit_bytes!r}")
        if self.phases_per_cycle < 0:
            raise ConfigError(f"{self.source}: phases_per_cycle must be >= 0 (0 = all), got {self.phases_per_cycle!r}")
        for role in ("supervisor", "worker"):
            name = getattr(self, role)
            if name == BUILTIN:
                continue
            if name not in self.commands:
                known = ", ".join(sorted(self.commands)) or "none"
                raise ConfigError(f"{self.source}: {role}: {name!r} is neither 'builtin' nor a command "
                                  f"(known: {known})")
            if self.commands[name].role != role:
                raise ConfigError(f"{self.source}: {role}: command {name!r} has role {self.commands[name].role!r}")

    def with_overrides(self, **changes: Any) -> HarnessConfig:
        return replace(self, **changes)


def _take(section: Mapping[str, Any], cls: type, where: str, source: str) -> dict[str, Any]:
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} in {where} (allowed: {sorted(allowed)})")
    return dict(section)


def _mapping(value: Any, where: str, source: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(value).__name__}")
    return value


def _parse_commands(raw: Mapping[str, Any], source: str) -> dict[str, AgentCommand]:
    commands: dict[str, AgentCommand] = {}
    for name, spec in raw.items():
        spec = _mapping(spec, f"commands.{name}", source)
        data = _take(spec, AgentCommand, f"commands.{name}", source)
        argv = data.get("argv")
        if not isinstance(argv, list):
            raise ConfigError(f"{source}: commands.{name}.argv must be a list of strings")
        data["argv"] = tuple(argv)
        if isinstance(data.get("transient"), list):
            data["transient"] = tuple(data["transient"])
        if "env" in data:
            data["env"] = _command_env(data["env"], f"commands.{name}.env", source)
        try:
            commands[name] = AgentCommand(name=str(name), **{k: v for k, v in data.items() if k != "name"})
        except TypeError as exc:
            raise ConfigError(f"{source}: commands.{name}: {exc}") from exc
    return commands


def _command_env(raw: Any, where: str, source: str) -> dict[str, str]:
    """A command's ``env:``: a mapping of variable names to scalars (YAML ``true`` → ``"true"``,
    ``3`` → ``"3"``) whose ``{placeholders}`` are among :data:`ENV_PLACEHOLDERS`."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: {where}: expected a mapping of variable names to strings, "
                          f"got {type(raw).__name__}")
    env: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"{source}: {where}: {name!r} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where}.{name}: expected a string, got {type(value).__name__}")
        unknown = [p for p in _PLACEHOLDER.findall(value) if p not in ENV_PLACEHOLDERS]
        if unknown:
            raise ConfigError(f"{source}: {where}.{name}: unknown placeholder {unknown[0]} "
                              f"(known: {', '.join(ENV_PLACEHOLDERS)})")
        env[name] = value
    return env


def load_config(path: Path) -> HarnessConfig:
    """Read ``path`` (``orchestrator.yaml``); a missing file gives the defaults."""
    path = Path(path)
    if not path.exists():
        logger.info("%s not found; using builtin defaults", path)
        return HarnessConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    source = str(path)
    document = dict(_mapping(raw, "the document", source))
    top = {k: v for k, v in document.items() if k not in TURN_TOP_KEYS}
    agents = _mapping(top.pop("agents", None), "agents", source)
    unknown_agents = sorted(set(agents) - {"supervisor", "worker"})
    if unknown_agents:
        raise ConfigError(f"{source}: unknown key(s) {unknown_agents} in agents (allowed: supervisor, worker)")
    try:
        budgets = Budgets(**_take(_mapping(top.pop("budgets", None), "budgets", source), Budgets, "budgets", source))
        main_job = MainJobConfig(
            **_take(_mapping(top.pop("main_job", None), "main_job", source), MainJobConfig, "main_job", source)
        )
        commands = _parse_commands(_mapping(top.pop("commands", None), "commands", source), source)
        sync = SyncConfig(**_take(_mapping(top.pop("sync", None), "sync", source), SyncConfig, "sync", source))
        trust = _parse_trust(_mapping(top.pop("trust", None), "trust", source), source)
        worker_settings = WorkerSettings(source=source)
        if isinstance(top.get("worker"), Mapping):  # `worker:` section (a scalar is a misplaced agent)
            worker_settings = _parse_worker_settings(top.pop("worker"), source)
    except (ConfigError, TypeError) as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(source) else f"{source}: {message}") from exc
    scalars = _take(top, HarnessConfig, "the top level", source)
    for forbidden in ("supervisor", "worker", "source", "document", "worker_settings"):
        if forbidden in scalars:
            raise ConfigError(f"{source}: {forbidden!r} belongs under agents:, not at the top level")
    try:
        return HarnessConfig(
            supervisor=str(agents.get("supervisor", BUILTIN)),
            worker=str(agents.get("worker", BUILTIN)),
            budgets=budgets,
            main_job=main_job,
            sync=sync,
            commands=commands,
            trust=trust,
            worker_settings=worker_settings,
            source=source,
            document=document,
            **scalars,
        )
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
