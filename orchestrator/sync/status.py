"""The ``sync`` block of ``orchestrator status --json`` for a clone that runs a role loop:
whose turn it is, the leases (age, host, state), the peer's last heartbeat and the last push,
all from what the clone last fetched (status itself never talks to the remote)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from orchestrator.sync.journal import read_sync
from orchestrator.sync.lease import Lease, LeaseError
from orchestrator.sync.turns import PEER, ROLES, whose_turn
from orchestrator.vcs.remote import RemoteBranch
from orchestrator.vcs.repo import GitError, GitRepo

__all__ = ["sync_status"]


def sync_status(repo: Path) -> dict[str, Any] | None:
    """None when this clone never ran ``loop --role``; else a JSON-friendly dict."""
    record = read_sync(repo)
    if record is None:
        return None
    role, remote_name, branch = record.get("role"), record.get("remote"), record.get("branch")
    out: dict[str, Any] = {"role": role, "remote": remote_name, "branch": branch,
                           "last_push": record.get("last_push"), "last_fetch_utc": record.get("last_fetch_utc"),
                           "turn_taken": record.get("turn_taken"), "turn": None, "leases": {}, "errors": []}
    now = time.time()
    try:
        remote = RemoteBranch(GitRepo(Path(repo)), str(remote_name), str(branch))
        log = remote.first_parent_log(remote.tracking_ref)
        turn = whose_turn((e.sha, e.subject, e.paths) for e in log)
        out["turn"] = {"holder": turn.holder, "handed_by": turn.handed_by, "subject": turn.subject,
                       "remote_tip": remote.remote_tip()}
        for r in ROLES:
            raw = remote.read_lease(r)
            if raw is None:
                out["leases"][r] = None
                continue
            try:
                lease = Lease.from_message(raw[1], raw[0])
            except LeaseError as exc:
                out["errors"].append(str(exc))
                continue
            out["leases"][r] = {**lease.to_dict(), "age_s": round(now - lease.heartbeat_s, 1)}
    except GitError as exc:
        out["errors"].append(str(exc))
    holder = (out["turn"] or {}).get("holder")
    holder_lease = out["leases"].get(holder) if holder else None
    out["lease_age_s"] = holder_lease["age_s"] if holder_lease else None
    peer_lease = out["leases"].get(PEER.get(str(role), ""))
    out["peer_last_heartbeat_utc"] = peer_lease["heartbeat_utc"] if peer_lease else None
    return out
