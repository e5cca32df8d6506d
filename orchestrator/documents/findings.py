"""``docs/findings.md`` — a markdown table of findings.

Standard header ``| ID | Date | Keywords | Synopsis | Evidence | Status |`` followed by a
``|---|`` separator row. Real-world variants: an ``ID`` column named ``Finding ID`` and tables
without a separator row. Every table whose header has an ID column is read (others are kept
verbatim); rows end at the first line that does not start with ``|``. Cells are split on
unescaped pipes; ``\\|`` stays inside a cell. A row with more cells than the header folds the
extras into its last column; fewer cells are padded with empty strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .common import (
    PathLike,
    check_single_line,
    content,
    insert_lines,
    read_text,
    replace_line,
    require_text,
    scan_fences,
    split_lines,
    strip_md,
)
from .errors import ParseError, UnknownIdError

STANDARD_COLUMNS = ("ID", "Date", "Keywords", "Synopsis", "Evidence", "Status")
_ID_COLUMNS = ("id", "finding id", "finding")
_SEP_CELL_RE = re.compile(r"^:?-{1,}:?$")
_SPLIT_RE = re.compile(r"(?<!\\)\|")


@dataclass(frozen=True)
class Finding:
    """One table row: ``values`` maps header names (file order) to stripped, unescaped cells."""

    id: str
    values: Mapping[str, str]
    line: int

    def get(self, column: str, default: str = "") -> str:
        """Cell by column name (case-insensitive; ``ID``/``Finding ID`` are interchangeable)."""
        wanted = column.strip().lower()
        for k, v in self.values.items():
            if k.lower() == wanted or (wanted in _ID_COLUMNS and k.lower() in _ID_COLUMNS):
                return v
        return default

    date = property(lambda self: self.get("Date"))
    keywords = property(lambda self: self.get("Keywords"))
    synopsis = property(lambda self: self.get("Synopsis"))
    evidence = property(lambda self: self.get("Evidence"))
    status = property(lambda self: self.get("Status"))


@dataclass(frozen=True)
class Table:
    """A findings table: ``header_line`` and ``end_line`` (last row) are 1-based."""

    columns: tuple[str, ...]
    id_column: int
    header_line: int
    has_separator: bool
    end_line: int


@dataclass(frozen=True)
class Findings:
    path: str
    lines: tuple[str, ...]
    tables: tuple[Table, ...]
    rows: tuple[Finding, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.rows)

    def get(self, finding_id: str) -> Finding:
        for row in self.rows:
            if row.id == finding_id:
                return row
        raise UnknownIdError(self.path, "finding", finding_id, self.ids)


def split_row(text: str) -> list[str]:
    """``| a | b \\| c |`` → ``["a", "b \\| c"]`` (raw cell text, stripped)."""
    body = text.strip()
    body = body[1:] if body.startswith("|") else body
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [c.strip() for c in _SPLIT_RE.split(body)]


def _row_cells(cells: list[str], n: int) -> list[str]:
    if len(cells) > n:
        cells = cells[:n - 1] + [" | ".join(cells[n - 1:])]
    return cells + [""] * (n - len(cells))


def parse(text: str, path: PathLike = "docs/findings.md") -> Findings:
    """Parse findings tables; ParseError when no table has an ID column or IDs repeat."""
    require_text(text, path)
    lines = split_lines(text)
    flags, _ = scan_fences(lines, path)
    tables: list[Table] = []
    rows: list[Finding] = []
    i, n = 0, len(lines)
    while i < n:
        c = content(lines[i])
        if flags[i] or not c.lstrip().startswith("|"):
            i += 1
            continue
        header = split_row(c)
        names = [strip_md(h) for h in header]
        id_col = next((k for k, h in enumerate(names) if h.lower() in _ID_COLUMNS), -1)
        j = i + 1
        sep = content(lines[j]) if j < n and not flags[j] else ""
        has_sep = sep.lstrip().startswith("|") and "-" in sep and all(
            _SEP_CELL_RE.match(x.replace(" ", "")) for x in split_row(sep) if x)
        if has_sep:
            j += 1
        while j < n and not flags[j] and content(lines[j]).lstrip().startswith("|"):
            if id_col >= 0:
                cells = [x.replace("\\|", "|") for x in _row_cells(split_row(content(lines[j])), len(names))]
                rid = strip_md(cells[id_col])
                if rid:
                    rows.append(Finding(rid, dict(zip(names, cells, strict=False)), j + 1))
            j += 1
        if id_col >= 0:
            tables.append(Table(tuple(names), id_col, i + 1, has_sep, j))
        i = j
    if not tables:
        raise ParseError(path, 1, "no findings table found (expected a header row with an 'ID' column)")
    seen: dict[str, int] = {}
    for row in rows:
        if row.id in seen:
            raise ParseError(path, row.line, f"duplicate finding ID {row.id!r} (first at line {seen[row.id]})")
        seen[row.id] = row.line
    return Findings(str(path), tuple(lines), tuple(tables), tuple(rows))


def render(doc: Findings) -> str:
    return "".join(doc.lines)


def load(path: PathLike) -> Findings:
    return parse(read_text(path), path)


def empty(path: PathLike = "docs/findings.md", title: str = "Findings") -> Findings:
    """A new findings document with the standard header and no rows."""
    head = "| " + " | ".join(STANDARD_COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in STANDARD_COLUMNS) + "|"
    return parse(f"# {check_single_line(title, 'title')}\n\n{head}\n{sep}\n", path)


def _cell(value: str, column: str) -> str:
    check_single_line(value, column)
    return re.sub(r"(?<!\\)\|", r"\\|", value.strip())


def add_or_update(doc: Findings, finding_id: str, values: Mapping[str, str]) -> Findings:
    """New document with the row for ``finding_id`` updated (only the given columns) or, if
    absent, appended to the last table. Column names match case-insensitively."""
    table = doc.tables[-1]
    try:
        row = doc.get(finding_id)
    except UnknownIdError:
        row = None
    if row is not None:
        table = next(t for t in doc.tables if t.header_line < row.line <= t.end_line)
    lower = {c.lower(): c for c in table.columns}
    unknown = [k for k in values if k.lower() not in lower and k.lower() not in _ID_COLUMNS]
    if unknown:
        raise ValueError(f"{doc.path}: unknown column(s) {unknown}; columns: {', '.join(table.columns)}")
    cells = {c: _cell(row.get(c) if row else "", c) for c in table.columns}
    for k, v in values.items():
        if k.lower() not in _ID_COLUMNS:
            cells[lower[k.lower()]] = _cell(v, k)
    cells[table.columns[table.id_column]] = _cell(finding_id, "ID")
    text = "| " + " | ".join(cells[c] for c in table.columns) + " |"
    if row is not None:
        lines = replace_line(doc.lines, row.line - 1, text)
    else:
        lines = insert_lines(doc.lines, table.end_line, [text])
    return parse("".join(lines), doc.path)


def columns_of(doc: Findings) -> Sequence[str]:
    """Header of the table that new rows go to."""
    return doc.tables[-1].columns
