"""The builtin supervisor's rendering of ``input.md`` from the working plan.

The Do Now holds the plan's first unfinished phase(s) — every unticked checklist item with
its bash blocks — with ``$ARTIFACTS`` replaced by this cycle's report directory, so the
handoff is self-contained (a human can paste its blocks, ``replay`` can re-run them). The
plan's own ``## Exit Criteria``, ``## Pitfalls To Avoid``, ``## If Blocked`` and
``## Findings Applied`` sections feed the matching handoff sections; findings are looked up
in ``docs/findings.md``. The result is validated by the handoff parser before it is used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.documents.common import content, scan_fences
from orchestrator.documents.findings import Findings
from orchestrator.documents.fix_plan import FixPlan, FixPlanItem
from orchestrator.documents.plan import Phase, Plan

__all__ = ["DraftInputs", "PlanSections", "plan_sections", "render_draft", "substitute_artifacts"]

_SECTION_RE = re.compile(r"^##[ \t]+(?P<name>[^#].*?)[ \t]*$")
_NUMBERED_RE = re.compile(r"^\s*\d+[.)]\s+(?P<text>.+?)\s*$")
_BULLET_RE = re.compile(r"^\s*[-*]\s+(?P<text>.+?)\s*$")
_ARTIFACTS_RE = re.compile(r"\$\{ARTIFACTS\}|\$ARTIFACTS\b")
_FINDING_ID_RE = re.compile(r"[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+")

HARNESS_PITFALLS = (
    "Commands run from the repository root; never `cd` to an absolute path outside it.",
    "Write outputs only under the Artifacts directory; the harness commits only its owned paths.",
    "Do not mark the item done by hand: the harness sets the status from the exit-criteria checks.",
)


@dataclass(frozen=True)
class PlanSections:
    """Non-phase sections of a working plan, as lists of item texts (numbering removed)."""

    exit_criteria: tuple[str, ...] = ()
    pitfalls: tuple[str, ...] = ()
    if_blocked: tuple[str, ...] = ()
    findings: tuple[str, ...] = ()


def plan_sections(plan: Plan) -> PlanSections:
    """Read the list items of the plan's ``## Exit Criteria`` / ``## Pitfalls To Avoid`` /
    ``## If Blocked`` / ``## Findings Applied`` sections (read only, fenced lines ignored)."""
    lines = list(plan.lines)
    flags, _ = scan_fences(lines, plan.path)
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for i, raw in enumerate(lines):
        if flags[i]:
            continue
        text = content(raw)
        m = _SECTION_RE.match(text)
        if m is not None:
            current = found.setdefault(m["name"].strip().lower(), [])
            continue
        if text.startswith("#"):
            current = None
            continue
        if current is not None:
            item = _NUMBERED_RE.match(text) or _BULLET_RE.match(text)
            if item is not None and not text.startswith(("   ", "\t")):
                current.append(item["text"])

    def pick(*names: str) -> tuple[str, ...]:
        return tuple(next((found[n] for n in names if n in found), ()))

    return PlanSections(pick("exit criteria"), pick("pitfalls to avoid", "pitfalls"),
                        pick("if blocked"), pick("findings applied", "findings"))


def substitute_artifacts(text: str, report_rel: str) -> str:
    """``$ARTIFACTS`` / ``${ARTIFACTS}`` → the report dir (relative to the repo root)."""
    return _ARTIFACTS_RE.sub(report_rel.rstrip("/"), text)


@dataclass(frozen=True)
class DraftInputs:
    """Everything the draft is rendered from."""

    item: FixPlanItem
    fix_plan: FixPlan
    plan: Plan
    plan_path: str
    phases: tuple[Phase, ...]
    findings: Findings | None
    report_rel: str
    branch: str
    dwell: int
    dwell_limit: int
    cycle_id: str
    harness_bin: str


def _do_now(inputs: DraftInputs) -> tuple[list[str], int]:
    out: list[str] = []
    number = 0
    for phase in inputs.phases:
        out += [f"### Phase {phase.id}: {phase.title}", ""]
        for item in phase.items:
            if item.checked:
                continue
            number += 1
            label = f"{item.id}: {item.text}" if item.id else item.text
            out.append(f"{number}. **{label}**")
            for block in item.blocks:
                if not block.is_command:
                    continue
                out += ["```bash", substitute_artifacts(block.code, inputs.report_rel).rstrip("\n"), "```"]
            out.append("")
    return out, number


