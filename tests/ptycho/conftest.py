"""Shared fixtures of the ptycho tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
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


@pytest.fixture(scope="session")
def ringed_probe() -> np.ndarray:
    """(32, 32) complex128: a lens's focused probe, a pupil of radius N/5 frequency px with 6 rad
    of defocus at its edge: a small bright core and rings that reach the patch edge, so much of
    its light lies outside the central N/2 × N/2 (RESOLUTION-SUPPORT-001)."""
    n = 32
    k = np.fft.fftfreq(n) * n
    rho = np.hypot(k[:, None], k[None, :]) / (n / 5)
    return np.fft.fftshift(np.fft.ifft2((rho <= 1.0) * np.exp(6j * rho**2)))


@pytest.fixture
def traced_peak() -> Callable[[Callable[[], object]], tuple[object, int]]:
    """``traced_peak(fn)`` → (fn(), the peak of traced allocations during it above what was
    held before, in bytes): numpy's arrays are traced, so this is a call's working memory."""
    import tracemalloc

    def measure(fn: Callable[[], object]) -> tuple[object, int]:
        tracemalloc.start()
        try:
            held = tracemalloc.get_traced_memory()[0]
            out = fn()
            return out, tracemalloc.get_traced_memory()[1] - held
        finally:
            tracemalloc.stop()

    return measure
