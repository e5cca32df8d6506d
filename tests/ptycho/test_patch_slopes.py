"""The per-pattern slope fit (ptycho.patch_slopes): each patch's amplitude constant and
amplitude and phase slopes fitted to its own pattern, applied in the fraction whose stitched
object best predicts held-out patterns (docs/findings.md, PATCH-SLOPE-001)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import patch_slopes
from ptycho.config import SimConfig
from ptycho.layers import normalised_probe
from ptycho.physics import simulate
from ptycho.stitching import support_window

SPREAD = np.array([0.05, 0.3, 0.3, 0.5, 0.5], np.float32)  # per SLOPE_TERMS: a network's size


def _scan(n: int, nphotons: float, groups: int = 64, seed: int = 3):
    sim = simulate(SimConfig(N=n, gridsize=2, n_images=groups, nphotons=nphotons,
                             probe_defocus=2.0, object_type="mixed_blobs", seed=seed))
    probe = normalised_probe(sim.probe)
    weights = np.abs(probe) ** 2
    return sim, probe, weights / weights.max()


def _distorted(sim, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The true patches divided by exp(random terms): (patches, the terms that undo it)."""
    b, _, _, c = sim.object_patches.shape
    terms = np.random.default_rng(seed).normal(0, SPREAD, (b, c, 5)).astype(np.float32)
    return patch_slopes.apply_patch_slopes(sim.object_patches, -terms), terms


@pytest.mark.parametrize("poisson", [False, True], ids=["amplitude", "poisson"])
def test_fit_patch_slopes_recovers_the_terms_a_patch_was_distorted_by(poisson: bool) -> None:
    sim, probe, _ = _scan(32, 1e9)
    patches, terms = _distorted(sim)
    got = patch_slopes.fit_patch_slopes(patches, sim.diffraction, probe,
                                        counts_scale=sim.intensity_scale if poisson else None)
    assert got.shape == terms.shape and got.dtype == np.float32
    error = got - terms
    error[..., 0] -= error[..., 0].mean()  # one global scale is fitted first: c relative to it
    np.testing.assert_array_less(np.sqrt(np.mean(error ** 2, axis=(0, 1))), 0.1 * SPREAD)


def test_the_fit_on_the_lit_window_equals_the_fit_on_whole_patches() -> None:
    """The slopes are per patch width: on the M×M window the probe lights they are M/N of the
    whole patch's, and the corrected patches agree where the probe lights them."""
    sim, probe, weights = _scan(64, 1e9, groups=16)
    window = support_window(weights)
    m = window.stop - window.start
    assert m < 64
    patches, _ = _distorted(sim)
    whole = patch_slopes.fit_patch_slopes(patches, sim.diffraction, probe)
    lit = patch_slopes.fit_patch_slopes(patches[:, window, window], sim.diffraction, probe)
    np.testing.assert_allclose(lit[..., 1:], whole[..., 1:] * m / 64, atol=0.02)
    np.testing.assert_allclose(lit[..., 0], whole[..., 0], atol=0.01)


