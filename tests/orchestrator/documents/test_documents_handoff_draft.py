"""The builtin supervisor's handoff draft: sections taken from the working plan, ``$ARTIFACTS``."""

from __future__ import annotations

from orchestrator.documents import plan as plan_doc
from orchestrator.documents.handoff_draft import plan_sections, substitute_artifacts


def test_plan_sections_and_artifact_substitution(harness) -> None:
    text = harness.plan(
        "X-1", [("A", [("a", "echo $ARTIFACTS/x ${ARTIFACTS}/y")])], ["c — check: `test -d $ARTIFACTS`"]
    )
    sections = plan_sections(plan_doc.parse(text))
    assert sections.exit_criteria == ("c — check: `test -d $ARTIFACTS`",) and sections.findings == ("F-ONE-001",)
    assert (
        substitute_artifacts("echo $ARTIFACTS/x ${ARTIFACTS}/y $ARTIFACTSX", "p/r/") == "echo p/r/x p/r/y $ARTIFACTSX"
    )
