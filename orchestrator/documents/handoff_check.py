"""Fail-closed validation of a written ``input.md`` for the loop.

The document rules (Focus/Artifacts present, focus in the fix plan, a command in the Do Now,
no paths outside the repository, Artifacts under ``plans/active/<FOCUS>/reports/``) are
:func:`orchestrator.documents.validate.validate_handoff`'s; on top, when the harness prepared
the cycle, the handoff must keep the expected focus and report directory. Only errors count
(warnings are logged). Every problem reads ``path:line: message``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import handoff as handoff_doc
from orchestrator.documents import validate as validate_doc
from orchestrator.documents.common import read_text
from orchestrator.documents.errors import DocumentError
from orchestrator.layout import Layout

__all__ = ["validate_handoff_file"]

logger = logging.getLogger(__name__)


def _line(doc: handoff_doc.Handoff, key: str) -> int:
    field = doc.field(key)
    return field.line if field is not None else 1


def validate_handoff_file(repo: Path, path: Path, expected_focus: str | None = None,
                          expected_artifacts: str | None = None) -> list[str]:
    """Problems with ``path`` (empty list = valid); a parse error is a problem, not a crash."""
    repo = Path(repo)
    plan_path = Layout(repo).fix_plan
    try:
        doc = handoff_doc.parse(read_text(path), path)
        plan = fix_plan_doc.load(plan_path)
    except FileNotFoundError as exc:
        return [f"{exc.filename}: missing"]
    except (DocumentError, OSError) as exc:
        return [str(exc)]
    issues = validate_doc.validate_handoff(doc, plan, repo)
    for issue in issues:
        if issue.severity != validate_doc.ERROR:
            logger.warning("%s", issue)
    problems = [str(i) for i in issues if i.severity == validate_doc.ERROR]
    focus = doc.focus_item_id
    if expected_focus and focus and focus != expected_focus:
        problems.append(f"{path}:{_line(doc, 'focus')}: focus {focus}, but the harness prepared {expected_focus}")
    artifacts = (doc.artifacts or "").strip().strip("`").rstrip("/")
    if expected_artifacts and artifacts and artifacts != expected_artifacts.rstrip("/"):
        problems.append(f"{path}:{_line(doc, 'artifacts')}: Artifacts {artifacts!r}, but this cycle's "
                        f"report directory is {expected_artifacts.rstrip('/')!r}")
    return problems
