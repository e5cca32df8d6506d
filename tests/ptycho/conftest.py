"""Shared fixtures of the ptycho tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

WRITER = Path(__file__).resolve().parents[1] / "fixtures" / "canonical" / "make_canonical.py"
PTYCHOPINN_WRITER = WRITER.with_name("make_ptychopinn_like.py")
SCAN_WRITER = WRITER.with_name("noise_free_scan.py")


def _load(path: Path) -> ModuleType:
    """The module of the Python file `path` (the fixture writers are not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def canonical_writer() -> ModuleType:
    """tests/fixtures/canonical/make_canonical.py: independent writer of canonical data."""
    return _load(WRITER)


@pytest.fixture(scope="session")
def ptychopinn_writer() -> ModuleType:
    """tests/fixtures/canonical/make_ptychopinn_like.py: files with PtychoPINN's simulator's
    conventions (bright-centre amplitudes, centres 15 px from the edge of a 128 px object)."""
    return _load(PTYCHOPINN_WRITER)


@pytest.fixture(scope="session")
def noise_free_scan_writer() -> ModuleType:
    """tests/fixtures/canonical/noise_free_scan.py: a noise-free scan in this repo's forward
    model (``make_scan``), for the iterative baseline's tests."""
    return _load(SCAN_WRITER)
