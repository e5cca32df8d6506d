"""The harness context handed to the supervisor, the worker and the loop: where the loop runs
(repository, :class:`~orchestrator.layout.Layout`, the one :class:`~orchestrator.vcs.repo.GitRepo`)
and with what (config, agents, clock)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from orchestrator.agents.base import SupervisorAgent, WorkerAgent
from orchestrator.config import HarnessConfig
from orchestrator.fsutil import utc_now
from orchestrator.layout import Layout
from orchestrator.turns.config import TurnsConfig
from orchestrator.vcs.repo import GitRepo

__all__ = ["HARNESS_IDENTITY", "HarnessContext", "identity_env"]

#: Author/committer of the harness's own commits when git has no user configured.
HARNESS_IDENTITY = ("ptycho-harness", "harness@ptycho-harness.invalid")
_IDENTITY_VARS = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")


def identity_env(repo: Path | GitRepo) -> dict[str, str]:
    """``GIT_AUTHOR_*``/``GIT_COMMITTER_*`` for the harness identity when ``user.name`` or
    ``user.email`` is unset for ``repo`` (a fresh clone on a bare machine); empty otherwise,
    so a configured user stays the author. Never touches git config."""
    if all(os.environ.get(k) for k in _IDENTITY_VARS):
        return {}
    git = repo if isinstance(repo, GitRepo) else GitRepo(Path(repo))
    if git.config_get("user.name") and git.config_get("user.email"):
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
    :func:`identity_env`). ``turns``: the agent-turn settings (commit policy, breaker, notify,
    spend budget, per-command transient/usage/prompt). ``git`` and ``layout`` are made once,
    on first use.
    ``on_refusal``: notification hook of the trust boundary (:mod:`orchestrator.trust.enforce`).
    """

    repo: Path
    config: HarnessConfig
    supervisor: SupervisorAgent
    worker: WorkerAgent
    expected_branch: str | None = None
    git_env: Mapping[str, str] = field(default_factory=dict)
    clock: Callable[[], datetime] = utc_now
    turns: TurnsConfig = field(default_factory=TurnsConfig)
    #: trust boundary: called with the HandoffRefused after a refused handoff was recorded
    on_refusal: Callable[[Any], None] | None = None

    @cached_property
    def git(self) -> GitRepo:
        """The one git gateway of this context (GitError when ``repo`` is no work tree)."""
        return GitRepo(self.repo, self.git_env)

    @cached_property
    def layout(self) -> Layout:
        return Layout(self.repo)

    def rel(self, path: Path) -> str:
        return self.layout.rel(path)
