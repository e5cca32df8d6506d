"""Agent loops with an LLM-style agent CLI (tests/fixtures/agents/fake_llm.py): real git
repositories, real subprocesses, the harness wired as `orchestrator loop` wires it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.main import main
from orchestrator.config import TURN_TOP_KEYS, load_config
from orchestrator.context import HarnessContext, identity_env
from orchestrator.cycle.loop import load_turns, make_agents, run_loop
from orchestrator.execution.heartbeat import heartbeat
from orchestrator.turns.config import NEW_BUDGET_KEYS, NEW_COMMAND_KEYS, NEW_TOP_KEYS

pytestmark = pytest.mark.integration  # spawns the orchestrator command line

FAKE = Path(__file__).parents[2] / "fixtures" / "agents" / "fake_llm.py"
PY = sys.executable

NOTIFIER = "import sys, pathlib; pathlib.Path(sys.argv[1]).open('a').write(' '.join(sys.argv[2:]) + '\\n')"


def _test_file(name: str) -> str:
    return (f"from src.{name} import {name}\n\n\ndef test_{name}():\n    assert {name}() == '{name}'\n")


def _code(name: str) -> str:
    return f"def {name}():\n    return '{name}'\n"


def _plan(harness, item: str, criterion: str) -> str:
    return harness.plan(item, [("Implement", [("write the code and its test", "true")])], [criterion])


def _repo(tmp_path: Path, harness, items: dict[str, tuple[str, str]], config: dict, *,
          scenarios: dict[str, object]) -> Path:
    """A seeded repo whose orchestrator.yaml runs fake_llm for the roles in ``scenarios``."""
    scen_dir = tmp_path / "scenarios"
    scen_dir.mkdir()
    commands = {}
    for role, scenario in scenarios.items():
        path = scen_dir / f"{role}.json"
        path.write_text(json.dumps(scenario), encoding="utf-8")
        argv = [PY, str(FAKE), "--scenario", str(path), "--prompt-file", "{prompt_file}"]
        if role == "supervisor":
            argv += ["--focus", "{focus}", "--report-dir", "{report_dir}"]
        commands[f"llm-{role}"] = {"role": role, "argv": argv, "usage": "claude-json", "timeout_s": 60}
    doc = {"git_sync": False, "check_timeout_s": 60, "step_timeout_s": 60,
           "agents": {role: f"llm-{role}" for role in scenarios}, "commands": commands,
           "notify": [PY, "-c", NOTIFIER, str(tmp_path / "notified.txt"), "{event}", "{focus}"], **config}
    extra = {"orchestrator.yaml": yaml.safe_dump(doc, sort_keys=False)}
    return harness.make_repo(tmp_path / "repo", items, identity=True, extra=extra)


def _context(repo: Path) -> HarnessContext:
    config = load_config(repo / "orchestrator.yaml")
    sup, wrk = make_agents(config, repo)
    return HarnessContext(repo, config, sup, wrk, expected_branch="main", git_env=identity_env(repo),
                          turns=load_turns(config))


def _runs(repo: Path, focus: str) -> list[dict]:
    paths = sorted((repo / "plans/active" / focus / "reports").glob("*/run.json"), key=lambda p: p.parent.name)
    return [json.loads(p.read_text()) for p in paths]


def _status(repo: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["status", "--repo", str(repo), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_llm_supervisor_and_worker_complete_a_two_item_plan(tmp_path: Path, harness, capsys) -> None:
    items = {f"T-{n.upper()}-001": (harness.item(f"T-{n.upper()}-001", f"{n} feature", priority=p),
                                    _plan(harness, f"T-{n.upper()}-001", "the tests pass"))
             for n, p in (("alpha", "P1"), ("beta", "P2"))}
    usage = {"cost_usd": 0.01, "input_tokens": 100, "output_tokens": 10}
    sup = {"turns": [{"input_md": "valid", "check": f"python -m pytest -q tests/test_{n}.py", "usage": usage}
                     for n in ("alpha", "beta")]}
    cost = {"cost_usd": 0.02, "input_tokens": 200, "output_tokens": 20}
    wrk = {"turns": [{"write": {f"src/{n}.py": _code(n), f"tests/test_{n}.py": _test_file(n)}, "tick": ["A1"],
                      "usage": cost} for n in ("alpha", "beta")]}
    repo = _repo(tmp_path, harness, items, {"budgets": {"max_cycles": 6}},
                 scenarios={"supervisor": sup, "worker": wrk})

    rc = main(["loop", "--repo", str(repo), "--cycles", "6"])

    out = capsys.readouterr().out
    assert rc == 0, out
    assert "nothing eligible" in out and out.count("cycle ") <= 6
    plan = (repo / "docs/fix_plan.md").read_text()
    assert plan.count("- Status: done") == 2
    for n in ("alpha", "beta"):
        focus = f"T-{n.upper()}-001"
        run = _runs(repo, focus)[-1]
        assert run["agent"]["status"] == "ok" and run["harness"]["item_status"] == "done"
        assert f"src/{n}.py" in run["agent"]["committed"]
        assert harness.git(repo, "log", "-1", "--format=%s", "--", f"src/{n}.py").startswith(f"RALPH: {focus}")
        assert harness.git(repo, "show", f"HEAD:src/{n}.py") == _code(n).strip()
    assert harness.git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    status = _status(repo, capsys)
    assert status["spend"]["total"] == {"cost_usd": 0.06, "input_tokens": 600, "output_tokens": 60}
    assert status["spend"]["per_focus"]["T-ALPHA-001"]["cost_usd"] == 0.03
    assert status["spend"]["loop"]["cost_usd"] == pytest.approx(0.06)
    assert (tmp_path / "notified.txt").read_text().splitlines() == ["done T-ALPHA-001", "done T-BETA-001"]
    prompt = next((repo / "plans/active/T-BETA-001/reports").glob("*/agent/worker-prompt.md")).read_text()
    assert "## [T-BETA-001] beta feature" in prompt and "- [ ] A1: write the code and its test" in prompt


def test_rate_limited_supervisor_waits_and_the_worker_turn_is_ok_and_committed(tmp_path: Path, harness) -> None:
    focus = "T-RATE-001"
    items = {focus: (harness.item(focus, "rate limited"), _plan(harness, focus, "the tests pass"))}
    sup = {"rate_limit": 2, "input_md": "valid", "check": "python -m pytest -q tests/test_gamma.py"}
    wrk = {"write": {"src/gamma.py": _code("gamma"), "tests/test_gamma.py": _test_file("gamma")}, "tick": ["A1"]}
    repo = _repo(tmp_path, harness, items, {}, scenarios={"supervisor": sup, "worker": wrk})

    result = run_loop(_context(repo), cycles=3)

    assert [c.status for c in result.cycles] == ["done", "idle"], result
    ledger = (repo / "galph_memory.md").read_text()
    assert ledger.count("Action type: Transient wait") == 2 and "try again in 2 seconds" in ledger
    assert "blocked" not in (repo / "docs/fix_plan.md").read_text()
    [run] = _runs(repo, focus)
    assert run["agent"]["status"] == "ok" and run["status"] == "ok"
    assert run["agent"]["verdict"]["newly_passing"] == ["1"] and run["agent"]["verdict"]["newly_ticked"] == ["A1"]
    assert "src/gamma.py" in harness.git(repo, "ls-files")
    assert not any("blocked" in s for s in harness.subjects(repo))


@pytest.mark.parametrize(("worker", "status"), [({"exit": 1, "error": "fatal: the model refused"}, "agent_error"),
                                                ({}, "no_op")])
def test_circuit_breaker_stops_the_loop_with_exit_4(tmp_path: Path, harness, capsys, worker, status) -> None:
    focus = "T-STUCK-001"
    items = {focus: (harness.item(focus, "stuck"), _plan(harness, focus, "never passes — check: `false`"))}
    repo = _repo(tmp_path, harness, items, {"dwell_limit": 10}, scenarios={"worker": worker})

    rc = main(["loop", "--repo", str(repo), "--cycles", "6"])

    out = capsys.readouterr().out
    assert rc == 4, out
    assert "loop stopped: breaker" in out and out.count("cycle ") == 3
    assert [r["agent"]["status"] for r in _runs(repo, focus)] == [status] * 3
    assert "loop stopped: breaker" in (repo / "galph_memory.md").read_text()
    assert (tmp_path / "notified.txt").read_text().splitlines() == [f"breaker {focus}"]


def test_budget_stops_the_loop_after_three_turns(tmp_path: Path, harness) -> None:
    focus = "T-SPEND-001"
    plan = harness.plan(focus, [("Work", [("one", "true"), ("two", "true")])], ["never passes — check: `false`"])
    items = {focus: (harness.item(focus, "spending"), plan)}
    wrk = {"turns": [{"write": {"src/n.txt": f"turn {i}\n"}, "usage": {"cost_usd": 0.02, "input_tokens": 10,
                                                                         "output_tokens": 5}} for i in range(6)]}
    repo = _repo(tmp_path, harness, items, {"dwell_limit": 10, "budgets": {"max_usd": 0.05}},
                 scenarios={"worker": wrk})

    result = run_loop(_context(repo), cycles=6)

    assert result.stop_reason == "budget" and len(result.cycles) == 3
    assert result.spend["cost_usd"] == pytest.approx(0.06)
    assert [r["agent"]["status"] for r in _runs(repo, focus)] == ["ok"] * 3
    assert "budget" in (tmp_path / "notified.txt").read_text()


def test_secret_and_large_file_are_not_committed_and_the_turn_needs_review(tmp_path: Path, harness) -> None:
    focus = "T-RISKY-001"
    items = {focus: (harness.item(focus, "risky"), _plan(harness, focus, "never passes — check: `false`"))}
    wrk = {"write": {"src/fine.py": _code("fine")}, "secret": "config.env",
           "big_file": {"path": "data/weights.bin", "mb": 50}}
    repo = _repo(tmp_path, harness, items, {}, scenarios={"worker": wrk})

    [outcome] = run_loop(_context(repo), cycles=1).cycles

    [run] = _runs(repo, focus)
    assert run["agent"]["status"] == "needs_review"
    refused = {r["path"]: r["reason"] for r in run["agent"]["refused"]}
    assert refused == {"config.env": "secret", "data/weights.bin": "oversize"}
    tracked = harness.git(repo, "ls-files").splitlines()
    assert "src/fine.py" in tracked and "config.env" not in tracked and "data/weights.bin" not in tracked
    assert (repo / "config.env").exists() and (repo / "data/weights.bin").stat().st_size == 50 * 1024 * 1024
    ledger = harness.git(repo, "show", "HEAD:galph_memory.md")
    assert "not committed (needs review)" in ledger and "`data/weights.bin`: oversize" in ledger
    assert outcome.worker_commit is not None


def _bad_config(tmp_path: Path, harness, command_extra: dict, files: dict[str, str] | None = None) -> Path:
    focus = "T-CONF-001"
    items = {focus: (harness.item(focus, "conf"), _plan(harness, focus, "never passes — check: `false`"))}
    repo = _repo(tmp_path, harness, items, {}, scenarios={"worker": {}})
    for rel, text in (files or {}).items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    doc = yaml.safe_load((repo / "orchestrator.yaml").read_text())
    doc["commands"]["llm-worker"].update(command_extra)
    (repo / "orchestrator.yaml").write_text(yaml.safe_dump(doc))
    return repo


@pytest.mark.parametrize(("extra", "files", "expected"), [
    ({"usage": "gpt-json"}, None, "commands.llm-worker.usage: unknown kind 'gpt-json'"),
    ({"transient": ["slow (down"]}, None, "commands.llm-worker.transient[0]"),
    ({"prompt": "prompts/missing.md.j2"}, None, "prompts/missing.md.j2: prompt template not found"),
    ({"prompt": "prompts/w.md.j2"}, {"prompts/w.md.j2": "Focus: {{ focus }}\n\n{{ budget_left }}\n"},
     "prompts/w.md.j2:3: unknown variable 'budget_left'"),
])
def test_bad_configuration_is_an_error_before_any_turn(tmp_path: Path, harness, capsys, extra, files,
                                                       expected) -> None:
    repo = _bad_config(tmp_path, harness, extra, files)
    head = harness.git(repo, "rev-parse", "HEAD")

    rc = main(["loop", "--repo", str(repo), "--cycles", "1"])

    err = capsys.readouterr().err
    assert rc == 2 and expected in err, err
    assert harness.git(repo, "rev-parse", "HEAD") == head and not (repo / ".orchestrator/state.json").exists()


def test_the_config_loader_accepts_every_turn_key() -> None:
    assert set(TURN_TOP_KEYS) == set(NEW_TOP_KEYS)
    from orchestrator.config import AgentCommand, Budgets

    assert set(NEW_BUDGET_KEYS) <= set(Budgets.__dataclass_fields__)
    assert set(NEW_COMMAND_KEYS) <= set(AgentCommand.__dataclass_fields__)


def test_heartbeat_logs_elapsed_log_bytes_and_spend(tmp_path: Path, caplog) -> None:
    log = tmp_path / "t.log"
    log.write_text("x" * 42)
    with caplog.at_level(logging.INFO, logger="orchestrator.execution.heartbeat"):
        with heartbeat("[worker llm]", log, every_s=0.05, extra=lambda: "spend so far $0.0100, 5 tokens"):
            import time

            time.sleep(0.2)
    beats = [r.getMessage() for r in caplog.records]
    assert beats and all(m.startswith("[worker llm]: running for") for m in beats)
    assert "log 42 bytes, spend so far $0.0100" in beats[0]


def test_agent_output_lines_are_echoed_with_a_role_prefix_unless_quiet(tmp_path: Path, harness) -> None:
    focus = "T-ECHO-001"
    items = {focus: (harness.item(focus, "echo"), _plan(harness, focus, "never passes — check: `false`"))}
    repo = _repo(tmp_path, harness, items, {}, scenarios={"worker": {"write": {"src/e.py": "E = 1\n"}}})
    outputs = []
    for quiet in ([], ["--quiet"]):
        proc = subprocess.run([PY, "-m", "orchestrator", "loop", "--repo", str(repo), "--cycles", "1", *quiet],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode in (0, 1), proc.stderr
        outputs.append(proc.stderr)
    assert "[worker llm-worker] fake_llm: read a prompt" in outputs[0]
    assert "[worker llm-worker]" not in outputs[1] and "running worker agent llm-worker" in outputs[1]


@pytest.mark.parametrize(("section", "names"), [
    ("## Claude Code", ("claude-supervisor", "claude-worker")),
    ("## Codex", ("codex-supervisor", "codex-worker")),
    ("## mini-swe-agent", ("builtin", "mini-worker")),
])
def test_documented_agent_configs_are_valid(tmp_path: Path, section: str, names: tuple[str, str]) -> None:
    root = Path(__file__).parents[3]
    assert "docs/coding_agents.md" in (root / "README.md").read_text(encoding="utf-8")
    doc = (root / "docs/coding_agents.md").read_text(encoding="utf-8")
    block = doc.split(f"\n{section}\n", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "orchestrator.yaml").write_text(block, encoding="utf-8")
    config = load_config(tmp_path / "orchestrator.yaml")
    sup, wrk = make_agents(config, tmp_path)
    turns = load_turns(config)
    assert (sup.name, wrk.name) == names
    assert wrk.spec.env and wrk.spec.usage != "none"
    if names[1] == "claude-worker":
        assert turns.budget.max_usd == 5.0
        assert wrk.spec.argv[wrk.spec.argv.index("--output-format") + 1] == "json"
    if names[1] == "mini-worker":
        assert wrk.spec.env["MSWEA_CONFIGURED"] == "true" and wrk.spec.usage == "mini-swe-agent"
        assert "{report_dir}/agent/mini.traj.json" in wrk.spec.argv


def test_status_shows_the_running_turn_and_a_transient_wait(tmp_path: Path, harness, capsys) -> None:
    focus = "T-LIVE-001"
    items = {focus: (harness.item(focus, "live"), _plan(harness, focus, "never passes — check: `false`"))}
    repo = _repo(tmp_path, harness, items, {}, scenarios={"worker": {}})
    from orchestrator.cycle.meter import Meter
    from orchestrator.records.state import hold_lock

    meter = Meter(_context(repo))
    meter.live(turn={"role": "worker", "focus": focus, "report_dir": "r", "started_at": "2020-01-01T00:00:00Z"},
               waiting={"role": "supervisor", "until": "2020-01-01T00:05:00Z", "excerpt": "try again in 2 seconds"})
    assert _status(repo, capsys)["running_turn"] is None  # no loop holds the lock: a stale live.json
    with hold_lock(repo):
        status = _status(repo, capsys)
        assert main(["status", "--repo", str(repo)]) == 0
        text = capsys.readouterr().out
    assert status["running_turn"]["role"] == "worker" and status["running_turn"]["elapsed_s"] > 1e8
    assert status["running_turn"]["spend_so_far"] == {"cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0}
    assert f"running: worker turn on {focus}" in text
    assert "waiting until 2020-01-01T00:05:00Z (supervisor agent: try again in 2 seconds)" in text


def test_rate_limited_worker_retries_the_same_turn(tmp_path: Path, harness) -> None:
    focus = "T-WAIT-001"
    items = {focus: (harness.item(focus, "wait"), _plan(harness, focus, "never passes — check: `false`"))}
    wrk = {"rate_limit": 1, "write": {"src/w.py": "W = 1\n"}, "usage": {"cost_usd": 0.01}}
    repo = _repo(tmp_path, harness, items, {}, scenarios={"worker": wrk})

    result = run_loop(_context(repo), cycles=1)

    [run] = _runs(repo, focus)
    assert run["agent"]["status"] == "ok" and "src/w.py" in run["agent"]["committed"]
    assert result.spend["cost_usd"] == pytest.approx(0.01) and not result.stop_reason
    ledger = harness.git(repo, "show", "HEAD:galph_memory.md")
    assert ledger.count("Action type: Transient wait") == 1 and "worker agent waiting until" in ledger
    assert (tmp_path / "scenarios/worker.json.state").read_text() == "2"  # the same turn, run twice


def test_an_invalid_fix_plan_from_the_supervisor_agent_is_kept_and_the_previous_restored(tmp_path: Path,
                                                                                        harness) -> None:
    focus = "T-EDIT-001"
    items = {focus: (harness.item(focus, "edit"), _plan(harness, focus, "never passes — check: `false`"))}
    sup = {"write": {"docs/fix_plan.md": "garbage\n"}, "input_md": "valid"}
    repo = _repo(tmp_path, harness, items, {}, scenarios={"supervisor": sup})
    seeded = (repo / "docs/fix_plan.md").read_text()

    outcome = run_loop(_context(repo), cycles=1).cycles[0]

    assert outcome.status != "blocked", outcome
    kept = repo / outcome.report_dir / "agent" / "invalid_fix_plan.md"
    assert kept.read_text() == "garbage\n"
    assert harness.git(repo, "show", f"{outcome.supervisor_commit}:docs/fix_plan.md").startswith(seeded.rstrip()[:40])
    assert "- Status: in_progress" in harness.git(repo, "show", f"{outcome.supervisor_commit}:docs/fix_plan.md")


def test_llm_supervisor_may_choose_another_eligible_item(tmp_path: Path, harness) -> None:
    items = {f"T-{n}-001": (harness.item(f"T-{n}-001", n.lower(), priority=p),
                            _plan(harness, f"T-{n}-001", "the tests pass"))
             for n, p in (("FIRST", "P1"), ("SECOND", "P2"))}
    sup = {"input_md": "valid", "choose_focus": "T-SECOND-001", "check": "python -m pytest -q tests/test_second.py"}
    wrk = {"write": {"src/second.py": _code("second"), "tests/test_second.py": _test_file("second")}, "tick": ["A1"]}
    repo = _repo(tmp_path, harness, items, {}, scenarios={"supervisor": sup, "worker": wrk})

    [outcome] = run_loop(_context(repo), cycles=1).cycles

    assert outcome.focus == "T-SECOND-001" and outcome.status == "done", outcome
    assert outcome.report_dir.startswith("plans/active/T-SECOND-001/reports/")
    assert (repo / outcome.report_dir / "agent" / "supervisor-prompt.md").exists()
    assert not (repo / "plans/active/T-FIRST-001/reports").exists()
    assert harness.subjects(repo)[1].startswith("SUPERVISOR: T-SECOND-001 —")
    assert "chosen by the supervisor agent instead of T-FIRST-001" in harness.git(repo, "show", "HEAD:galph_memory.md")


def test_a_worker_that_breaks_the_fix_plan_gets_it_restored_and_invalid_output(tmp_path: Path, harness) -> None:
    focus = "T-BREAK-001"
    items = {focus: (harness.item(focus, "break"), _plan(harness, focus, "never passes — check: `false`"))}
    repo = _repo(tmp_path, harness, items, {}, scenarios={"worker": {"write": {"docs/fix_plan.md": "garbage\n"}}})

    [outcome] = run_loop(_context(repo), cycles=1).cycles

    [run] = _runs(repo, focus)
    assert run["agent"]["status"] == "invalid_output" and "docs/fix_plan.md" in run["agent"]["plan_problems"][0]
    assert (repo / outcome.report_dir / "agent" / "invalid_fix_plan.md").read_text() == "garbage\n"
    assert f"## [{focus}] break" in harness.git(repo, "show", "HEAD:docs/fix_plan.md")


def _transient_meter(tmp_path: Path, harness, **kw):
    from orchestrator.cycle.meter import Meter

    focus = "T-METER-001"
    items = {focus: (harness.item(focus, "meter"), _plan(harness, focus, "never passes — check: `false`"))}
    repo = _repo(tmp_path, harness, items, {}, scenarios={"worker": {}})
    return repo, Meter(_context(repo), **kw)


def _rate_limited(now):
    from datetime import timedelta

    from orchestrator.agents.base import AgentResult
    from orchestrator.turns.transient import TransientDecision

    return AgentResult("transient", "limited", transient=TransientDecision(True, "claude-usage-limit",
                                                                            now + timedelta(seconds=60), "resets 4pm"))


def test_a_stopped_transient_wait_is_an_interrupt(tmp_path: Path, harness) -> None:
    repo, meter = _transient_meter(tmp_path, harness, sleep_until=lambda until: False)  # as SIGINT during the wait
    calls = []
    with pytest.raises(KeyboardInterrupt):
        meter.call("worker", "T-METER-001", "r", lambda: calls.append(1) or _rate_limited(meter.ctx.clock()))
    assert calls == [1] and meter.turns == 0 and not meter.breakers  # neither counted nor fed to the breaker
    live = json.loads((repo / ".orchestrator/live.json").read_text())
    assert live["turn"] is None


def test_a_transient_wait_past_the_wall_budget_stops_the_loop(tmp_path: Path, harness) -> None:
    from orchestrator.cycle.meter import LoopStop

    repo, meter = _transient_meter(tmp_path, harness)
    meter.deadline = meter.ctx.clock()  # no wall time left
    with pytest.raises(LoopStop) as stop:
        meter.call("supervisor", "T-METER-001", "r", lambda: _rate_limited(meter.ctx.clock()))
    assert stop.value.reason == "wall" and "resets 4pm" in stop.value.message
