"""Ptychography forward simulation: probe × object patch → far-field counts with Poisson noise.

Pipeline of ``simulate(cfg)`` (all numpy, vectorised, seeded; no TensorFlow):
  1. probe = ``make_probe(N, probe_scale, probe_defocus)``; object = ``make_object(type, canvas, rng)``
  2. P = n_images scan positions uniform inside the canvas minus ``cfg.buffer``
  3. one group per position: C = gridsize² of its ``neighbor_count`` nearest neighbours;
     offsets relative to the group's centre of mass
  4. sub-pixel extraction of the P unique N×N patches: bilinear (equivalent to
     ``translation.translate`` with zero fill, checked by a test) or a band-limited Fourier
     shift (``cfg.subpixel``)
  5. far field ``|fftshift(fft2(probe · patch, norm="ortho"))|²`` per unique position
  6. dose: scale so the mean total expected counts per pattern (over the B·C returned
     patterns) is exactly ``nphotons``; Poisson sampling with the seeded generator. Each
     scan position is measured once: groups that share a position share its pattern.
  7. network input ``diffraction = sqrt(counts) / intensity_scale`` with
     ``intensity_scale = sqrt(nphotons) / (N/2)`` (depends only on the config, so train
     and test sets at one dose share it); mean Σ diffraction² per pattern ≈ (N/2)².

Random streams: ``np.random.default_rng(seed).spawn(4)`` → object, scan, grouping, noise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ptycho.config import SimConfig
from ptycho.objects import make_object
from ptycho.probe import make_probe
from ptycho.scan import group_offsets, group_positions, random_positions

__all__ = [
    "SimulatedData",
    "simulate",
    "far_field",
    "least_squares_scale",
    "extract_patches",
    "expose",
    "make_probe",
    "make_object",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SimulatedData:
    """A simulated data set (B groups of C = gridsize² patches, P scan positions).

    diffraction:     (B, N, N, C) float32 network input, sqrt(counts) / intensity_scale
    counts:          (B, N, N, C) float32 Poisson counts (mean total per pattern ≈ nphotons)
    intensity_scale: float, sqrt(counts) == diffraction · intensity_scale
    offsets:         (B, 1, 2, C) float32 (x, y) positions relative to the group centre (px)
    coords:          (B, 1, 2, C) float32 (x, y) global patch-centre positions on the canvas
    object_patches:  (B, N, N, C) complex64 ground-truth patches; patch pixel (N//2, N//2)
                     sits at the canvas position in ``coords``
    probe:           (N, N) complex64
    obj:             (H, W) complex64 ground-truth object (H = W = cfg.canvas_size)
    scan_index:      (B, C) int64 scan position of each patch
    xcoords, ycoords:(P,) float64 scan positions
    dose_scale:      float, expected counts = dose_scale · far_field(probe, patches)²
    nphotons, seed, config
    """

    diffraction: np.ndarray
    counts: np.ndarray
    intensity_scale: float
    offsets: np.ndarray
    coords: np.ndarray
    object_patches: np.ndarray
    probe: np.ndarray
    obj: np.ndarray
    scan_index: np.ndarray
    xcoords: np.ndarray
    ycoords: np.ndarray
    dose_scale: float
    nphotons: float
    seed: int
    config: SimConfig

    @property
    def n_groups(self) -> int:
        """B."""
        return int(self.diffraction.shape[0])


def extract_patches(obj: np.ndarray, positions: np.ndarray, n: int,
                    subpixel: str = "bilinear") -> np.ndarray:
    """Sub-pixel N×N patches centred (pixel N//2) at each (x, y) position.

    obj:       (H, W) complex64
    positions: (P, 2) float (x, y); every patch plus one pixel must lie inside obj
    subpixel:  "bilinear" (interpolation between the 4 neighbours: a fractional position
               low-passes the patch) or "fourier" (a band-limited shift of the patch's
               window, extended by ``FOURIER_MARGIN`` px where the canvas allows: keeps the
               object's detail at every position)
    returns:   (P, N, N) complex64 with patch[i, j] = obj(y - N//2 + i, x - N//2 + j)
    """
    h, w = obj.shape
    origin = positions - n // 2  # canvas coordinate of patch pixel (0, 0)
    base = np.floor(origin)
    frac = (origin - base).astype(np.float32)
    base = base.astype(np.int64)
    if subpixel not in ("bilinear", "fourier"):
        raise ValueError(f"extract_patches: subpixel must be 'bilinear' or 'fourier', got {subpixel!r}")
    if base.min() < 0 or base[:, 0].max() + n >= w or base[:, 1].max() + n >= h:
        raise ValueError(
            f"extract_patches: a {n}×{n} patch leaves the {h}×{w} canvas "
            f"(positions x∈[{positions[:, 0].min():.2f}, {positions[:, 0].max():.2f}], "
            f"y∈[{positions[:, 1].min():.2f}, {positions[:, 1].max():.2f}])"
        )
    if subpixel == "fourier":
        return _fourier_patches(np.asarray(obj, np.complex64), base, frac, n)
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(obj, np.complex64), (n + 1, n + 1))
    out = np.empty((len(base), n, 2 * n), np.float32)  # re/im interleaved
    for i in range(0, len(base), EXTRACT_CHUNK):  # a chunk's temporaries at a time: the memory
        rows = slice(i, i + EXTRACT_CHUNK)
        window = windows[base[rows, 1], base[rows, 0]].view(np.float32)  # (K, N+1, 2(N+1))
        fx = frac[rows, 0, None, None]
        fy = frac[rows, 1, None, None]
        # linear interpolation v0 + f·(v1 - v0) on the float view (10× faster than complex
        # maths); along x the neighbouring complex value is 2 floats away.
        along_x = window[:, :, 2:] - window[:, :, :-2]
        along_x *= fx
        along_x += window[:, :, :-2]  # (K, N+1, 2N)
        part = out[rows]
        np.subtract(along_x[:, 1:], along_x[:, :-1], out=part)
        part *= fy
        part += along_x[:, :-1]  # (K, N, 2N)
    return out.view(np.complex64)


EXTRACT_CHUNK = 256  # patches ``extract_patches`` interpolates at a time: the working memory


FOURIER_MARGIN = 8  # px of canvas around each window a Fourier-shifted patch is cut from


def _fourier_patches(obj: np.ndarray, base: np.ndarray, frac: np.ndarray, n: int,
                     chunk: int = 256) -> np.ndarray:
    """Patches whose pixel (0, 0) sits at base + frac, by a Fourier shift of a window
    extended by a margin m (≤ FOURIER_MARGIN, as far as the canvas allows on every side):
    the wrap-around of the circular shift stays in the margin, which is cropped."""
    h, w = obj.shape
    m = int(min(FOURIER_MARGIN, base.min(), w - 1 - (base[:, 0].max() + n),
                h - 1 - (base[:, 1].max() + n)))
    size = n + 2 * m
    freq = np.fft.fftfreq(size)
    windows = np.lib.stride_tricks.sliding_window_view(obj, (size, size))
    out = np.empty((len(base), n, n), np.complex64)
    for lo in range(0, len(base), chunk):
        b, f = base[lo:lo + chunk] - m, frac[lo:lo + chunk].astype(np.float64)
        spectrum = np.fft.fft2(windows[b[:, 1], b[:, 0]])
        # content at window coordinate frac moves to 0: a shift by -frac
        ramp = np.exp(2j * np.pi * (f[:, 1, None, None] * freq[None, :, None]
                                    + f[:, 0, None, None] * freq[None, None, :]))
        out[lo:lo + chunk] = np.fft.ifft2(spectrum * ramp)[:, m:m + n, m:m + n]
    return out


def far_field(probe: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """Diffraction amplitude of the exit waves, zero frequency at pixel (N//2, N//2).

    probe:   (N, N) complex64
    patches: (B, N, N, C) complex64 (also accepts (B, N, N))
    returns: same leading shape, float32, |fftshift(fft2(probe · patch, norm="ortho"))|
             (expected counts = dose_scale · amplitude²)
    """
    patches = np.asarray(patches)
    probe = np.asarray(probe)
    if patches.ndim not in (3, 4) or patches.shape[1:3] != probe.shape:
        raise ValueError(
            f"far_field: patches must be (B, N, N, C) or (B, N, N) with N×N = probe shape "
            f"{probe.shape}, got {patches.shape}"
        )
    wave = patches * (probe[None, :, :, None] if patches.ndim == 4 else probe[None])
    spectrum = np.fft.fftshift(np.fft.fft2(wave, axes=(1, 2), norm="ortho"), axes=(1, 2))
    return np.abs(spectrum).astype(np.float32)


def least_squares_scale(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """s minimising Σ (s·a − m)² over (predicted a, measured m) amplitude array pairs, which
    may come a chunk at a time; 1 when a is all zero or the best s is not positive."""
    cross = power = 0.0
    for amp, measured in pairs:
        cross += float(np.sum(amp * measured, dtype=np.float64))
        power += float(np.sum(np.square(amp, dtype=np.float64)))
    return cross / power if cross > 0 and power > 0 else 1.0


def expose(
    intensity: np.ndarray,
    nphotons: float,
    rng: np.random.Generator,
    multiplicity: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Scale intensities to the dose and draw Poisson counts.

    intensity:    (P, ...) float ≥ 0, one pattern per leading index
    nphotons:     target mean total expected counts per pattern (> 0)
    multiplicity: (P,) how often each pattern is used downstream (mean weighted by it);
                  None → every pattern once
    returns:      counts (P, ...) float32 Poisson samples of dose_scale · intensity, and
                  dose_scale (float) so the weighted mean of dose_scale·Σ intensity is
                  exactly nphotons
    """
    if not np.isfinite(nphotons) or nphotons <= 0:
        raise ValueError(f"expose: nphotons must be > 0, got {nphotons!r}")
    intensity = np.asarray(intensity, dtype=np.float64)
    totals = intensity.reshape(len(intensity), -1).sum(axis=1)
    weights = np.ones(len(totals)) if multiplicity is None else np.asarray(multiplicity, np.float64)
    mean_total = float((totals * weights).sum() / weights.sum())
    if not mean_total > 0:
        raise ValueError("expose: intensities are all zero; nothing to scale to the dose")
    dose_scale = nphotons / mean_total
    counts = rng.poisson(intensity * dose_scale).astype(np.float32)
    return counts, dose_scale


def _by_group(unique: np.ndarray, scan_index: np.ndarray) -> np.ndarray:
    """(P, N, N) per position → (B, N, N, C) per group member (one channel at a time, so
    the only temporary is (B, N, N))."""
    b, c = scan_index.shape
    out = np.empty((b, *unique.shape[1:], c), dtype=unique.dtype)
    for k in range(c):
        out[..., k] = unique[scan_index[:, k]]
    return out


def simulate(cfg: SimConfig) -> SimulatedData:
    """Simulate a ptychographic data set described by `cfg` (see module docstring).

    returns: SimulatedData with B = P = cfg.n_images groups of C = cfg.gridsize² patches.
    """
    if not isinstance(cfg, SimConfig):
        raise TypeError(f"simulate expects a SimConfig, got {type(cfg).__name__}")
    n, c = cfg.N, cfg.C
    if cfg.gridsize > 1 and cfg.n_images < c:
        raise ValueError(f"simulate: n_images={cfg.n_images} < gridsize² = {c}; cannot form a group")
    obj_rng, scan_rng, group_rng, noise_rng = np.random.default_rng(cfg.seed).spawn(4)
    probe = make_probe(n, cfg.probe_scale, cfg.probe_defocus)
    obj = make_object(cfg.object_type, cfg.canvas_size, obj_rng)
    positions = random_positions(cfg.n_images, cfg.canvas_size, cfg.buffer, scan_rng)
    scan_index = group_positions(positions, cfg.gridsize, cfg.neighbor_count, group_rng)
    coords, offsets = group_offsets(positions, scan_index)

    patches = extract_patches(obj, positions, n, cfg.subpixel)  # (P, N, N)
    uses = np.bincount(scan_index.ravel(), minlength=len(positions))
    counts, dose_scale = expose(np.square(far_field(probe, patches), dtype=np.float64),
                                cfg.nphotons, noise_rng, multiplicity=uses)
    intensity_scale = float(np.sqrt(cfg.nphotons) / (n / 2))
    # per group, one array at a time, each per-position array dropped once grouped: the peak
    diffraction = _by_group(np.sqrt(counts) / np.float32(intensity_scale), scan_index)
    counts = _by_group(counts, scan_index)
    patches = _by_group(patches, scan_index)

    log.info(
        "simulated %d groups × %d patches, N=%d, canvas %d px, %.3g photons",
        cfg.n_images, c, n, cfg.canvas_size, cfg.nphotons,
    )
    return SimulatedData(
        diffraction=diffraction,
        counts=counts,
        intensity_scale=intensity_scale,
        offsets=offsets,
        coords=coords,
        object_patches=patches,
        probe=probe,
        obj=obj,
        scan_index=scan_index,
        xcoords=positions[:, 0].copy(),
        ycoords=positions[:, 1].copy(),
        dose_scale=float(dose_scale),
        nphotons=cfg.nphotons,
        seed=cfg.seed,
        config=cfg,
    )
