"""The git gateway (orchestrator.vcs.repo) against real git repositories in tmp_path (no mocks)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.vcs.history import cycle_commits
from orchestrator.vcs.owned import commit_message, is_owned, owned_paths
from orchestrator.vcs.repo import GitError, GitGuardError, GitRepo
from orchestrator.vcs.secret_scan import scan_text

FOCUS = "FOCUS-1"
PLAN = f"plans/active/{FOCUS}"


def git(cwd: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stderr}")
    return proc.stdout.strip()


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test Harness")
    git(root, "config", "user.email", "harness@example.invalid")
    git(root, "config", "commit.gpgsign", "false")
    write(root, "input.md", "Mode: Implementation\n")
    write(root, "docs/fix_plan.md", "# Fix plan\n")
    write(root, "galph_memory.md", "# ledger\n")
    write(root, "src.py", "x = 1\n")
    write(root, f"{PLAN}/implementation.md", "## Phase A: a\n- [ ] A1: do\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def _status(root: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain=v1", "--untracked-files=all"], cwd=root,
                          capture_output=True, text=True, check=True).stdout.rstrip("\n")


# fake credentials are assembled at run time so this file never contains one
FAKE_SECRETS: dict[str, Callable[[], str]] = {
    "private key block": lambda: "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n",
    "GitHub token": lambda: "token = gh" + "p_" + "Ab1" * 12,
    "GitHub fine-grained token": lambda: "github" + "_pat_" + "11AB" * 8,
    "AWS access key id": lambda: "aws_id=AK" + "IA" + "ABCDEFGHIJKLMNOP",
    "Slack token": lambda: "xo" + "xb-" + "1234567890-abcdefghij",
    "API key (sk-...)": lambda: "OPENAI=s" + "k-" + "proj" + "a1b2c3d4" * 4,
    "Authorization bearer token": lambda: "curl -H 'Authorization: Bea" + "rer " + "eyJ" + "x" * 30 + "'",
}


@pytest.mark.parametrize("kind", sorted(FAKE_SECRETS))
def test_scan_detects_each_secret_kind(kind: str) -> None:
    hits = scan_text("line one\n" + FAKE_SECRETS[kind](), path="f.md")
    assert [h.kind for h in hits] == [kind]
    assert hits[0].line == 2 and hits[0].path == "f.md"
    secret_tail = FAKE_SECRETS[kind]()[-12:].strip("'\n")
    assert secret_tail not in str(hits[0])  # the report never repeats the secret


@pytest.mark.parametrize(
    "text",
    ["the API key lives in the vault", "pip install sk-learn", "Authorization: Bearer <token>",
     "task-runner-with-a-long-name-here", "-----BEGIN PUBLIC KEY-----", "AKIA1234"],
)
def test_scan_ignores_prose(text: str) -> None:
    assert scan_text(text) == []


def test_owned_paths_and_message_format() -> None:
    assert owned_paths(FOCUS) == ["input.md", "galph_memory.md", "docs/fix_plan.md",
                                  "docs/findings.md", f"{PLAN}/**"]
    assert is_owned(f"{PLAN}/reports/x/run.json", FOCUS)
    assert not is_owned("plans/active/FOCUS-10/x.md", FOCUS)
    assert not is_owned("src.py", FOCUS) and is_owned("input.md", None)
    assert commit_message("RALPH", FOCUS, "ran phase A") == f"RALPH: {FOCUS} — ran phase A"
    assert commit_message("SUPERVISOR", FOCUS, "handoff\n\nbody text") == (
        f"SUPERVISOR: {FOCUS} — handoff\n\nbody text\n")
    with pytest.raises(ValueError, match="role"):
        commit_message("ralph", FOCUS, "x")
    with pytest.raises(ValueError, match="empty"):
        commit_message("RALPH", FOCUS, "  ")


def test_commit_owned_commits_only_owned_paths(root: Path) -> None:
    repo = GitRepo(root)
    before = repo.head_sha()
    write(root, "input.md", "Mode: Implementation\nFocus: FOCUS-1 — t\n")
    write(root, "docs/fix_plan.md", "# Fix plan\n- Status: done\n")
    write(root, f"{PLAN}/reports/2026-01-07T073000Z/run.json", "{}\n")
    write(root, "plans/active/OTHER-2/notes.md", "not mine\n")
    write(root, "src.py", "x = 2  # user's unrelated edit\n")
    write(root, "notes.txt", "untracked user file\n")
    (root / "galph_memory.md").unlink()
    result = repo.commit_owned("RALPH", FOCUS, "ran phase A", max_commit_bytes=10_000)
    assert result.committed and result.sha == repo.head_sha() != before
    assert set(result.committed_paths) == {
        "input.md", "docs/fix_plan.md", "galph_memory.md",
        f"{PLAN}/reports/2026-01-07T073000Z/run.json"}
    assert git(root, "log", "-1", "--format=%s") == f"RALPH: {FOCUS} — ran phase A"
    shown = set(git(root, "show", "--name-only", "--format=", "HEAD").splitlines())
    assert shown == set(result.committed_paths)
    # the unrelated files are exactly as the user left them: unstaged, untouched
    assert _status(root).splitlines() == [" M src.py", "?? notes.txt",
                                          "?? plans/active/OTHER-2/notes.md"]
    assert (root / "src.py").read_text() == "x = 2  # user's unrelated edit\n"
    again = repo.commit_owned("RALPH", FOCUS, "nothing new", max_commit_bytes=10_000)
    assert again.sha is None and again.refused_reason is None and repo.head_sha() == result.sha


def test_large_files_are_left_out_and_listed(root: Path) -> None:
    repo = GitRepo(root)
    write(root, f"{PLAN}/reports/t/summary.md", "small\n")
    (root / PLAN / "reports/t/weights.bin").write_bytes(b"\1" * 5000)
    (root / PLAN / "reports/t/prestaged.npz").write_bytes(b"\2" * 3000)
    git(root, "add", f"{PLAN}/reports/t/prestaged.npz")
    result = repo.commit_owned("RALPH", FOCUS, "results", max_commit_bytes=1000)
    assert result.committed_paths == (f"{PLAN}/reports/t/summary.md",)
    assert sorted(result.skipped_large) == [(f"{PLAN}/reports/t/prestaged.npz", 3000),
                                            (f"{PLAN}/reports/t/weights.bin", 5000)]
    assert git(root, "diff", "--cached", "--name-only") == ""
    assert f"?? {PLAN}/reports/t/weights.bin" in _status(root)
    assert (root / PLAN / "reports/t/weights.bin").stat().st_size == 5000


@pytest.mark.parametrize("kind", sorted(FAKE_SECRETS))
def test_secret_in_staged_text_aborts_and_restores_index(root: Path, kind: str) -> None:
    repo = GitRepo(root)
    head = repo.head_sha()
    write(root, "input.md", "version A\n")
    git(root, "add", "input.md")  # pre-staged by someone: must stay staged as version A
    write(root, "input.md", "version B\n")
    write(root, f"{PLAN}/reports/t/notes.md", "ok line\n" + FAKE_SECRETS[kind]())
    result = repo.commit_owned("RALPH", FOCUS, "with secret", max_commit_bytes=10_000)
    assert result.sha is None and repo.head_sha() == head
    assert result.refused_reason and kind in result.refused_reason
    assert f"{PLAN}/reports/t/notes.md:2" in result.refused_reason
    assert [h.kind for h in result.secret_hits] == [kind]
    assert git(root, "diff", "--cached", "--name-only") == "input.md"
    assert git(root, "show", ":input.md") == "version A"
    assert (root / "input.md").read_text() == "version B\n"
    assert (root / PLAN / "reports/t/notes.md").exists()


def test_only_added_lines_are_scanned(root: Path) -> None:
    secret = FAKE_SECRETS["AWS access key id"]()
    write(root, "docs/findings.md", f"| F-1 | {secret} |\n")
    git(root, "add", "docs/findings.md")
    git(root, "commit", "-q", "-m", "legacy commit with an old leak")
    write(root, "docs/findings.md", f"| F-1 | {secret} |\n| F-2 | new row |\n")
    result = GitRepo(root).commit_owned("SUPERVISOR", FOCUS, "add finding", max_commit_bytes=None)
    assert result.committed and result.committed_paths == ("docs/findings.md",)


def test_guard_refuses_an_unexpected_branch(root: Path) -> None:
    git(root, "checkout", "-q", "-b", "feature")
    repo = GitRepo(root)
    with pytest.raises(GitGuardError, match="on branch 'feature', expected 'main'"):
        repo.guard("main")
    write(root, "input.md", "changed\n")
    with pytest.raises(GitGuardError):
        repo.commit_owned("RALPH", FOCUS, "x", 10_000, expected_branch="main")
    assert repo.guard("feature", FOCUS) == "feature"


def test_guard_refuses_a_detached_head(root: Path) -> None:
    git(root, "checkout", "-q", "--detach")
    with pytest.raises(GitGuardError, match="detached"):
        GitRepo(root).guard()


def test_guard_staged_unrelated_changes(root: Path) -> None:
    repo = GitRepo(root)
    head = repo.head_sha()
    write(root, "src.py", "x = 3\n")
    git(root, "add", "src.py")
    write(root, "input.md", "changed\n")
    with pytest.raises(GitGuardError, match=r"staged outside .*src\.py"):
        repo.commit_owned("RALPH", FOCUS, "x", 10_000)
    assert repo.head_sha() == head
    assert git(root, "diff", "--cached", "--name-only") == "src.py"  # left as it was


def _conflict(root: Path) -> None:
    git(root, "checkout", "-q", "-b", "other")
    write(root, "src.py", "x = 'other'\n")
    git(root, "commit", "-q", "-am", "other")
    git(root, "checkout", "-q", "main")
    write(root, "src.py", "x = 'main'\n")
    git(root, "commit", "-q", "-am", "main")


@pytest.mark.parametrize(
    ("args", "what"),
    [(("merge", "other"), "a merge"), (("rebase", "other"), "a rebase"),
     (("cherry-pick", "other"), "a cherry-pick")],
)
def test_guard_operation_in_progress(root: Path, args: tuple[str, ...], what: str) -> None:
    _conflict(root)
    git(root, *args, check=False)  # stops on the conflict
    repo = GitRepo(root)
    with pytest.raises(GitGuardError, match=f"{what} is in progress"):
        repo.guard()
    write(root, "input.md", "changed\n")
    with pytest.raises(GitGuardError, match="in progress"):
        repo.commit_owned("RALPH", FOCUS, "x", 10_000)


def test_cycle_commits_reads_role_focus_and_paths_of_harness_commits(root: Path) -> None:
    repo = GitRepo(root)
    for role, focus, text in [("SUPERVISOR", FOCUS, "handoff"), ("RALPH", FOCUS, "run 1"),
                              ("RALPH", "FOCUS-10", "other"), ("RALPH", FOCUS, "run 2")]:
        write(root, "galph_memory.md", f"{role} {focus} {text}\n")
        assert repo.commit_owned(role, focus, text, 10_000).committed
    commits = list(cycle_commits(repo))
    assert [c.subject for c in commits] == [f"RALPH: {FOCUS} — run 2", "RALPH: FOCUS-10 — other",
                                            f"RALPH: {FOCUS} — run 1", f"SUPERVISOR: {FOCUS} — handoff"]
    assert [(c.kind, c.focus) for c in commits] == [("RALPH", FOCUS), ("RALPH", "FOCUS-10"), ("RALPH", FOCUS),
                                                    ("SUPERVISOR", FOCUS)]
    assert commits[0].sha == repo.head_sha() and commits[0].parent == commits[1].sha
    assert all(c.changed == frozenset({"galph_memory.md"}) for c in commits)
    assert repo.changed_paths(commits[0].sha) == {"galph_memory.md"}
    assert repo.log_subjects(f"{commits[2].sha}..HEAD") == [(commits[0].sha, commits[0].subject),
                                                            (commits[1].sha, commits[1].subject)]


def test_cycle_commits_take_trailers_only_from_the_last_paragraph(root: Path) -> None:
    repo = GitRepo(root)
    for body in ("text\n\nCycle-Id: c1\nLedger-Entry: 2026-01-01T00:00:00Z (line 3)",
                 "Cycle-Id: c1\n\nnot a trailer here"):
        write(root, "galph_memory.md", body)
        git(root, "add", "galph_memory.md")
        git(root, "commit", "-q", "-m", f"RALPH: {FOCUS} — run", "-m", body)
    newest, older = list(cycle_commits(repo))[:2]
    assert newest.trailers == {}
    assert older.trailers == {"Cycle-Id": "c1", "Ledger-Entry": "2026-01-01T00:00:00Z (line 3)"}


def test_rev_queries_tell_commits_from_other_names(root: Path) -> None:
    repo = GitRepo(root)
    head = repo.head_sha()
    tree = git(root, "rev-parse", "HEAD^{tree}")
    assert repo.rev_exists(head) and repo.rev_exists(head[:10]) and repo.rev_parse(head[:10]) == head
    assert not repo.rev_exists("0" * 40)
    assert not repo.rev_exists(tree)
    assert not repo.rev_exists("--help") and not repo.rev_exists("")
    assert repo.known_commits({head, head[:10], tree, "0" * 40}) == {head, head[:10]}
    with pytest.raises(GitError, match="rev-parse"):
        repo.rev_parse("no-such-branch")


def test_worktree_commits_leave_main_checkout_alone(root: Path, tmp_path: Path) -> None:
    repo = GitRepo(root)
    head = repo.head_sha()
    wt_path = tmp_path / "wt"
    wt = repo.worktree_add(wt_path, "harness/run-1", head)
    assert wt.branch() == "harness/run-1" and wt.head_sha() == head
    write(wt_path, "input.md", "from the worktree\n")
    result = wt.commit_owned("SUPERVISOR", FOCUS, "handoff", 10_000, expected_branch="harness/run-1")
    assert result.committed and repo.rev_exists(result.sha)
    assert repo.branch() == "main" and repo.head_sha() == head and _status(root) == ""
    assert (root / "input.md").read_text() == "Mode: Implementation\n"
    repo.worktree_remove(wt_path)
    assert not wt_path.exists()
    again = repo.worktree_add(wt_path, "harness/run-1")  # existing branch is checked out
    assert again.head_sha() == result.sha
    repo.worktree_remove(wt_path, force=True)


def test_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not a git repository"):
        GitRepo(tmp_path)
    git(tmp_path, "init", "-q", "-b", "main")
    empty = GitRepo(tmp_path)
    with pytest.raises(GitError, match="no commits"):
        empty.head_sha()
    assert list(cycle_commits(empty)) == [] and not empty.rev_exists("HEAD")
    assert empty.branch() == "main"
