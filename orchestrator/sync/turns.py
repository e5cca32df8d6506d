"""Whose turn it is, derived from the shared branch, and what the waiting side concludes
about its peer. Pure functions (no git, no clock): the role loop feeds them what it fetched.

Rule (first-parent history of the remote branch, newest first): the newest *deciding* harness
commit holds the answer.

* ``RALPH: …`` → the supervisor's turn, handed over by that commit;
* ``SUPERVISOR: …`` that changes ``input.md`` (a new handoff) → the worker's turn, handed over
  by that commit;
* ``SUPERVISOR: …`` that leaves ``input.md`` alone (an escalation, a rejected handoff) is the
  supervisor's own mid-turn record: skipped, the supervisor keeps the turn;
* commits without a harness prefix (a human's docs edit) are skipped;
* no deciding commit at all → the supervisor's turn (the first one), handed by nobody (None).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.vcs.history import SUBJECT_RE

__all__ = ["PEER", "ROLES", "Turn", "Verdict", "judge_peer", "whose_turn"]

ROLES = ("supervisor", "worker")
PEER = {"supervisor": "worker", "worker": "supervisor"}
HANDOFF_FILE = "input.md"


@dataclass(frozen=True)
class Turn:
    """``holder``: the role whose turn it is; ``handed_by``: the sha of the commit that handed
    it over (None for the very first supervisor turn); ``subject``: that commit's subject."""

    holder: str
    handed_by: str | None
    subject: str = ""


def whose_turn(commits: Iterable[tuple[str, str, frozenset[str]]]) -> Turn:
    """``commits``: ``(sha, subject, changed paths)`` newest first (first-parent order)."""
    for sha, subject, paths in commits:
        m = SUBJECT_RE.match(subject)
        if m is None:
            continue
        if m.group("kind") == "RALPH":
            return Turn("supervisor", sha, subject)
        if HANDOFF_FILE in paths:
            return Turn("worker", sha, subject)
    return Turn("supervisor", None, "")


@dataclass(frozen=True)
class Verdict:
    """``action``: ``wait``, ``peer_done`` (the peer stopped cleanly while holding the turn:
    nothing left to wait for) or ``peer_dead`` (``reason`` says why)."""

    action: str
    reason: str = ""


def judge_peer(turn: Turn, lease: dict | None, lease_fresh: bool, now_s: float, grace_from_s: float,
               handed_seen_s: float, lease_s: float) -> Verdict:
    """What the waiting side concludes about the peer holding ``turn``.

    ``lease``: the peer's lease (the JSON fields plus ``heartbeat_s``, its time as epoch seconds)
    or None. ``lease_fresh``: the lease commit changed since this side started watching (a
    ``done``/``failed`` lease left over from an earlier session is not acted on).
    ``grace_from_s``: epoch seconds from which overdue time counts (start of watching, or the
    moment the remote became reachable again). ``handed_seen_s``: when this side first saw the
    hand-over commit (or pushed it). All times are epoch seconds.
    """
    taken = lease is not None and lease.get("turn_of") == turn.handed_by
    if taken:
        assert lease is not None
        if lease_fresh and lease.get("state") == "done":
            return Verdict("peer_done", lease.get("note") or "finished")
        if lease_fresh and lease.get("state") == "failed":
            return Verdict("peer_dead", f"it stopped with an error: {lease.get('note') or 'no reason given'}")
        overdue = now_s - max(float(lease["heartbeat_s"]), grace_from_s)
        if overdue > lease_s:
            return Verdict("peer_dead", f"its lease is {overdue:.1f} s old (lease_s {lease_s:g})")
        return Verdict("wait")
    waited = now_s - max(handed_seen_s, grace_from_s)
    if waited > lease_s:
        what = (f"the turn handed over by {turn.handed_by[:12]} was not taken within {lease_s:g} s"
                if turn.handed_by else f"it did not take the first turn within {lease_s:g} s")
        return Verdict("peer_dead", what)
    return Verdict("wait")
