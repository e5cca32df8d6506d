"""Fixtures for the two-machine tests.

``sync_repos``: a bare remote on disk and clones of it (``setup``, ``clone``), the plans they
run (``two_item_plan``), real ``python -m orchestrator loop --role …`` processes (``start``)
and what to read back (``remote_subjects``, ``events``, ``wait_for``); built on the
``harness`` fixture's repository builders.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

#: Fast settings for tests: poll 0.2 s, heartbeat 0.5 s, lease 3 s. Signed handoffs (on by default
#: for ``loop --role``) are turned off explicitly here: these tests are about taking turns; the
#: signed variant is ``test_two_processes_with_signed_handoffs``.
SYNC_YAML = ("git_sync: true\nphases_per_cycle: 0\nstep_timeout_s: 60\ncheck_timeout_s: 60\n"
             "sync:\n  poll_s: 0.2\n  heartbeat_s: 0.5\n  lease_s: 3\n  max_wait_s: 120\n  max_offline_s: {offline}\n"
             "{trust}")
UNSIGNED = "trust:\n  require_signed_handoff: false\n"


class SyncRepos:
    """Builders and readers for the two-machine tests (see the module docstring)."""

    def __init__(self, harness) -> None:
        self.harness = harness
        self.git = harness.git

    def two_item_plan(self, script_a: str = "echo a > $ARTIFACTS/a.txt", script_b: str = "echo b > $ARTIFACTS/b.txt"
                      ) -> dict[str, tuple[str, str]]:
        h = self.harness
        return {
            "T-ONE-001": (h.item("T-ONE-001", "first item", priority="P0"),
                          h.plan("T-ONE-001", [("Do", [("write a", script_a)])], ["a written — check: `true`"])),
            "T-TWO-001": (h.item("T-TWO-001", "second item", priority="P1"),
                          h.plan("T-TWO-001", [("Do", [("write b", script_b)])], ["b written — check: `true`"])),
        }

    def setup(self, root: Path, items: dict[str, tuple[str, str]], offline_s: float = 30,
              clones: tuple[str, ...] = ("sup", "wrk"), trust: str = UNSIGNED) -> dict[str, Path]:
        """``root/remote.git`` (bare) seeded from a harness repo, and one clone per name.
        ``trust``: the ``trust:`` section of the committed orchestrator.yaml."""
        yaml = SYNC_YAML.format(offline=offline_s, trust=trust)
        seed = self.harness.make_repo(root / "seed", items, extra={"orchestrator.yaml": yaml})
        bare = root / "remote.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
        out = {"remote": bare}
        for name in clones:
            out[name] = self.clone(bare, root / name)
        return out

    def clone(self, bare: Path, path: Path) -> Path:
        subprocess.run(["git", "clone", "-q", str(bare), str(path)], check=True)
        self.git(path, "config", "user.name", f"{path.name} tester")
        self.git(path, "config", "user.email", f"{path.name}@example.invalid")
        return path

    @staticmethod
    def start(repo: Path, role: str, *extra: str, log: Path | None = None) -> subprocess.Popen[str]:
        log = log or repo.parent / f"{repo.name}-{role}.log"
        fh = log.open("a")
        return subprocess.Popen([sys.executable, "-m", "orchestrator", "loop", "--role", role, "--remote", "origin",
                                 *extra], cwd=repo, stdout=fh, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def remote_subjects(self, bare: Path, ref: str = "main") -> list[str]:
        return self.git(bare, "log", "--first-parent", "--format=%s", ref).splitlines()

    @staticmethod
    def events(repo: Path) -> list[dict]:
        path = repo / ".orchestrator" / "sync-events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="session")
def sync_repos(harness) -> SyncRepos:
    """The two-machine builders (see :class:`SyncRepos`)."""
    return SyncRepos(harness)
