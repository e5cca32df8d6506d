"""Shared fixtures of the ptycho tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

WRITER = Path(__file__).resolve().parents[1] / "fixtures" / "canonical" / "make_canonical.py"
PTYCHOPINN_WRITER = WRITER.with_name("make_ptychopinn_like.py")


@pytest.fixture(scope="session")
def canonical_writer() -> ModuleType:
    """tests/fixtures/canonical/make_canonical.py: independent writer of canonical data."""
    spec = importlib.util.spec_from_file_location("make_canonical", WRITER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def ptychopinn_writer() -> ModuleType:
    """tests/fixtures/canonical/make_ptychopinn_like.py: files with PtychoPINN's simulator's
    conventions (bright-centre amplitudes, centres 15 px from the edge of a 128 px object)."""
    spec = importlib.util.spec_from_file_location("make_ptychopinn_like", PTYCHOPINN_WRITER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
