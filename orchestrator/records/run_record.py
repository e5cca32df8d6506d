"""The ``run.json`` provenance record: dataclasses, JSON schema and a dependency-free
validator, plus the host/package/env snapshot helpers. :mod:`orchestrator.records.artifacts`
re-exports everything here and does the file I/O.

run.json layout (schema_version 1)::

    {schema_version, run_id, focus, role: SUPERVISOR|RALPH,
     status: ok|failed|blocked|interrupted, started_at, ended_at (ISO-8601 UTC, "Z"),
     report_dir (relative to repo root), notes,
     git: {branch, sha_before, sha_after, dirty},
     steps: [{index, title, argv, cmd, cwd, timeout_s, rc, timed_out, interrupted,
              duration_s, started_at, ended_at, log, pytest_counts, expectation,
              expectation_ok, expectation_reason, error}],
     exit_criteria: [{index, text, check, ok, reason, rc, log}],
     artifacts: [{path (relative to report_dir), size, sha256, over_commit_limit}],
     host: {hostname, platform, machine, cpu_count, python_executable},
     python, packages: {dist: version|null}, env: {NAME: value|"***"}}
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.fsutil import format_ts, iso_utc, parse_iso, utc_now
from orchestrator.layout import FOCUS_ID_RE, check_focus_id
from orchestrator.vcs.owned import ROLES
from orchestrator.vcs.secret_scan import redact_env

__all__ = [
    "DEFAULT_PACKAGES", "ROLES", "RUN_RECORD_SCHEMA", "SCHEMA_VERSION", "STATUSES",
    "ArtifactEntry", "CriterionRecord", "GitInfo", "RunRecord", "StepRecord",
    "check_focus_id", "format_ts", "host_info", "iso_utc", "package_versions", "parse_iso",
    "utc_now", "validate", "validate_run_record",
]

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "blocked", "interrupted")
DEFAULT_PACKAGES = (
    "ptycho-harness", "tensorflow", "tensorflow-cpu", "keras", "numpy", "h5py",
    "matplotlib", "pytest", "GitPython", "PyYAML", "Jinja2", "markdown-it-py",
)


@dataclass(frozen=True)
class ArtifactEntry:
    path: str  # relative to the report dir, POSIX separators
    size: int
    sha256: str
    over_commit_limit: bool = False


def package_versions(names: tuple[str, ...] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions via importlib.metadata (imports nothing); None if absent."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "python_executable": sys.executable,
    }


@dataclass(frozen=True)
class GitInfo:
    branch: str | None
    sha_before: str | None
    sha_after: str | None = None
    dirty: bool = False


@dataclass(frozen=True)
class StepRecord:
    """One executed command. ``log`` is relative to the report dir."""

    index: int
    title: str
    argv: tuple[str, ...]
    cmd: str
    cwd: str
    timeout_s: float
    rc: int
    timed_out: bool
    duration_s: float
    started_at: datetime
    ended_at: datetime
    log: str
    interrupted: bool = False
    pytest_counts: dict[str, Any] | None = None
    expectation: str | None = None
    expectation_ok: bool | None = None
    expectation_reason: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and self.expectation_ok is not False


@dataclass(frozen=True)
class CriterionRecord:
    """One exit criterion. ``ok`` is None when it has no executable ``check:`` command."""

    index: int
    text: str
    check: str | None = None
    ok: bool | None = None
    reason: str = ""
    rc: int | None = None
    log: str | None = None


def _current_env() -> dict[str, str]:
    return redact_env(os.environ)


@dataclass(frozen=True)
class RunRecord:
    """Everything ``run.json`` holds. host/python/packages/env default to this process."""

    run_id: str
    focus: str
    role: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    git: GitInfo
    report_dir: str
    steps: tuple[StepRecord, ...] = ()
    exit_criteria: tuple[CriterionRecord, ...] = ()
    artifacts: tuple[ArtifactEntry, ...] = ()
    notes: str = ""
    host: dict[str, Any] = field(default_factory=host_info)
    python: str = field(default_factory=platform.python_version)
    packages: dict[str, str | None] = field(default_factory=package_versions)
    env: dict[str, str] = field(default_factory=_current_env)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        check_focus_id(self.focus)
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["env"] = redact_env(self.env)  # never trust callers to have redacted
        return _jsonable({"schema_version": data.pop("schema_version"), **data})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Inverse of :meth:`to_dict` (validate first); unknown keys are ignored."""
        d = dict(data)
        steps = []
        for s in d.get("steps", ()):
            s = dict(s, argv=tuple(s["argv"]), started_at=parse_iso(s["started_at"]),
                     ended_at=parse_iso(s["ended_at"]))
            steps.append(_make(StepRecord, s))
        return cls(
            **{k: d[k] for k in ("run_id", "focus", "role", "status", "report_dir", "notes",
                                  "host", "python", "packages", "env", "schema_version")},
            started_at=parse_iso(d["started_at"]),
            ended_at=parse_iso(d["ended_at"]) if d.get("ended_at") else None,
            git=_make(GitInfo, d["git"]), steps=tuple(steps),
            exit_criteria=tuple(_make(CriterionRecord, c) for c in d.get("exit_criteria", ())),
            artifacts=tuple(_make(ArtifactEntry, a) for a in d.get("artifacts", ())),
        )


