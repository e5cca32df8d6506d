"""Bench objects: synthetic samples that exercise resolution, phase and mixed contrast.

Pure numpy, seeded by the caller's ``np.random.Generator``. Each generator returns a
(size, size) complex64 transmission function; which channel carries the structure is
recorded in ``CARRIER`` ("amp" or "phase", the channel a bench scores it on).

  thin_lines    1-px line segments (σ 0.5 px blur), amplitude 0.5–1.5, zero phase
  thick_lines   4-px wide line segments (σ 1 px blur), amplitude 0.5–1.5, zero phase
  siemens       Siemens star (36 spokes) filling the canvas, amplitude 0.5 / 1.5, zero phase
  phase_blobs   amplitude 1, smooth Gaussian phase blobs scaled to ±π/2
  mixed_blobs   independent Gaussian blobs in amplitude (0.6–1.4) and phase (±π/4)
  pinn_lines    after the facts of PtychoPINN's dose-study "lines" object (written here
                independently): lines spanning a canvas twice the size, central crop, the
                sum of three Gaussian blurs (σ 1, 5, 10 px with weights 1, 2, 5), amplitude
                scaled to 0.59–1.5, zero phase; line density that of 400 lines on 256 px
"""

from __future__ import annotations

import numpy as np

from ptycho.blur import gaussian_blur

__all__ = ["BENCH_OBJECTS", "CARRIER", "make_bench_object"]


def _scale(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of image's range onto [lo, hi] (constant image → lo)."""
    a, b = float(image.min()), float(image.max())
    unit = (image - a) / (b - a) if b > a else np.zeros_like(image)
    return lo + (hi - lo) * unit


def _raster_segments(size: int, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Binary (size, size) image of straight segments from start (K, 2) to end (K, 2) (x, y);
    points outside the canvas are dropped."""
    length = np.hypot(*(end - start).T)
    steps = int(np.ceil(length.max() * 2)) + 2  # ≤ 0.5 px steps
    t = np.linspace(0.0, 1.0, steps)[None, :]
    xs = np.rint(start[:, :1] + (end[:, :1] - start[:, :1]) * t).astype(np.int64).ravel()
    ys = np.rint(start[:, 1:] + (end[:, 1:] - start[:, 1:]) * t).astype(np.int64).ravel()
    keep = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
    canvas = np.zeros((size, size))
    canvas[ys[keep], xs[keep]] = 1.0
    return canvas


def _segments(size: int, rng: np.random.Generator, per_px2: float) -> tuple[np.ndarray, np.ndarray]:
    n = max(4, round(size * size * per_px2))
    start = rng.uniform(0, size, size=(n, 2))
    angle = rng.uniform(0, np.pi, size=n)
    length = rng.uniform(size / 16, size / 4, size=n)
    end = start + np.stack([np.cos(angle), np.sin(angle)], axis=1) * length[:, None]
    return start, end


def _thin_lines(size: int, rng: np.random.Generator) -> np.ndarray:
    lines = _raster_segments(size, *_segments(size, rng, 1 / 500))
    return _scale(gaussian_blur(lines, 0.5), 0.5, 1.5).astype(np.complex64)


def _thick_lines(size: int, rng: np.random.Generator) -> np.ndarray:
    start, end = _segments(size, rng, 1 / 1500)
    normal = end - start
    normal = np.stack([-normal[:, 1], normal[:, 0]], axis=1) / np.hypot(*normal.T)[:, None]
    lines = sum(_raster_segments(size, start + w * normal, end + w * normal)
                for w in (-1.5, -0.75, 0.0, 0.75, 1.5))
    return _scale(gaussian_blur(np.minimum(lines, 1.0), 1.0), 0.5, 1.5).astype(np.complex64)


def _siemens(size: int, rng: np.random.Generator) -> np.ndarray:
    del rng  # deterministic
    k = np.arange(size) - (size - 1) / 2
    theta = np.arctan2(k[:, None], k[None, :])
    spokes = (np.sin(18 * theta) > 0).astype(np.float64)  # 36 spokes (18 dark, 18 bright)
    return _scale(gaussian_blur(spokes, 0.5), 0.5, 1.5).astype(np.complex64)


def _blobs(size: int, rng: np.random.Generator, per_px2: float) -> np.ndarray:
    """Sum of Gaussian blobs of σ 3–8 px with random signs, zero mean, in (-1, 1)."""
    n = max(3, round(size * size * per_px2))
    k = np.arange(size)
    image = np.zeros((size, size))
    for x, y, s, sign in zip(rng.uniform(0, size, n), rng.uniform(0, size, n),
                             rng.uniform(3, 8, n), rng.choice([-1.0, 1.0], n), strict=True):
        image += sign * np.exp(-((k[None, :] - x) ** 2 + (k[:, None] - y) ** 2) / (2 * s * s))
    return image / max(float(np.abs(image).max()), 1e-12)


def _phase_blobs(size: int, rng: np.random.Generator) -> np.ndarray:
    return np.exp(1j * (np.pi / 2) * _blobs(size, rng, 1 / 250)).astype(np.complex64)


def _mixed_blobs(size: int, rng: np.random.Generator) -> np.ndarray:
    amplitude = 1.0 + 0.4 * _blobs(size, rng, 1 / 250)
    phase = (np.pi / 4) * _blobs(size, rng, 1 / 250)
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def _pinn_lines(size: int, rng: np.random.Generator) -> np.ndarray:
    big = 2 * size
    n = max(4, round(400 * size / 128))  # same line density as 400 lines on 256 px
    start = rng.uniform(0, big, size=(n, 2))
    end = rng.uniform(0, big, size=(n, 2))
    lines = _raster_segments(big, start, end)
    image = gaussian_blur(lines, 1.0) + 2 * gaussian_blur(lines, 5.0) + 5 * gaussian_blur(lines, 10.0)
    crop = image[size // 2: size // 2 + size, size // 2: size // 2 + size]
    return _scale(crop, 0.59, 1.5).astype(np.complex64)


_MAKERS = {"thin_lines": _thin_lines, "thick_lines": _thick_lines, "siemens": _siemens,
           "phase_blobs": _phase_blobs, "mixed_blobs": _mixed_blobs, "pinn_lines": _pinn_lines}
BENCH_OBJECTS: tuple[str, ...] = tuple(_MAKERS)
CARRIER: dict[str, str] = {"thin_lines": "amp", "thick_lines": "amp", "siemens": "amp",
                           "phase_blobs": "phase", "mixed_blobs": "amp", "pinn_lines": "amp"}


def make_bench_object(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Bench object `name` (one of BENCH_OBJECTS) on a (size, size) canvas, complex64."""
    if name not in _MAKERS:
        raise ValueError(f"make_bench_object: name must be one of {list(BENCH_OBJECTS)}, got {name!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"make_bench_object: size must be an int >= 16, got {size!r}")
    return _MAKERS[name](int(size), rng)
