"""Orchestrator benchmarks; prints one JSON object.

Each measurement is a zero-argument function returning a dict that is merged into the output;
add new ones (e.g. ``cycle_overhead_s``) to :func:`measurements`. Targets are
reported, never asserted: ``ledger_parse_s_10mb`` < 1 s; ``cycle_overhead_s`` and
``external_cycle_s`` (a cycle whose worker is a no-op external agent CLI) < 2 s.

Usage: ``python benchmarks/bench_orchestrator.py [--only NAME ...]``
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.documents import ledger

LEDGER_BYTES = 10 * 1024 * 1024
REPEATS = 3


def _synthetic_entry(k: int, when: datetime) -> str:
    """One realistic supervisor entry (fields, free text with a fence, action state, state line)."""
    focus = f"FOCUS-{k % 37:03d}-001"
    entry = ledger.make_entry(
        when, f"{focus} — cycle {k}: planning and handoff",
        fields={"dwell": f"{k % 4} (loops on this focus since the last RALPH progress)",
                "Focus issue": f"{focus} — synthetic benchmark item {k}",
                "Action type": "Planning → Implementation handoff", "Mode": "Implementation",
                "Git sync": "`git pull --rebase` → Already up to date.",
                "Documents reviewed": "docs/fix_plan.md, galph_memory.md, docs/findings.md, "
                                      f"plans/active/{focus}/implementation.md"},
        body=("**Analysis:** the previous run left artifacts under the report directory; "
              "the selector below reproduces the failure.\n\n```bash\n"
              f"pytest tests/ptycho/test_translation.py -k case_{k} -q\n# Expected: 2 passed\n```\n\n"
              "- Observation: shapes (B, N, N, C) float32 agree after the fix\n"
              "  - nested detail kept verbatim"),
        action_state="ready_for_implementation",
        state=ledger.StateLine(focus=focus, state="ready_for_implementation", dwell=k % 4,
                               ralph_last_commit=f"{k * 2654435761 % 16**8:08x}",
                               artifacts=f"plans/active/{focus}/reports/{when:%Y-%m-%dT%H%M%SZ}/",
                               next_action=f"run step {k} and record the result"))
    return ledger.render_entry(entry)


def synthetic_ledger(target_bytes: int = LEDGER_BYTES) -> str:
    """A separated ledger of at least ``target_bytes`` whose file order is not time order."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    parts: list[str] = []
    size = k = 0
    while size < target_bytes:
        when = start + timedelta(minutes=(k * 7919) % 500_000)  # scrambled times
        chunk = ("\n---\n\n" if k else "") + _synthetic_entry(k, when)
        parts.append(chunk)
        size += len(chunk.encode())
        k += 1
    return "".join(parts)


def measure_ledger_parse() -> dict:
    """Best-of-N wall (and CPU) time to read + parse a synthetic 10 MB ledger from a temp dir."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "galph_memory.md"
        path.write_text(synthetic_ledger(), encoding="utf-8")
        times, cpu = [], []
        for _ in range(REPEATS):
            t0, c0 = time.perf_counter(), time.process_time()
            doc = ledger.load(path)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        ordered = ledger.entries_in_time_order(doc)
        order_s = time.perf_counter() - t0
        size = path.stat().st_size
    return {"ledger_parse_s_10mb": round(min(times), 4), "ledger_parse_s_10mb_runs": [round(t, 4) for t in times],
            "ledger_parse_cpu_s_10mb": round(min(cpu), 4),  # CPU time: stable on a shared machine
            "ledger_bytes": size, "ledger_entries": len(doc.entries), "ledger_time_order_s": round(order_s, 4),
            "ledger_first_entry": ordered[0].timestamp_text}


_CYCLE_PLAN = """# BENCH-CYCLE-001 — overhead plan

## Phase A: Trivial steps
- [ ] A1: first
```bash
true
```
- [ ] A2: second
```bash
true
```
- [ ] A3: third
```bash
true
```

