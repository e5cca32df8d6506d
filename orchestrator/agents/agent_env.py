"""The environment an external agent CLI runs in.

An agent is a program the *user* installed (pipx, npm, a system package), working on the
user's repository, so it gets the user's environment — not the harness's:

* the harness's own interpreter is removed: when the harness runs from a virtual environment,
  its ``bin`` directory is taken off ``PATH`` and its ``VIRTUAL_ENV`` dropped, and the
  ``PYTHONPATH`` the harness gives its Do-Now steps (the repository first) is never added, so
  the target repository's tests run in whatever Python the agent or the user chose;
* the output is plain text for a log, not a terminal: ``COLUMNS``/``LINES`` wide (Rich,
  click and friends wrap at 80 columns otherwise, splitting error messages over lines),
  ``NO_COLOR=1``, ``TERM=dumb``, ``CLICOLOR=0``; ``FORCE_COLOR`` and ``CLICOLOR_FORCE`` are
  removed;
* the harness's per-turn variables (``ARTIFACTS``, the process marker) are added;
* last, the command's ``env:`` (``orchestrator.yaml``), whose values may use ``{repo}``,
  ``{report_dir}``, ``{role}``, ``{focus}`` and ``{prompt_file}``; it wins over everything
  above, so ``env: {PATH: ...}`` can give the harness's interpreter back on purpose.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["PLAIN_TERMINAL", "UNSET", "agent_environment", "render_env", "without_harness_python"]

#: set for every agent (a configured ``env:`` may override them)
PLAIN_TERMINAL: Mapping[str, str] = {"COLUMNS": "400", "LINES": "200", "NO_COLOR": "1", "TERM": "dumb",
                                     "CLICOLOR": "0"}
#: removed from the inherited environment (they force colour even without a terminal)
UNSET = ("FORCE_COLOR", "CLICOLOR_FORCE")


def _same(a: str, b: Path) -> bool:
    try:
        return Path(a).resolve() == b.resolve()
    except (OSError, RuntimeError):
        return False


def without_harness_python(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the harness's virtual environment (its ``bin`` on ``PATH``,
    ``VIRTUAL_ENV``); unchanged when the harness runs on a Python that is not a venv."""
    out = dict(env)
    if sys.prefix == sys.base_prefix:
        return out
    venv_bin = Path(sys.executable).parent
    if "PATH" in out:
        out["PATH"] = os.pathsep.join(p for p in out["PATH"].split(os.pathsep) if p and not _same(p, venv_bin))
    if out.get("VIRTUAL_ENV") and _same(out["VIRTUAL_ENV"], Path(sys.prefix)):
        del out["VIRTUAL_ENV"]
    return out


def render_env(template: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    """A command's ``env:`` with its placeholders substituted (one pass; unknown placeholders
    were refused when the configuration was loaded)."""
    out = {}
    for name, value in template.items():
        for key, text in values.items():
            value = value.replace("{" + key + "}", text)
        out[name] = value
    return out


def agent_environment(command_env: Mapping[str, str], values: Mapping[str, str],
                      turn_vars: Mapping[str, str] | None = None,
                      base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The full environment of one agent run (see the module docstring). ``base``: the user's
    environment (default ``os.environ``); ``turn_vars``: the harness's per-turn variables;
    ``values``: the placeholder values for ``command_env``."""
    env = without_harness_python(os.environ if base is None else base)
    for name in UNSET:
        env.pop(name, None)
    env.update(PLAIN_TERMINAL)
    env.update(turn_vars or {})
    env.update(render_env(command_env, values))
    return env
