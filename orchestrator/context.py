"""The harness context handed to the supervisor, the worker and the loop."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

from orchestrator.agents import SupervisorAgent, WorkerAgent
from orchestrator.artifacts import utc_now
from orchestrator.config import HarnessConfig
from orchestrator.gitops import GitRepo

__all__ = ["HARNESS_IDENTITY", "HarnessContext", "identity_env"]

#: Author/committer of the harness's own commits when git has no user configured.
HARNESS_IDENTITY = ("ptycho-harness", "harness@ptycho-harness.invalid")


def identity_env(repo: Path) -> dict[str, str]:
    """``GIT_AUTHOR_*``/``GIT_COMMITTER_*`` for the harness identity when ``user.name`` or
    ``user.email`` is unset for ``repo`` (a fresh clone on a bare machine); empty otherwise,
    so a configured user stays the author. Never touches git config."""
    def configured(key: str) -> bool:
        proc = subprocess.run(["git", "config", "--get", key], cwd=repo, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=30, check=False)
        return proc.returncode == 0 and bool(proc.stdout.strip())

    have_env = all(os.environ.get(k) for k in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                                                "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"))
    if have_env or (configured("user.name") and configured("user.email")):
        return {}
    name, email = HARNESS_IDENTITY
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


@dataclass(frozen=True)
class HarnessContext:
    """Where the loop runs and with what.

    ``repo``: repository or worktree root (steps run there). ``expected_branch``: commits
    are refused on any other branch (None: whatever branch is checked out, never a detached
    HEAD). ``git_env``: identity variables for the harness's commits (see
    :func:`identity_env`). ``phases_per_cycle`` overrides the config (the main job uses 0 =
    every remaining phase). ``on_refusal``: notification hook of the trust boundary
    (:mod:`orchestrator.trust.enforce`).
    """

    repo: Path
    config: HarnessConfig
    supervisor: SupervisorAgent
    worker: WorkerAgent
    expected_branch: str | None = None
    git_env: Mapping[str, str] = field(default_factory=dict)
    clock: Callable[[], datetime] = utc_now
    #: trust boundary: called with the HandoffRefused after a refused handoff was recorded
    on_refusal: Callable[[Any], None] | None = None

    def git(self) -> GitRepo:
        repo = GitRepo(self.repo)
        if self.git_env:
            repo.repo.git.update_environment(**self.git_env)
        return repo

    def rel(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.repo.resolve()).as_posix()
