"""``worker.allow_commands``: every command line the worker would run must match a pattern.

A *command line* is a logical line of a Do-Now script or an exit-criterion check:
backslash-continued lines are joined, blank lines and ``#`` comment lines (``# Expected:``
included) are skipped. A line passes when it matches one of the patterns in full
(:func:`re.fullmatch`), so ``pytest .*`` does not admit ``rm -rf x; pytest``. The check is
done for the whole handoff before the first step runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["command_lines", "disallowed_commands"]


def command_lines(script: str) -> list[tuple[int, str]]:
    """``(1-based line of the script, logical line)`` for each command line of ``script``."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(script.splitlines(), 1):
        line = raw.strip()
        if not pending:
            if not line or line.startswith("#"):
                continue
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        out.append((start, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        out.append((start, " ".join(p for p in pending if p)))
    return out


def disallowed_commands(scripts: Iterable[tuple[str, str]], patterns: Sequence[str]) -> list[str]:
    """Problems for ``(label, script)`` pairs: each line no pattern matches in full, as
    ``"<label>, line N: `<line>` matches no worker.allow_commands pattern"``. Empty when
    ``patterns`` is empty (no allowlist configured)."""
    if not patterns:
        return []
    compiled = [re.compile(p) for p in patterns]
    problems = []
    for label, script in scripts:
        for number, line in command_lines(script):
            if not any(rx.fullmatch(line) for rx in compiled):
                problems.append(f"{label}, line {number}: `{line}` matches no worker.allow_commands pattern")
    return problems
