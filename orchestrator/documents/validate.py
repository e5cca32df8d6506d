"""Semantic validation of the documents (fail closed), reported as :class:`Issue` lists.

The handoff rules (``validate_handoff``): ``Focus:`` and ``Artifacts:`` present; the focus ID
exists in the fix plan; Do Now exists and holds at least one shell block with a command;
commands (Do Now blocks and exit-criteria checks) contain no absolute or ``~`` paths outside
the repo root (``/dev/*`` is allowed); ``Artifacts`` is a relative path under
``plans/active/<FOCUS>/reports/``. Parse errors become issues too (see :func:`validate_path`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrator.layout import Layout

from . import findings as findings_mod
from . import fix_plan as fix_plan_mod
from . import handoff as handoff_mod
from . import ledger as ledger_mod
from . import plan as plan_mod
from .common import PathLike, strip_md
from .errors import ParseError

ERROR = "error"
WARNING = "warning"
KINDS = ("handoff", "ledger", "fix_plan", "plan", "findings")
_KIND_PREFIXES = (("input", "handoff"), ("galph_memory", "ledger"), ("fix_plan", "fix_plan"),
                  ("implementation", "plan"), ("findings", "findings"))
# An absolute (/x) or home-relative (~, ~/x) path starting a shell word or after = : > < ( , quotes.
_PATH_RE = re.compile(r"""(?:^|(?<=[\s=:><(,'"]))(?P<path>~(?=[/\s'"]|$)[^\s'";|&()<>,]*|/[^\s'";|&()<>,`]*)""")
_ALLOWED_PREFIXES = ("/dev/",)


@dataclass(frozen=True)
class Issue:
    path: str
    line: int
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        tag = "" if self.severity == ERROR else f"{self.severity}: "
        return f"{self.path}:{self.line}: {tag}{self.message}"


def has_errors(issues: Iterable[Issue]) -> bool:
    return any(i.severity == ERROR for i in issues)


def outside_paths(command_line: str, repo_root: Path) -> list[str]:
    """Absolute/home paths in one shell line that are not under ``repo_root`` (comments skipped)."""
    if command_line.lstrip().startswith("#"):
        return []
    root = repo_root.resolve()
    bad = []
    for m in _PATH_RE.finditer(command_line):
        p = m["path"].rstrip(".,;:")
        if p.startswith("//"):  # URL remainder (https://…)
            continue
        if p.startswith("~"):
            bad.append(p)
        elif not p.startswith(_ALLOWED_PREFIXES) and not Path(p).is_relative_to(root):
            bad.append(p)
    return bad


def _artifacts_issue(doc: handoff_mod.Handoff, focus: str) -> str | None:
    value = doc.artifacts or ""
    p = PurePosixPath(value)
    if value.startswith(("/", "~")) or ".." in p.parts:
        return f"Artifacts path {value!r} must be relative to the repo and must not contain '..'"
    prefix = (*Layout.PLANS_DIR.split("/"), focus, "reports")
    if p.parts[:4] != prefix or len(p.parts) < 5:
        return f"Artifacts path {value!r} is not under plans/active/{focus}/reports/<run>/"
    return None


def validate_handoff(doc: handoff_mod.Handoff, fix_plan: fix_plan_mod.FixPlan, repo_root: PathLike) -> list[Issue]:
    """Check a parsed ``input.md`` against the fix plan and the repo root."""
    path, root = doc.path, Path(repo_root)
    issues: list[Issue] = []

    def add(line: int, message: str, severity: str = ERROR) -> None:
        issues.append(Issue(path, line, message, severity))

    focus_field, art_field = doc.field("focus"), doc.field("artifacts")
    if doc.field("mode") is None:
        add(1, "missing 'Mode:' header", WARNING)
    focus = doc.focus_item_id
    if focus_field is None:
        add(1, "missing 'Focus: <ID> — <title>' header")
    elif focus is None:
        add(focus_field.line, f"cannot read a focus ID from {focus_field.value!r}")
    elif not fix_plan.has(focus):
        add(focus_field.line, f"unknown focus ID {focus!r}: not in {fix_plan.path} "
            f"(known: {', '.join(fix_plan.ids) or 'none'})")
    elif fix_plan.item(focus).status in ("done", "blocked"):
        add(focus_field.line, f"focus {focus!r} is {fix_plan.item(focus).status} in {fix_plan.path}", WARNING)
    if art_field is None:
        add(1, "missing 'Artifacts:' header")
    elif focus is not None and (msg := _artifacts_issue(doc, focus)):
        add(art_field.line, msg)
    do_now = doc.do_now
    if do_now is None:
        add(1, "missing 'Do Now' section")
    elif not any(b.has_command for b in doc.command_blocks):
        add(do_now.line, "Do Now has no command (expected fenced bash blocks in its steps)")
    for block in doc.command_blocks:
        for k, text in enumerate(block.code.split("\n")):
            for bad in outside_paths(text, root):
                add(block.line + 1 + k, f"command uses a path outside the repo: {bad!r}")
        for e in block.expected:
            if e.count is None:
                add(e.line, f"cannot read an expectation from {e.raw!r} (expected e.g. '2 passed')", WARNING)
    if not doc.exit_criteria:
        sec = doc.section("Exit Criteria")
        add(sec.line if sec else 1, "no exit criteria", WARNING)
    for c in doc.exit_criteria:
        if c.check:
            for bad in outside_paths(c.check, root):
                add(c.line, f"exit-criterion check uses a path outside the repo: {bad!r}")
    return issues


def validate_fix_plan(doc: fix_plan_mod.FixPlan, repo_root: PathLike | None = None) -> list[Issue]:
    """Statuses, priorities, dependencies and (with ``repo_root``) working-plan paths."""
    issues: list[Issue] = []
    for it in doc.items:
        f = it.fields.get("status")
        line = f.line if f else it.line
        if it.status is None:
            what = f"an unreadable Status {f.value!r}" if f is not None else "no Status"
            issues.append(Issue(doc.path, line, f"item {it.id} has {what}"))
        elif it.status not in fix_plan_mod.STATUSES:
            issues.append(Issue(doc.path, line, f"item {it.id} has unknown status {it.status!r} "
                                f"(expected {'|'.join(fix_plan_mod.STATUSES)})"))
        pf = it.fields.get("priority")
        if pf is not None and it.priority is None:
            issues.append(Issue(doc.path, pf.line, f"item {it.id} has bad priority {pf.value!r} (P0–P3)"))
        for dep in it.depends_on:
            if not doc.has(dep):
                df = it.fields.get("depends_on")
                issues.append(Issue(doc.path, df.line if df else it.line, f"item {it.id} depends on unknown {dep!r}"))
        if repo_root is not None and it.working_plan and not (Path(repo_root) / it.working_plan).is_file():
            wf = it.fields["working_plan"]
            issues.append(Issue(doc.path, wf.line, f"working plan {it.working_plan!r} not found", WARNING))
    return issues


def validate_plan(doc: plan_mod.Plan) -> list[Issue]:
    return [Issue(doc.path, ph.line, f"phase {ph.id} has no checklist items", WARNING)
            for ph in doc.phases if not ph.items]


def validate_ledger(doc: ledger_mod.Ledger) -> list[Issue]:
    return [Issue(doc.path, e.line, "entry names no focus (no state line, 'Focus issue' or ID in title)", WARNING)
            for e in doc.entries if e.focus is None]


def validate_findings(doc: findings_mod.Findings) -> list[Issue]:
    return [Issue(doc.path, r.line, f"finding {r.id} has no synopsis", WARNING)
            for r in doc.rows if "synopsis" in {c.lower() for c in r.values} and not strip_md(r.synopsis)]


def detect_kind(path: PathLike) -> str | None:
    """Document kind from the file name (``input*.md`` → handoff …); None if unknown."""
    name = Path(path).name
    for prefix, kind in _KIND_PREFIXES:
        if name.startswith(prefix) and name.endswith(".md"):
            return kind
    return None


def find_repo_root(start: PathLike) -> Path:
    """Nearest ancestor of ``start`` holding ``.git``; else ``start``'s directory."""
    here = Path(start).resolve()
    here = here if here.is_dir() else here.parent
    for d in (here, *here.parents):
        if (d / ".git").exists():
            return d
    return here


def validate_path(path: PathLike, kind: str | None = None, *, repo_root: PathLike | None = None,
                  fix_plan_path: PathLike | None = None) -> list[Issue]:
    """Load and validate one file; parse errors become error issues. ``OSError`` propagates.

    Handoffs need the fix plan: ``fix_plan_path`` or ``<repo_root>/docs/fix_plan.md`` (repo root
    defaults to the nearest git work tree around the file); a missing fix plan is an error.
    """
    kind = kind or detect_kind(path)
    if kind not in KINDS:
        raise ValueError(f"cannot tell the document kind of {str(path)!r}; use one of {', '.join(KINDS)}")
    root = Path(repo_root) if repo_root is not None else find_repo_root(path)
    try:
        if kind == "handoff":
            doc = handoff_mod.load(path)
            fp = Path(fix_plan_path) if fix_plan_path is not None else Layout(root).fix_plan
            if not fp.is_file():
                return [Issue(str(path), 0, f"cannot check the focus ID: fix plan {str(fp)!r} not found")]
            return validate_handoff(doc, fix_plan_mod.load(fp), root)
        if kind == "fix_plan":
            return validate_fix_plan(fix_plan_mod.load(path), root)
        if kind == "plan":
            return validate_plan(plan_mod.load(path))
        if kind == "ledger":
            return validate_ledger(ledger_mod.load(path))
        return validate_findings(findings_mod.load(path))
    except ParseError as exc:
        return [Issue(exc.path, exc.line, exc.message)]
