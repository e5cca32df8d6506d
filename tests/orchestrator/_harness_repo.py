"""Builders for small real git repositories the loop tests run the harness on."""
from __future__ import annotations

import subprocess
from pathlib import Path

from orchestrator.agents import BuiltinSupervisor, BuiltinWorker
from orchestrator.config import HarnessConfig
from orchestrator.context import HarnessContext, identity_env

TINY_TEST = "def test_one():\n    assert 1 + 1 == 2\n\n\ndef test_two():\n    assert 'a' in 'abc'\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def item(item_id: str, title: str, status: str = "pending", priority: str = "P1", depends: str = "none") -> str:
    return (f"## [{item_id}] {title}\n- Status: {status}\n- Priority: {priority}\n- Depends on: {depends}\n"
            f"- Working plan: plans/active/{item_id}/implementation.md\n- Mapped tests: tests/test_tiny.py\n"
            "- Exit criteria: see the working plan\n- Attempts History:\n\n")


def plan(item_id: str, phases: list[tuple[str, list[tuple[str, str]]]], criteria: list[str]) -> str:
    """phases: [(title, [(item text, script), ...]), ...]; items get ids A1, A2, B1 …"""
    out = [f"# {item_id} — test plan\n"]
    for p_index, (title, items) in enumerate(phases):
        pid = chr(ord("A") + p_index)
        out.append(f"\n## Phase {pid}: {title}\n")
        for i, (text, script) in enumerate(items, 1):
            out.append(f"- [ ] {pid}{i}: {text}\n```bash\n{script}\n```\n")
    out.append("\n## Exit Criteria\n")
    out += [f"{i}. {c}\n" for i, c in enumerate(criteria, 1)]
    out.append("\n## Findings Applied\n- F-ONE-001\n")
    return "".join(out)


def make_repo(root: Path, items: dict[str, tuple[str, str]], *, identity: bool = False,
              extra: dict[str, str] | None = None) -> Path:
    """A repo with docs/fix_plan.md (concatenated item texts), one plan per item, findings,
    a tiny pytest file and one commit. ``items``: id -> (fix-plan item text, plan text)."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "docs/fix_plan.md": "# Fix Plan\n\n" + "".join(t for t, _ in items.values()),
        "docs/findings.md": "# Findings\n\n| ID | Date | Keywords | Synopsis | Evidence | Status |\n"
                            "| --- | --- | --- | --- | --- | --- |\n"
                            "| F-ONE-001 | 2026-11-23 | test | A finding the plan applies. | here | policy |\n",
        ".gitignore": ".orchestrator/\n__pycache__/\n",
        "tests/test_tiny.py": TINY_TEST,
        **{f"plans/active/{k}/implementation.md": p for k, (_, p) in items.items()},
        **(extra or {}),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    git(root, "init", "-q", "-b", "main")
    if identity:
        git(root, "config", "user.name", "Test User")
        git(root, "config", "user.email", "test@example.invalid")
    env_args = [] if identity else ["-c", "user.name=Seed", "-c", "user.email=seed@example.invalid"]
    git(root, "add", "-A")
    git(root, *env_args, "commit", "-q", "-m", "seed")
    return root


def context(repo: Path, **overrides) -> HarnessContext:
    config = HarnessConfig(git_sync=False, step_timeout_s=60, check_timeout_s=60).with_overrides(**overrides)
    return HarnessContext(repo, config, BuiltinSupervisor(), BuiltinWorker(), expected_branch="main",
                          git_env=identity_env(repo))


def subjects(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%s").splitlines()
