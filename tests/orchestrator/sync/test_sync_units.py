"""Two machines, fast parts: whose turn, the peer verdict, the sync config, lease records and
the lease chain on a real bare remote (no loop processes)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.config import ConfigError, SyncConfig, load_config
from orchestrator.sync.lease import Lease, LeaseError, LeaseWriter
from orchestrator.sync.turns import Turn, judge_peer, whose_turn
from orchestrator.vcs.remote import PushRejected, RemoteBranch, RemoteOffline
from orchestrator.vcs.repo import GitError, GitRepo

HANDOFF = frozenset({"input.md", "galph_memory.md"})
LEDGER_ONLY = frozenset({"galph_memory.md", "docs/fix_plan.md"})


@pytest.mark.parametrize(("commits", "expected"), [
    ([], Turn("supervisor", None)),
    ([("h1", "docs: edit", frozenset({"docs/a.md"}))], Turn("supervisor", None)),
    ([("s1", "SUPERVISOR: X-1 — Phase A handoff (dwell 0)", HANDOFF)], Turn("worker", "s1")),
    ([("h1", "docs: a human", frozenset({"input.md"})), ("s1", "SUPERVISOR: X-1 — Phase A handoff", HANDOFF)],
     Turn("worker", "s1")),
    ([("r1", "RALPH: X-1 — 1/1 steps ok", LEDGER_ONLY), ("s1", "SUPERVISOR: X-1 — Phase A", HANDOFF)],
     Turn("supervisor", "r1")),
    # an escalation / rejected handoff leaves input.md alone: the supervisor keeps the turn
    ([("e1", "SUPERVISOR: X-1 — blocked after 3 cycles without progress", LEDGER_ONLY),
      ("r1", "RALPH: X-1 — 0/1 steps ok", LEDGER_ONLY)], Turn("supervisor", "r1")),
    ([("e1", "SUPERVISOR: X-1 — handoff rejected: invalid", LEDGER_ONLY)], Turn("supervisor", None)),
    ([("x", "RALPHS: not a harness commit", LEDGER_ONLY)], Turn("supervisor", None)),
])
def test_whose_turn(commits, expected) -> None:
    turn = whose_turn(commits)
    assert (turn.holder, turn.handed_by) == (expected.holder, expected.handed_by)


def _lease(turn_of: str | None, state: str = "working", at: float = 100.0) -> dict:
    return {"turn_of": turn_of, "state": state, "heartbeat_s": at, "note": "why"}


def test_judge_peer_lease_overdue_counts_from_the_heartbeat_or_the_grace_start() -> None:
    turn = Turn("worker", "s1")
    assert judge_peer(turn, _lease("s1", at=100), True, 102.9, 0, 0, 3).action == "wait"
    dead = judge_peer(turn, _lease("s1", at=100), True, 103.5, 0, 0, 3)
    assert dead.action == "peer_dead" and "lease is 3.5 s old" in dead.reason
    # the remote was unreachable until 102: overdue time starts there
    assert judge_peer(turn, _lease("s1", at=100), True, 104.5, 102, 0, 3).action == "wait"


def test_judge_peer_turn_not_taken_within_lease_s() -> None:
    turn = Turn("supervisor", "r1")
    assert judge_peer(turn, _lease("s0", state="idle"), True, 12.9, 0, 10, 3).action == "wait"
    dead = judge_peer(turn, _lease("s0", state="idle"), True, 13.1, 0, 10, 3)
    assert dead.action == "peer_dead" and "r1" in dead.reason and "not taken" in dead.reason
    assert judge_peer(turn, None, False, 13.1, 0, 10, 3).action == "peer_dead"


def test_judge_peer_done_or_failed_only_when_fresh() -> None:
    turn = Turn("supervisor", "r1")
    assert judge_peer(turn, _lease("r1", "done", at=50), True, 51, 0, 50, 3).action == "peer_done"
    failed = judge_peer(turn, _lease("r1", "failed", at=50), True, 51, 0, 50, 3)
    assert failed.action == "peer_dead" and "stopped with an error: why" in failed.reason
    # left over from an earlier session: not acted on, the lease simply ages
    assert judge_peer(turn, _lease("r1", "done", at=50), False, 51, 50, 50, 3).action == "wait"
    assert judge_peer(turn, _lease("r1", "done", at=50), False, 54, 50, 50, 3).action == "peer_dead"


def test_sync_config_defaults_and_errors_name_the_key(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "missing.yaml").sync
    assert cfg == SyncConfig() and cfg.lease_s >= 2 * cfg.heartbeat_s
    path = tmp_path / "orchestrator.yaml"
    path.write_text("sync:\n  poll_s: 0.5\n  heartbeat_s: 1\n  lease_s: 4\n")
    assert load_config(path).sync == SyncConfig(poll_s=0.5, heartbeat_s=1, lease_s=4)
    for text, needle in [("sync:\n  poll_s: 0\n", "sync.poll_s must be a number > 0"),
                         ("sync:\n  max_wait_s: soon\n", "sync.max_wait_s must be a number > 0"),
                         ("sync:\n  poll: 1\n", "unknown key(s) ['poll'] in sync"),
                         ("sync:\n  heartbeat_s: 10\n  lease_s: 15\n", "sync.lease_s must be >= 2 x sync.heartbeat_s"),
                         ("sync: 5\n", "sync must be a mapping")]:
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert needle in str(err.value) and str(path) in str(err.value)


def test_lease_record_round_trip_and_errors() -> None:
    lease = Lease("worker", "gpu-box", 42, "abc", "2026-11-29T21:00:00.5Z", "working", "")
    again = Lease.from_message(lease.to_message(), "f" * 40)
    assert again.to_message() == lease.to_message() and again.sha == "f" * 40
    assert again.heartbeat_s == pytest.approx(1795986000.5)
    for bad in ("not json", "[]", json.dumps({"role": "worker"}),
                json.dumps({**json.loads(lease.to_message()), "state": "sleeping"})):
        with pytest.raises(LeaseError, match="ffffffffffff"):
            Lease.from_message(bad, "f" * 40)


def _remote_and_clones(harness, tmp_path: Path) -> tuple[Path, Path, Path]:
    seed = tmp_path / "seed"
    seed.mkdir()
    harness.git(seed, "init", "-q", "-b", "main")
    (seed / "a.txt").write_text("a\n")
    harness.git(seed, "add", "-A")
    harness.git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "seed")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
    clones = []
    for name in ("one", "two"):
        subprocess.run(["git", "clone", "-q", str(bare), str(tmp_path / name)], check=True)
        clones.append(tmp_path / name)
    return bare, clones[0], clones[1]


def test_lease_chain_is_fast_forward_only_and_a_restarted_writer_continues_it(harness, tmp_path: Path) -> None:
    bare, one, two = _remote_and_clones(harness, tmp_path)
    remote = RemoteBranch(GitRepo(one), "origin", "main")
    remote.fetch()
    writer = LeaseWriter(remote, "worker")
    shas = [writer.beat("s1", "working").sha for _ in range(3)]
    assert harness.git(bare, "rev-list", "refs/orchestrator/lease/worker").split() == shas[::-1]
    # a second process of the same role (another clone, no local knowledge): continues the chain
    other = RemoteBranch(GitRepo(two), "origin", "main")
    late = LeaseWriter(other, "worker")  # nothing fetched yet: its first push is rejected, then rebuilt
    last = late.beat("s1", "done", "budget used")
    assert harness.git(bare, "rev-parse", "refs/orchestrator/lease/worker") == last.sha
    assert harness.git(bare, "rev-list", "--count", "refs/orchestrator/lease/worker") == "4"
    other.fetch()
    sha, message = other.read_lease("worker")
    assert sha == last.sha and json.loads(message)["state"] == "done"
    assert harness.git(bare, "branch", "--list").strip() == "* main"  # no branch touched


def test_remote_errors_are_sorted(harness, tmp_path: Path) -> None:
    bare, one, two = _remote_and_clones(harness, tmp_path)
    for repo, text in ((one, "one\n"), (two, "two\n")):
        (repo / "a.txt").write_text(text)
        harness.git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", text.strip())
    RemoteBranch(GitRepo(one), "origin", "main").push_branch()
    with pytest.raises(PushRejected):
        RemoteBranch(GitRepo(two), "origin", "main").push_branch()
    bare.rename(tmp_path / "gone.git")
    with pytest.raises(RemoteOffline, match="unreachable"):
        RemoteBranch(GitRepo(two), "origin", "main").fetch()


def test_fetch_of_a_branch_the_remote_lacks_says_how_to_fix_it(harness, tmp_path: Path) -> None:
    _bare, one, _two = _remote_and_clones(harness, tmp_path)
    with pytest.raises(GitError, match="has no branch 'topic': push it once"):
        RemoteBranch(GitRepo(one), "origin", "topic").fetch()
