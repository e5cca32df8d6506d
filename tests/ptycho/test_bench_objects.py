"""Bench objects: each carries its structure in the channel CARRIER names, within its range."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.bench_objects import BENCH_OBJECTS, CARRIER, make_bench_object
from ptycho.config import OBJECT_TYPES, SimConfig
from ptycho.metrics import is_constant
from ptycho.objects import make_object
from ptycho.physics import simulate


@pytest.mark.parametrize("name", BENCH_OBJECTS)
def test_bench_object_carries_its_structure_in_the_named_channel(name: str) -> None:
    obj = make_bench_object(name, 96, np.random.default_rng(3))
    assert obj.shape == (96, 96) and obj.dtype == np.complex64 and np.isfinite(obj).all()
    amp, phase = np.abs(obj), np.angle(obj)
    carrier = amp if CARRIER[name] == "amp" else phase
    assert carrier.std() > 0.05  # real structure, not a flat image
    if name in ("thin_lines", "thick_lines", "siemens", "pinn_lines"):
        assert is_constant(phase)  # zero phase
        lo = 0.59 if name == "pinn_lines" else 0.5
        assert amp.min() == pytest.approx(lo, abs=1e-3) and amp.max() == pytest.approx(1.5, abs=1e-3)
    if name == "phase_blobs":
        assert is_constant(amp, tol=1e-5) and np.abs(phase).max() == pytest.approx(np.pi / 2, abs=1e-3)
    if name == "mixed_blobs":
        assert amp.std() > 0.05 and phase.std() > 0.05 and np.abs(phase).max() <= np.pi / 4 + 1e-6


def test_thin_lines_are_thinner_than_thick_lines() -> None:
    def bright_fraction(name: str) -> float:
        amp = np.abs(make_bench_object(name, 128, np.random.default_rng(0)))
        return float((amp > 1.0).mean() / max(1, round(128 * 128 / (500 if name == "thin_lines" else 1500))))

    # area above mid-range per segment: a 4-px wide segment covers several times a 1-px one
    assert bright_fraction("thick_lines") > 2.5 * bright_fraction("thin_lines")


def test_bench_objects_are_seeded_and_simulate_through_sim_config() -> None:
    a = make_object("pinn_lines", 64, np.random.default_rng(1))
    b = make_object("pinn_lines", 64, np.random.default_rng(1))
    c = make_object("pinn_lines", 64, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(BENCH_OBJECTS) <= set(OBJECT_TYPES)
    data = simulate(SimConfig(N=32, gridsize=2, n_images=16, object_type="phase_blobs", seed=4))
    assert is_constant(np.abs(data.obj), tol=1e-5) and np.angle(data.obj).std() > 0.1
    with pytest.raises(ValueError, match="name must be one of"):
        make_bench_object("zebra", 64, np.random.default_rng(0))
    with pytest.raises(ValueError, match="size must be an int >= 16"):
        make_bench_object("siemens", 8, np.random.default_rng(0))
