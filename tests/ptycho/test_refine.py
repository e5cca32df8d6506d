"""ptycho.refine: the test-time physics refinement of a stitched object.

A small scan is written with the package's own numpy operators (``physics.extract_patches``
bilinear, ``physics.far_field``), noise free unless a test adds counts noise, so the object
that made the patterns is known exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from ptycho.layers import normalised_probe
from ptycho.physics import extract_patches, far_field
from ptycho.probe import make_probe
from ptycho.refine import RefineConfig, flat_start, refine_object

N = 16
SIZE = 40


@dataclass(frozen=True)
class Scan:
    truth: np.ndarray  # (SIZE, SIZE) complex64
    patterns: np.ndarray  # (P, N, N) float32
    positions: np.ndarray  # (P, 2) float64
    probe: np.ndarray  # (N, N) complex64, normalised


def _smooth(rng: np.random.Generator, sigma: float) -> np.ndarray:
    field = rng.normal(size=(SIZE, SIZE))
    k = np.fft.fftfreq(SIZE)
    return np.real(np.fft.ifft2(np.fft.fft2(field) * np.exp(-(2 * np.pi * sigma) ** 2
                                                             * (k[:, None] ** 2 + k[None] ** 2) / 2)))


def make_scan(seed: int = 0, spacing: float = 3.0) -> Scan:
    """An amplitude-and-phase object and a jittered raster whose patches overhang the frame
    (their centres reach its edge): the frame is the truth, the patterns come from it grown
    with edge values, as the refinement grows it."""
    rng = np.random.default_rng(seed)
    amp = 0.8 + 0.3 * np.tanh(_smooth(rng, 1.5) * 8)
    phase = 1.2 * np.tanh(_smooth(rng, 2.0) * 8)
    truth = (amp * np.exp(1j * phase)).astype(np.complex64)
    grid = np.arange(2.0, SIZE - 2.0, spacing)
    xy = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)
    positions = xy + rng.uniform(-0.5, 0.5, xy.shape)
    probe = normalised_probe(make_probe(N, 2.0, defocus=2.0))
    pad = N
    grown = np.pad(truth, pad, mode="edge")
    patterns = far_field(probe, extract_patches(grown, positions + pad, N, "bilinear"))
    return Scan(truth, patterns, positions, probe)


def _error(obj: np.ndarray, truth: np.ndarray, crop: slice = slice(4, SIZE - 4)) -> float:
    """Relative L2 error over the well-scanned interior after the best global complex factor."""
    a, b = obj[crop, crop].ravel(), truth[crop, crop].ravel()
    factor = np.vdot(a, b) / np.vdot(a, a)
    return float(np.linalg.norm(factor * a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def scan() -> Scan:
    return make_scan()


def test_the_truth_fits_its_own_patterns_and_a_rescaled_truth_is_rescaled(scan: Scan) -> None:
    # the refinement's TF forward model is the numpy simulator's: zero misfit at the truth,
    # with patches that overhang the frame; a 2× start is brought back by the fitted scale
    result = refine_object(scan.truth, scan.patterns, scan.positions, scan.probe, RefineConfig(steps=0))
    mean_square = float(np.mean(scan.patterns.astype(np.float64) ** 2))
    assert result.losses[0] < 1e-9 * mean_square
    assert result.scale == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(result.obj, scan.truth, atol=1e-5)
    doubled = refine_object(2 * scan.truth, scan.patterns, scan.positions, scan.probe,
                            RefineConfig(steps=0))
    assert doubled.scale == pytest.approx(0.5, abs=1e-5)
    assert doubled.losses[0] < 1e-9 * mean_square


def test_refinement_recovers_a_perturbed_object(scan: Scan) -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(size=scan.truth.shape) + 1j * rng.normal(size=scan.truth.shape)
    start = (scan.truth * np.exp(0.3j) + 0.15 * noise).astype(np.complex64)  # any global phase
    seen: list[tuple[int, float, tuple[int, ...]]] = []
    result = refine_object(start, scan.patterns, scan.positions, scan.probe,
                           RefineConfig(steps=40, learning_rate=0.02, holdout=0.0),
                           on_step=lambda step, wall, obj: seen.append((step, wall, obj.shape)))
    assert _error(start, scan.truth) > 0.15
    assert _error(result.obj, scan.truth) < 0.4 * _error(start, scan.truth)
    assert result.losses[-1] < 0.05 * result.losses[0]
    assert len(result.losses) == 41 and result.obj.shape == scan.truth.shape
    assert result.obj.dtype == np.complex64
    assert [s for s, _, _ in seen] == list(range(1, 41))
    assert all(shape == scan.truth.shape for _, _, shape in seen)
    walls = [w for _, w, _ in seen]
    assert walls == sorted(walls) and result.wall_s == pytest.approx(walls[-1])


def test_a_flat_start_is_the_solver_alone_and_converges_too(scan: Scan) -> None:
    start = flat_start(scan.truth.shape)
    assert start.dtype == np.complex64 and np.all(start == 1)
    result = refine_object(start, scan.patterns, scan.positions, scan.probe,
                           RefineConfig(steps=60, learning_rate=0.05, holdout=0.0))
    assert _error(result.obj, scan.truth) < 0.5 * _error(start, scan.truth)


def test_one_step_is_full_batch_whatever_the_chunk(scan: Scan) -> None:
    start = (0.9 * scan.truth).astype(np.complex64) + 0.1
    whole = refine_object(start, scan.patterns, scan.positions, scan.probe,
                          RefineConfig(steps=3, chunk=1000, holdout=0.0))
    chunked = refine_object(start, scan.patterns, scan.positions, scan.probe,
                            RefineConfig(steps=3, chunk=7, holdout=0.0))
    np.testing.assert_allclose(chunked.obj, whole.obj, atol=2e-5)
    np.testing.assert_allclose(chunked.losses, whole.losses, rtol=1e-4)


def test_poisson_loss_on_noisy_counts_improves_the_start_and_needs_the_scale(scan: Scan) -> None:
    intensity_scale = 30.0  # counts = (pattern · 30)²: a few hundred per bright pixel
    counts = np.random.default_rng(2).poisson((scan.patterns * intensity_scale) ** 2)
    measured = (np.sqrt(counts) / intensity_scale).astype(np.float32)
    start = (0.8 * scan.truth + 0.2).astype(np.complex64)
    config = RefineConfig(steps=30, loss="poisson", holdout=0.0)
    result = refine_object(start, measured, scan.positions, scan.probe, config,
                           intensity_scale=intensity_scale)
    assert result.losses[-1] < result.losses[0]
    assert min(result.losses) >= 0  # the Poisson deviance
    assert _error(result.obj, scan.truth) < 0.6 * _error(start, scan.truth)
    with pytest.raises(ValueError, match="intensity_scale"):
        refine_object(start, measured, scan.positions, scan.probe, config)


def test_a_held_out_fraction_keeps_a_start_that_noise_would_spoil(scan: Scan) -> None:
    # few counts: fitting every pattern follows the noise away from the truth; the patterns
    # held out of the fit see that and keep (nearly) the start
    intensity_scale = 3.0
    counts = np.random.default_rng(4).poisson((scan.patterns * intensity_scale) ** 2)
    measured = (np.sqrt(counts) / intensity_scale).astype(np.float32)
    args = (scan.truth, measured, scan.positions, scan.probe)
    free = refine_object(*args, RefineConfig(steps=40, loss="poisson", learning_rate=0.05,
                                             holdout=0.0),
                         intensity_scale=intensity_scale)
    held = refine_object(*args, RefineConfig(steps=40, loss="poisson", learning_rate=0.05,
                                             holdout=0.15, patience=3),
                         intensity_scale=intensity_scale)
    assert _error(free.obj, scan.truth) > 0.1  # the noise spoils the unstopped fit
    assert held.best_step <= 3 and len(held.losses) <= held.best_step + 4  # stopped early
    assert len(held.held_out_losses) == len(held.losses)
    assert held.held_out_losses[held.best_step] == min(held.held_out_losses)
    assert _error(held.obj, scan.truth) < 0.5 * _error(free.obj, scan.truth)


def test_a_held_out_fraction_lets_a_clean_fit_run_its_course(scan: Scan) -> None:
    start = (0.85 * scan.truth + 0.15).astype(np.complex64)
    result = refine_object(start, scan.patterns, scan.positions, scan.probe,
                           RefineConfig(steps=25, learning_rate=0.02, holdout=0.1))
    assert result.best_step >= 20 and len(result.losses) >= 21
    assert _error(result.obj, scan.truth) < 0.5 * _error(start, scan.truth)


def test_the_held_out_positions_are_a_seeded_disjoint_fraction() -> None:
    from ptycho.refine import _split

    fit, held = _split(100, 0.1)
    assert len(held) == 10 and len(fit) == 90
    assert sorted({*fit, *held}) == list(range(100))
    np.testing.assert_array_equal(_split(100, 0.1)[1], held)
    assert len(_split(5, 0.01)[1]) == 1 and len(_split(5, 0.0)[1]) == 0
    assert len(_split(1, 0.3)[1]) == 0  # a single pattern is fitted, never held out


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": -1}, "steps must be an integer >= 0"),
    ({"steps": 2.5}, "steps must be an integer"),
    ({"learning_rate": 0.0}, "learning_rate must be finite and > 0"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"loss": "mse"}, "loss must be one of"),
    ({"chunk": 0}, "chunk must be an integer >= 1"),
    ({"holdout": 0.5}, "holdout must be in \\[0, 0.5\\), got 0.5"),
    ({"holdout": -0.1}, "holdout must be in"),
    ({"patience": 0}, "patience must be an integer >= 1"),
])
def test_bad_configs_fail_at_construction_naming_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RefineConfig(**kwargs)


def test_bad_inputs_name_what_is_wrong(scan: Scan) -> None:
    args = (scan.truth, scan.patterns, scan.positions, scan.probe)
    with pytest.raises(ValueError, match="start must be an \\(H, W\\) complex object"):
        refine_object(np.abs(scan.truth), *args[1:])
    with pytest.raises(ValueError, match=f"patterns must have shape \\(P, {N}, {N}\\)"):
        refine_object(scan.truth, scan.patterns[:, :8], *args[2:])
    with pytest.raises(ValueError, match="positions must have shape"):
        refine_object(scan.truth, scan.patterns, scan.positions[:-1], scan.probe)
    with pytest.raises(ValueError, match="probe must have shape"):
        refine_object(*args[:3], scan.probe[:8])
    bad = scan.patterns.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="patterns holds non-finite values"):
        refine_object(scan.truth, bad, *args[2:])


def test_a_diverging_step_size_is_reported_not_returned(scan: Scan) -> None:
    with pytest.raises(FloatingPointError, match="learning rate 1e\\+30"):
        refine_object(*(scan.truth, scan.patterns, scan.positions, scan.probe),
                      RefineConfig(steps=5, learning_rate=1e30))
