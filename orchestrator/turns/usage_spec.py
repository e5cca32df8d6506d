"""Where an agent's spend is and how to read it: a command's ``usage:`` key.

``usage:`` is one of

* a kind name of :mod:`orchestrator.turns.usage` (``claude-json``, ``codex-jsonl``, ``none``):
  parsed from the agent's output;
* a preset name (:data:`PRESETS`): ``mini-swe-agent`` reads mini-swe-agent's trajectory
  (``-o {report_dir}/agent/mini.traj.json``): cost ``info.model_stats.instance_cost``, tokens
  summed over ``messages[*].extra.response.usage.{prompt,completion}_tokens``;
* a mapping for any other agent that writes JSON::

      usage:
        format: json                 # json: one document (the last JSON value of the output)
                                     # jsonl: one document per line, every field summed
        file: "{report_dir}/agent/run.json"   # optional; default: the agent's output
        cost: info.cost_usd          # field paths: dotted keys, [N] an index, [*] every element
        input_tokens: steps[*].usage.input
        output_tokens: steps[*].usage.output

  or ``{preset: mini-swe-agent, file: ...}`` to change one key of a preset.

``file`` may use ``{repo}`` and ``{report_dir}`` (absolute paths of this run); a relative
path is relative to the repository. Every value a path reaches is summed (numbers only; a
path that reaches nothing adds nothing). Reading never raises: a missing file or field gives
``ParsedUsage(None, reason)``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.turns.errors import TurnConfigError
from orchestrator.turns.usage import USAGE_KINDS, ParsedUsage, Usage, parse_usage

__all__ = ["FIELDS", "PRESETS", "UsageSpec", "read_usage"]

FIELDS = ("cost", "input_tokens", "output_tokens")
_KEYS = ("preset", "format", "file", *FIELDS)
_FILE_PLACEHOLDERS = ("{repo}", "{report_dir}")

PRESETS: Mapping[str, Mapping[str, str]] = {
    "mini-swe-agent": {
        "format": "json", "file": "{report_dir}/agent/mini.traj.json",
        "cost": "info.model_stats.instance_cost",
        "input_tokens": "messages[*].extra.response.usage.prompt_tokens",
        "output_tokens": "messages[*].extra.response.usage.completion_tokens",
    },
}

_SEGMENT = re.compile(r"(?P<key>[A-Za-z_][\w-]*)?(?P<idx>(?:\[(?:\*|\d+)\])*)")
_INDEX = re.compile(r"\[(\*|\d+)\]")
_PLACEHOLDER = re.compile(r"\{[A-Za-z_]\w*\}")

#: one step of a field path: a key (str), an index (int) or every element (None)
Step = str | int | None


def _parse_path(text: Any, where: str) -> tuple[Step, ...]:
    if not isinstance(text, str) or not text.strip():
        raise TurnConfigError(f"{where}: expected a field path such as info.cost, got {text!r}")
    steps: list[Step] = []
    for part in text.split("."):
        m = _SEGMENT.fullmatch(part)
        if not part or m is None or (m["key"] is None and not m["idx"]):
            raise TurnConfigError(f"{where}: bad field path {text!r} (dotted keys, [N] or [*])")
        if m["key"] is not None:
            steps.append(m["key"])
        steps.extend(None if i == "*" else int(i) for i in _INDEX.findall(m["idx"]))
    return tuple(steps)


@dataclass(frozen=True)
class UsageSpec:
    """A validated ``usage:``. ``kind``: a name of :data:`orchestrator.turns.usage.USAGE_KINDS`,
    or ``fields`` (read ``paths`` from ``format`` documents in ``file`` or the output)."""

    kind: str = "none"
    format: str = "json"
    file: str | None = None
    paths: Mapping[str, tuple[Step, ...]] | None = None
    name: str = "none"

    @property
    def off(self) -> bool:
        return self.kind == "none"

    @classmethod
    def from_config(cls, raw: Any, where: str) -> UsageSpec:
        """Validate ``raw``; :class:`TurnConfigError` names ``where`` and the bad key."""
        if isinstance(raw, str) and raw in USAGE_KINDS:
            return cls(kind=raw, name=raw)
        if isinstance(raw, str) and raw in PRESETS:
            return cls._fields(dict(PRESETS[raw]), where, raw)
        if isinstance(raw, Mapping):
            unknown = sorted(set(raw) - set(_KEYS))
            if unknown:
                raise TurnConfigError(f"{where}: unknown key(s) {unknown} (allowed: {', '.join(_KEYS)})")
            data = dict(raw)
            preset = data.pop("preset", None)
            if preset is not None:
                if preset not in PRESETS:
                    raise TurnConfigError(f"{where}.preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
                data = {**PRESETS[preset], **data}
            return cls._fields(data, where, str(preset or "fields"))
        raise TurnConfigError(f"{where}: unknown kind {raw!r} (expected {', '.join(USAGE_KINDS)}); presets: "
                              f"{', '.join(PRESETS)}; or a mapping with format, file and field paths")

    @classmethod
    def _fields(cls, data: Mapping[str, Any], where: str, name: str) -> UsageSpec:
        fmt = data.get("format", "json")
        if fmt not in ("json", "jsonl"):
            raise TurnConfigError(f"{where}.format: expected json or jsonl, got {fmt!r}")
        file = data.get("file")
        if file is not None:
            if not isinstance(file, str) or not file.strip():
                raise TurnConfigError(f"{where}.file: expected a path string, got {file!r}")
            unknown = [p for p in _PLACEHOLDER.findall(file) if p not in _FILE_PLACEHOLDERS]
            if unknown:
                raise TurnConfigError(f"{where}.file: unknown placeholder {unknown[0]} "
                                      f"(known: {', '.join(_FILE_PLACEHOLDERS)})")
        paths = {f: _parse_path(data[f], f"{where}.{f}") for f in FIELDS if data.get(f) is not None}
        if not paths:
            raise TurnConfigError(f"{where}: give at least one of {', '.join(FIELDS)}")
        return cls(kind="fields", format=fmt, file=file, paths=paths, name=name)


def _walk(value: Any, steps: tuple[Step, ...]) -> Iterator[Any]:
    if not steps:
        yield value
        return
    step, rest = steps[0], steps[1:]
    if isinstance(step, str):
        if isinstance(value, Mapping) and step in value:
            yield from _walk(value[step], rest)
    elif isinstance(value, list):
        if step is None:
            for item in value:
                yield from _walk(item, rest)
        elif -len(value) <= step < len(value):
            yield from _walk(value[step], rest)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _documents(text: str, fmt: str) -> list[Any]:
    stripped = text.strip()
    if fmt == "json" and stripped[:1] in ("{", "["):
        try:
            return [json.loads(stripped)]
        except (ValueError, RecursionError):
            pass
    docs = []
    for line in text.splitlines():
        line = line.strip()
        if line[:1] in ("{", "["):
            try:
                docs.append(json.loads(line))
            except (ValueError, RecursionError):
                continue
    return docs if fmt == "jsonl" else docs[-1:]


def read_usage(spec: UsageSpec, output: str, values: Mapping[str, str]) -> ParsedUsage:
    """The spend of one run: ``output`` is the agent's output (its transcript's tail);
    ``values``: ``{repo, report_dir}`` of the run, for ``file``."""
    if spec.kind != "fields":
        return parse_usage(spec.kind, output)
    text = output
    if spec.file is not None:
        rendered = spec.file
        for key in ("repo", "report_dir"):
            rendered = rendered.replace("{" + key + "}", values.get(key, ""))
        path = Path(rendered)
        if not path.is_absolute() and values.get("repo"):
            path = Path(values["repo"]) / path
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return ParsedUsage(None, f"{spec.name}: cannot read {path}: {exc.strerror or exc}")
    docs = _documents(text, spec.format)
    if not docs:
        return ParsedUsage(None, f"{spec.name}: no JSON {'document' if spec.format == 'json' else 'line'} found")
    totals: dict[str, float] = {}
    for field_name, steps in (spec.paths or {}).items():
        found = [n for doc in docs for v in _walk(doc, steps) if (n := _number(v)) is not None]
        if found:
            totals[field_name] = sum(found)
    if not totals:
        return ParsedUsage(None, f"{spec.name}: none of the field paths reached a number")
    return ParsedUsage(Usage(totals.get("cost", 0.0), int(totals.get("input_tokens", 0)),
                             int(totals.get("output_tokens", 0))))