def _findings(inputs: DraftInputs, wanted: Sequence[str]) -> list[str]:
    out = []
    for text in wanted:
        m = _FINDING_ID_RE.search(text)
        if m is None:
            out.append(f"- {text}")
            continue
        fid = m.group(0)
        if inputs.findings is not None and fid in inputs.findings.ids:
            row = inputs.findings.get(fid)
            status = row.get("Status") or "?"
            out.append(f"- **{fid}** ({status}): {row.get('Synopsis')}")
        else:
            out.append(f"- **{fid}**: not found in docs/findings.md")
    return out


def render_draft(inputs: DraftInputs) -> str:
    """The full ``input.md`` text for ``inputs.phases`` of the item's working plan."""
    item, plan = inputs.item, inputs.plan
    sections = plan_sections(plan)
    do_now, n_steps = _do_now(inputs)
    ticked = sum(1 for it in plan.items if it.checked)
    phase_ids = [p.id for p in inputs.phases]
    later = [p for p in plan.phases if not p.done and p.id not in phase_ids]
    deps = [inputs.fix_plan.item(d) for d in item.depends_on if inputs.fix_plan.has(d)]
    last = item.attempts[-1].raw.strip().lstrip("- ") if item.attempts else "none yet"
    mapped = "; ".join(item.mapped_tests) or "none"
    span = phase_ids[0] if len(phase_ids) == 1 else f"{phase_ids[0]}–{phase_ids[-1]}"
    lines = [
        "Mode: Implementation",
        f"Focus: {item.id} — {item.title}",
        f"Branch: {inputs.branch}",
        f"Mapped tests: {mapped}",
        f"Artifacts: {inputs.report_rel.rstrip('/')}/",
        "",
        "## Summary",
        "",
        f"Run Phase {span} of `{inputs.plan_path}` ({n_steps} open checklist item(s)) and let the "
        "harness verify the exit criteria. Written by the builtin supervisor for cycle "
        f"`{inputs.cycle_id}`.",
        "",
        "## Current State",
        "",
        *[f"- **{d.id}**: {d.status or 'unknown'}" for d in deps],
        f"- Working plan: {ticked}/{len(plan.items)} checklist items ticked; "
        f"unfinished phases: {', '.join(p.id for p in plan.phases if not p.done) or 'none'}",
        f"- Fix-plan status: {item.status or 'unknown'}; last attempt: {last}",
        f"- Dwell (computed from git history): {inputs.dwell} of {inputs.dwell_limit}",
        "",
        "## Do Now",
        "",
        *do_now,
        "## How-To Map",
        "",
        f"- Steps run from the repository root with `{inputs.harness_bin}` first on `PATH`; "
        "each block runs under `set -e` and `pipefail`; a leading `timeout N` bounds the step.",
        f"- `ARTIFACTS={inputs.report_rel.rstrip('/')}` is also exported to every step.",
        "- Re-run one step: `python -m orchestrator replay --input input.md --step N`.",
        "- Check this file: `python -m orchestrator validate input.md`.",
        "",
        "## Pitfalls To Avoid",
        "",
        *[f"{i}. {t}" for i, t in enumerate([*sections.pitfalls, *HARNESS_PITFALLS], 1)],
        "",
        "## If Blocked",
        "",
        *[f"{i}. {t}" for i, t in enumerate(sections.if_blocked, 1)],
        f"{len(sections.if_blocked) + 1}. Record the blocker in "
        f"`{inputs.report_rel.rstrip('/')}/blocked_<UTC-ts>.md` with the failing command and error signature.",
        "",
        "## Findings Applied",
        "",
        *(_findings(inputs, sections.findings) or ["- none listed in the working plan"]),
        "",
        "## Pointers",
        "",
        f"- Working plan: `{inputs.plan_path}`",
        f"- Fix plan: `docs/fix_plan.md` ({item.id}, line {item.line})",
        "- Findings: `docs/findings.md`; ledger: `galph_memory.md`",
        "",
        "## Exit Criteria",
        "",
        *[f"{i}. {substitute_artifacts(t, inputs.report_rel)}"
          for i, t in enumerate(sections.exit_criteria or item.exit_criteria, 1)],
        "",
        "## Next Up",
        "",
    ]
    if later:
        lines.append(f"- Phase {later[0].id}: {later[0].title} (next cycle)")
    else:
        lines.append(f"- If every exit criterion passes the harness marks {item.id} done; "
                     "otherwise the next cycle retries the open items.")
    return "\n".join(lines).rstrip("\n") + "\n"
