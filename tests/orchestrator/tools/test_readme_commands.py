"""After one `make run`-style cycle (`orchestrator main-job`), the README's follow-up commands work
in the run's worktree, and every file the harness wrote there is readable by colleagues: mode 0644
under umask 022 (atomic writes must not leave mkstemp's private 0600). Every `orchestrator …`
command spelled in the README and the docs it links (operations, coding agents) parses with the
real command line, and the README's follow-up commands are the ones run here."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.main import build_parser

pytestmark = pytest.mark.integration  # spawns the orchestrator command line

ROOT = Path(__file__).resolve().parents[3]
#: Where commands are spelled for users: the README and the docs it sends them to.
COMMAND_DOCS = ("README.md", "docs/operations.md", "docs/coding_agents.md")
#: Subcommands this module runs after a main-job cycle (the README's "Reading the results").
RUN_HERE = {"main-job", "status", "ledger", "validate", "replay", "report"}
_SPAN = re.compile(r"`([^`\n]+)`")
_COMMAND = re.compile(r"^(?:\S*python3? -m )?orchestrator (?P<args>[a-z].*)$")

PLAN = ("T-RUN-001", [("Checks", [("echo works", "echo hello > $ARTIFACTS/hello.txt"), ("true works", "true")])],
        ["hello written — check: `test -s $ARTIFACTS/hello.txt`"])
CONFIG = "git_sync: false\nstep_timeout_s: 60\nmain_job:\n  focus: T-RUN-001\n  phases_per_cycle: 0\n"


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``orchestrator ARGS`` in ``cwd`` under umask 022."""
    argv = [sys.executable, "-m", "orchestrator", *args]
    return subprocess.run(["bash", "-c", 'umask 022 && exec "$@"', "bash", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, harness) -> tuple[Path, str, Path]:
    """(worktree, branch, page) of one main-job cycle, its review page written afterwards."""
    tmp = tmp_path_factory.mktemp("readme")
    repo = harness.make_repo(tmp / "r", {"T-RUN-001": (harness.item("T-RUN-001", "run item"), harness.plan(*PLAN))},
                             extra={"orchestrator.yaml": CONFIG})
    result = _cli(repo, "main-job")
    assert result.returncode == 0, result.stdout + result.stderr
    fields = dict(line.strip().split(":", 1) for line in result.stdout.splitlines()
                  if line.strip().startswith(("worktree:", "branch:")))
    worktree, branch = Path(fields["worktree"].strip()), fields["branch"].split()[0]
    page = tmp / "review" / "report.html"
    report = _cli(worktree, "report", "--html", str(page))
    assert report.returncode == 0, report.stderr
    return worktree, branch, page


def test_readme_commands_succeed_after_a_main_job_cycle(run: tuple[Path, str, Path], harness) -> None:
    worktree, branch, _ = run
    assert "Focus: T-RUN-001" in harness.git(worktree, "show", f"{branch}:input.md")
    status = _cli(worktree, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["focus"]["id"] == "T-RUN-001"
    check = _cli(worktree, "ledger", "--check")
    assert check.returncode == 0 and "0 of 1 entries flagged" in check.stdout, check.stdout + check.stderr
    assert _cli(worktree, "validate", "input.md").returncode == 0
    replay = _cli(worktree, "replay", "--step", "1")  # no --ledger-entry: the latest one the harness wrote
    assert replay.returncode == 0, replay.stdout + replay.stderr
    heading = next(line for line in (worktree / "galph_memory.md").read_text().splitlines() if line.startswith("# 20"))
    timestamp = heading.split(": ", 1)[0].removeprefix("# ")
    assert f"replaying the latest harness ledger entry, {timestamp} (line" in replay.stdout
    assert "step 1 (A1: echo works): rc 0 — same as recorded" in replay.stdout
    pasted = _cli(worktree, "replay", "--step", "2", "--ledger-entry", heading.split(": ", 1)[0] + ":")
    assert pasted.returncode == 0 and "step 2 (A2: true works): rc 0 — same as recorded" in pasted.stdout, pasted.stderr


def test_every_file_the_harness_wrote_is_0644_under_umask_022(run: tuple[Path, str, Path]) -> None:
    worktree, _, page = run
    reports = sorted(p for p in (worktree / "plans/active/T-RUN-001/reports").rglob("*") if p.is_file())
    written = [worktree / "input.md", worktree / "galph_memory.md", worktree / "docs/fix_plan.md",
               worktree / "plans/active/T-RUN-001/implementation.md", worktree / ".orchestrator/state.json",
               page, *reports]
    names = {p.name for p in reports}
    assert {"run.json", "summary.md", "step-01.log", "check-01.log", "hello.txt"} <= names
    modes = {str(p.relative_to(worktree) if p.is_relative_to(worktree) else p.name): oct(p.stat().st_mode & 0o777)
             for p in written}
    assert set(modes.values()) == {"0o644"}, modes


def _commands(text: str) -> list[str]:
    """The argument strings of every ``orchestrator …`` command in backticks or a bash block."""
    spans, in_block, pending = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```bash"
            continue
        if in_block:
            pending += line.split(" #", 1)[0].strip()
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip() + " "
                continue
            spans.append(pending)
            pending = ""
        else:
            spans += _SPAN.findall(line)
    found = [_COMMAND.match(span.strip()) for span in spans]
    return [m["args"] for m in found if m]


def _parse_error(args: str) -> str | None:
    """None when ``orchestrator ARGS`` parses, else argparse's complaint."""
    argv = [word for word in shlex.split(args) if word != "…"]
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        return f"orchestrator {args}: does not parse"
    return None


def test_every_documented_orchestrator_command_parses(capsys: pytest.CaptureFixture[str]) -> None:
    commands = {doc: _commands((ROOT / doc).read_text(encoding="utf-8")) for doc in COMMAND_DOCS}
    assert all(commands.values()), {doc: len(found) for doc, found in commands.items()}
    errors = [f"{doc}: {err}" for doc, found in commands.items() for args in found
              if (err := _parse_error(args))]
    assert errors == [], capsys.readouterr().err


def test_the_readme_follow_up_commands_are_the_ones_run_here() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reading the results of `make run`", 1)[1].split("\n## ", 1)[0]
    named = {args.split()[0] for args in _commands(section)}
    assert {"status", "ledger", "validate", "replay", "report"} <= named
    assert named <= RUN_HERE, f"README names {sorted(named - RUN_HERE)}: run them here too"


def test_the_command_scan_finds_commands_and_flags_a_misspelt_one() -> None:
    text = ("Run `orchestrator status --json` or `orchestrator.yaml`.\n```bash\n"
            "python -m orchestrator loop --role worker \\\n    --remote origin   # GPU box\n```\n")
    assert _commands(text) == ["status --json", "loop --role worker --remote origin"]
    assert _parse_error("replay --step 1") is None
    assert _parse_error("replay --stepp 1") == "orchestrator replay --stepp 1: does not parse"