## Exit Criteria
1. Nothing to check — check: `true`
"""


def _cycle_repo(root: Path) -> Path:
    """A one-item repository whose plan steps and exit criterion are all ``true``."""
    import subprocess

    files = {
        "docs/fix_plan.md": "# Fix Plan\n\n## [BENCH-CYCLE-001] Overhead\n- Status: pending\n- Priority: P1\n"
                            "- Depends on: none\n- Working plan: plans/active/BENCH-CYCLE-001/implementation.md\n"
                            "- Attempts History:\n",
        "plans/active/BENCH-CYCLE-001/implementation.md": _CYCLE_PLAN,
        "orchestrator.yaml": "git_sync: false\n",
        ".gitignore": ".orchestrator/\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], [*ident, "commit", "-qm", "seed"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return root


def measure_cycle_overhead() -> dict:
    """One full cycle (supervise → 3 steps ``true`` → 1 check → 2 commits), best of N, in-process
    after imports; ``cycle_overhead_excl_commands_s`` subtracts the steps' and checks' own run
    time. ``cycle_cli_cold_s``: the same cycle via ``python -m orchestrator loop --cycles 1``
    (interpreter start and imports included). Target: < 2 s."""
    import json as json_mod
    import os
    import subprocess

    from orchestrator.config import load_config
    from orchestrator.context import HarnessContext, identity_env
    from orchestrator.cycle.loop import make_agents, run_loop

    walls, excl = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(REPEATS):
            repo = _cycle_repo(Path(tmp) / f"r{i}")
            config = load_config(repo / "orchestrator.yaml")
            sup, wrk = make_agents(config)
            ctx = HarnessContext(repo, config, sup, wrk, git_env=identity_env(repo) or {
                "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "bench",
                "GIT_COMMITTER_EMAIL": "b@x"})
            t0 = time.perf_counter()
            [outcome] = run_loop(ctx, cycles=1).cycles
            wall = time.perf_counter() - t0
            if outcome.status != "done":
                raise RuntimeError(f"benchmark cycle did not finish: {outcome}")
            run = json_mod.loads((repo / outcome.report_dir / "run.json").read_text())
            commands = sum(s["duration_s"] for s in run["steps"])
            for check_log in (repo / outcome.report_dir / "logs").glob("check-*.log"):  # runner footer
                commands += sum(float(m) for m in re.findall(r"duration=([0-9.]+)s", check_log.read_text()))
            walls.append(wall)
            excl.append(wall - commands)
        repo = _cycle_repo(Path(tmp) / "cli")
        env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x",
               "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@x"}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "orchestrator", "loop", "--cycles", "1"], cwd=repo,
                              capture_output=True, text=True, env=env, timeout=120)
        cold = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"CLI cycle failed: {proc.stdout}{proc.stderr}")
    return {"cycle_overhead_s": round(min(walls), 3), "cycle_overhead_runs": [round(w, 3) for w in walls],
            "cycle_overhead_excl_commands_s": round(min(excl), 3), "cycle_cli_cold_s": round(cold, 3)}


FAKE_LLM = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "agents" / "fake_llm.py"


def measure_external_cycle() -> dict:
    """One cycle with the builtin supervisor and an external worker agent that does nothing
    (``fake_llm.py`` without a scenario: reads the rendered prompt, exits 0), best of N,
    in-process. The cycle renders the prompt, runs the criteria before and after the turn,
    judges the turn (``no_op``), applies the commit policy and commits.
    ``external_cycle_excl_commands_s`` subtracts the agent process and the checks. Target: < 2 s."""
    import json as json_mod

    import yaml

    from orchestrator.config import load_config
    from orchestrator.context import HarnessContext, identity_env
    from orchestrator.cycle.loop import load_turns, make_agents, run_loop

    walls, excl, agent_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(REPEATS):
            repo = _cycle_repo(Path(tmp) / f"x{i}")
            doc = {"git_sync": False, "agents": {"worker": "noop"}, "commands": {"noop": {
                "role": "worker", "argv": [sys.executable, str(FAKE_LLM), "--prompt-file", "{prompt_file}"],
                "usage": "claude-json"}}}
            (repo / "orchestrator.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
            config = load_config(repo / "orchestrator.yaml")
            sup, wrk = make_agents(config, repo)
            ctx = HarnessContext(repo, config, sup, wrk, turns=load_turns(config), git_env=identity_env(repo) or {
                "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "bench",
                "GIT_COMMITTER_EMAIL": "b@x"})
            t0 = time.perf_counter()
            [outcome] = run_loop(ctx, cycles=1).cycles
            wall = time.perf_counter() - t0
            report = repo / outcome.report_dir
            run = json_mod.loads((report / "run.json").read_text())
            if run["agent"]["status"] != "no_op":
                raise RuntimeError(f"benchmark agent turn was not a no-op: {run['agent']}")
            agent = json_mod.loads((report / "agent" / "worker.json").read_text())["command"]["duration_s"]
            commands = agent
            for check_log in report.rglob("check-*.log"):  # before and after the turn
                commands += sum(float(m) for m in re.findall(r"duration=([0-9.]+)s", check_log.read_text()))
            walls.append(wall)
            excl.append(wall - commands)
            agent_s.append(agent)
    return {"external_cycle_s": round(min(walls), 3), "external_cycle_runs": [round(w, 3) for w in walls],
            "external_cycle_excl_commands_s": round(min(excl), 3),
            "external_cycle_agent_process_s": round(min(agent_s), 3)}


def measurements() -> dict[str, Callable[[], dict]]:
    """Named measurements; each returns a dict merged into the printed JSON object."""
    return {"ledger_parse": measure_ledger_parse, "cycle_overhead": measure_cycle_overhead,
            "external_cycle": measure_external_cycle}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(measurements()), help="run only these measurements")
    args = parser.parse_args(argv)
    result: dict = {"python": platform.python_version(), "machine": platform.machine()}
    for name, fn in measurements().items():
        if args.only is None or name in args.only:
            result.update(fn())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
