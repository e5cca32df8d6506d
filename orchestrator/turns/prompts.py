"""Agent prompts as Jinja2 templates (``StrictUndefined``), checked when they are loaded.

The defaults ship as package data: ``orchestrator/prompts/supervisor.md.j2`` and
``worker.md.j2`` (:func:`default_template`); a command may name its own file (``prompt:``).
A template may use the fields of :class:`PromptContext` (and, one level down or deeper, the
fields of the dataclasses they hold, e.g. ``previous_turn.summary``, ``spend.cost_usd``).
:func:`load_template` rejects, with ``file:line``, a template that names an unknown variable
or attribute, has a syntax error, or does not exist — before any turn runs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

import jinja2
from jinja2 import meta, nodes

from orchestrator.turns.errors import TurnConfigError

__all__ = ["FailingCriterion", "PreviousTurn", "PromptContext", "PromptTemplate", "Spend",
           "default_template", "load_template", "template_from_text"]

ROLES = ("supervisor", "worker")


@dataclass(frozen=True)
class FailingCriterion:
    """An exit criterion that did not pass last turn, with the tail of its check's log."""

    text: str
    log_tail: str = ""


@dataclass(frozen=True)
class PreviousTurn:
    """The previous turn on this focus: ``status`` (a TurnStatus value), ``summary`` (the
    harness's one-paragraph judgement), ``failing`` criteria with log tails."""

    status: str
    summary: str
    failing: tuple[FailingCriterion, ...] = ()


@dataclass(frozen=True)
class Spend:
    """Spend so far and what is left (``None`` = unlimited)."""

    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    usd_left: float | None = None
    tokens_left: int | None = None


@dataclass(frozen=True)
class PromptContext:
    """Everything a prompt template may use. Texts are plain strings (markdown), already
    read by the harness; nothing here touches the repository.

    role:            ``supervisor`` | ``worker``
    repo:            absolute repository path
    report_dir:      repo-relative report directory of this turn (``Artifacts:``, no trailing ``/``)
    focus / focus_title / fix_plan_item: the focus id, its title and its fix-plan item text
    eligible_items:  supervisor: lines ``ID — title (status, priority)`` it may choose from
    working_plan_path / working_plan: path and text of ``implementation.md``
    ledger_entries:  the last N ledger entries, oldest first (rendered text)
    previous_turn:   :class:`PreviousTurn` or ``None``
    diff_stat:       ``git diff --stat`` since the last SUPERVISOR commit
    dwell / dwell_limit: cycles on this focus without progress, and the escalation limit
    spend:           :class:`Spend`
    handoff_path:    repo-relative path of input.md
    draft:           the builtin supervisor's input.md for this focus ("" for the worker)
    """

    role: str
    repo: str
    focus: str
    report_dir: str
    focus_title: str = ""
    fix_plan_item: str = ""
    eligible_items: tuple[str, ...] = ()
    working_plan_path: str = ""
    working_plan: str = ""
    ledger_entries: tuple[str, ...] = ()
    previous_turn: PreviousTurn | None = None
    diff_stat: str = ""
    dwell: int = 0
    dwell_limit: int = 3
    spend: Spend = field(default_factory=Spend)
    handoff_path: str = "input.md"
    draft: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"PromptContext.role must be one of {ROLES}, got {self.role!r}")

    def variables(self) -> dict[str, Any]:
        """Top-level template variables (nested dataclasses stay objects)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass named by a type hint (``X``, ``X | None``, ``tuple[X, ...]``), if any."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType, tuple, list):
        for arg in typing.get_args(hint):
            found = _dataclass_of(arg)
            if found is not None:
                return found
    return None


def _attr_type(cls: type, name: str) -> tuple[bool, type | None]:
    hints = typing.get_type_hints(cls)
    if name in hints:
        return True, _dataclass_of(hints[name])
    return hasattr(cls, name), None  # properties and methods are allowed, not followed


def _check_attributes(ast: nodes.Template, where: str) -> None:
    """``a.b.c`` chains rooted at a context field must name real dataclass fields; loop
    variables over a tuple of dataclasses (``for c in previous_turn.failing``) are followed."""
    bound: dict[str, type] = {}
    for loop in ast.find_all(nodes.For):
        if isinstance(loop.target, nodes.Name):
            cls = _resolve(loop.iter, bound, where, iterate=True)
            if cls is not None:
                bound[loop.target.name] = cls
    for node in ast.find_all(nodes.Getattr):
        _resolve(node, bound, where)


def _resolve(node: nodes.Node, bound: dict[str, type], where: str, iterate: bool = False) -> type | None:
    if isinstance(node, nodes.Name):
        if node.name in bound:
            return bound[node.name]
        hints = typing.get_type_hints(PromptContext)
        return _dataclass_of(hints[node.name]) if node.name in hints else None
    if isinstance(node, nodes.Getattr):
        owner = _resolve(node.node, bound, where)
        if owner is None:
            return None
        known, cls = _attr_type(owner, node.attr)
        if not known:
            names = ", ".join(f.name for f in dataclasses.fields(owner))
            raise TurnConfigError(f"{where}:{node.lineno}: unknown attribute {node.attr!r} of "
                                  f"{owner.__name__} (known: {names})")
        return cls
    return None


@dataclass(frozen=True)
class PromptTemplate:
    """A validated template; ``source`` is its file (or ``<text>``)."""

    source: str
    template: jinja2.Template

    def render(self, context: PromptContext) -> str:
        try:
            return self.template.render(context.variables())
        except jinja2.UndefinedError as exc:
            raise TurnConfigError(f"{self.source}: {exc.message}") from exc


def _environment() -> jinja2.Environment:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False, trim_blocks=True, lstrip_blocks=True)


def template_from_text(text: str, where: str) -> PromptTemplate:
    """Parse and validate ``text``; errors name ``where:line``."""
    env = _environment()
    try:
        ast = env.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TurnConfigError(f"{where}:{exc.lineno}: template syntax error: {exc.message}") from exc
    known = {f.name for f in dataclasses.fields(PromptContext)} | set(env.globals)
    unknown = meta.find_undeclared_variables(ast) - known
    if unknown:
        first = min((n for n in ast.find_all(nodes.Name) if n.name in unknown), key=lambda n: n.lineno)
        raise TurnConfigError(f"{where}:{first.lineno}: unknown variable {first.name!r} "
                              f"(known: {', '.join(sorted(known - set(env.globals)))})")
    _check_attributes(ast, where)
    return PromptTemplate(where, env.from_string(text))


def load_template(path: Path) -> PromptTemplate:
    """Read and validate the template at ``path``; a missing or unreadable file is an error
    naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TurnConfigError(f"{path}: prompt template not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TurnConfigError(f"{path}: cannot read prompt template: {exc}") from exc
    return template_from_text(text, str(path))


def default_template(role: str) -> PromptTemplate:
    """The shipped template for ``role`` (``supervisor`` | ``worker``)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    resource = resources.files("orchestrator").joinpath("prompts", f"{role}.md.j2")
    return template_from_text(resource.read_text(encoding="utf-8"), f"orchestrator/prompts/{role}.md.j2")
