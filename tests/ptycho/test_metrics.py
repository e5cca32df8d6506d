"""Metrics: PSNR, SSIM, FRC/FRC50, global alignment, evaluate — on cases with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ptycho.blur import gaussian_blur
from ptycho.metrics import (
    PSNR_CAP_DB,
    align_global,
    evaluate,
    format_metric,
    frc50,
    frc_curve,
    is_constant,
    mae,
    psnr,
    remove_phase_plane,
    scanned_region,
    ssim,
)
from ptycho.objects import make_object


def _texture(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return gaussian_blur(rng.random((size, size)), 1.5) * 4


def _ssim_brute_force(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Direct per-window SSIM (Wang et al. 2004), written independently of ptycho.metrics."""
    x = np.arange(-5, 6)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            wa, wb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            ma, mb = (g * wa).sum(), (g * wb).sum()
            va, vb = (g * (wa - ma) ** 2).sum(), (g * (wb - mb) ** 2).sum()
            cov = (g * (wa - ma) * (wb - mb)).sum()
            values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_brute_force_window_definition() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((26, 31))
    b = a + 0.3 * rng.random((26, 31))
    assert ssim(b, a) == pytest.approx(_ssim_brute_force(b, a, data_range=np.ptp(a)), rel=1e-10)
    assert ssim(b, a, data_range=2.0) == pytest.approx(_ssim_brute_force(b, a, 2.0), rel=1e-10)


def test_ssim_known_cases() -> None:
    img = _texture()
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    # constant images: only the luminance term remains, (2ab + C1) / (a² + b² + C1)
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 0.4 * 0.6 + c1) / (0.4**2 + 0.6**2 + c1)
    assert ssim(np.full((16, 16), 0.4), np.full((16, 16), 0.6), data_range=1.0) == pytest.approx(expected)
    # shifted copies score lower, and lower the larger the shift
    scores = [ssim(np.roll(img, s, axis=1), img) for s in (1, 2, 4)]
    assert scores[0] < 0.95 and scores[0] > scores[1] > scores[2]
    # more noise → lower SSIM
    rng = np.random.default_rng(2)
    noise = rng.normal(size=img.shape)
    assert ssim(img + 0.05 * noise, img) > ssim(img + 0.2 * noise, img)
    with pytest.raises(ValueError, match="at least 11×11"):
        ssim(np.ones((8, 8)), np.ones((8, 8)))
    with pytest.raises(ValueError, match=r"shapes differ: pred \(16, 16\) vs truth \(16, 17\)"):
        ssim(np.ones((16, 16)), np.ones((16, 17)))


def test_psnr_known_cases() -> None:
    img = _texture()
    assert psnr(img, img) == math.inf
    assert psnr(img, img, cap=PSNR_CAP_DB) == PSNR_CAP_DB
    rng = np.random.default_rng(3)
    noisy = img + rng.normal(scale=0.05, size=img.shape)
    mse = np.mean((noisy - img) ** 2)
    assert psnr(noisy, img) == pytest.approx(10 * np.log10(np.ptp(img) ** 2 / mse))
    assert psnr(noisy, img, data_range=1.0) == pytest.approx(10 * np.log10(1.0 / mse))
    # hand-computed: range 1, error 0.1 everywhere → MSE 0.01 → 20 dB
    truth = np.zeros((4, 4))
    truth[0, 0] = 1.0
    assert psnr(truth + 0.1, truth) == pytest.approx(20.0)
    assert mae(truth + 0.1, truth) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="expected real images"):
        psnr(truth.astype(complex), truth)


def test_frc_of_image_with_itself_is_one_and_frc50_is_nyquist() -> None:
    img = _texture(size=64)
    curve = frc_curve(img, img)
    assert curve.shape == (33,)
    np.testing.assert_allclose(curve, 1.0, atol=1e-12)
    assert frc50(curve) == 32.0  # Nyquist in ring-index units: min(H, W) // 2
    rect = np.random.default_rng(0).random((40, 50))
    assert frc50(frc_curve(rect, rect)) == 20.0


def test_frc_detects_the_resolution_of_a_band_limited_copy() -> None:
    rng = np.random.default_rng(4)
    n, cutoff = 64, 12
    a = rng.normal(size=(n, n))
    radius = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]) * n
    low = np.rint(radius) <= cutoff
    b = np.fft.ifft2(np.where(low, np.fft.fft2(a), np.fft.fft2(rng.normal(size=(n, n))))).real
    curve = frc_curve(b, a)
    assert np.all(curve[1 : cutoff + 1] > 0.99)
    assert np.abs(curve[cutoff + 1 :]).mean() < 0.2
    assert frc50(curve) == pytest.approx(cutoff + 0.5, abs=0.5)
    independent = frc_curve(rng.normal(size=(n, n)), a)
    assert np.abs(independent[1:]).mean() < 0.2
    with pytest.raises(ValueError, match="1-D FRC curve"):
        frc50([1.0])