def _lit_error(got: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> float:
    """Mean |got·k − truth| over the pixels the probe lights (|probe|² > 0.1 of its peak),
    k the best global complex factor."""
    lit = weights > 0.1
    got, truth = np.moveaxis(got, 3, 1)[:, :, lit], np.moveaxis(truth, 3, 1)[:, :, lit]
    return float(np.abs(got * (np.vdot(got, truth) / np.vdot(got, got)) - truth).mean())


def test_correct_patch_slopes_restores_distorted_patches() -> None:
    sim, probe, weights = _scan(32, 1e9)
    patches, _ = _distorted(sim)
    fixed, choice = patch_slopes.correct_patch_slopes(patches, sim.coords, weights,
                                                      sim.diffraction, probe,
                                                      counts_scale=sim.intensity_scale)
    assert choice.fractions == patch_slopes.FRACTIONS and len(choice.misfits) == len(choice.fractions)
    assert choice.fraction == 1.0 and choice.misfits[-1] < 0.99 * choice.misfits[0]
    truth = sim.object_patches
    assert _lit_error(fixed, truth, weights) < 0.1 * _lit_error(patches, truth, weights)


def test_each_fraction_is_aligned_and_splatted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """STEP-COST-001: the chosen fraction's phase turns and fold sums are kept, not computed
    again for the chosen patches, the refit's judgement and the refit's cut."""
    sim, probe, weights = _scan(32, 1e4)
    patches, _ = _distorted(sim)
    calls = {"fit_patch_phases": 0, "splat_patches": 0}

    def counting(name: str):
        real = getattr(patch_slopes, name)

        def counted(*args: object, **kwargs: object):
            calls[name] += 1
            return real(*args, **kwargs)

        return counted

    for name in calls:
        monkeypatch.setattr(patch_slopes, name, counting(name))
    _, choice = patch_slopes.correct_patch_slopes(patches, sim.coords, weights, sim.diffraction,
                                                  probe, counts_scale=sim.intensity_scale)
    fractions, folds = len(patch_slopes.FRACTIONS), patch_slopes.HOLDOUT_FOLDS
    assert choice.refit_misfit is not None
    # one alignment per fraction (and one of the refit's patches when it is kept)
    assert calls["fit_patch_phases"] == fractions + choice.refitted
    # every fraction's folds, then the refit's object once per held-out fold
    assert calls["splat_patches"] == fractions * folds + folds


def test_a_refit_from_the_stitched_object_removes_what_finer_errors_left() -> None:
    """Each patch also carries a phase bump off its centre, an error finer than its slopes:
    fitted to its own pattern, the slopes partly absorb the bump. Cut from the stitched object,
    where the overlaps average the bumps down, the patches' slopes fit true."""
    sim, probe, weights = _scan(32, 1e9, groups=128)
    b, n, _, c = sim.object_patches.shape
    rng = np.random.default_rng(1)
    u = (np.arange(n) - n // 2) / n
    centre = rng.uniform(-0.2, 0.2, (2, b, 1, 1, c))
    height = rng.normal(0, 0.4, (b, 1, 1, c))
    bump = height * np.exp(-((u[None, None, :, None] - centre[0]) ** 2
                             + (u[None, :, None, None] - centre[1]) ** 2) / (2 * 0.08 ** 2))
    patches = (_distorted(sim, seed=2)[0] * np.exp(1j * bump)).astype(np.complex64)
    kwargs = dict(counts_scale=sim.intensity_scale)
    once, first = patch_slopes.correct_patch_slopes(patches, sim.coords, weights, sim.diffraction,
                                                    probe, refit=False, **kwargs)
    refit, choice = patch_slopes.correct_patch_slopes(patches, sim.coords, weights,
                                                      sim.diffraction, probe, **kwargs)
    assert first.refit_misfit is None and not first.refitted
    assert choice.refitted and choice.refit_misfit < 0.95 * min(choice.misfits)
    truth = sim.object_patches
    assert _lit_error(refit, truth, weights) < 0.5 * _lit_error(once, truth, weights)


def test_a_fit_of_the_noise_is_not_taken() -> None:
    """At 1e3 photons the five terms fitted to a pattern are mostly noise. Judged on patterns
    the fits did not see, the true patches keep (almost) all their shape."""
    sim, probe, weights = _scan(32, 1e3)
    truth = sim.object_patches
    noise = patch_slopes.fit_patch_slopes(truth, sim.diffraction, probe,
                                          counts_scale=sim.intensity_scale)
    assert np.sqrt(np.mean(noise[..., 1:] ** 2)) > 0.2  # the fit did move: there is a choice
    fitted = _lit_error(patch_slopes.apply_patch_slopes(truth, noise), truth, weights)
    kept, choice = patch_slopes.correct_patch_slopes(truth, sim.coords, weights, sim.diffraction,
                                                     probe, counts_scale=sim.intensity_scale)
    assert choice.fraction <= 0.25 and choice.misfits[-1] > min(choice.misfits)
    assert _lit_error(kept, truth, weights) < 0.5 * fitted  # (kept is phase-aligned, too)


def test_one_scan_position_keeps_the_network_patches_and_says_why(
        caplog: pytest.LogCaptureFixture) -> None:
    sim, probe, weights = _scan(32, 1e9, groups=4)
    coords = np.zeros_like(sim.coords) + 40.0
    patches = sim.object_patches[:1, ..., :1]
    with caplog.at_level("WARNING", logger="ptycho.patch_slopes"):
        out, choice = patch_slopes.correct_patch_slopes(
            np.concatenate([patches, patches]), coords[:2, ..., :1], weights,
            sim.diffraction[:2, ..., :1], probe)
    assert choice.fraction == 0.0 and choice.fractions == () and out.shape == (2, 32, 32, 1)
    assert "one scan position" in caplog.text


def test_the_fit_copies_neither_the_patches_nor_the_patterns(traced_peak) -> None:
    """TRAIN-MEMORY-002: the fit gathers a chunk of patterns at a time from the (B, ·, ·, C)
    arrays (flat copies of both took 2.2× their memory); it holds 0.4× now."""
    sim, probe, _ = _scan(16, 1e9, groups=1024)
    patches = np.ascontiguousarray(sim.object_patches[:, 4:12, 4:12])
    terms, peak = traced_peak(lambda: patch_slopes.fit_patch_slopes(
        patches, sim.diffraction, probe, sim.intensity_scale))
    assert terms.shape == (1024, 4, 5)
    assert peak < patches.nbytes + sim.diffraction.nbytes, peak / (patches.nbytes + sim.diffraction.nbytes)


def test_slopes_applied_in_place_equal_slopes_applied_to_a_copy() -> None:
    sim, _, _ = _scan(16, 1e9)
    patches, terms = _distorted(sim)
    expected = patch_slopes.apply_patch_slopes(patches, terms, 0.5)
    got = patch_slopes.apply_patch_slopes(patches, terms, 0.5, out=patches)
    assert got is patches
    np.testing.assert_array_equal(got, expected)


def test_mismatched_shapes_are_named() -> None:
    sim, probe, _ = _scan(32, 1e9, groups=4)
    with pytest.raises(ValueError, match=r"patches \(4, 32, 32, 4\), diffraction \(4, 32, 32, 3\)"):
        patch_slopes.fit_patch_slopes(sim.object_patches, sim.diffraction[..., :3], probe)
