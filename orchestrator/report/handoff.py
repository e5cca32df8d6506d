"""The current ``input.md`` as HTML: header fields as facts, the body through markdown-it."""

from __future__ import annotations

import logging
import re
from pathlib import Path

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


def _validation_notices(path: Path, text: str, source: str) -> list[Notice]:
    """Parse with the documents package when it is importable; a ParseError is a notice."""
    try:
        from orchestrator.documents import handoff as handoff_doc
        from orchestrator.documents.errors import ParseError
    except ImportError:  # documents package not built yet: render without validation
        return []
    parse = getattr(handoff_doc, "parse", None)
    if parse is None:
        return []
    try:
        parse(text, path)
    except ParseError as exc:
        return [Notice(source, exc.line or None, exc.message)]
    return []


def collect_handoff(repo_root: Path, linker: Linker) -> HandoffView:
    path = repo_root / "input.md"
    source = linker.rel(path)
    if not path.is_file():
        return HandoffView(source, (), "", (Notice(source, None, "no input.md in the repo root"),))
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return HandoffView(source, (), "", (Notice(source, None, f"cannot read input.md: {exc}"),))
    header, body = split_header(text)
    html = render_markdown(body, lambda href: linker.href_for_markdown(href, path.parent))
    return HandoffView(source, header, html, tuple(_validation_notices(path, text, source)))
