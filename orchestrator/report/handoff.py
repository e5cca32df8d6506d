"""The current ``input.md`` as HTML: header fields as facts, the body through markdown-it.

Header and section boundaries come from :mod:`orchestrator.documents.handoff`; when the
handoff does not parse (e.g. an unterminated fence) the page still shows it, with a warning
row, splitting off leading ``Key: value`` lines itself.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from orchestrator.documents import handoff as handoff_doc
from orchestrator.documents import validate
from orchestrator.documents.common import decode
from orchestrator.documents.errors import ParseError
from orchestrator.documents.fix_plan import FixPlan
from orchestrator.layout import Layout
from orchestrator.report.links import Linker
from orchestrator.report.model import HandoffView, Notice
from orchestrator.report.render import render_markdown

log = logging.getLogger(__name__)

# `Mode: Implementation`, `**Mode:** Implementation`, `- Mode: …` before the first heading
_HEADER_RE = re.compile(r"^\s*(?:[-*]\s+)?\**(?P<key>[A-Z][A-Za-z ]{1,30}?)\s*:\**\s*(?P<value>.*?)\**\s*$")


def split_header(text: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """Leading `Key: value` lines (up to the first heading or blank-after-header) and the rest."""
    lines = text.splitlines(keepends=True)
    header: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("#"):
            break
        if not line.strip():
            i += 1
            if header:
                break
            continue
        m = _HEADER_RE.match(line.rstrip("\r\n"))
        if m is None or not m["value"]:
            break
        header.append((m["key"].strip(), m["value"].strip().strip("`")))
        i += 1
    if not header:
        return (), text
    return tuple(header), "".join(lines[i:])


def _parsed(path: Path, text: str, source: str, repo_root: Path,
            plan: FixPlan | None) -> tuple[tuple[tuple[str, str], ...], str, list[Notice]]:
    """(header facts, markdown body, notices) via the documents parser; regex split if it fails.

    With a fix plan, the handoff is also validated (unknown focus, outside paths…)."""
    try:
        doc = handoff_doc.parse(text, path)
    except ParseError as exc:
        header, body = split_header(text)
        return header, body, [Notice(source, exc.line or None, exc.message)]
    if not doc.sections:
        header, body = split_header(text)
        return header, body, []  # nothing to validate against: no Do Now section at all
    header = tuple((f.label, f.value or ", ".join(f.items)) for f in doc.header)
    body = "".join(doc.lines[doc.sections[0].line - 1:])
    notices = []
    if plan is not None:  # errors only: e.g. "focus is done" is the normal state after a cycle
        for issue in validate.validate_handoff(doc, plan, repo_root):
            if issue.severity == validate.ERROR:
                notices.append(Notice(source, issue.line or None, issue.message))
    return header, body, notices


def collect_handoff(repo_root: Path, linker: Linker, plan: FixPlan | None = None) -> HandoffView:
    path = Layout(repo_root).handoff
    source = linker.rel(path)
    if not path.is_file():
        return HandoffView(source, (), "", (Notice(source, None, "no input.md in the repo root"),))
    try:
        text = decode(path.read_bytes(), path)
    except ParseError as exc:
        return HandoffView(source, (), "", (Notice(source, exc.line or None, exc.message),))
    except OSError as exc:
        return HandoffView(source, (), "", (Notice(source, None, f"cannot read input.md: {exc}"),))
    if not text.strip():
        return HandoffView(source, (), "", (Notice(source, None, "input.md is empty"),))
    header, body, notices = _parsed(path, text, source, repo_root, plan)
    html = render_markdown(body, lambda href: linker.href_for_markdown(href, path.parent))
    return HandoffView(source, header, html, tuple(notices))
