"""Gaussian blur shared by the object and probe generators. Pure numpy."""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_blur"]


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian blur (std `sigma` px) by multiplication with the Gaussian's FT.

    image: (H, W) real float; returns (H, W) float64.
    """
    h, w = image.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    kernel = np.exp(-2.0 * np.pi**2 * sigma**2 * (fx**2 + fy**2))
    return np.fft.irfft2(np.fft.rfft2(image) * kernel, s=(h, w))
