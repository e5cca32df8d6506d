"""`orchestrator validate` and `orchestrator ledger` (exit codes 0/1/2, file:line output, --json)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main

pytestmark = pytest.mark.integration  # spawns the orchestrator command line

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "documents"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def repo(tmp_path):
    """A tiny repo root: docs/fix_plan.md plus the seed handoff and ledger."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "docs").mkdir()
    shutil.copy(FIXTURES / "fix_plan.md", tmp_path / "docs" / "fix_plan.md")
    shutil.copy(FIXTURES / "seeds" / "input.example.md", tmp_path / "input.md")
    shutil.copy(FIXTURES / "seeds" / "galph_memory.example.md", tmp_path / "galph_memory.md")
    return tmp_path


def test_validate_flags_seed_handoff_with_file_and_line(repo, capsys):
    assert main(["validate", str(repo / "input.md")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{repo / 'input.md'}:33: command uses a path outside the repo: '/home/ollie/Documents/PtychoPINN'"]


def test_validate_ok_files_exit_zero(repo, capsys):
    text = (repo / "input.md").read_text().replace("cd /home/ollie/Documents/PtychoPINN\n", "")
    (repo / "input.md").write_text(text)
    files = [repo / "input.md", repo / "galph_memory.md", repo / "docs" / "fix_plan.md", FIXTURES / "findings.md",
             FIXTURES / "implementation.md"]
    assert main(["validate", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert f"{repo / 'input.md'}: ok (handoff)" in out and f"{FIXTURES / 'findings.md'}: ok (findings)" in out


def test_validate_parse_errors_and_kind_override(tmp_path, capsys):
    bad = FIXTURES / "malformed" / "galph_memory_missing_separator.md"
    assert main(["validate", "-q", str(bad)]) == 1
    assert capsys.readouterr().out.startswith(f"{bad}:9: missing '---' separator")
    odd = tmp_path / "notes.md"
    odd.write_bytes(b"# 2026-01-06T14:00:00Z: x\n- k: \xff\n")
    assert main(["validate", str(odd)]) == 2  # kind unknown from the name
    assert "cannot tell the document kind" in capsys.readouterr().err
    assert main(["validate", "--kind", "ledger", str(odd)]) == 1
    assert f"{odd}:2: invalid UTF-8 byte 0xff" in capsys.readouterr().out


def test_validate_usage_errors(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing.md")]) == 2
    assert main(["validate"]) == 2
    assert main(["validate", "--kind", "nonsense", "x.md"]) == 2
    assert main([]) == 2
    capsys.readouterr()


def test_ledger_lists_entries_in_time_order(repo, capsys):
    assert main(["ledger", "--ledger", str(repo / "galph_memory.md")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9 and lines[0].startswith("2025-11-20T00:25:00Z  FIX-TF-C1D-SCALED-RERUN-001  state=")
    assert "dwell=3" in lines[0] and lines[0].endswith("Third-loop retrospective + reissued Phase C1d TF run")
    assert f"{repo / 'galph_memory.md'}:256" in lines[0]


def test_ledger_json_and_focus_filter(capsys):
    assert main(["ledger", "--ledger", str(FIXTURES / "galph_memory_compact.md"), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["focus"] for r in records] == ["STUDY-SYNTH-DOSE-COMPARISON-001.F0", "STUDY-SYNTH-DOSE-COMPARISON-001.F1",
                                             "STUDY-SYNTH-DOSE-COMPARISON-001.F1", "DOCS-FINDINGS-REFRESH-001"]
    assert records[0]["line"] == 11 and records[0]["state_extra"] == {"action_type": "triage"}
    assert main(["ledger", "--ledger", str(FIXTURES / "galph_memory_compact.md"), "--json",
                 "--focus", "DOCS-FINDINGS-REFRESH-001"]) == 0
    (only,) = json.loads(capsys.readouterr().out)
    assert (only["state"], only["dwell"], only["action_state"]) == ("blocked", 3, "blocked")


def test_ledger_command_exits_2_for_a_missing_file_and_1_naming_the_bad_line(tmp_path, capsys):
    assert main(["ledger", "--ledger", str(tmp_path / "none.md")]) == 2
    assert main(["ledger", "--ledger", str(FIXTURES / "malformed" / "galph_memory_bad_timestamp.md")]) == 1
    assert "galph_memory_bad_timestamp.md:6:" in capsys.readouterr().err


def test_python_dash_m_entry_point(repo):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "validate", str(repo / "input.md")],
                          capture_output=True, text=True, env=env, cwd=repo, timeout=60)
    assert proc.returncode == 1 and ":33: command uses a path outside the repo" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "ledger", "--json"], capture_output=True,
                          text=True, env=env, cwd=repo, timeout=60)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 9


def test_validate_json_lists_issues(repo, capsys):
    assert main(["validate", "--json", str(repo / "input.md"), str(repo / "galph_memory.md")]) == 1
    issues = json.loads(capsys.readouterr().out)
    assert issues == [{"path": str(repo / "input.md"), "line": 33, "severity": "error",
                       "message": "command uses a path outside the repo: '/home/ollie/Documents/PtychoPINN'"}]
