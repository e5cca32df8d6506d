"""``orchestrator ledger --check``: recorded vs computed dwell, missing artifacts, unknown
commits — one :class:`EntryCheck` per ledger entry (importable; the HTML report uses it).

Computed dwell, per entry:

* entries written by the harness are matched to their SUPERVISOR commit through its
  ``Ledger-Entry: <timestamp> (line N)`` trailer; their dwell is recomputed from git history as it
  stood before that commit (``source="git"``);
* other entries (hand-written, or imported from another loop's ledger) get the ledger-only
  estimate, in time order: 0 when the focus changed or ``ralph_last_commit`` moved to a new
  commit, else previous + 1 (``source="ledger"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.documents import ledger as ledger_doc
from orchestrator.vcs.history import CycleCommit, cycle_commits, dwell, make_judge
from orchestrator.vcs.repo import GitRepo

__all__ = ["EntryCheck", "LedgerCheck", "LedgerFlag", "check_ledger"]

_NO_COMMIT = {"", "none", "null", "n/a", "-", "unknown"}


@dataclass(frozen=True)
class LedgerFlag:
    kind: str  # dwell_mismatch | missing_artifacts | unknown_commit
    message: str


@dataclass(frozen=True)
class EntryCheck:
    timestamp_text: str
    line: int
    focus: str | None
    recorded_dwell: int | None
    computed_dwell: int | None
    dwell_source: str  # git | ledger | none
    commit: str | None
    flags: tuple[LedgerFlag, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp_text, "line": self.line, "focus": self.focus,
                "recorded_dwell": self.recorded_dwell, "computed_dwell": self.computed_dwell,
                "dwell_source": self.dwell_source, "commit": self.commit,
                "flags": [{"kind": f.kind, "message": f.message} for f in self.flags]}


@dataclass(frozen=True)
class LedgerCheck:
    path: str
    entries: tuple[EntryCheck, ...]
    git_checked: bool

    @property
    def problems(self) -> list[str]:
        return [f"{self.path}:{e.line}: {e.timestamp_text} {e.focus or '-'}: {f.kind}: {f.message}"
                for e in self.entries for f in e.flags]

    @property
    def ok(self) -> bool:
        return not self.problems


def _known_commits(git: GitRepo | None, shas: set[str]) -> set[str] | None:
    if git is None:
        return None
    return git.known_commits(s for s in shas if s.lower() not in _NO_COMMIT)


def _ledger_estimates(entries: list[ledger_doc.LedgerEntry]) -> dict[int, int | None]:
    out: dict[int, int | None] = {}
    prev_focus = prev_commit = None
    prev = 0
    for e in entries:
        if e.focus_id is None:
            out[e.line] = None
            continue
        commit = ((e.state.ralph_last_commit if e.state else None) or "").strip().lower()
        moved = commit not in _NO_COMMIT and commit != (prev_commit or "")
        prev = 0 if e.focus_id != prev_focus or moved else prev + 1
        out[e.line] = prev
        prev_focus, prev_commit = e.focus_id, commit
    return out


def check_ledger(repo_root: Path, ledger: ledger_doc.Ledger) -> LedgerCheck:
    """Check every entry of ``ledger`` against the repository at ``repo_root``."""
    repo = Path(repo_root)
    entries = ledger_doc.entries_in_time_order(ledger)
    git = GitRepo(repo) if (repo / ".git").exists() else None
    commits: list[CycleCommit] = list(cycle_commits(git)) if git is not None else []
    by_entry = {c.trailers["Ledger-Entry"]: i for i, c in reversed(list(enumerate(commits)))
                if c.kind == "SUPERVISOR" and "Ledger-Entry" in c.trailers}
    judge = make_judge(git) if git is not None else None
    estimates = _ledger_estimates(entries)
    shas = {(e.state.ralph_last_commit or "") for e in entries if e.state}
    known = _known_commits(git, shas)
    results = []
    for e in entries:
        flags: list[LedgerFlag] = []
        index = by_entry.get(f"{e.timestamp_text} (line {e.line})")
        commit = commits[index].sha if index is not None else None
        if index is not None and judge is not None and e.focus_id:
            computed, source = dwell(commits[index + 1:], e.focus_id, judge), "git"
        else:
            computed, source = estimates.get(e.line), "ledger" if estimates.get(e.line) is not None else "none"
        if e.dwell is not None and computed is not None and e.dwell != computed:
            flags.append(LedgerFlag("dwell_mismatch", f"recorded dwell {e.dwell}, computed {computed} (from {source})"))
        artifacts = ((e.state.artifacts if e.state else None) or "").strip()
        if artifacts and artifacts.lower() not in _NO_COMMIT and not (repo / artifacts).exists():
            flags.append(LedgerFlag("missing_artifacts", f"artifacts path {artifacts} does not exist"))
        sha = ((e.state.ralph_last_commit if e.state else None) or "").strip()
        if known is not None and sha and sha.lower() not in _NO_COMMIT and sha not in known:
            flags.append(LedgerFlag("unknown_commit", f"ralph_last_commit {sha} is not a commit of this repository"))
        results.append(EntryCheck(e.timestamp_text, e.line, e.focus, e.dwell, computed, source, commit, tuple(flags)))
    return LedgerCheck(ledger.path, tuple(results), known is not None)
