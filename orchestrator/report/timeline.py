"""Ledger timeline: ``galph_memory.md`` entries in time order with check flags.

Parsing is :mod:`orchestrator.documents.ledger`'s job. The ledger parser fails closed
(one bad heading rejects the file); for a review page that is the wrong trade, so when
the strict parse fails the file is cut at entry headings and each piece is parsed on its
own: good entries still show, each bad one becomes a warning row naming its line.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

from orchestrator.documents import ledger as ledger_doc
from orchestrator.documents.common import decode
from orchestrator.documents.errors import ParseError
from orchestrator.layout import Layout
from orchestrator.report.links import Linker
from orchestrator.report.model import LedgerFlag, Notice, Timeline, TimelineEntry
from orchestrator.tools.ledger_check import check_ledger

log = logging.getLogger(__name__)

LEDGER_NAME = Layout.LEDGER
# A line that starts an entry (as far as cutting the file goes): `# 2026-…` or `## 2026-…`.
_ENTRY_START = re.compile(r"^#{1,2} +\d{4}-\d{2}-\d{2}")


def _pieces(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each chunk starting at an entry heading (preamble first)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _ENTRY_START.match(line)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    bounds = starts + [len(lines)]
    return [(bounds[k] + 1, "".join(lines[bounds[k]:bounds[k + 1]])) for k in range(len(starts))]


def parse_leniently(text: str, path: Path, source: str) -> tuple[list[ledger_doc.LedgerEntry], list[int], list[Notice]]:
    """(entries, their 1-based line numbers in the file, notices). Never raises ParseError."""
    try:
        doc = ledger_doc.parse(text, path)
        return list(doc.entries), [e.line for e in doc.entries], []
    except ParseError as strict:
        strict_notice = Notice(source, strict.line or None, strict.message)
    entries: list[ledger_doc.LedgerEntry] = []
    lines: list[int] = []
    notices: list[Notice] = []
    for first, chunk in _pieces(text):
        if not _ENTRY_START.match(chunk):
            continue  # preamble
        try:
            piece = ledger_doc.parse(chunk, path)
        except ParseError as exc:
            line = first + exc.line - 1 if exc.line else first
            notices.append(Notice(source, line, f"entry skipped: {exc.message}"))
            continue
        for entry in piece.entries:  # renumber: line numbers must be those of the whole file
            entries.append(replace(entry, line=first + entry.line - 1))
            lines.append(first + entry.line - 1)
    if not any(n.line == strict_notice.line for n in notices):
        notices.insert(0, strict_notice)  # a file-level problem (e.g. a missing separator)
    return entries, lines, notices


def collect_timeline(repo_root: Path, linker: Linker) -> Timeline:
    path = repo_root / LEDGER_NAME
    source = linker.rel(path)
    if not path.is_file():
        return Timeline(source, (), (Notice(source, None, "no ledger (galph_memory.md) in the repo root"),))
    try:
        text = decode(path.read_bytes(), path)
    except ParseError as exc:
        return Timeline(source, (), (Notice(source, exc.line or None, exc.message),))
    except OSError as exc:
        return Timeline(source, (), (Notice(source, None, f"cannot read ledger: {exc}"),))
    if not text.strip():
        return Timeline(source, (), (Notice(source, None, "ledger is empty"),))
    entries, lines, notices = parse_leniently(text, path, source)
    # the `ledger --check` logic, on the entries that parsed (the dialect does not matter to it)
    check = check_ledger(repo_root, ledger_doc.Ledger(str(path), (), tuple(entries), ledger_doc.SEPARATED))
    by_line = {c.line: c for c in check.entries}
    order = sorted(range(len(entries)), key=lambda k: (entries[k].timestamp, k))
    out = []
    for k in order:
        e = entries[k]
        st = e.state
        c = by_line.get(e.line)
        out.append(TimelineEntry(
            timestamp=e.timestamp,
            timestamp_text=e.timestamp_text,
            title=e.title,
            focus=e.focus or "",
            state=(st.state if st and st.state else "") or "",
            action_state=e.effective_action_state or "",
            recorded_dwell=e.dwell,
            computed_dwell=c.computed_dwell if c else None,
            dwell_source=c.dwell_source if c else "none",
            ralph_last_commit=(st.ralph_last_commit if st else None) or "",
            artifacts=(st.artifacts if st else None) or "",
            next_action=(st.next_action if st else None) or "",
            line=lines[k],
            file_index=k,
            flags=tuple(LedgerFlag(f.kind, f.message) for f in (c.flags if c else ())),
        ))
    return Timeline(source, tuple(out), tuple(notices), checks_available=check.git_checked)
