"""Reconstruction quality metrics: MAE, PSNR, SSIM, FRC / FRC50, on amplitude and phase.

Pure numpy (no scipy, no TensorFlow). All images are 2-D real arrays unless stated.

Conventions
-----------
* ``data_range`` (PSNR, SSIM): peak-to-peak range of the *reference* image (second
  argument, ``truth``) unless given explicitly. A constant reference (range 0, e.g. the phase
  of the zero-phase "lines" object) falls back to ``data_range = 1.0`` (amplitude units or
  radians) instead of dividing by zero; pass ``data_range`` to choose another value.
* PSNR = 10·log10(data_range² / MSE) dB; identical images give ``inf`` from ``psnr`` unless
  ``cap`` is given. ``evaluate`` caps at ``PSNR_CAP_DB`` = 100 dB so its results stay valid
  JSON.
* SSIM: Wang et al. (2004) with an 11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03,
  population (biased) local statistics; the mean is taken over the "valid" region where the
  window lies entirely inside the image (5-pixel border dropped). Images need ≥ 11×11 px.
* FRC: ring-wise normalised cross-correlation of the 2-D spectra (real part), no window.
  Ring k holds frequencies with round(|f|·n) == k, f in cycles/px, n = min(H, W); rings
  k = 0 … n//2 are returned, so ring index k means k/n cycles/px and the Nyquist limit is
  k = n//2. ``frc50`` is in the same ring-index units: the first (linearly interpolated)
  crossing below 0.5 after the DC ring, or n//2 (Nyquist) when the curve never drops below
  0.5 — e.g. an image against itself.
* A **constant truth channel** (e.g. the phase of a pure amplitude object, the amplitude of
  a pure phase object: peak-to-peak below ``CONSTANT_TOL``) has no structure to compare with,
  so ``evaluate`` reports its SSIM, PSNR and FRC50 as not applicable (``None``; ``format_metric``
  prints "n/a"); its MAE stays a number (it measures what leaked into that channel).
* ``evaluate`` aligns the prediction with the least-squares complex scale
  s = <truth, pred>/<pred, pred> (removes a global phase offset and amplitude scale), then
  scores amplitude |·| and phase angle(·) (phase MAE on the wrapped difference).
* **Phase plane.** Before the phase is scored, ``evaluate`` also removes the phase plane
  c0 + c1·x + c2·y least-squares fitted to the wrapped phase difference pred − truth
  (``remove_phase_plane``), as PtychoPINN's evaluation does (its ``fit_and_remove_plane``). A
  linear phase ramp over the whole object shifts every diffraction pattern by the same small
  amount (0.3 rad across 90 px at N=32 is 0.02 px), which the data barely constrain, and which
  alone can move the phase SSIM of a phase object from 0.95 to 0.7 (docs/findings.md,
  RESOLUTION-LOSS-001 section 6). ``evaluate(..., phase_plane=False)`` scores the raw phase.
  The amplitude is scored without it (a phase factor leaves |·| unchanged).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "PSNR_CAP_DB",
    "CONSTANT_TOL",
    "format_metric",
    "is_constant",
    "mae",
    "psnr",
    "ssim",
    "frc_curve",
    "frc50",
    "align_global",
    "remove_phase_plane",
    "scanned_region",
    "evaluate",
]

PSNR_CAP_DB = 100.0
# A truth channel whose peak-to-peak range is below this (amplitude units or rad) is constant:
# its SSIM / PSNR / FRC50 are not applicable (None).
CONSTANT_TOL = 1e-6
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # 11×11 window


def _pair(a: Any, b: Any, name: str, allow_complex: bool = False) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ: pred {a.shape} vs truth {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"{name}: expected 2-D images (H, W), got shape {a.shape}")
    if not allow_complex and (np.iscomplexobj(a) or np.iscomplexobj(b)):
        raise ValueError(f"{name}: expected real images; pass np.abs(...) or np.angle(...)")
    dtype = np.complex128 if allow_complex else np.float64
    return a.astype(dtype), b.astype(dtype)


def _range(truth: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        if not data_range > 0:
            raise ValueError(f"data_range must be > 0, got {data_range}")
        return float(data_range)
    span = float(truth.max() - truth.min())
    return span if span > 0 else 1.0


def mae(pred: Any, truth: Any) -> float:
    """Mean absolute error of two (H, W) real images."""
    a, b = _pair(pred, truth, "mae")
    return float(np.mean(np.abs(a - b)))


def psnr(pred: Any, truth: Any, data_range: float | None = None, cap: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB: 10·log10(data_range² / MSE).

    pred, truth: (H, W) real; data_range: see module docstring; cap: upper bound in dB
    (None → identical images give inf).
    """
    a, b = _pair(pred, truth, "psnr")
    peak = _range(b, data_range)
    mse = float(np.mean((a - b) ** 2))
    value = math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)
    return min(value, cap) if cap is not None else value


