"""Fixtures for the orchestrator tests.

``harness``: builders for small real git repositories the loop tests run the harness on
(``harness.make_repo``, ``harness.item``, ``harness.plan``, ``harness.context``,
``harness.subjects``, ``harness.git``). ``handoff_spec``: the test helper that writes handoff
texts from a spec (``render_spec(spec)`` renders a :class:`HandoffSpec` in the seed's layout,
``build(spec)`` parses it back, ``spec_of(doc)`` recovers the spec, so
``spec_of(build(spec)) == spec``); the harness itself writes handoffs with
:mod:`orchestrator.documents.handoff_draft`, these generated texts exercise the parser.
"""
from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.agents import BuiltinSupervisor, BuiltinWorker
from orchestrator.config import HarnessConfig
from orchestrator.context import HarnessContext, identity_env
from orchestrator.documents.common import PathLike, check_single_line
from orchestrator.documents.handoff import KNOWN_SECTIONS, Handoff, parse, section_key


class HarnessRepos:
    """Builders for small real git repositories (all static: the fixture hands out the class)."""

    TINY_TEST = "def test_one():\n    assert 1 + 1 == 2\n\n\ndef test_two():\n    assert 'a' in 'abc'\n"

    @staticmethod
    def git(repo: Path, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()

    @staticmethod
    def item(item_id: str, title: str, status: str = "pending", priority: str = "P1", depends: str = "none") -> str:
        return (f"## [{item_id}] {title}\n- Status: {status}\n- Priority: {priority}\n- Depends on: {depends}\n"
                f"- Working plan: plans/active/{item_id}/implementation.md\n- Mapped tests: tests/test_tiny.py\n"
                "- Exit criteria: see the working plan\n- Attempts History:\n\n")

    @staticmethod
    def plan(item_id: str, phases: list[tuple[str, list[tuple[str, str]]]], criteria: list[str]) -> str:
        """phases: [(title, [(item text, script), ...]), ...]; items get ids A1, A2, B1 …"""
        out = [f"# {item_id} — test plan\n"]
        for p_index, (title, items) in enumerate(phases):
            pid = chr(ord("A") + p_index)
            out.append(f"\n## Phase {pid}: {title}\n")
            for i, (text, script) in enumerate(items, 1):
                out.append(f"- [ ] {pid}{i}: {text}\n```bash\n{script}\n```\n")
        out.append("\n## Exit Criteria\n")
        out += [f"{i}. {c}\n" for i, c in enumerate(criteria, 1)]
        out.append("\n## Findings Applied\n- F-ONE-001\n")
        return "".join(out)

    @staticmethod
    def make_repo(root: Path, items: dict[str, tuple[str, str]], *, identity: bool = False,
                  extra: dict[str, str] | None = None) -> Path:
        """A repo with docs/fix_plan.md (concatenated item texts), one plan per item, findings,
        a tiny pytest file and one commit. ``items``: id -> (fix-plan item text, plan text)."""
        root.mkdir(parents=True, exist_ok=True)
        files = {
            "docs/fix_plan.md": "# Fix Plan\n\n" + "".join(t for t, _ in items.values()),
            "docs/findings.md": "# Findings\n\n| ID | Date | Keywords | Synopsis | Evidence | Status |\n"
                                "| --- | --- | --- | --- | --- | --- |\n"
                                "| F-ONE-001 | 2026-11-23 | test | A finding the plan applies. | here | policy |\n",
            ".gitignore": ".orchestrator/\n__pycache__/\n",
            "tests/test_tiny.py": HarnessRepos.TINY_TEST,
            **{f"plans/active/{k}/implementation.md": p for k, (_, p) in items.items()},
            **(extra or {}),
        }
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text, encoding="utf-8")
        HarnessRepos.git(root, "init", "-q", "-b", "main")
        if identity:
            HarnessRepos.git(root, "config", "user.name", "Test User")
            HarnessRepos.git(root, "config", "user.email", "test@example.invalid")
        env_args = [] if identity else ["-c", "user.name=Seed", "-c", "user.email=seed@example.invalid"]
        HarnessRepos.git(root, "add", "-A")
        HarnessRepos.git(root, *env_args, "commit", "-q", "-m", "seed")
        return root

    @staticmethod
    def context(repo: Path, **overrides) -> HarnessContext:
        config = HarnessConfig(git_sync=False, step_timeout_s=60, check_timeout_s=60).with_overrides(**overrides)
        return HarnessContext(repo, config, BuiltinSupervisor(), BuiltinWorker(), expected_branch="main",
                              git_env=identity_env(repo))

    @staticmethod
    def subjects(repo: Path) -> list[str]:
        return HarnessRepos.git(repo, "log", "--format=%s").splitlines()


@pytest.fixture(scope="session")
def harness() -> type[HarnessRepos]:
    """The repository builders (see :class:`HarnessRepos`)."""
    return HarnessRepos


