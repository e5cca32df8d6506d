"""Shared fixtures of the ptycho tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

WRITER = Path(__file__).resolve().parents[1] / "fixtures" / "canonical" / "make_canonical.py"
PTYCHOPINN_WRITER = WRITER.with_name("make_ptychopinn_like.py")
SCAN_WRITER = WRITER.with_name("noise_free_scan.py")


@pytest.fixture(scope="session")
def canonical_writer(load_file_module: Callable[[Path], ModuleType]) -> ModuleType:
    """tests/fixtures/canonical/make_canonical.py: independent writer of canonical data."""
    return load_file_module(WRITER)


@pytest.fixture(scope="session")
def ptychopinn_writer(load_file_module: Callable[[Path], ModuleType]) -> ModuleType:
    """tests/fixtures/canonical/make_ptychopinn_like.py: files with PtychoPINN's simulator's
    conventions (bright-centre amplitudes, centres 15 px from the edge of a 128 px object)."""
    return load_file_module(PTYCHOPINN_WRITER)


@pytest.fixture(scope="session")
def noise_free_scan_writer(load_file_module: Callable[[Path], ModuleType]) -> ModuleType:
    """tests/fixtures/canonical/noise_free_scan.py: a noise-free scan in this repo's forward
    model (``make_scan``), for the iterative baseline's tests."""
    return load_file_module(SCAN_WRITER)