def test_global_alignment_makes_phase_offset_scaled_copy_perfect() -> None:
    truth = make_object("random", 48, np.random.default_rng(5))
    pred = 0.7 * np.exp(1j * 0.9) * truth
    np.testing.assert_allclose(align_global(pred, truth), truth, atol=1e-5)
    scores = evaluate(pred, truth)
    assert set(scores) == {f"{c}_{m}" for c in ("amp", "phase") for m in ("mae", "psnr", "ssim", "frc50")}
    assert scores["amp_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert scores["phase_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert scores["amp_mae"] < 1e-5 and scores["phase_mae"] < 1e-5
    assert scores["amp_psnr"] > 90 and scores["amp_frc50"] == 24.0 and scores["phase_frc50"] == 24.0
    json.dumps(scores, allow_nan=False)  # capped PSNR keeps the dict valid JSON
    # without alignment the same copy is far off
    assert ssim(np.angle(pred), np.angle(truth)) < 0.9


def test_a_phase_plane_is_removed_before_the_phase_is_scored() -> None:
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[0:64, 0:64]
    blobs = 1.2 * gaussian_blur(rng.normal(size=(64, 64)), 4.0)
    truth = (0.8 + 0.2 * gaussian_blur(rng.random((64, 64)), 2.0)) * np.exp(1j * blobs)
    plane = 0.4 + 0.012 * xx - 0.009 * yy  # 0.75 rad / 0.58 rad across the image
    tilted = truth * np.exp(1j * plane)
    np.testing.assert_allclose(remove_phase_plane(tilted, truth), truth, atol=1e-6)
    raw, scored = evaluate(tilted, truth, phase_plane=False), evaluate(tilted, truth)
    assert raw["phase_ssim"] < 0.8 and scored["phase_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert scored["amp_ssim"] == raw["amp_ssim"]  # the amplitude is scored as before
    # a plane cannot absorb structure: a blurred phase stays as bad with and without it
    blurred = np.abs(truth) * np.exp(1j * gaussian_blur(blobs, 3.0))
    assert evaluate(blurred, truth)["phase_ssim"] == pytest.approx(
        evaluate(blurred, truth, phase_plane=False)["phase_ssim"], abs=0.02)
    # a plane large enough to wrap at first is still found by the second pass
    steep = truth * np.exp(1j * (2.5 + 0.05 * xx))
    assert evaluate(steep, truth)["phase_ssim"] == pytest.approx(1.0, abs=1e-4)


def test_evaluate_scores_a_noisy_reconstruction_lower_and_crops() -> None:
    rng = np.random.default_rng(6)
    truth = make_object("lines", 96, rng)
    noisy = truth + 0.2 * (rng.normal(size=truth.shape) + 1j * rng.normal(size=truth.shape))
    full = evaluate(noisy, truth)
    assert 0 < full["amp_ssim"] < 0.9 and full["amp_psnr"] < 30 and full["amp_frc50"] < 48
    # zero-phase truth: its phase SSIM / PSNR / FRC50 are not applicable, the rest finite
    assert full["phase_ssim"] is None and full["phase_psnr"] is None and full["phase_frc50"] is None
    assert all(math.isfinite(v) for v in full.values() if v is not None)
    assert math.isfinite(full["phase_mae"])
    crop = scanned_region(np.array([[20.2, 10.0], [60.7, 50.5]]), truth.shape)  # (x, y) rows
    assert crop == (slice(10, 51), slice(21, 61))
    cropped = evaluate(noisy, truth, crop=crop)
    assert cropped["amp_frc50"] <= 21.0
    with pytest.raises(ValueError, match=r"shapes differ: pred \(96, 96\) vs truth \(96, 95\)"):
        evaluate(noisy, truth[:, :95])
    with pytest.raises(ValueError, match="all zero"):
        evaluate(np.zeros((16, 16), complex), truth[:16, :16])


def test_a_constant_truth_channel_is_not_applicable_and_printed_as_na() -> None:
    rng = np.random.default_rng(8)
    phase = 0.8 * np.sin(np.arange(48)[:, None] / 5.0) * np.cos(np.arange(48)[None, :] / 7.0)
    truth = np.exp(1j * phase)  # a pure phase object: amplitude exactly 1
    pred = (1.0 + 0.05 * rng.normal(size=truth.shape)) * np.exp(1j * (phase + 0.05 * rng.normal(size=truth.shape)))
    scores = evaluate(pred, truth)
    # the amplitude truth is constant: no SSIM of -0.0 or PSNR of -107 dB, but n/a
    assert scores["amp_ssim"] is None and scores["amp_psnr"] is None and scores["amp_frc50"] is None
    assert 0.02 < scores["amp_mae"] < 0.08  # what leaked into the amplitude is still measured
    assert scores["phase_ssim"] > 0.8 and scores["phase_psnr"] > 20
    assert json.loads(json.dumps(scores))["amp_ssim"] is None  # JSON null
    assert format_metric(scores["amp_ssim"]) == "n/a"
    assert format_metric(scores["phase_ssim"], ".2f") == f"{scores['phase_ssim']:.2f}"
    assert is_constant(np.full((4, 4), 2.5)) and not is_constant(np.eye(4))
