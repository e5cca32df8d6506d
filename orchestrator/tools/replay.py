"""``orchestrator replay``: re-run Do-Now steps of a recorded handoff at its recorded commit.

The handoff comes from a ledger entry (``--ledger-entry TS`` or ``TS@LINE``, the timestamp also
as pasted from the entry's heading ``# <ts>: …``; the SUPERVISOR commit whose ``Ledger-Entry``
trailer names it — its ``input.md`` and, from the RALPH commit that followed, the original
``run.json``), from a file (``--input FILE``; the original run.json is the one in its Artifacts
directory, if any), or, with neither, from the latest ledger entry the harness wrote with a
handoff. The steps run in a detached git worktree at the
recorded commit (``--at SHA`` overrides) under ``.orchestrator/replays/<ts>/``, exactly as
the worker runs them; nothing is committed. Each replayed step is compared with the
original record (rc, timed out, expectation, pytest counts) and the comparison is written
to ``replay.json`` next to the replay logs. Steps that depend on earlier steps' outputs
need those steps replayed too (omit ``--step``).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.documents import handoff as handoff_doc
from orchestrator.documents.common import TIMESTAMP_PATTERN, parse_timestamp
from orchestrator.execution.steps import planned_steps, run_steps, step_env
from orchestrator.fsutil import atomic_write_json, format_ts, utc_now
from orchestrator.layout import Layout
from orchestrator.vcs.history import cycle_commits
from orchestrator.vcs.repo import GitError, GitRepo

__all__ = ["Recorded", "ReplayResult", "StepComparison", "clean_entry", "find_recorded", "latest_entry", "replay"]

logger = logging.getLogger(__name__)

_COMPARED_COUNTS = ("passed", "failed", "errors", "skipped", "collected")


@dataclass(frozen=True)
class Recorded:
    """A handoff to replay: its text, where it came from, the commit to run at, and the
    original run.json (None when there is none to compare with)."""

    handoff_text: str
    source: str
    at: str
    run_json: dict[str, Any] | None


@dataclass(frozen=True)
class StepComparison:
    index: int
    title: str
    original: dict[str, Any] | None
    replayed: dict[str, Any]
    differences: tuple[str, ...]

    @property
    def matches(self) -> bool:
        return self.original is not None and not self.differences


@dataclass(frozen=True)
class ReplayResult:
    at: str
    out_dir: Path
    steps: tuple[StepComparison, ...]

    @property
    def matches(self) -> bool:
        return bool(self.steps) and all(s.matches for s in self.steps)


def _git(repo: Path) -> GitRepo:
    """The gateway with replay's error contract: ValueError naming the problem."""
    try:
        return GitRepo(repo)
    except GitError as exc:
        raise ValueError(str(exc)) from exc


def _commit_of(git: GitRepo, rev: str) -> str:
    try:
        return git.rev_parse(rev)
    except GitError as exc:
        raise ValueError(str(exc)) from exc


_PASTED_RE = re.compile(r"^\s*#*\s*(?P<ts>" + TIMESTAMP_PATTERN + r")\s*(?::.*)?$")


def clean_entry(wanted: str) -> str:
    """``TS`` or ``TS@LINE`` as typed, as a trailer (``TS (line N)``), or as pasted from a heading:
    a leading ``#``, the trailing ``:`` and the title after it are dropped
    (``# 2026-01-07T07:30:00Z: A-001 — …``)."""
    if " (line " in wanted:
        ts, _, rest = wanted.partition(" (line ")
        wanted = f"{ts}@{rest.rstrip(')').strip()}"
    ts, at, line = wanted.partition("@")
    m = _PASTED_RE.match(ts)
    return (m["ts"] if m else ts.strip()) + (at + line.strip() if at else "")


def _entry_matches(trailer: str, wanted: str) -> bool:
    """Trailer ``<ts> (line N)`` against ``TS`` or ``TS@N`` (timestamps compared as times)."""
    ts, _, rest = trailer.partition(" (line ")
    line = rest.rstrip(")")
    want_ts, _, want_line = clean_entry(wanted).partition("@")
    if want_line and want_line.strip() != line:
        return False
    try:
        return parse_timestamp(ts) == parse_timestamp(want_ts)
    except ValueError:
        return ts.strip() == want_ts.strip()


def _artifacts(text: str, source: str) -> str | None:
    doc = handoff_doc.parse(text, source)
    return (doc.artifacts or "").strip().strip("`").rstrip("/") or None


def latest_entry(repo: Path) -> str:
    """The ``Ledger-Entry`` trailer (``<ts> (line N)``) of the newest SUPERVISOR commit that
    committed a handoff (ValueError when the harness has written none)."""
    git = _git(repo)
    for c in cycle_commits(git):
        if c.kind == "SUPERVISOR" and "Ledger-Entry" in c.trailers and "Artifacts" in c.trailers:
            return c.trailers["Ledger-Entry"]
    raise ValueError(f"{repo}: no SUPERVISOR commit with a Ledger-Entry trailer and a handoff; "
                     "give --ledger-entry TS or --input FILE")


