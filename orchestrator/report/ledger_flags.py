"""`ledger --check` style findings for ledger entries: computed dwell and flags.

Interim home (see /work/notes/REQUESTS.md R9.3): the loop owns the authoritative dwell
computation; until it exposes one, the report derives dwell from the ledger itself:

* an entry whose focus differs from the previous entry's (time order) starts at 0;
* the same focus again: 0 if ``ralph_last_commit`` changed to a real commit since the
  previous entry (the worker made progress), else previous + 1.

Flags: ``dwell_mismatch`` (recorded ≠ computed), ``missing_artifacts`` (the ``artifacts=``
path does not exist in the repo), ``unknown_commit`` (``ralph_last_commit`` is not a commit
of the repo; only checked when the repo is a git repository).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.report.model import LedgerFlag

log = logging.getLogger(__name__)

_NO_COMMIT = {"", "none", "null", "n/a", "-", "unknown"}


@dataclass(frozen=True)
class EntryFacts:
    """The ledger fields the checks need (focus_id: sub-step dropped)."""

    focus_id: str | None
    recorded_dwell: int | None
    ralph_last_commit: str | None
    artifacts: str | None


def computed_dwells(entries: Sequence[EntryFacts]) -> list[int | None]:
    """Dwell per entry; ``entries`` must be in time order. None when the entry has no focus."""
    out: list[int | None] = []
    prev_focus: str | None = None
    prev_commit: str | None = None
    prev_dwell = 0
    for e in entries:
        if e.focus_id is None:
            out.append(None)
            continue
        commit = (e.ralph_last_commit or "").strip().lower()
        progressed = commit not in _NO_COMMIT and commit != (prev_commit or "")
        if e.focus_id != prev_focus or progressed:
            dwell = 0
        else:
            dwell = prev_dwell + 1
        out.append(dwell)
        prev_focus, prev_commit, prev_dwell = e.focus_id, commit, dwell
    return out


def known_commits(repo_root: Path, shas: Iterable[str]) -> set[str] | None:
    """The subset of ``shas`` that name commits in the repo (one git process for all).

    Returns None when ``repo_root`` is not a git repository or git is unavailable.
    """
    wanted = sorted({s for s in shas if s and s.lower() not in _NO_COMMIT})
    if not (repo_root / ".git").exists():
        return None
    if not wanted:
        return set()
    try:
        proc = subprocess.run(
            ["git", "cat-file", "--batch-check=%(objecttype)"],
            input="".join(f"{s}^{{commit}}\n" for s in wanted), capture_output=True, text=True,
            cwd=repo_root, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("cannot run git cat-file in %s: %s", repo_root, exc)
        return None
    answers = proc.stdout.splitlines()
    if proc.returncode != 0 or len(answers) != len(wanted):
        log.warning("git cat-file failed in %s: %s", repo_root, proc.stderr.strip())
        return None
    return {sha for sha, kind in zip(wanted, answers) if kind.strip() == "commit"}


def check_entries(repo_root: Path, entries: Sequence[EntryFacts]) -> tuple[list[int | None], list[tuple[LedgerFlag, ...]], bool]:
    """(computed dwell, flags, git_checked) per entry; ``entries`` in time order."""
    dwells = computed_dwells(entries)
    commits = known_commits(repo_root, (e.ralph_last_commit or "" for e in entries))
    flags: list[tuple[LedgerFlag, ...]] = []
    exists_cache: dict[str, bool] = {}
    for e, dwell in zip(entries, dwells):
        found: list[LedgerFlag] = []
        if e.recorded_dwell is not None and dwell is not None and e.recorded_dwell != dwell:
            found.append(LedgerFlag("dwell_mismatch", f"recorded dwell {e.recorded_dwell}, computed {dwell}"))
        art = (e.artifacts or "").strip()
        if art and art.lower() not in _NO_COMMIT:
            if art not in exists_cache:
                exists_cache[art] = (repo_root / art).exists()
            if not exists_cache[art]:
                found.append(LedgerFlag("missing_artifacts", f"artifacts path {art} does not exist"))
        sha = (e.ralph_last_commit or "").strip()
        if commits is not None and sha and sha.lower() not in _NO_COMMIT and sha not in commits:
            found.append(LedgerFlag("unknown_commit", f"ralph_last_commit {sha} is not a commit in this repo"))
        flags.append(tuple(found))
    return dwells, flags, commits is not None
