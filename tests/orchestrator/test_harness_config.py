"""``orchestrator.yaml`` → ``HarnessConfig``: the repository's own file, bad files named by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import ConfigError, HarnessConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_repo_config_loads_and_documents_real_agent_clis() -> None:
    config = load_config(REPO_ROOT / "orchestrator.yaml")
    assert (config.supervisor, config.worker, config.dwell_limit) == ("builtin", "builtin", 3)
    assert config.main_job.focus == "STUDY-SYNTH-DOSE-COMPARISON-001" and config.main_job.phases_per_cycle == 0
    roles = {(c.argv[0], c.role) for c in config.commands.values()}
    assert {("claude", "supervisor"), ("claude", "worker"), ("codex", "worker")} <= roles
    assert all(any("{prompt" in a for a in c.argv) for c in config.commands.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dwell_limit: 0\n", "dwell_limit must be >= 1"),
        ("step_timeout: 5\n", "unknown key(s) ['step_timeout']"),
        ("agents:\n  supervisor: nobody\n", "'nobody' is neither 'builtin' nor a command"),
        ("budgets:\n  max_cycles: 0\n", "budgets.max_cycles must be >= 1"),
        ("commands:\n  x:\n    role: boss\n    argv: [a]\n", "role must be supervisor|worker"),
        ("agents: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_config_gives_builtin_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "none.yaml") == HarnessConfig()