def find_recorded(repo: Path, ledger_entry: str | None = None, input_file: Path | None = None,
                  at: str | None = None) -> Recorded:
    """Locate the handoff, commit and original run.json (ValueError naming what is missing).
    With neither ``ledger_entry`` nor ``input_file``: the latest handoff the harness committed."""
    if ledger_entry is not None and input_file is not None:
        raise ValueError("give at most one of --ledger-entry TS or --input FILE")
    if ledger_entry is None and input_file is None:
        ledger_entry = latest_entry(repo)
    if input_file is not None:
        text = Path(input_file).read_text(encoding="utf-8")
        report = _artifacts(text, str(input_file))
        run_path = repo / report / "run.json" if report else None
        original = json.loads(run_path.read_text(encoding="utf-8")) if run_path and run_path.exists() else None
        sha = _commit_of(_git(repo), at or "HEAD")
        return Recorded(text, str(input_file), sha, original)
    git = _git(repo)
    commits = list(cycle_commits(git))
    hits = [i for i, c in enumerate(commits)
            if c.kind == "SUPERVISOR" and _entry_matches(c.trailers.get("Ledger-Entry", ""), ledger_entry or "")]
    if len(hits) > 1:
        shown = ", ".join(commits[i].trailers["Ledger-Entry"] for i in hits)
        raise ValueError(f"ledger entry {ledger_entry!r} is ambiguous ({shown}); give TS@LINE")
    if hits:
        i = hits[0]
        c = commits[i]
        text = git.show(c.sha, Layout.HANDOFF)
        if text is None:
            raise ValueError(f"commit {c.sha[:12]} (ledger entry {ledger_entry}) has no input.md")
        report = _artifacts(text, f"{c.sha[:12]}:input.md")
        original = None
        follow = next((r for r in reversed(commits[:i]) if r.kind == "RALPH" and r.focus == c.focus), None)
        if follow is not None and report:
            raw = git.show(follow.sha, f"{report}/run.json")
            original = json.loads(raw) if raw else None
        sha = _commit_of(git, at) if at else c.sha
        return Recorded(text, f"{c.sha[:12]}:input.md (ledger entry {ledger_entry})", sha, original)
    raise ValueError(f"no SUPERVISOR commit records ledger entry {ledger_entry!r} "
                     "(only entries written by the harness can be replayed by timestamp; use --input)")


def _compare(original: dict[str, Any] | None, replayed: dict[str, Any]) -> tuple[str, ...]:
    if original is None:
        return ("no original record for this step",)
    diffs = []
    for key in ("rc", "timed_out", "expectation_ok"):
        if original.get(key) != replayed.get(key):
            diffs.append(f"{key}: {original.get(key)!r} → {replayed.get(key)!r}")
    a, b = original.get("pytest_counts") or {}, replayed.get("pytest_counts") or {}
    for key in _COMPARED_COUNTS:
        if a.get(key) != b.get(key):
            diffs.append(f"pytest {key}: {a.get(key)!r} → {b.get(key)!r}")
    return tuple(diffs)


def replay(repo: Path, recorded: Recorded, step: int | None = None, default_timeout_s: float = 900.0,
           keep_worktree: bool = False, clock: Callable[[], datetime] = utc_now) -> ReplayResult:
    """Run the step(s) in a detached worktree at ``recorded.at`` and compare (never commits)."""
    doc = handoff_doc.parse(recorded.handoff_text, recorded.source)
    steps = planned_steps(doc)
    if step is not None:
        steps = tuple(s for s in steps if s.number == step)
        if not steps:
            raise ValueError(f"{recorded.source}: no Do-Now step {step} (it has {len(planned_steps(doc))})")
    out = Layout(repo).state_dir / "replays" / format_ts(clock())
    n = 2
    while out.exists():
        out = out.with_name(f"{format_ts(clock())}-{n}")
        n += 1
    worktree = out / "worktree"
    out.mkdir(parents=True)
    git = _git(repo)
    try:
        git.worktree_add_detached(worktree, recorded.at)
    except GitError as exc:
        raise ValueError(str(exc)) from exc
    try:
        report_rel = (doc.artifacts or "").strip().strip("`").rstrip("/")
        report = worktree / report_rel
        report.mkdir(parents=True, exist_ok=True)
        env = step_env(worktree, report_rel, f"replay-{out.name}")
        records = run_steps(steps, worktree, report, env, default_timeout_s)
        shutil.copytree(report / "logs", out / "logs", dirs_exist_ok=True)
    finally:
        if not keep_worktree:
            git.worktree_remove(worktree, force=True, check=False)
    originals = {s["index"]: s for s in (recorded.run_json or {}).get("steps", [])}
    comparisons = []
    for record in records:
        replayed = {"rc": record.rc, "timed_out": record.timed_out, "expectation_ok": record.expectation_ok,
                    "pytest_counts": record.pytest_counts, "duration_s": record.duration_s,
                    "log": f"logs/{Path(record.log).name}"}
        original = originals.get(record.index)
        comparisons.append(StepComparison(record.index, record.title, original, replayed, _compare(original, replayed)))
    result = ReplayResult(recorded.at, out, tuple(comparisons))
    atomic_write_json(out / "replay.json", {
        "source": recorded.source, "at": recorded.at, "worktree_kept": keep_worktree, "matches": result.matches,
        "steps": [{"index": c.index, "title": c.title, "matches": c.matches, "differences": list(c.differences),
                   "original": {k: (c.original or {}).get(k) for k in ("rc", "timed_out", "expectation_ok",
                                                                        "pytest_counts", "duration_s")}
                   if c.original else None, "replayed": c.replayed} for c in comparisons]})
    return result
