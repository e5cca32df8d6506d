"""Suite-wide hooks for pytest-xdist (``make test``: ``-n 2 --dist loadgroup``).

Two things decide how long two workers take:

* A module fixture built on both workers costs twice. The modules in ``ONE_WORKER_MODULES``
  train a model, run the study or a CLI cycle in a module fixture; under ``--dist loadgroup``
  each of them is one unit of work, run whole on one worker, so the fixture is built once.
  (xdist's own ``xdist_group`` marker cannot do this with pytest >= 9.2: xdist groups by
  rewriting ``item._nodeid``, which pytest no longer reads; marked groups still work where
  xdist can set them.)
* A long test dealt out last keeps one worker busy while the other idles. The scheduler deals
  the multi-test units first (largest first), then single tests in collection order, and the
  workers put the ``integration`` tests (seconds to tens of seconds each) ahead of the quick
  ones in that order, so the tail of the run is made of short tests.

A run in one process (no ``-n``) keeps the file order and is not affected.

It also holds ``load_file_module``: fixture writers, benchmarks and fake servers are Python
files outside any package, which several test folders import by path.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

#: Test modules (paths from the rootdir) whose module-scoped fixture is expensive: each runs on
#: a single xdist worker. A path that does not exist is a usage error (see pytest_configure).
ONE_WORKER_MODULES = frozenset({
    "tests/orchestrator/tools/test_readme_commands.py",  # run: one main-job cycle of the CLI
    "tests/ptycho/test_cli.py",  # canonical_model: trains a model through the CLI
    "tests/ptycho/test_io.py",  # archive: trains and saves a model
    "tests/ptycho/test_physics.py",  # default_data: the default simulation (2000 groups, N=64)
    "tests/studies/test_dose_study_cli.py",  # partial_study: two study arms through the CLI
})


def _module_from_file(path: Path) -> ModuleType:
    """The module of the Python file `path`, executed under its stem as name."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_file_module() -> Callable[[Path], ModuleType]:
    """A function: path of a Python file outside any package → its module, freshly executed."""
    return _module_from_file


def pytest_configure(config: pytest.Config) -> None:
    missing = sorted(m for m in ONE_WORKER_MODULES if not (config.rootpath / m).is_file())
    if missing:
        raise pytest.UsageError(f"tests/conftest.py: ONE_WORKER_MODULES names missing files: {missing}")


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: unknown (and unused) without the plugin
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``: xdist's group scheduler with each of ``ONE_WORKER_MODULES`` as a
    group; any other ``--dist`` gets xdist's own scheduler (None: not decided here)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else super()._split_scope(nodeid)

    return ModuleGroupScheduling(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: integration tests first (a stable sort keeps the file order within
    each kind); the controller deals tests out in the workers' collection order."""
    if not hasattr(config, "workerinput"):
        return
    items.sort(key=lambda item: item.get_closest_marker("integration") is None)
