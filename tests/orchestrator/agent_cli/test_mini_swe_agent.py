"""A real third-party agent CLI drives the loop: mini-swe-agent (pinned in the Makefile, installed
by ``make agent-mini`` into ``.tools/mini-venv``, its own environment), run through the public
CLI (``python -m orchestrator loop``) and ``orchestrator.yaml`` in a real git repository, with
mini's deterministic model (``model.model_class: deterministic``, scripted outputs) or, for the
rate limit, its litellm model against a local HTTP server on 127.0.0.1.

Marker ``agent_cli`` (``make test-agents``; not in the default ``make test``). The tests fail,
never skip, when mini is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.execution.steps import harness_bin

pytestmark = pytest.mark.agent_cli

ROOT = Path(__file__).parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "agents"
FOCUS = "T-MINI-001"
BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
DONE = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
PROBE = ('echo "AGENT PATH=$PATH"; echo "AGENT PYTHONPATH=${PYTHONPATH-<unset>}"; '
         'echo "AGENT python=$(command -v python)"')


@pytest.fixture(scope="module")
def mini() -> Path:
    """The installed ``mini`` (``$MINI_SWE_AGENT`` or ``.tools/bin/mini``)."""
    path = Path(os.environ.get("MINI_SWE_AGENT") or ROOT / ".tools" / "bin" / "mini")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"mini-swe-agent is not installed at {path}: run `make agent-mini` (or `make test-agents`)")
    out = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MSWEA_CONFIGURED": "true", "MSWEA_SILENT_STARTUP": "1"})
    assert out.returncode == 0 and "--exit-immediately" in out.stdout, out.stdout + out.stderr
    return path


def _output(content: str, command: str, cost: float = 0.0, tokens: tuple[int, int] = (0, 0)) -> dict:
    """One scripted model message (mini's DeterministicModel format)."""
    return {"role": "assistant", "content": content,
            "extra": {"actions": [{"command": command}], "cost": cost,
                      "response": {"usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]}}}}


def _repo(tmp_path: Path, harness, mini: Path, model: dict, config: dict | None = None,
          env: dict | None = None) -> Path:
    """A repo whose item T-MINI-001's exit criterion is a failing pytest, worked on by mini."""
    plan = harness.plan(FOCUS, [("Fix add", [("make add() add", "python -m pytest -q tests/test_calc.py")])],
                        ["the calc tests pass — check: `python -m pytest -q -p no:cacheprovider tests/test_calc.py`"])
    model_file = tmp_path / "mini-model.yaml"
    model_file.write_text(yaml.safe_dump({"model": model}), encoding="utf-8")
    doc = {"git_sync": False, "check_timeout_s": 120, "step_timeout_s": 120, "dwell_limit": 10,
           "agents": {"supervisor": "builtin", "worker": "mini-worker"},
           "commands": {"mini-worker": {
               "role": "worker", "timeout_s": 300, "usage": "mini-swe-agent",
               "argv": [str(mini), "-c", "mini.yaml", "-c", str(model_file), "--yolo", "--exit-immediately",
                        "-t", "{prompt}", "-o", "{report_dir}/agent/mini.traj.json"],
               "env": {"MSWEA_CONFIGURED": True, "MSWEA_SILENT_STARTUP": "1",
                       "MSWEA_GLOBAL_CONFIG_DIR": str(tmp_path / "mini-home"), **(env or {})}}},
           **(config or {})}
    files = {"orchestrator.yaml": yaml.safe_dump(doc, sort_keys=False), "calc.py": BUGGY, "tests/test_calc.py": TEST}
    return harness.make_repo(tmp_path / "repo", {FOCUS: (harness.item(FOCUS, "add adds"), plan)},
                             identity=True, extra=files)


def _loop(repo: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m orchestrator loop`` as a user runs it (the harness's interpreter, cwd = repo)."""
    return subprocess.run([sys.executable, "-m", "orchestrator", "loop", *args], cwd=repo, capture_output=True,
                          text=True, timeout=timeout, env=_user_env())


def _user_env() -> dict[str, str]:
    """The test's environment as a user's shell would have it (the harness is installed in .venv)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _runs(repo: Path) -> list[dict]:
    paths = sorted((repo / "plans/active" / FOCUS / "reports").glob("*/run.json"), key=lambda p: p.parent.name)
    return [json.loads(p.read_text()) for p in paths]


def _report(name: str, **data: object) -> None:
    """A line for the record (visible with ``-s`` / ``-rA``)."""
    print(f"\nMINI-SCENARIO {name}: {json.dumps(data, default=str)}")


def test_a_scripted_fix_is_ok_done_and_committed(tmp_path: Path, harness, mini: Path) -> None:
    t0 = time.monotonic()
    plan_rel = f"plans/active/{FOCUS}/implementation.md"
    model = {"model_class": "deterministic", "model_name": "deterministic", "outputs": [
        _output("Look at the environment first.", PROBE),
        _output("Fix the sign and tick the plan item.",
                f"sed -i 's/a - b/a + b/' calc.py && sed -i 's/^- \\[ \\] A1:/- [x] A1:/' {plan_rel}"),
        _output("Done.", DONE)]}
    repo = _repo(tmp_path, harness, mini, model, {"budgets": {"max_cycles": 3}})

    proc = _loop(repo)

    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console
    [run] = _runs(repo)
    assert run["agent"]["status"] == "ok" and run["harness"]["item_status"] == "done", run["agent"]
    assert "- Status: done" in (repo / "docs/fix_plan.md").read_text()
    assert harness.git(repo, "show", "HEAD:calc.py") == BUGGY.replace("a - b", "a + b").strip()
    assert harness.git(repo, "log", "-1", "--format=%s", "--", "calc.py").startswith(f"RALPH: {FOCUS}")
    assert harness.git(repo, "status", "--porcelain") == ""
    transcript = (repo / run["report_dir"] / "agent" / "worker-transcript.log").read_text()
    seen = dict(line.split("=", 1) for line in transcript.splitlines() if line.startswith("AGENT "))
    assert harness_bin() not in seen["AGENT PATH"].split(os.pathsep), seen
    assert seen["AGENT PYTHONPATH"] == "<unset>", seen  # the user's (none here), not the repo
    _report("a-fix", wall_s=round(time.monotonic() - t0, 1), status=run["agent"]["status"],
            item=run["harness"]["item_status"], **seen)


def test_b_scripted_no_ops_trip_the_breaker_on_the_last_allowed_turn(tmp_path: Path, harness, mini: Path) -> None:
    t0 = time.monotonic()
    model = {"model_class": "deterministic", "model_name": "deterministic",
             "outputs": [_output("Nothing to do.", DONE)]}
    repo = _repo(tmp_path, harness, mini, model, {"budgets": {"max_cycles": 3}, "breaker": {"no_op": 3}})

    proc = _loop(repo)

    console = proc.stdout + proc.stderr
    assert proc.returncode == 4, console
    assert "loop stopped: breaker" in proc.stdout and proc.stdout.count("cycle ") == 3
    assert [r["agent"]["status"] for r in _runs(repo)] == ["no_op"] * 3
    assert "loop stopped: breaker" in (repo / "galph_memory.md").read_text()
    _report("b-breaker", wall_s=round(time.monotonic() - t0, 1), rc=proc.returncode)


def test_c_rate_limited_by_a_local_server_waits_and_retries_the_same_turn(tmp_path: Path, harness,
                                                                         mini: Path,
                                                                         load_file_module) -> None:
    Llm429Server = load_file_module(FIXTURES / "llm_429_server.py").Llm429Server
    t0 = time.monotonic()
    with Llm429Server(limited=2, max_requests=6, max_s=400) as server:
        model = {"model_name": "openai/gpt-test",
                 "model_kwargs": {"api_base": server.url, "api_key": "sk-test", "max_retries": 0}}
        env = {"MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "MSWEA_COST_TRACKING": "ignore_errors"}
        repo = _repo(tmp_path, harness, mini, model, {"budgets": {"max_cycles": 1, "max_wall_s": 500}}, env)
        proc = _loop(repo)
    console = proc.stdout + proc.stderr
    assert [status for _, status in server.requests] == [429, 429, 200], (server.requests, console)
    ledger = (repo / "galph_memory.md").read_text()
    assert ledger.count("Action type: Transient wait") == 2, console
    assert "worker agent waiting until" in ledger and "rate-limit" in ledger
    [run] = _runs(repo)  # one turn, retried: one record
    assert run["agent"]["status"] == "no_op", run["agent"]
    assert "blocked" not in (repo / "docs/fix_plan.md").read_text()
    assert not any("blocked" in s for s in harness.subjects(repo))
    assert proc.returncode == 1, console  # one no-op cycle: ran, no progress
    waits = [e for e in ledger.split("\n---") if "Transient wait" in e]
    _report("c-429", wall_s=round(time.monotonic() - t0, 1), requests=server.requests,
            turn=run["agent"]["status"], first_wait=waits[0].strip())


def test_d_spend_from_the_trajectory_and_max_usd_stops_the_loop(tmp_path: Path, harness, mini: Path) -> None:
    t0 = time.monotonic()
    model = {"model_class": "deterministic", "model_name": "deterministic", "outputs": [
        _output("Write a note.", "date +%s%N >> notes.txt", cost=0.4, tokens=(1000, 100)),
        _output("Done.", DONE, cost=0.4, tokens=(1500, 50))]}
    repo = _repo(tmp_path, harness, mini, model,
                 {"budgets": {"max_cycles": 5, "max_usd": 1.0}, "breaker": {"no_op": 0}})

    proc = _loop(repo)

    console = proc.stdout + proc.stderr
    assert proc.returncode == 4 and "loop stopped: budget" in proc.stdout, console
    runs = _runs(repo)
    assert len(runs) == 2
    assert runs[0]["agent"]["usage"] == {"cost_usd": 0.8, "input_tokens": 2500, "output_tokens": 150}
    status = subprocess.run([sys.executable, "-m", "orchestrator", "status", "--json"], cwd=repo, capture_output=True,
                            text=True, timeout=120, env=_user_env())
    spend = json.loads(status.stdout)["spend"]
    assert spend["total"] == {"cost_usd": 1.6, "input_tokens": 5000, "output_tokens": 300}, spend
    _report("d-spend", wall_s=round(time.monotonic() - t0, 1), rc=proc.returncode, spend=spend["total"])
