"""Probe: a soft-edged disk of illumination with an optional defocus curvature. Pure numpy."""

from __future__ import annotations

import numpy as np

from ptycho.blur import gaussian_blur

__all__ = ["make_probe", "probe_radius", "illumination_radius", "twin_symmetry", "light_outside_half",
           "half_support_fits", "EDGE_BLUR_PX", "SUPPORT_MISFIT_FACTOR", "TWIN_WARN_LEVEL"]

EDGE_BLUR_PX = 1.0  # σ of the Gaussian that softens the disk edge
# dropped photons per pattern, in units of N² (the noise floor), above which the model's object
# support is the whole patch (half_support_fits)
SUPPORT_MISFIT_FACTOR = 100.0
# twin_symmetry at or above which a probe leaves single patterns twin-ambiguous (a 0.5 rad
# defocus gives 0.96, 1 rad 0.85, the study's 2 rad 0.51; docs/findings.md PROBE-TWIN-001)
TWIN_WARN_LEVEL = 0.9


def probe_radius(n: int, probe_scale: float) -> float:
    """Radius of the illuminated disk in real-space pixels: N / (2·probe_scale)
    (about 10.7 px for N=64, probe_scale 3: a diameter of N/3)."""
    return n / (2.0 * probe_scale)


def make_probe(n: int, probe_scale: float, defocus: float = 0.0) -> np.ndarray:
    """Illumination probe: a disk of radius ``R = N / (2·probe_scale)`` px, its edge softened
    by a Gaussian of σ = 1 px, with the quadratic (defocus) phase ``defocus · (r / R)²`` rad.

    This is the probe of an aperture a short way out of focus, and it mirrors the flat-top
    disk probe of the original PtychoPINN simulations (diameter ≈ N/3). The disk must leave
    room around it (R ≤ N/4 − 2 px keeps the light outside the model's object support of the
    central N/2 × N/2 square under 1e-4, ``light_outside_half``).

    ``defocus = 0`` gives a real, centro-symmetric probe: every single diffraction pattern is
    then also explained by the twin object conj(O(−r)). A defocus of a few radians makes the
    probe complex, which breaks that ambiguity, as with the defocused probes of most
    experiments; it spreads the diffraction pattern over more detector pixels.

    n:           probe side N (px), >= 2
    probe_scale: > 0; R must be >= 1 px
    defocus:     phase at the disk edge (rad), finite
    returns:     (N, N) complex64, maximum amplitude exactly 1, centred at pixel (N//2, N//2)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"make_probe: N must be an int >= 2, got {n!r}")
    if not np.isfinite(probe_scale) or probe_scale <= 0:
        raise ValueError(f"make_probe: probe_scale must be > 0, got {probe_scale!r}")
    if not np.isfinite(defocus):
        raise ValueError(f"make_probe: defocus must be finite, got {defocus!r}")
    radius = probe_radius(int(n), float(probe_scale))
    if radius < 1.0:
        raise ValueError(
            f"make_probe: probe radius N/(2·probe_scale) = {radius:.3g} px < 1 "
            f"(N={n}, probe_scale={probe_scale}); use a smaller probe_scale"
        )
    k = np.arange(n) - n // 2
    r = np.hypot(k[:, None], k[None, :])
    disk = np.clip(radius + 0.5 - r, 0.0, 1.0)
    amplitude = np.clip(gaussian_blur(disk, EDGE_BLUR_PX), 0.0, None)
    probe = amplitude * np.exp(1j * float(defocus) * (r / radius) ** 2)
    probe /= np.abs(probe).max()
    return probe.astype(np.complex64)


def twin_symmetry(probe: np.ndarray) -> float:
    """How nearly a probe is its own twin: max over shifts s of |⟨P, conj(P(−r − s))⟩| / Σ|P|².

    A diffraction pattern |FFT(P·O)| is the same for the object O and its twin conj(O(−r)) when
    the probe P equals its own twin conj(P(−r)) up to a shift: 1.0 for any real,
    centro-symmetric probe (PtychoPINN's default disk), < 1 once a defocus curvature breaks the
    symmetry. A network that sees one pattern at a time cannot tell such twins apart.

    probe: (N, N) complex; returns a float in [0, 1]
    """
    probe = np.asarray(probe, np.complex128)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"twin_symmetry: probe must be (N, N), got shape {probe.shape}")
    power = float(np.sum(np.abs(probe) ** 2))
    if power == 0.0:
        raise ValueError("twin_symmetry: the probe is zero everywhere")
    twin = np.conj(probe[::-1, ::-1])
    correlation = np.fft.ifft2(np.fft.fft2(probe) * np.conj(np.fft.fft2(twin)))
    return float(min(1.0, np.abs(correlation).max() / power))


def illumination_radius(probe: np.ndarray) -> float:
    """Radius (px) of the disk whose area equals the area where |P|² is at least half its peak:
    ≈ R for ``make_probe``'s disk of radius R, ≈ 10 px for PtychoPINN's default 64-px probe.

    probe: (N, N) complex, not all zero; returns a float >= sqrt(1/π)
    """
    intensity = np.abs(np.asarray(probe)) ** 2
    peak = float(intensity.max()) if intensity.size else 0.0
    if peak == 0.0:
        raise ValueError("illumination_radius: the probe is zero everywhere")
    return float(np.sqrt(np.count_nonzero(intensity >= 0.5 * peak) / np.pi))


def light_outside_half(probe: np.ndarray) -> float:
    """Fraction of the probe's light Σ|P|² outside the central N/2 × N/2 square, the object
    support of a model with ``pad_object`` (rows and columns N//4 … N//4 + N/2 − 1).

    Under 1e-4 for ``make_probe``'s disks with R ≤ N/4 − 2 px (6e-10 for the study's N=64
    probe, 1.2e-6 at N=32), 0 for PtychoPINN's default probe;
    0.021 for a focused, aberrated 64-px probe whose core is only ≈ 5 px in radius but whose
    rings reach the patch edge (RESOLUTION-SUPPORT-001).
    probe: (N, N) complex, not all zero; returns a float in [0, 1]
    """
    intensity = np.abs(np.asarray(probe, np.complex128)) ** 2
    if intensity.ndim != 2 or intensity.shape[0] != intensity.shape[1]:
        raise ValueError(f"light_outside_half: probe must be (N, N), got shape {intensity.shape}")
    total = float(intensity.sum())
    if total == 0.0:
        raise ValueError("light_outside_half: the probe is zero everywhere")
    q = intensity.shape[0] // 4
    inside = float(intensity[q:q + 2 * q, q:q + 2 * q].sum())
    return max(0.0, 1.0 - inside / total)


def half_support_fits(probe: np.ndarray, nphotons: float) -> bool:
    """Whether a model whose object is zero outside the central N/2 × N/2 suits data taken with
    this probe: true while the photons it cannot explain per pattern,
    ``light_outside_half(probe) · nphotons``, stay under ``SUPPORT_MISFIT_FACTOR`` · N².

    N² is about the Poisson deviance of a perfect fit (one unit per pixel); the network's own
    misfit is two to three orders of magnitude above it, so the light must be dropped well above
    the noise before the whole patch, with four times the outputs to learn, fits better. Measured
    (RESOLUTION-SUPPORT-001): at 1.1 N² (the study's N=32 probe at 1e9) the whole patch lost
    0.007–0.077 SSIM on the five line objects and was level (±0.006) on the two blob objects; at
    5200 N² (a focused, aberrated probe) it gained 0.19 in phase SSIM.

    probe: (N, N) complex; nphotons: mean counts per pattern (> 0)
    """
    if not np.isfinite(nphotons) or nphotons <= 0:
        raise ValueError(f"half_support_fits: nphotons must be > 0, got {nphotons!r}")
    n = np.shape(probe)[0]
    return light_outside_half(probe) * float(nphotons) < SUPPORT_MISFIT_FACTOR * n * n
