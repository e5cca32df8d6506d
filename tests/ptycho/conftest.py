"""Shared fixtures of the ptycho tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

WRITER = Path(__file__).resolve().parents[1] / "fixtures" / "canonical" / "make_canonical.py"


@pytest.fixture(scope="session")
def canonical_writer() -> ModuleType:
    """tests/fixtures/canonical/make_canonical.py: independent writer of canonical data."""
    spec = importlib.util.spec_from_file_location("make_canonical", WRITER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