def _gaussian_kernel() -> np.ndarray:
    x = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * _SSIM_SIGMA**2))
    return k / k.sum()


def _filter_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (H, W) with a 1-D kernel on both axes."""
    size = len(kernel)
    rows = np.lib.stride_tricks.sliding_window_view(image, size, axis=0) @ kernel  # (H-s+1, W)
    return np.lib.stride_tricks.sliding_window_view(rows, size, axis=1) @ kernel


def ssim(pred: Any, truth: Any, data_range: float | None = None) -> float:
    """Mean structural similarity (Gaussian window σ=1.5, K1=0.01, K2=0.03), in [-1, 1].

    pred, truth: (H, W) real with H, W >= 11; data_range: see module docstring.
    """
    a, b = _pair(pred, truth, "ssim")
    size = 2 * _SSIM_RADIUS + 1
    if min(a.shape) < size:
        raise ValueError(f"ssim: images must be at least {size}×{size}, got {a.shape}")
    peak = _range(b, data_range)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    k = _gaussian_kernel()
    mu_a, mu_b = _filter_valid(a, k), _filter_valid(b, k)
    var_a = _filter_valid(a * a, k) - mu_a**2
    var_b = _filter_valid(b * b, k) - mu_b**2
    cov = _filter_valid(a * b, k) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def frc_curve(pred: Any, truth: Any) -> np.ndarray:
    """Fourier ring correlation per ring k = 0 … n//2 (n = min(H, W); units above).

    pred, truth: (H, W) real or complex; returns (n//2 + 1,) float64 in [-1, 1]; a ring with
    no power in either image scores 0.
    """
    a, b = _pair(pred, truth, "frc_curve", allow_complex=True)
    h, w = a.shape
    n = min(h, w)
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    radius = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]) * n
    ring = np.rint(radius).astype(np.int64).ravel()
    keep = ring <= n // 2
    ring = ring[keep]
    nbins = n // 2 + 1
    cross = np.bincount(ring, (fa * np.conj(fb)).real.ravel()[keep], nbins)
    pa = np.bincount(ring, (np.abs(fa) ** 2).ravel()[keep], nbins)
    pb = np.bincount(ring, (np.abs(fb) ** 2).ravel()[keep], nbins)
    den = np.sqrt(pa * pb)
    out = np.zeros(nbins)
    np.divide(cross, den, out=out, where=den > 0)
    return np.clip(out, -1.0, 1.0)


def frc50(curve: Any, threshold: float = 0.5) -> float:
    """First crossing of `threshold` after the DC ring, in ring-index units (float,
    linearly interpolated); len(curve) - 1 (Nyquist) if the curve never drops below it."""
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 1 or len(c) < 2:
        raise ValueError(f"frc50: expected a 1-D FRC curve with >= 2 rings, got shape {c.shape}")
    below = np.nonzero(c[1:] < threshold)[0]
    if len(below) == 0:
        return float(len(c) - 1)
    k = int(below[0]) + 1
    hi, lo = c[k - 1], c[k]
    return float(k - 1 + (hi - threshold) / (hi - lo)) if hi > lo else float(k)


def align_global(pred: Any, truth: Any) -> np.ndarray:
    """pred · s with the complex scalar s minimising ||truth - s·pred||² (global phase and
    amplitude scale). pred, truth: (H, W) complex; returns (H, W) complex128."""
    a, b = _pair(pred, truth, "align_global", allow_complex=True)
    power = float(np.vdot(a, a).real)
    if power == 0:
        raise ValueError("align_global: prediction is all zero")
    return a * (np.vdot(a, b) / power)


def remove_phase_plane(pred: Any, truth: Any, passes: int = 2) -> np.ndarray:
    """pred · exp(−i·(c0 + c1·x + c2·y)) with the plane least-squares fitted to the wrapped phase
    difference angle(pred · conj(truth)), each pixel weighted by |pred|·|truth| (dark pixels
    have no reliable phase); `passes` fits, each on the residual of the one before, so a
    difference that wraps at first is fitted too. pred, truth: (H, W) complex; returns (H, W)
    complex128 with |·| unchanged."""
    a, b = _pair(pred, truth, "remove_phase_plane", allow_complex=True)
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w]
    basis = np.stack([np.ones(h * w), (xx.ravel() - w / 2) / w, (yy.ravel() - h / 2) / h], axis=1)
    weight = np.sqrt((np.abs(a) * np.abs(b)).ravel())
    if not np.any(weight > 0):
        return a.astype(np.complex128)
    out = a.astype(np.complex128)
    for _ in range(passes):
        diff = np.angle(out * np.conj(b)).ravel()
        coef, *_ = np.linalg.lstsq(basis * weight[:, None], diff * weight, rcond=None)
        out = out * np.exp(-1j * (basis @ coef)).reshape(h, w)
    return out


def scanned_region(coords: Any, shape: tuple[int, int] | None = None) -> tuple[slice, slice]:
    """(row slice, column slice) of the bounding box of the scan positions, rounded inwards
    (every pixel in it lies between positions, so it is well illuminated) and clipped to shape.

    coords: (B, 1, 2, C) group patch positions (``SimulatedData.coords``) or (P, 2), as (x, y) =
            (column, row) on the object canvas; shape: canvas (H, W) to clip to, or None.
    """
    coords = np.asarray(coords, np.float64)
    if coords.ndim == 4 and coords.shape[1:3] == (1, 2):
        xy = np.moveaxis(coords[:, 0], 2, 1).reshape(-1, 2)
    elif coords.ndim == 2 and coords.shape[1] == 2:
        xy = coords
    else:
        raise ValueError(f"scanned_region: coords must have shape (B, 1, 2, C) or (P, 2), "
                         f"got {coords.shape}")
    if xy.size == 0:
        raise ValueError("scanned_region: no positions")
    x0, y0 = np.ceil(xy.min(axis=0)).astype(int)
    x1, y1 = np.floor(xy.max(axis=0)).astype(int) + 1
    if shape is not None:
        y0, x0 = max(y0, 0), max(x0, 0)
        y1, x1 = min(y1, shape[0]), min(x1, shape[1])
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"scanned_region: empty region for positions spanning x∈[{x0}, {x1}), "
                         f"y∈[{y0}, {y1})")
    return slice(int(y0), int(y1)), slice(int(x0), int(x1))


def is_constant(truth: Any, tol: float = CONSTANT_TOL) -> bool:
    """True when the real image `truth` has a peak-to-peak range below `tol` (no structure)."""
    values = np.asarray(truth, np.float64)
    return bool(values.size == 0 or float(values.max() - values.min()) < tol)


def format_metric(value: float | None, spec: str = ".3f") -> str:
    """`value` formatted with `spec`, or "n/a" for a metric that is not applicable (None)."""
    return "n/a" if value is None else format(value, spec)


def evaluate(pred: Any, truth: Any, crop: tuple[slice, slice] | None = None,
             phase_plane: bool = True) -> dict[str, float | None]:
    """Amplitude and phase metrics of a reconstructed object against the ground truth.

    pred, truth: (H, W) complex (real accepted); crop: (row slice, column slice) applied to
    both before alignment (e.g. ``scanned_region(...)``), or None for the full images;
    phase_plane: score the phase after ``remove_phase_plane`` (see the module docstring).
    returns: {amp,phase}_{mae,psnr,ssim,frc50} as floats (PSNR capped at 100 dB; FRC50 in
             ring-index units, Nyquist = min(h, w)//2 of the cropped image); the PSNR, SSIM
             and FRC50 of a channel whose truth is constant (``is_constant``) are None.
    """
    p, t = np.asarray(pred), np.asarray(truth)
    if p.shape != t.shape:
        raise ValueError(f"evaluate: shapes differ: pred {p.shape} vs truth {t.shape}")
    if crop is not None:
        p, t = p[crop], t[crop]
    p, t = _pair(p, t, "evaluate", allow_complex=True)
    aligned = align_global(p, t)
    results: dict[str, float] = {}
    channels = {
        "amp": (np.abs(aligned), np.abs(t)),
        "phase": (np.angle(remove_phase_plane(aligned, t) if phase_plane else aligned), np.angle(t)),
    }
    for name, (a, b) in channels.items():
        if name == "phase":
            results["phase_mae"] = float(np.mean(np.abs(np.angle(np.exp(1j * (a - b))))))
        else:
            results["amp_mae"] = mae(a, b)
        if is_constant(b):
            results.update({f"{name}_psnr": None, f"{name}_ssim": None, f"{name}_frc50": None})
            continue
        results[f"{name}_psnr"] = psnr(a, b, cap=PSNR_CAP_DB)
        results[f"{name}_ssim"] = ssim(a, b)
        results[f"{name}_frc50"] = frc50(frc_curve(a, b))
    return results