# --------------------------------------------------------------------------- handoff specs

_FENCE_LINE_RE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})", re.MULTILINE)
_LIST_ITEM_RE = re.compile(r"^(?:[-*+]|\d+[.)])[ \t]+(?P<text>.*?)[ \t]*$")
_LABEL_LINE_RE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z /&-]*?)[ \t]*(?:\([^()]*\))?[ \t]*:[ \t]*$")
_SECTION_KEYS = frozenset(section_key(n) for n in KNOWN_SECTIONS)


def _tuple(obj, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, str):
        raise TypeError(f"{type(obj).__name__}.{name} must be a sequence, not a string")
    object.__setattr__(obj, name, tuple(value))


def _no_fence(text: str, what: str) -> str:
    if _FENCE_LINE_RE.search(text):
        raise ValueError(f"{what} must not contain code-fence lines: {text!r}")
    return text


def _items(values: Sequence[str], what: str) -> None:
    for v in values:
        if not v.strip() or v != v.strip():
            raise ValueError(f"{what} items must be non-empty and trimmed, got {v!r}")
        check_single_line(v, what)


@dataclass(frozen=True)
class StepSpec:
    """One numbered Do Now step with at most one bash block (``script`` + expectations)."""

    title: str
    script: str = ""
    expected: tuple[str, ...] = ()
    detail: str = ""

    def __post_init__(self) -> None:
        _tuple(self, "expected")
        object.__setattr__(self, "script", _no_fence(self.script.strip("\n"), "script"))
        _items((self.title,), "step title")
        if "**" in self.title or self.title.startswith("*") or self.title.endswith("*"):
            raise ValueError(f"step title must not contain '**' or start/end with '*': {self.title!r}")
        check_single_line(self.detail, "detail")
        _items(self.expected, "expected")
        if any(line.lstrip().lower().startswith("# expected") for line in self.script.split("\n")):
            raise ValueError("put '# Expected:' lines in StepSpec.expected, not in the script")


@dataclass(frozen=True)
class PhaseSpec:
    id: str
    title: str
    steps: tuple[StepSpec, ...] = ()

    def __post_init__(self) -> None:
        _tuple(self, "steps")
        if not re.fullmatch(r"[A-Za-z0-9]*", self.id):
            raise ValueError(f"phase id must be alphanumeric (e.g. 'A'), got {self.id!r}")
        if self.id:
            _items((self.title,), "phase title")
        elif self.title:
            raise ValueError("an implicit phase (id '') has no title")


@dataclass(frozen=True)
class CriterionSpec:
    text: str
    check: str | None = None

    def __post_init__(self) -> None:
        _items((self.text,), "exit criterion")
        if self.check is not None:
            _items((self.check,), "check")
            if "`" in self.check:
                raise ValueError(f"check command must not contain backticks: {self.check!r}")


@dataclass(frozen=True)
class HandoffSpec:
    """Everything the supervisor decides for one handoff. List fields take sequences."""

    mode: str
    focus_id: str
    focus_title: str
    branch: str
    mapped_tests: str | tuple[str, ...]
    artifacts: str
    summary: str = ""
    current_state: tuple[str, ...] = ()
    phases: tuple[PhaseSpec, ...] = ()
    how_to_map: str = ""
    pitfalls: tuple[str, ...] = ()
    if_blocked: tuple[str, ...] = ()
    findings_applied: tuple[str, ...] = ()
    pointers: tuple[str, ...] = ()
    exit_criteria: tuple[CriterionSpec, ...] = ()
    next_up: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("mode", "focus_id", "focus_title", "branch", "artifacts"):
            _items((getattr(self, name),), name)
        if not isinstance(self.mapped_tests, str):
            _tuple(self, "mapped_tests")
            _items(self.mapped_tests, "mapped_tests")
        else:
            check_single_line(self.mapped_tests, "mapped_tests")
        for name in ("current_state", "phases", "pitfalls", "if_blocked", "findings_applied", "pointers",
                     "exit_criteria", "next_up"):
            _tuple(self, name)
        for name in ("current_state", "pitfalls", "if_blocked", "findings_applied", "pointers", "next_up"):
            _items(getattr(self, name), name)
        object.__setattr__(self, "summary", self.summary.strip())
        object.__setattr__(self, "how_to_map", _no_fence(self.how_to_map.strip("\n"), "how_to_map"))
        for line in self.summary.split("\n"):
            m = _LABEL_LINE_RE.match(line)
            if line.startswith("#") or (m and section_key(m["name"]) in _SECTION_KEYS):
                raise ValueError(f"summary must not contain headings or section labels: {line!r}")
        _no_fence(self.summary, "summary")