def _make(cls: Any, data: Mapping[str, Any]) -> Any:
    return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value




def _t(*types: str) -> dict[str, Any]:
    return {"type": list(types) if len(types) > 1 else types[0]}


def _obj(props: dict[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props,
            "required": list(props if required is None else required)}


_ISO = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"}
_ISO_OR_NULL = {"type": ["string", "null"], "pattern": _ISO["pattern"]}
_SHA = {"type": ["string", "null"], "pattern": r"^[0-9a-f]{7,64}$"}

#: JSON Schema (draft-07 subset understood by :func:`validate`) for run.json.
RUN_RECORD_SCHEMA: dict[str, Any] = _obj({
    "schema_version": {"type": "integer", "enum": [SCHEMA_VERSION]},
    "run_id": {"type": "string", "minLength": 1},
    "focus": {"type": "string", "pattern": FOCUS_ID_RE.pattern},
    "role": {"type": "string", "enum": list(ROLES)},
    "status": {"type": "string", "enum": list(STATUSES)},
    "started_at": _ISO,
    "ended_at": _ISO_OR_NULL,
    "report_dir": _t("string"),
    "notes": _t("string"),
    "git": _obj({"branch": _t("string", "null"), "sha_before": _SHA, "sha_after": _SHA,
                 "dirty": _t("boolean")}),
    "steps": {"type": "array", "items": _obj({
        "index": {"type": "integer", "minimum": 1}, "title": _t("string"),
        "argv": {"type": "array", "items": _t("string"), "minItems": 1},
        "cmd": _t("string"), "cwd": _t("string"), "timeout_s": {"type": "number", "minimum": 0},
        "rc": _t("integer"), "timed_out": _t("boolean"), "interrupted": _t("boolean"),
        "duration_s": {"type": "number", "minimum": 0}, "started_at": _ISO, "ended_at": _ISO,
        "log": _t("string"), "pytest_counts": _t("object", "null"),
        "expectation": _t("string", "null"), "expectation_ok": _t("boolean", "null"),
        "expectation_reason": _t("string", "null"), "error": _t("string", "null"),
    })},
    "exit_criteria": {"type": "array", "items": _obj({
        "index": {"type": "integer", "minimum": 1}, "text": _t("string"),
        "check": _t("string", "null"), "ok": _t("boolean", "null"), "reason": _t("string"),
        "rc": _t("integer", "null"), "log": _t("string", "null"),
    })},
    "artifacts": {"type": "array", "items": _obj({
        "path": {"type": "string", "minLength": 1}, "size": {"type": "integer", "minimum": 0},
        "sha256": {"type": "string", "pattern": r"^[0-9a-f]{64}$"},
        "over_commit_limit": _t("boolean"),
    })},
    "host": _obj({"hostname": _t("string"), "platform": _t("string"), "machine": _t("string"),
                  "cpu_count": _t("integer"), "python_executable": _t("string")},
                 required=("hostname", "platform")),
    "python": {"type": "string", "pattern": r"^\d+\.\d+"},
    "packages": {"type": "object", "additionalProperties": _t("string", "null")},
    "env": {"type": "object", "additionalProperties": _t("string")},
})

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
    "number": (int, float), "boolean": (bool,), "null": (type(None),),
}


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False  # JSON true is not a number
    return isinstance(value, _TYPES[name])


def validate(data: Any, schema: Mapping[str, Any], where: str = "$") -> list[str]:
    """Validate against a JSON-Schema subset: type, enum, required, properties,
    additionalProperties (schema), items, minItems, minimum, minLength, pattern."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(data, k) for k in kinds):
            return [f"{where}: expected {' or '.join(kinds)}, got {type(data).__name__} {data!r:.60}"]
    errors: list[str] = []
    if "enum" in schema and data not in schema["enum"]:
        errors.append(f"{where}: {data!r} is not one of {schema['enum']}")
    if isinstance(data, str):
        if len(data) < schema.get("minLength", 0):
            errors.append(f"{where}: empty string")
        if "pattern" in schema and not re.search(schema["pattern"], data):
            errors.append(f"{where}: {data!r:.60} does not match {schema['pattern']}")
    if _is(data, "number") and "minimum" in schema and data < schema["minimum"]:
        errors.append(f"{where}: {data} is below the minimum {schema['minimum']}")
    if isinstance(data, dict):
        for key in schema.get("required", ()):
            if key not in data:
                errors.append(f"{where}: missing required field {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in data.items():
            sub = props.get(key, extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                errors += validate(value, sub, f"{where}.{key}")
    if isinstance(data, list):
        if len(data) < schema.get("minItems", 0):
            errors.append(f"{where}: needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for i, item in enumerate(data):
                errors += validate(item, schema["items"], f"{where}[{i}]")
    return errors


def validate_run_record(data: Any) -> list[str]:
    """Problems with a run.json object (empty list = valid); each names the JSON path."""
    return validate(data, RUN_RECORD_SCHEMA)
