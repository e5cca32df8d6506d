"""orchestrator.turns.commit_policy (globs, size, secrets) and orchestrator.turns.progress."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.turns.breaker import TurnStatus
from orchestrator.turns.commit_policy import CommitPolicy, CommitSelection, Refusal, glob_match, select_paths
from orchestrator.turns.progress import TurnEvidence, judge_turn
from orchestrator.vcs.secret_scan import scan_text

TOKEN = "ghp_" + "Zq9" * 12  # assembled here so this file holds no credential-shaped literal


@pytest.mark.parametrize(("path", "glob", "expected"), [
    ("src/feature.py", "**", True),
    ("src/feature.py", "*.py", True),
    ("src/deep/feature.py", "*.py", True),
    ("src/feature.py", "src/*.py", True),
    ("src/deep/feature.py", "src/*.py", False),
    ("src/deep/feature.py", "src/**/*.py", True),
    ("src/feature.py", "src/**/*.py", True),
    ("src/feature.py", "src/", True),
    ("lib/src/feature.py", "src/", True),
    ("tests/test_a.py", "/src/**", False),
    ("src/a.py", "/src/**", True),
    (".orchestrator/state.json", ".orchestrator/**", True),
    ("x/.orchestrator/state.json", ".orchestrator/**", False),
    ("data/run1.npz", "data/run?.npz", True),
    ("data/run10.npz", "data/run?.npz", False),
    ("a.log", "[ab].log", True),
    ("c.log", "[!ab].log", True),
    ("a.log", "[!ab].log", False),
    ("weights.h5.zip", "*.zip", True),
])
def test_glob_match(path: str, glob: str, expected: bool) -> None:
    assert glob_match(path, glob) is expected


class FakeTree:
    """A working tree as a dict path -> bytes (None = deleted)."""

    def __init__(self, files: dict[str, bytes | None]) -> None:
        self.files = files
        self.reads: list[str] = []

    def size_of(self, path: str) -> int | None:
        data = self.files[path]
        return None if data is None else len(data)

    def read_text(self, path: str) -> str | None:
        self.reads.append(path)
        try:
            return self.files[path].decode("utf-8")  # type: ignore[union-attr]
        except UnicodeDecodeError:
            return None


def select(tree: FakeTree, policy: CommitPolicy | None = None) -> CommitSelection:
    policy = policy if policy is not None else CommitPolicy()
    return select_paths(list(tree.files), policy, size_of=tree.size_of, read_text=tree.read_text, scan=scan_text)


def test_defaults_stage_everything_but_harness_state_secrets_and_big_files() -> None:
    tree = FakeTree({"src/feature.py": b"def f():\n    return 1\n", "tests/test_feature.py": b"def test(): pass\n",
                     ".orchestrator/state.json": b"{}", "config/.env": f"GITHUB_TOKEN={TOKEN}\n".encode(),
                     "out/weights.bin": b"\0" * 2000, "old.py": None, "img.png": b"\x89PNG\xff\xfe"})
    sel = select(tree, CommitPolicy(max_commit_bytes=1000))
    assert sel.stage == ("src/feature.py", "tests/test_feature.py", "old.py", "img.png")
    reasons = {r.path: r.reason for r in sel.refused}
    assert reasons == {".orchestrator/state.json": "excluded", "config/.env": "secret", "out/weights.bin": "oversize"}
    secret = next(r for r in sel.refused if r.reason == "secret")
    assert "GitHub token" in secret.detail and TOKEN not in secret.detail
    assert "2000 bytes > max_commit_bytes 1000" in next(r.detail for r in sel.refused if r.reason == "oversize")
    assert sel.needs_review
    assert "out/weights.bin" not in tree.reads and ".orchestrator/state.json" not in tree.reads
    assert sel.to_dict()["refused"][0] == {"path": ".orchestrator/state.json", "reason": "excluded",
                                           "detail": ".orchestrator/**"}


def test_include_and_exclude_globs() -> None:
    tree = FakeTree({"src/a.py": b"x", "src/a.log": b"x", "notes.txt": b"x", "src/gen/b.py": b"x"})
    sel = select(tree, CommitPolicy(include=("src/**",), exclude=("*.log", "src/gen/")))
    assert sel.stage == ("src/a.py",)
    assert set(sel.refused) == {Refusal("src/a.log", "excluded", "*.log"),
                                Refusal("notes.txt", "excluded", "not included"),
                                Refusal("src/gen/b.py", "excluded", "src/gen/")}
    assert not sel.needs_review  # the user's own policy is not a review matter


def test_duplicates_and_policy_validation() -> None:
    tree = FakeTree({"a.py": b"x"})
    assert select_paths(["a.py", "a.py"], CommitPolicy(), size_of=tree.size_of, read_text=tree.read_text,
                        scan=scan_text).stage == ("a.py",)
    for bad in (dict(include=("",)), dict(exclude=["x"]), dict(max_commit_bytes=0)):
        with pytest.raises(ValueError):
            CommitPolicy(**bad)


def test_the_real_fifty_megabyte_file_is_refused_without_being_read(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(50 * 1024 * 1024)

    def read_text(path: str) -> str | None:
        raise AssertionError(f"{path} must not be read")

    sel = select_paths(["big.bin"], CommitPolicy(), size_of=lambda p: (tmp_path / p).stat().st_size,
                       read_text=read_text, scan=scan_text)
    assert sel.stage == () and sel.refused[0].reason == "oversize" and sel.needs_review


# --------------------------------------------------------------------------- progress

CRIT_FAIL = {"1. tests pass": False, "2. lint": True}
CRIT_PASS = {"1. tests pass": True, "2. lint": True}
PLAN_OPEN = {"A1": True, "A2": False}
PLAN_DONE = {"A1": True, "A2": True}


def test_new_code_with_newly_passing_criterion_and_tick_is_ok_and_done() -> None:
    v = judge_turn(TurnEvidence(0, CRIT_FAIL, CRIT_PASS, PLAN_OPEN, PLAN_DONE, ["src/feature.py"]))
    assert (v.status, v.progressed, v.done) == (TurnStatus.OK, True, True)
    assert v.newly_passing == ("1. tests pass",) and v.newly_ticked == ("A2",) and v.failing == ()
    assert "ticked A2" in v.reason and v.to_dict()["status"] == "ok"


@pytest.mark.parametrize(("evidence", "progressed"), [
    (TurnEvidence(0, CRIT_FAIL, CRIT_FAIL, PLAN_OPEN, PLAN_OPEN, ["src/x.py"]), True),   # committed change only
    (TurnEvidence(0, CRIT_FAIL, CRIT_FAIL, PLAN_OPEN, PLAN_DONE, []), True),             # tick only
    (TurnEvidence(0, CRIT_FAIL, CRIT_PASS, PLAN_OPEN, PLAN_OPEN, []), True),             # criterion only
])
def test_any_single_kind_of_evidence_is_progress(evidence: TurnEvidence, progressed: bool) -> None:
    v = judge_turn(evidence)
    assert v.progressed is progressed and v.status is TurnStatus.OK and not v.done


def test_nothing_changed_is_a_no_op_and_done_needs_criteria_and_closed_plan() -> None:
    v = judge_turn(TurnEvidence(0, CRIT_FAIL, CRIT_FAIL, PLAN_OPEN, PLAN_OPEN, []))
    assert (v.status, v.progressed, v.done) == (TurnStatus.NO_OP, False, False)
    assert v.failing == ("1. tests pass",) and v.open_items == ("A2",)
    assert not judge_turn(TurnEvidence(0, CRIT_PASS, CRIT_PASS, PLAN_OPEN, PLAN_OPEN)).done      # plan open
    assert not judge_turn(TurnEvidence(0, {}, {}, PLAN_DONE, PLAN_DONE)).done                     # no criteria
    assert not judge_turn(TurnEvidence(0, {}, {"c": None}, {}, {})).done                          # unchecked
    already = judge_turn(TurnEvidence(0, CRIT_PASS, CRIT_PASS, PLAN_DONE, PLAN_DONE))
    assert (already.status, already.done) == (TurnStatus.NO_OP, True)


@pytest.mark.parametrize(("evidence", "status"), [
    (TurnEvidence(1, transient=True, timed_out=True), TurnStatus.TRANSIENT),
    (TurnEvidence(124, timed_out=True, committed_paths=["a"]), TurnStatus.TIMEOUT),
    (TurnEvidence(0, invalid_problems=["input.md:1: no Focus line"]), TurnStatus.INVALID_OUTPUT),
    (TurnEvidence(1), TurnStatus.AGENT_ERROR),
    (TurnEvidence(None), TurnStatus.AGENT_ERROR),
    (TurnEvidence(0, committed_paths=["src/a.py"], refused=["secret.env"]), TurnStatus.NEEDS_REVIEW),
])
def test_status_precedence(evidence: TurnEvidence, status: TurnStatus) -> None:
    assert judge_turn(evidence).status is status


def test_plan_edits_that_untick_or_remove_items_are_reported() -> None:
    v = judge_turn(TurnEvidence(0, {}, {}, {"A1": True, "A2": False, "A3": False}, {"A1": False, "A2": True}))
    assert v.unticked == ("A1",) and v.removed_items == ("A3",) and v.newly_ticked == ("A2",)
    timed = judge_turn(TurnEvidence(124, timed_out=True, committed_paths=["src/a.py"]))
    assert timed.progressed and "1 path(s) committed" in timed.reason
