"""The fake agent CLI (tests/fixtures/agents/fake_llm.py) behaves like a real one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.documents import handoff as handoff_doc
from orchestrator.turns.transient import TransientClassifier
from orchestrator.turns.usage import Usage, parse_usage
from orchestrator.vcs.secret_scan import scan_text

FAKE = Path(__file__).resolve().parents[2] / "fixtures" / "agents" / "fake_llm.py"
PLAN = "## Phase A: Code\n\n- [ ] A1: write src/feature.py\n- [ ] A2: test it\n"


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "plans/active/FEAT-1").mkdir(parents=True)
    (root / "plans/active/FEAT-1/implementation.md").write_text(PLAN, encoding="utf-8")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(argv, cwd=root, check=True, env=env)
    return root


def run_fake(repo: Path, scenario: dict, prompt: str = "Focus: FEAT-1 — x\nReport directory: plans/active/FEAT-1/"
             "reports/r1/\n", timeout: float = 30, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    path = repo.parent / "scenario.json"
    if not path.exists():
        path.write_text(json.dumps(scenario), encoding="utf-8")
    prompt_file = repo.parent / "prompt.md"
    prompt_file.write_text(prompt, encoding="utf-8")
    env = {**os.environ, "FAKE_LLM_SCENARIO": str(path), "GIT_AUTHOR_NAME": "agent", "GIT_AUTHOR_EMAIL": "a@x",
           "GIT_COMMITTER_NAME": "agent", "GIT_COMMITTER_EMAIL": "a@x"}
    return subprocess.run([sys.executable, str(FAKE), "--prompt-file", str(prompt_file), *extra], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_rate_limited_twice_then_does_the_work(repo: Path) -> None:
    scenario = {"rate_limit": 2,
                "write": {"src/feature.py": "def double(x):\n    return {'value': 2 * x}['value']\n",
                          "tests/test_feature.py": "from src.feature import double\n\n\ndef test_double():\n"
                                                   "    assert double(2) == 4\n"},
                "tick": ["A1", "A2"], "usage": {"cost_usd": 0.02, "input_tokens": 1200, "output_tokens": 300}}
    now = datetime.now(UTC)
    for _ in range(2):
        proc = run_fake(repo, scenario)
        decision = TransientClassifier().classify(proc.returncode, proc.stdout + proc.stderr, now)
        assert proc.returncode == 1 and decision.transient and decision.wait_until == now + timedelta(seconds=2)
        assert not (repo / "src").exists()
    proc = run_fake(repo, scenario)
    assert proc.returncode == 0, proc.stderr
    assert "read a prompt of 2 lines (focus FEAT-1)" in proc.stdout
    assert "{'value': 2 * x}" in (repo / "src/feature.py").read_text()
    assert "- [x] A1:" in (repo / "plans/active/FEAT-1/implementation.md").read_text()
    assert parse_usage("claude-json", proc.stdout).usage == Usage(0.02, 1200, 300)
    assert subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_feature.py"],
                          cwd=repo, capture_output=True, timeout=120).returncode == 0


def test_commits_itself_and_prints_codex_events(repo: Path) -> None:
    proc = run_fake(repo, {"write": {"src/a.py": "A = 1\n"}, "commit": "agent: add a",
                           "usage": {"input_tokens": 10, "output_tokens": 5}, "usage_format": "codex"})
    assert proc.returncode == 0, proc.stderr
    log = subprocess.run(["git", "log", "--format=%s", "--name-only", "-1"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    assert log.split() == ["agent:", "add", "a", "src/a.py"]
    assert parse_usage("codex-jsonl", proc.stdout).usage == Usage(0.0, 10, 5)


def test_secret_big_file_and_handoffs(repo: Path) -> None:
    proc = run_fake(repo, {"turns": [{"secret": "creds.env", "big_file": {"path": "out/weights.bin", "mb": 50}},
                                     {"input_md": "valid", "check": "pytest -q tests/test_feature.py"},
                                     {"input_md": "invalid"}]})
    assert proc.returncode == 0
    assert scan_text((repo / "creds.env").read_text(), "creds.env")[0].kind == "GitHub token"
    assert (repo / "out/weights.bin").stat().st_size == 50 * 1024 * 1024
    assert run_fake(repo, {}, extra=("--focus", "FEAT-9", "--report-dir", str(repo / "plans/active/FEAT-9/r"))
                    ).returncode == 0
    doc = handoff_doc.parse((repo / "input.md").read_text(), repo / "input.md")
    assert doc.focus_item_id == "FEAT-9" and doc.artifacts == "plans/active/FEAT-9/r/"
    assert [c.check for c in doc.exit_criteria] == ["pytest -q tests/test_feature.py"]
    run_fake(repo, {})
    assert "Focus:" not in (repo / "input.md").read_text()


def test_fails_with_a_fixed_error_does_nothing_or_hangs(repo: Path) -> None:
    proc = run_fake(repo, {"turns": [{"exit": 1, "error": "Error: tool crashed at step 3"}, {}]})
    assert proc.returncode == 1 and proc.stderr.strip() == "Error: tool crashed at step 3"
    assert not TransientClassifier().classify(1, proc.stderr, datetime.now(UTC)).transient
    noop = run_fake(repo, {})
    assert noop.returncode == 0
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""
    (repo.parent / "scenario.json").unlink()
    with pytest.raises(subprocess.TimeoutExpired):
        run_fake(repo, {"hang": 60}, timeout=1.5)
