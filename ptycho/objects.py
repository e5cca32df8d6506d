"""Synthetic complex objects for simulation: "lines", "random", "disk", and the bench objects
of ``ptycho.bench_objects`` through ``make_object``. Pure numpy."""

from __future__ import annotations

import numpy as np

from ptycho.bench_objects import make_bench_object
from ptycho.blur import gaussian_blur
from ptycho.config import OBJECT_TYPES

__all__ = ["make_object"]


def _lines(size: int, rng: np.random.Generator) -> np.ndarray:
    """Random line segments rasterised on a canvas, blurred, amplitude in [0.5, 1.5]."""
    n_lines = max(4, round(size * size / 500))
    start = rng.uniform(0, size, size=(n_lines, 2))
    angle = rng.uniform(0, np.pi, size=n_lines)
    length = rng.uniform(size / 16, size / 4, size=n_lines)
    t = np.linspace(0.0, 1.0, int(np.ceil(2 * size / 4)) + 1)  # ≤0.5 px steps
    xs = start[:, 0:1] + np.cos(angle)[:, None] * length[:, None] * t[None, :]
    ys = start[:, 1:2] + np.sin(angle)[:, None] * length[:, None] * t[None, :]
    ix = np.round(xs).astype(np.int64) % size
    iy = np.round(ys).astype(np.int64) % size
    hits = np.bincount((iy * size + ix).ravel(), minlength=size * size)
    canvas = (hits > 0).reshape(size, size).astype(np.float64)
    blurred = gaussian_blur(canvas, sigma=1.0)
    lo, hi = blurred.min(), blurred.max()
    scaled = (blurred - lo) / (hi - lo) if hi > lo else np.zeros_like(blurred)
    return (0.5 + scaled).astype(np.complex64)  # amplitude 0.5..1.5, zero phase


def _random(size: int, rng: np.random.Generator) -> np.ndarray:
    """i.i.d. amplitude U[0.5, 1.5] and phase U[-π/4, π/4] per pixel."""
    amplitude = rng.uniform(0.5, 1.5, size=(size, size))
    phase = rng.uniform(-np.pi / 4, np.pi / 4, size=(size, size))
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def _disk(size: int, rng: np.random.Generator) -> np.ndarray:
    """Centred disk (radius size/4, edge blurred σ=1 px): amplitude 1.5 / 0.5, phase 0.5 / 0 rad.

    Deterministic (does not draw from rng)."""
    del rng
    k = np.arange(size) - (size - 1) / 2
    inside = (np.hypot(k[:, None], k[None, :]) <= size / 4).astype(np.float64)
    mask = np.clip(gaussian_blur(inside, sigma=1.0), 0.0, 1.0)
    return ((0.5 + mask) * np.exp(0.5j * mask)).astype(np.complex64)


def make_object(object_type: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic ground-truth object on a square canvas.

    object_type: "lines" (random line segments, Gaussian-blurred σ=1 px, amplitude scaled
                 to [0.5, 1.5], zero phase), "random" (i.i.d. amplitude/phase, for tests),
                 "disk" (centred blurred disk with a phase step, for tests), or a bench
                 object (``ptycho.bench_objects.BENCH_OBJECTS``)
    size:        canvas side (px), >= 8
    rng:         numpy Generator (the only source of randomness)
    returns:     (size, size) complex64
    """
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"make_object: object_type must be one of {list(OBJECT_TYPES)}, got {object_type!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"make_object: size must be an int >= 8, got {size!r}")
    maker = {"lines": _lines, "random": _random, "disk": _disk}.get(object_type)
    if maker is None:
        return make_bench_object(object_type, int(size), rng)
    return maker(int(size), rng)
