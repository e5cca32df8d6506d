"""Patch phase alignment (ptycho.patch_phases): constants that make overlapping patches agree."""

from __future__ import annotations

import os
from functools import partial

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ptycho.config import SimConfig  # noqa: E402
from ptycho.patch_phases import (  # noqa: E402
    _pairs_within,
    _synchronise,
    align_patch_phases,
    fit_patch_phases,
)
from ptycho.physics import simulate  # noqa: E402
from ptycho.stitching import stitch_in_frame  # noqa: E402


def test_align_patch_phases_undoes_a_constant_phase_per_scan_position() -> None:
    """A pattern does not change when its patch is turned by e^{iθ}: patches with a random θ
    per scan position stitch to noise, aligned they give the object back (RESOLUTION-LOSS-001)."""
    from ptycho.layers import normalised_probe
    from ptycho.metrics import evaluate, scanned_region

    sim = simulate(SimConfig(N=32, gridsize=2, n_images=96, probe_defocus=2.0,
                             object_type="phase_blobs", seed=5))
    weights = np.abs(normalised_probe(sim.probe)) ** 2
    weights /= weights.max()
    theta = np.random.default_rng(1).uniform(-np.pi, np.pi, sim.scan_index.max() + 1)
    turned = sim.object_patches * np.exp(1j * theta)[sim.scan_index][:, None, None, :]
    crop = scanned_region(sim.coords, sim.obj.shape)

    def phase_ssim(patches: np.ndarray) -> float:
        return evaluate(stitch_in_frame(patches, sim.coords, sim.obj.shape, weights), sim.obj, crop)["phase_ssim"]

    assert phase_ssim(turned) < 0.3
    aligned = align_patch_phases(turned, sim.coords, weights)
    assert aligned.shape == turned.shape and aligned.dtype == np.complex64
    assert phase_ssim(aligned) > 0.98
    np.testing.assert_allclose(np.abs(aligned), np.abs(turned), rtol=1e-5)  # only phases turn
    # consistent patches keep their phase relations (one global phase at most)
    kept = align_patch_phases(sim.object_patches, sim.coords, weights)
    assert phase_ssim(kept) > 0.98


def _turned_patches(b: int, n: int = 40, c: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patches (B,N,N,C) complex64 of one smooth object, each turned by a hidden constant
    phase; coords (B,1,2,C) on whole pixels; the hidden phases (B, C)). The object grows with
    B, so that the patches overlap as densely at every B (as a longer scan does)."""
    rng = np.random.default_rng(3)
    side = int(20 * np.sqrt(b)) + n
    yy, xx = np.mgrid[0:side, 0:side]
    obj = (1 + 0.3 * np.sin(xx / 7) * np.cos(yy / 5)) * np.exp(0.5j * np.sin(xx / 11 + yy / 13))
    corner = rng.integers(0, side - n, size=(b, 2, c))  # (x, y) of every patch's pixel (0, 0)
    theta = rng.uniform(-np.pi, np.pi, size=(b, c))
    patches = np.empty((b, n, n, c), np.complex64)
    for i in range(b):
        for k in range(c):
            x0, y0 = corner[i, :, k]
            patches[i, :, :, k] = obj[y0:y0 + n, x0:x0 + n] * np.exp(1j * theta[i, k])
    return patches, (corner + n // 2)[:, None].astype(np.float64), theta


def test_fit_patch_phases_holds_only_the_lit_part_of_each_patch(traced_peak) -> None:
    """The greedy pass Fourier-shifts the patches a chunk at a time (a whole shifted copy cost
    +52 MB in reconstruct at 1024 groups, TRAIN-MEMORY-001); the joint fit keeps of every
    patch only the square the probe lights (here 26 of 40 pixels: 42 % of a copy) and the
    overlapping pairs. It still undoes the hidden turns."""
    n = 40
    r2 = (np.arange(n) - n // 2)[:, None] ** 2 + (np.arange(n) - n // 2)[None] ** 2
    weights = np.where(r2 <= 144, np.exp(-r2 / 50.0), 0.0)  # lit within 12 px of the centre
    peaks, sizes = [], []
    for b in (256, 1024):
        patches, coords, theta = _turned_patches(b, n)
        turns, peak = traced_peak(partial(fit_patch_phases, patches, coords, weights))
        peaks.append(peak)
        sizes.append(patches.nbytes)
        assert turns.shape == (b, 4) and turns.dtype == np.complex64
        undone = turns * np.exp(1j * theta)  # one global phase when every hidden turn is undone
        np.testing.assert_allclose(undone / undone[0, 0], 1.0, atol=1e-3)
    # 4× the patches (+39 MB): the lit squares add 42 % of that, a shifted copy 100 %
    assert peaks[1] - peaks[0] < 0.55 * (sizes[1] - sizes[0]), (peaks, sizes)


def test_pairs_within_finds_every_close_pair_once() -> None:
    origin = np.random.default_rng(0).integers(0, 60, size=(300, 2))
    first, second = _pairs_within(origin, 9)
    got = {tuple(sorted(p)) for p in zip(first.tolist(), second.tolist(), strict=True)}
    assert len(got) == len(first)  # no pair twice
    d = np.abs(origin[:, None, :] - origin[None, :, :])
    close = np.argwhere((d < 9).all(axis=2))
    assert got == {(int(i), int(j)) for i, j in close if i < j}


def test_synchronise_is_the_weighted_least_squares_fit_of_the_pair_phases() -> None:
    """θ_i − θ_j fitted to the phases of the pairs' overlaps with weights |overlap|: the
    conjugate-gradient solution equals a dense least-squares solve, and with noise-free pairs
    it recovers the true phases up to one global constant."""
    rng = np.random.default_rng(4)
    m = 60
    origin = rng.integers(0, 40, size=(m, 2))
    first, second = _pairs_within(origin, 12)
    truth = rng.uniform(-0.5, 0.5, m)
    weight = rng.uniform(0.2, 2.0, len(first))
    exact = weight * np.exp(1j * (truth[first] - truth[second]))
    theta = _synchronise(first, second, exact, m)
    np.testing.assert_allclose(theta - theta.mean(), truth - truth.mean(), atol=1e-6)

    noisy = exact * np.exp(1j * rng.normal(0, 0.05, len(first)))
    theta = _synchronise(first, second, noisy, m)
    incidence = np.zeros((len(first), m))
    incidence[np.arange(len(first)), first] = 1.0
    incidence[np.arange(len(first)), second] = -1.0
    root = np.sqrt(weight)
    dense = np.linalg.lstsq(incidence * root[:, None], np.angle(noisy) * root, rcond=None)[0]
    np.testing.assert_allclose(theta - theta.mean(), dense - dense.mean(), atol=1e-4)
