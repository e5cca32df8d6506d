"""The exit codes are documented once, in docs/operations.md, and that table matches ``Exit``."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.cli.exit_codes import Exit

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "operations.md"
ROW = re.compile(r"^\| (?P<code>\d+) \| `(?P<name>\w+)` \| (?P<meaning>.*?) \|$")
#: "3 lock held", "124 timeout", …: a code followed by the first word of its usual meaning.
_LISTED = re.compile(r"(?<![\w.$-])(?:0|1|2|3|4|5|6|7|8|124|130) (?:ok|failed|check|a check|usage|lock|stopped|"
                     r"peer|the other side|rebase|a rebase|remote|the remote|handoff|the worker|timeout|"
                     r"interrupted)\b", re.IGNORECASE)


def _table(text: str) -> list[tuple[int, str, str]]:
    """(code, name, meaning) rows of the "## Exit codes" section, in order."""
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            rows.append((int(match["code"]), match["name"], match["meaning"].strip()))
        elif line.startswith("| ") and not line.startswith(("| code", "| ---")):
            raise AssertionError(f"{DOC.name}: unreadable exit-code row {line!r}")
    return rows


def _mismatches(rows: list[tuple[int, str, str]]) -> list[str]:
    """What differs between the table and ``Exit``: missing, extra, renamed or empty rows."""
    documented = [(code, name) for code, name, _ in rows]
    enum = [(member.value, member.name) for member in Exit]
    problems = [f"missing from the table: {code} {name}" for code, name in enum if (code, name) not in documented]
    problems += [f"not in Exit: {code} {name}" for code, name in documented if (code, name) not in enum]
    problems += [f"listed twice: {row}" for row in {r for r in documented if documented.count(r) > 1}]
    problems += [f"no meaning for {code} {name}" for code, name, meaning in rows if len(meaning) < 4]
    if not problems and documented != enum:
        problems.append("rows are not in the enum's order")
    return problems


def test_the_exit_code_table_matches_the_enum() -> None:
    rows = _table(DOC.read_text(encoding="utf-8"))
    assert _mismatches(rows) == []
    assert len({meaning for _, _, meaning in rows}) == len(rows), "two codes share one meaning"


def test_the_comparison_sees_a_missing_an_extra_and_an_empty_row() -> None:
    rows = [(m.value, m.name, f"meaning of {m.name}") for m in Exit]
    assert _mismatches(rows) == []
    broken = [row for row in rows if row[1] != "TIMEOUT"] + [(9, "LATE", "too late")]
    broken[0] = (0, "OK", "")
    assert _mismatches(broken) == ["missing from the table: 124 TIMEOUT", "not in Exit: 9 LATE", "no meaning for 0 OK"]
    assert _mismatches(list(reversed(rows))) == ["rows are not in the enum's order"]


def _codes_listed(text: str) -> set[str]:
    """The distinct exit codes ``text`` spells with a meaning ("3 lock held" → "3")."""
    return {match.split()[0] for match in _LISTED.findall(text)}


def test_no_other_file_lists_the_exit_codes() -> None:
    candidates = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
                  *sorted((ROOT / "orchestrator").rglob("*.py"))]
    copies = [str(path.relative_to(ROOT)) for path in candidates
              if path != DOC and len(_codes_listed(path.read_text(encoding="utf-8"))) >= 4]
    assert copies == []


def test_the_copy_detector_sees_the_old_readme_list() -> None:
    old = ("Exit codes: 0 ok · 1 check failed · 2 usage · 3 lock held · 4 stopped by a limit · "
           "124 timeout · 130 interrupted")
    assert _codes_listed(old) == {"0", "1", "2", "3", "4", "124", "130"}
    assert _codes_listed("retry 3 times; 2 of 5 arms; 1 failed, 0 failed") == {"1", "0"}
