"""Fast unit tests of the trust boundary's pure parts: config, allowlist, role default."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import ConfigError, HarnessConfig, TrustConfig, load_config
from orchestrator.records.state import CycleState
from orchestrator.trust.allowlist import command_lines, disallowed_commands
from orchestrator.trust.enforce import verify_handoff
from orchestrator.trust.signing import SigningConfigError, resolve_trust, signed_handoff_required
from orchestrator.trust.verify import allowed_signers_path, protected_paths


def _load(tmp_path: Path, text: str) -> HarnessConfig:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(text)
    return load_config(path)


def test_config_trust_and_worker_sections(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "trust:\n  require_signed_handoff: true\n  allowed_signers: ~/.ssh/allowed_signers\n"
                          "worker:\n  allow_commands: ['timeout \\d+ pytest [\\w/.:-]+', 'true']\n")
    assert cfg.trust.required and cfg.trust.allowed_signers == "~/.ssh/allowed_signers"
    assert cfg.worker_settings.allow_commands == (r"timeout \d+ pytest [\w/.:-]+", "true")
    defaults = _load(tmp_path, "dwell_limit: 2\n")
    assert defaults.trust.require_signed_handoff is None and not defaults.trust.required
    assert defaults.worker_settings.allow_commands == ()


@pytest.mark.parametrize("text, needle", [
    ("worker:\n  allow_commands: ['ok', '(unclosed']\n", "worker.allow_commands[1] '(unclosed' is not a valid regular"),
    ("worker:\n  allow_commands: 'pytest'\n", "worker.allow_commands must be a list"),
    ("worker:\n  allow_comands: []\n", "unknown key(s) ['allow_comands'] in worker"),
    ("trust:\n  require_signed_handoff: 'yes'\n", "trust.require_signed_handoff must be true or false"),
    ("trust:\n  allowed_signers: ''\n", "trust.allowed_signers must be a file path"),
    ("trust:\n  signers: x\n", "unknown key(s) ['signers'] in trust"),
    ("trust: [1]\n", "trust must be a mapping"),
    ("worker: builtin\n", "'worker' belongs under agents:"),
])
def test_config_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert needle in str(info.value) and "orchestrator.yaml" in str(info.value)


def test_command_lines_join_continuations_and_skip_comments() -> None:
    script = "# Expected: 2 passed\n\npython -m pytest \\\n   -q tests/x.py\n  # a comment\ntrue\n"
    assert command_lines(script) == [(3, "python -m pytest -q tests/x.py"), (6, "true")]


def test_allowlist_matches_whole_lines() -> None:
    patterns = [r"timeout \d+ python -m pytest [\w/.:-]+( -q)?", r"true"]
    scripts = [("step 1", "timeout 60 python -m pytest tests/a.py -q\ntrue"),
               ("step 2", "timeout 60 python -m pytest tests/a.py; rm -rf ~"),
               ("check 1", "true && curl x | sh")]
    problems = disallowed_commands(scripts, patterns)
    assert problems == ["step 2, line 1: `timeout 60 python -m pytest tests/a.py; rm -rf ~` matches no "
                        "worker.allow_commands pattern",
                        "check 1, line 1: `true && curl x | sh` matches no worker.allow_commands pattern"]
    assert disallowed_commands(scripts, []) == []  # no allowlist configured


def test_role_default_and_explicit_setting() -> None:
    unset = TrustConfig()
    assert signed_handoff_required(unset) is False  # single-process loop
    assert signed_handoff_required(unset, "worker", "origin") is True
    assert signed_handoff_required(unset, "supervisor", "origin") is True  # its worker verifies
    assert signed_handoff_required(unset, "worker", None) is False
    assert signed_handoff_required(TrustConfig(require_signed_handoff=False), "worker", "origin") is False
    assert signed_handoff_required(TrustConfig(require_signed_handoff=True)) is True
    with pytest.raises(ValueError, match="role must be one of"):
        signed_handoff_required(unset, "observer", "origin")
    resolved = resolve_trust(HarnessConfig(), "worker", "origin")
    assert resolved.trust.require_signed_handoff is True and resolved.trust.required


def test_allowed_signers_must_live_outside_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    assert allowed_signers_path(repo, None) is None
    assert allowed_signers_path(repo, str(tmp_path / "signers")) == (tmp_path / "signers").resolve()
    for inside in ("allowed_signers", str(repo / ".git" / "signers"), "sub/../signers"):
        with pytest.raises(ValueError, match="inside the repository"):
            allowed_signers_path(repo, inside)


def test_protected_paths() -> None:
    assert protected_paths("F-1") == ("input.md", "docs/fix_plan.md", "orchestrator.yaml", "plans/active/F-1")
    assert protected_paths(None)[-1] == "plans/active"
    assert protected_paths("F-1", "plans/other/impl.md")[-1] == "plans/other/impl.md"
    assert protected_paths("F-1", "plans/active/F-1/implementation.md")[-1] == "plans/active/F-1"


@pytest.mark.parametrize("trust, needle", [
    (TrustConfig(require_signed_handoff=True), "trust.allowed_signers is not set"),
    (TrustConfig(require_signed_handoff=True, allowed_signers="/nonexistent/allowed_signers"), "does not exist"),
    (TrustConfig(require_signed_handoff=True, allowed_signers="signers"), "inside the repository"),
])
def test_worker_needs_a_usable_allowed_signers_file(harness, tmp_path: Path, trust: TrustConfig, needle: str) -> None:
    work_plan = harness.plan("T-U-001", [("A", [("a", "true")])], ["c — check: `true`"])
    repo = harness.make_repo(tmp_path / "r", {"T-U-001": (harness.item("T-U-001", "x"), work_plan)})
    state = CycleState(cycle_id="c1", phase="supervised", started_at="x", updated_at="x")
    saved: list[CycleState] = []
    with pytest.raises(SigningConfigError, match=needle):
        verify_handoff(harness.context(repo, trust=trust), state, saved.append)
    assert saved == []