def _list(items: Sequence[str], numbered: bool) -> list[str]:
    return [f"{k}. {v}" if numbered else f"- {v}" for k, v in enumerate(items, 1)]


def render_spec(spec: HandoffSpec) -> str:
    """Markdown for ``spec`` in the seed's layout (empty optional sections are omitted)."""
    out = [f"Mode: {spec.mode}", f"Focus: {spec.focus_id} — {spec.focus_title}", f"Branch: {spec.branch}"]
    if isinstance(spec.mapped_tests, str):
        out.append(f"Mapped tests: {spec.mapped_tests}".rstrip())
    else:
        out += ["Mapped tests:"] + _list(spec.mapped_tests, False)
    out.append(f"Artifacts: {spec.artifacts}")

    def section(name: str, body: list[str]) -> None:
        if body:
            out.extend(["", f"## {name}", "", *body])

    section("Summary", [spec.summary] if spec.summary else [])
    section("Current State", _list(spec.current_state, False))
    do_now: list[str] = []
    number = 0
    for ph in spec.phases:
        if ph.id:
            do_now += [f"### Phase {ph.id}: {ph.title}", ""]
        for st in ph.steps:
            number += 1
            do_now.append(f"{number}. **{st.title}**" + (f" - {st.detail}" if st.detail else ""))
            if st.script or st.expected:
                body = ([st.script] if st.script else []) + ([""] if st.script and st.expected else [])
                do_now += ["```bash", *body, *[f"# Expected: {e}" for e in st.expected], "```"]
            do_now.append("")
    while do_now and not do_now[-1]:
        do_now.pop()
    section("Do Now", do_now)
    section("How-To Map", ["```bash", spec.how_to_map, "```"] if spec.how_to_map else [])
    section("Pitfalls To Avoid", _list(spec.pitfalls, True))
    section("If Blocked", _list(spec.if_blocked, True))
    section("Findings Applied", _list(spec.findings_applied, False))
    section("Pointers", _list(spec.pointers, False))
    section("Exit Criteria", [f"{k}. {c.text}" + (f" — check: `{c.check}`" if c.check else "")
                              for k, c in enumerate(spec.exit_criteria, 1)])
    section("Next Up", _list(spec.next_up, False))
    return "\n".join(out) + "\n"


def build(spec: HandoffSpec, path: PathLike = "input.md") -> Handoff:
    """Render ``spec`` and parse it back (so the result has real line numbers)."""
    return parse(render_spec(spec), path)


def _section_items(doc: Handoff, name: str) -> tuple[str, ...]:
    sec = doc.section(name)
    if sec is None:
        return ()
    return tuple(m["text"] for line in sec.body.split("\n") if (m := _LIST_ITEM_RE.match(line)))


def spec_of(doc: Handoff) -> HandoffSpec:
    """Recover the :class:`HandoffSpec` of a handoff (exact for documents made by :func:`build`)."""
    phases = []
    for ph in doc.phases:
        steps = []
        for st in ph.steps:
            block = st.command_blocks[0] if st.command_blocks else None
            steps.append(StepSpec(st.title, block.script if block else "",
                                  tuple(e.raw for e in block.expected) if block else (), st.detail))
        phases.append(PhaseSpec(ph.id or "", ph.title, tuple(steps)))
    how = doc.section("How-To Map")
    how_code = ""
    if how is not None:
        m = re.search(r"^```[^\n]*\n(.*?)^```", how.body, re.MULTILINE | re.DOTALL)
        how_code = m.group(1).strip("\n") if m else ""
    mapped = doc.mapped_tests
    return HandoffSpec(
        mode=doc.mode or "", focus_id=doc.focus_id or "", focus_title=doc.focus_title or "",
        branch=doc.branch or "", mapped_tests=mapped if isinstance(mapped, str) else tuple(mapped),
        artifacts=doc.artifacts or "", summary=doc.summary, current_state=_section_items(doc, "Current State"),
        phases=tuple(phases), how_to_map=how_code, pitfalls=_section_items(doc, "Pitfalls To Avoid"),
        if_blocked=_section_items(doc, "If Blocked"), findings_applied=_section_items(doc, "Findings Applied"),
        pointers=_section_items(doc, "Pointers"),
        exit_criteria=tuple(CriterionSpec(c.text, c.check) for c in doc.exit_criteria),
        next_up=_section_items(doc, "Next Up"))


@pytest.fixture(scope="session")
def handoff_spec() -> SimpleNamespace:
    """The handoff builders: ``HandoffSpec``, ``PhaseSpec``, ``StepSpec``, ``CriterionSpec``,
    ``render_spec``, ``build``, ``spec_of``."""
    return SimpleNamespace(HandoffSpec=HandoffSpec, PhaseSpec=PhaseSpec, StepSpec=StepSpec,
                           CriterionSpec=CriterionSpec, render_spec=render_spec, build=build, spec_of=spec_of)
