"""What a real third-party agent CLI needs from the harness (issue 24): an environment of its
own (no wrapping, no colour, no harness venv, ``commands.<name>.env``), transient messages as
real CLIs print them, the breaker on the last allowed turn, a quiet ``--quiet``, prompt text,
Attempts History naming commits by their role, and spend from a trajectory file.

Real git repositories and real subprocesses; the agents are small Python scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.main import main
from orchestrator.config import ConfigError, load_config
from orchestrator.cycle.loop import make_agents
from orchestrator.execution.steps import harness_bin
from orchestrator.turns.transient import TransientClassifier

PY = sys.executable
FAKE = Path(__file__).parents[2] / "fixtures" / "agents" / "fake_llm.py"
ROOT = Path(__file__).parents[3]
NOW = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)

#: prints the variables an agent's output depends on, as one JSON line
ENV_PROBE = ("import json, os; print('ENV ' + json.dumps({k: os.environ.get(k) for k in "
             "('PATH', 'PYTHONPATH', 'VIRTUAL_ENV', 'COLUMNS', 'NO_COLOR', 'TERM', 'FORCE_COLOR', 'MY_HOME', "
             "'MY_REPORTS', 'ARTIFACTS')}))")


def _plan(harness, item: str, criterion: str = "never passes — check: `false`") -> str:
    return harness.plan(item, [("Implement", [("write the code", "true")])], [criterion])


def _repo(tmp_path: Path, harness, focus: str, worker: dict, config: dict | None = None) -> Path:
    items = {focus: (harness.item(focus, "a feature"), _plan(harness, focus))}
    doc = {"git_sync": False, "check_timeout_s": 60, "step_timeout_s": 60, "agents": {"worker": "agent"},
           "commands": {"agent": {"role": "worker", "timeout_s": 60, **worker}}, **(config or {})}
    return harness.make_repo(tmp_path / "repo", items, identity=True,
                             extra={"orchestrator.yaml": yaml.safe_dump(doc, sort_keys=False)})


def _runs(repo: Path, focus: str) -> list[dict]:
    paths = sorted((repo / "plans/active" / focus / "reports").glob("*/run.json"), key=lambda p: p.parent.name)
    return [json.loads(p.read_text()) for p in paths]


def _probe(repo: Path, focus: str) -> dict:
    transcript = next((repo / "plans/active" / focus / "reports").glob("*/agent/worker-transcript.log")).read_text()
    line = next(x for x in transcript.splitlines() if x.startswith("ENV "))
    return json.loads(line[4:])


# --------------------------------------------------------------------------- 1. transient spellings

#: litellm's RateLimitError as mini-swe-agent prints it through Rich when not on a terminal:
#: wrapped at 80 columns inside a traceback panel
WRAPPED_RICH = (
    "│ /srv/venv/lib/python3.11/site-packages/litellm/main.py:1203 in completion              │\n"
    "╰──────────────────────────────────────────────────────────────────────────────╯\n"
    "RateLimitError: litellm.RateLimitError: OpenAIException - Rate\n"
    "limit reached for requests\n")


@pytest.mark.parametrize("output", [
    WRAPPED_RICH.replace("RateLimitError: litellm.RateLimitError", "Exception"),  # only "Rate\nlimit reached"
    "│ openai.APIStatusError: Error code: 429 - {'error': {'message': 'Rate │\n│ limit reached'}} │",
    "Traceback (most recent call last):\nlitellm.exceptions.RateLimitError: boom\n",
    "openai.APIStatusError: Error code: 429\n",
    '{"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}\n',
    '{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}\n',
    "HTTP/1.1 503 Service Unavailable\nRetry-After: 3\n",
])
def test_real_cli_spellings_of_a_rate_limit_are_transient(output: str) -> None:
    decision = TransientClassifier().classify(1, output, NOW)
    assert decision.transient, output
    assert decision.excerpt


def test_retry_after_header_gives_the_wait() -> None:
    decision = TransientClassifier().classify(1, "HTTP/1.1 429\n'retry-after': '7'\nRetry-After: 3\n", NOW)
    assert decision.transient and decision.wait_until is not None
    assert (decision.wait_until - NOW).total_seconds() == pytest.approx(3)


def test_a_reset_time_split_by_wrapping_is_read() -> None:
    text = "RateLimitError: OpenAIException - Rate limit reached. Please try again\nin 4s. Visit\n"
    decision = TransientClassifier().classify(1, text, NOW)
    assert decision.transient and (decision.wait_until - NOW).total_seconds() == pytest.approx(4)


# --------------------------------------------------------------------------- 1, 3, 4. the agent's environment

def test_agent_env_is_plain_text_the_users_and_the_configured_one(tmp_path: Path, harness, monkeypatch) -> None:
    focus = "T-ENV-001"
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("PATH", f"{harness_bin()}:/usr/local/bin:/usr/bin:/bin")  # as if the venv were activated
    repo = _repo(tmp_path, harness, focus, {
        "argv": [PY, "-c", ENV_PROBE, "{prompt}"],
        "env": {"MY_HOME": "{repo}/home", "MY_REPORTS": "{report_dir}/x", "TERM": "dumb"}})

    assert main(["loop", "--repo", str(repo), "--cycles", "1"]) == 1

    env = _probe(repo, focus)
    assert env["COLUMNS"] is not None and int(env["COLUMNS"]) >= 200
    assert env["NO_COLOR"] == "1" and env["TERM"] == "dumb" and env["FORCE_COLOR"] is None
    [run] = _runs(repo, focus)
    assert env["MY_HOME"] == f"{repo}/home" and env["MY_REPORTS"] == f"{repo}/{run['report_dir']}/x"
    # no harness interpreter: its bin dir is not on PATH, the repo is not on PYTHONPATH
    assert harness_bin() not in env["PATH"].split(":"), env["PATH"]
    assert str(repo) not in (env["PYTHONPATH"] or ""), env["PYTHONPATH"]
    assert env["PATH"].split(":")[0] == "/usr/local/bin"
    assert env["ARTIFACTS"] == run["report_dir"]


def test_configured_path_wins_over_the_cleaned_one(tmp_path: Path, harness) -> None:
    focus = "T-ENVPATH-001"
    repo = _repo(tmp_path, harness, focus, {"argv": [PY, "-c", ENV_PROBE],
                                            "env": {"PATH": f"{harness_bin()}:/usr/bin:/bin"}})
    main(["loop", "--repo", str(repo), "--cycles", "1"])
    assert _probe(repo, focus)["PATH"].split(":")[0] == harness_bin()


@pytest.mark.parametrize(("env", "message"), [
    (["A=1"], "commands.agent.env: expected a mapping"),
    ({"1BAD": "x"}, "commands.agent.env: '1BAD' is not a variable name"),
    ({"GOOD": "{nope}/x"}, "commands.agent.env.GOOD: unknown placeholder {nope}"),
    ({"GOOD": ["x"]}, "commands.agent.env.GOOD: expected a string"),
])
def test_bad_command_env_is_a_config_error_naming_the_key(tmp_path: Path, env, message: str) -> None:
    doc = {"agents": {"worker": "agent"},
           "commands": {"agent": {"role": "worker", "argv": ["true"], "env": env}}}
    (tmp_path / "orchestrator.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        make_agents(load_config(tmp_path / "orchestrator.yaml"), tmp_path)


def test_yaml_scalars_in_env_become_strings(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.yaml").write_text(
        "agents: {worker: agent}\ncommands:\n  agent: {role: worker, argv: [x], env: {MSWEA_CONFIGURED: true, N: 3}}\n",
        encoding="utf-8")
    config = load_config(tmp_path / "orchestrator.yaml")
    assert dict(config.commands["agent"].env) == {"MSWEA_CONFIGURED": "true", "N": "3"}


# --------------------------------------------------------------------------- 2. breaker on the last turn

def test_breaker_reached_on_the_last_allowed_turn_stops_with_exit_4(tmp_path: Path, harness, capsys) -> None:
    focus = "T-LAST-001"
    repo = _repo(tmp_path, harness, focus, {"argv": [PY, str(FAKE), "--prompt-file", "{prompt_file}"]},
                 {"dwell_limit": 10, "budgets": {"max_cycles": 3}, "breaker": {"no_op": 3}})

    rc = main(["loop", "--repo", str(repo)])

    out = capsys.readouterr().out
    assert rc == 4, out
    assert out.count("cycle ") == 3 and "loop stopped: breaker" in out
    assert "loop stopped: breaker" in (repo / "galph_memory.md").read_text()


# --------------------------------------------------------------------------- 5. --quiet

def test_quiet_loop_logs_the_command_with_the_prompt_elided(tmp_path: Path, harness) -> None:
    focus = "T-QUIET-001"
    repo = _repo(tmp_path, harness, focus, {"argv": [PY, str(FAKE), "-p", "{prompt}"]},
                 {"dwell_limit": 10, "breaker": {"no_op": 0}})
    proc = subprocess.run([PY, "-m", "orchestrator", "loop", "--repo", str(repo), "--cycles", "3", "--quiet"],
                          capture_output=True, text=True, timeout=300, env={**_clean_env(), "FAKE_LLM_SCENARIO": ""})
    console = proc.stdout + proc.stderr
    assert proc.returncode == 1, console
    prompt = next((repo / "plans/active" / focus / "reports").glob("*/agent/worker-prompt.md"))
    assert "Report directory:" in prompt.read_text()
    assert "Report directory:" not in console and "Attempts History" not in console
    assert console.count("<prompt: ") == 3 and f"chars, {repo}/plans/active/{focus}/reports/" in console
    assert len(console.splitlines()) < 60, console


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "FAKE_LLM_SCENARIO"}


# --------------------------------------------------------------------------- 6. prompt text and history

def test_fix_plan_item_in_the_prompt_has_no_blank_lines_between_bullets(tmp_path: Path, harness) -> None:
    focus = "T-PROMPT-001"
    repo = _repo(tmp_path, harness, focus, {"argv": ["true"]})
    main(["loop", "--repo", str(repo), "--cycles", "1"])
    prompt = next((repo / "plans/active" / focus / "reports").glob("*/agent/worker-prompt.md")).read_text()
    assert "- Status: in_progress\n- Priority: P1\n- Depends on: none\n" in prompt, prompt


def test_attempts_history_names_each_commit_by_its_own_role(tmp_path: Path, harness) -> None:
    from orchestrator.documents import fix_plan

    focus = "T-HIST-001"
    repo = _repo(tmp_path, harness, focus, {"argv": ["true"]}, {"dwell_limit": 10, "breaker": {"no_op": 0}})
    main(["loop", "--repo", str(repo), "--cycles", "2"])
    attempts = fix_plan.load(repo / "docs/fix_plan.md").item(focus).attempts
    assert len(attempts) == 2
    for a in attempts:
        assert a.role == "RALPH"
        if a.sha.lower() != "none":
            subject = harness.git(repo, "log", "-1", "--format=%s", a.sha)
            assert subject.startswith("RALPH:"), f"{a.raw!r} names {subject!r}"
        assert "SUPERVISOR " in a.text  # the handoff it worked on, named as what it is


def test_harness_report_files_are_committed_despite_commit_exclude_as_documented(tmp_path: Path, harness) -> None:
    focus = "T-EXCL-001"
    writer = "import pathlib; pathlib.Path('notes.log').write_text('mine'); pathlib.Path('a.py').write_text('A=1')"
    repo = _repo(tmp_path, harness, focus, {"argv": [PY, "-c", writer]}, {"commit": {"exclude": ["**/*.log"]}})
    main(["loop", "--repo", str(repo), "--cycles", "1"])
    tracked = harness.git(repo, "ls-files").splitlines()
    assert "a.py" in tracked and "notes.log" not in tracked
    assert any(p.endswith("agent/worker-transcript.log") for p in tracked)
    docs = (ROOT / "docs/coding_agents.md").read_text(encoding="utf-8")
    assert "`commit.exclude` applies to what the agent wrote" in docs
    assert "harness's own report files" in (ROOT / "orchestrator.yaml").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- 7. spend from a file

def _trajectory(costs: list[float], tokens: list[tuple[int, int]]) -> dict:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    for cost, (prompt, completion) in zip(costs, tokens, strict=True):
        messages.append({"role": "assistant", "content": "x", "extra": {
            "cost": cost, "response": {"usage": {"prompt_tokens": prompt, "completion_tokens": completion}}}})
        messages.append({"role": "tool", "content": "ok"})
    return {"info": {"model_stats": {"instance_cost": sum(costs), "api_calls": len(costs)}}, "messages": messages,
            "trajectory_format": "mini-swe-agent-1.1"}


def test_mini_swe_agent_preset_reads_cost_and_tokens_from_the_trajectory(tmp_path: Path) -> None:
    traj = tmp_path / "agent" / "mini.traj.json"
    traj.parent.mkdir()
    traj.write_text(json.dumps(_trajectory([0.25, 0.5], [(100, 10), (300, 20)])))
    from orchestrator.turns.usage_spec import UsageSpec, read_usage

    spec = UsageSpec.from_config("mini-swe-agent", "commands.mini.usage")
    parsed = read_usage(spec, "", {"report_dir": str(tmp_path), "repo": str(tmp_path)})
    assert parsed.usage is not None, parsed.reason
    assert parsed.usage.to_dict() == {"cost_usd": 0.75, "input_tokens": 400, "output_tokens": 30}


def test_general_jsonl_usage_sums_field_paths_over_stdout_lines() -> None:
    from orchestrator.turns.usage_spec import UsageSpec, read_usage

    spec = UsageSpec.from_config({"format": "jsonl", "cost": "result.cost", "input_tokens": "result.tokens.in",
                                  "output_tokens": "result.tokens.out"}, "commands.x.usage")
    out = 'hello\n{"result": {"cost": 0.1, "tokens": {"in": 5, "out": 1}}}\n{"result": {"cost": 0.2}}\n'
    parsed = read_usage(spec, out, {})
    assert parsed.usage.to_dict() == {"cost_usd": 0.3, "input_tokens": 5, "output_tokens": 1}


@pytest.mark.parametrize(("raw", "message"), [
    ("mini", "unknown kind 'mini'"),
    ({"format": "xml", "cost": "a"}, r"usage.format: expected json or jsonl"),
    ({"format": "json"}, "usage: give at least one of cost, input_tokens, output_tokens"),
    ({"format": "json", "cost": "a..b"}, r"usage.cost: bad field path 'a..b'"),
    ({"format": "json", "cost": "a", "file": "{nope}/t.json"}, r"usage.file: unknown placeholder \{nope\}"),
    ({"preset": "mini-swe-agent", "colour": 1}, r"usage: unknown key\(s\) \['colour'\]"),
])
def test_bad_usage_specs_name_the_key(raw, message: str) -> None:
    from orchestrator.turns.errors import TurnConfigError
    from orchestrator.turns.usage_spec import UsageSpec

    with pytest.raises(TurnConfigError, match=message):
        UsageSpec.from_config(raw, "commands.x.usage")


def test_spend_from_a_trajectory_file_reaches_run_json_status_and_the_budget(tmp_path: Path, harness,
                                                                             capsys) -> None:
    focus = "T-TRAJ-001"
    writer = ("import json, pathlib, sys; p = pathlib.Path(sys.argv[1]); p.parent.mkdir(parents=True, exist_ok=True);"
              f" p.write_text(json.dumps({_trajectory([0.3, 0.3], [(1000, 50), (2000, 70)])!r}))")
    repo = _repo(tmp_path, harness, focus, {
        "argv": [PY, "-c", writer, "{report_dir}/agent/mini.traj.json"], "usage": "mini-swe-agent"},
        {"dwell_limit": 10, "breaker": {"no_op": 0}, "budgets": {"max_usd": 1.0, "max_cycles": 5}})

    rc = main(["loop", "--repo", str(repo)])

    out = capsys.readouterr().out
    assert rc == 4 and "loop stopped: budget" in out, out
    runs = _runs(repo, focus)
    assert len(runs) == 2
    assert runs[0]["agent"]["usage"] == {"cost_usd": 0.6, "input_tokens": 3000, "output_tokens": 120}
    assert main(["status", "--repo", str(repo), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["spend"]["total"] == {"cost_usd": 1.2, "input_tokens": 6000, "output_tokens": 240}
