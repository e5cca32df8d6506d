"""Inference: predict object patches and stitch them into one object.

``reconstruct(model, data)`` predicts the complex object patch of every diffraction pattern
(the decoder output, before the overlap constraint) and averages overlapping patches at their
global positions, weighting each pixel by the probe intensity |P|² (pixels the probe barely
illuminates carry little information), on a canvas grown so that patches overhanging the
ground truth's frame fit (``ptycho.stitching``). ``scanned_region`` (from ``ptycho.metrics``,
re-exported here) gives the crop for metrics.

Before stitching, ``align_patch_phases`` gives every patch the constant phase factor that makes
it agree with its neighbours: a diffraction pattern does not change when its patch is
multiplied by e^{iθ}, so the CNN, which sees one pattern, predicts each patch's phase only up
to such a constant; averaged unaligned, the low spatial frequencies of the phase cancel
(docs/findings.md, RESOLUTION-LOSS-001).

``reconstruct`` keeps of every predicted patch only the window the probe lights
(``support_window``: |probe|² ≥ ``SUPPORT_FLOOR`` of its peak), which both the alignment and the
stitching weight by |probe|²: the dropped pixels would add under 1e-9 of the weight, and the
patches held in memory shrink (2.6× for the study's probe at N=64).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from ptycho.metrics import scanned_region
from ptycho.model import PtychoModel, check_inputs, inference_model, model_probe
from ptycho.stitching import WEIGHT_FLOOR, canvas_shape, stitch_in_frame, stitch_patches

__all__ = ["predict_patches", "stitch_patches", "reconstruct", "scanned_region", "canvas_shape",
           "align_patch_phases", "phase_turns", "support_window", "WEIGHT_FLOOR", "PHASE_SWEEPS",
           "SUPPORT_FLOOR"]

PHASE_SWEEPS = 2  # passes aligning every patch to the rest of the canvas, after the first
SHIFT_CHUNK = 64  # patches Fourier-shifted at a time by phase_turns (its working memory)
SUPPORT_FLOOR = 1e-9  # patch pixels whose |probe|² is below this fraction of its peak are dropped

log = logging.getLogger(__name__)


def predict_patches(model: PtychoModel, diffraction: Any, batch_size: int = 64,
                    window: slice | None = None) -> np.ndarray:
    """Object patches for every group, predicted batch by batch into one preallocated array
    (peak memory: the result plus one batch).

    diffraction: (B, N, N, C) float32 (normalised network input)
    window:      rows and columns kept of every patch (``support_window``); None keeps all
    returns:     (B, M, M, C) complex64, M = N or the window's length
    """
    diffraction, _ = check_inputs(model.ptycho_config, diffraction, what="reconstruct")
    sub = inference_model(model)
    b, n, _, c = diffraction.shape
    keep = slice(0, n) if window is None else window
    m = len(range(n)[keep])
    batch = max(1, min(batch_size, b))
    out = np.empty((b, m, m, c), np.complex64)
    for start in range(0, b, batch):
        chunk = diffraction[start:start + batch]
        size = chunk.shape[0]
        if size < batch:  # pad the last batch: one input shape, no retracing/recompiling
            chunk = np.concatenate([chunk, np.zeros((batch - size, *chunk.shape[1:]), np.float32)])
        out[start:start + size] = np.asarray(sub.predict_on_batch(chunk))[:size, keep, keep]
    return out


def support_window(weights: np.ndarray, floor: float = SUPPORT_FLOOR) -> slice:
    """The rows (and columns) of an N×N patch that hold every pixel with weight ≥ floor·max,
    centred so that pixel N//2 stays the window's pixel M//2 (the scan position's pixel).

    weights: (N, N) ≥ 0 (|probe|²); returns slice(N//2 − h, N//2 + h), or slice(0, N) when
    that is no smaller than the patch
    """
    n = weights.shape[0]
    lit = np.argwhere(weights >= floor * weights.max())
    half = int(np.abs(lit - n // 2).max()) + 1
    return slice(0, n) if 2 * half >= n else slice(n // 2 - half, n // 2 + half)


def align_patch_phases(patches: np.ndarray, coords: np.ndarray, weights: np.ndarray,
                       sweeps: int = PHASE_SWEEPS) -> np.ndarray:
    """Patches each multiplied by the unit complex constant of ``phase_turns``, so that
    overlapping patches agree: (B, N, N, C) complex64, a new array."""
    turns = phase_turns(patches, coords, weights, sweeps)
    return np.asarray(patches, np.complex64) * turns[:, None, None, :]


def phase_turns(patches: np.ndarray, coords: np.ndarray, weights: np.ndarray,
                sweeps: int = PHASE_SWEEPS) -> np.ndarray:
    """The unit complex constant for every patch that makes overlapping patches agree.

    One pass grows the canvas from the scan's centre outwards (patches in order of distance
    from the centroid), turning each patch by the phase of its |probe|²-weighted correlation
    with what is already on the canvas under it; ``sweeps`` more passes then align every patch
    to the whole stitched canvas. For the fit each patch is moved by its fractional position
    with a Fourier shift and placed on whole pixels (only a constant per patch is fitted).
    The result is defined up to one global phase (which ``metrics.align_global`` removes).
    patches: (B, N, N, C) complex; coords: (B, 1, 2, C) (x, y) of pixel (N//2, N//2);
    weights: (N, N) ≥ 0 (|probe|²); returns (B, C) complex64
    """
    b, n, _, c = patches.shape
    source = np.asarray(patches, np.complex64)  # read only; patch i = b·C + c is source[b, ..., c]
    xy = np.moveaxis(np.asarray(coords, np.float64)[:, 0], 2, 1).reshape(b * c, 2)
    origin = np.rint(xy - n // 2).astype(np.int64)
    frac = xy - n // 2 - origin  # placed on whole pixels after a Fourier shift by the rest
    origin -= origin.min(axis=0)  # (x, y) of every patch's pixel (0, 0) on a fitted canvas
    m = b * c
    turns = np.ones(m, np.complex64)
    h, w = int(origin[:, 1].max()) + n, int(origin[:, 0].max()) + n
    weights = np.asarray(weights, np.float64)
    num = np.zeros((h, w), np.complex128)  # Σ weights · turned patch, and Σ weights
    den = np.zeros((h, w), np.float64)

    def window(i: int) -> tuple[slice, slice]:
        return slice(origin[i, 1], origin[i, 1] + n), slice(origin[i, 0], origin[i, 0] + n)

    def turn(i: int, patch: np.ndarray) -> None:  # patch: shifted and already turned by turns[i]
        corr = np.sum(np.conj(patch) * num[window(i)] * weights / np.maximum(den[window(i)], 1e-12))
        if corr != 0:
            patch *= np.complex64(corr / abs(corr))
            turns[i] *= np.complex64(corr / abs(corr))

    # the shifted patches are recomputed for every pass, a chunk at a time, never all at once
    for i, patch in _fourier_shifted(source, frac, np.argsort(np.hypot(*(xy - xy.mean(axis=0)).T),
                                                              kind="stable")):
        turn(i, patch)
        num[window(i)] += weights * patch
        den[window(i)] += weights
    for _ in range(sweeps):
        for i, patch in _fourier_shifted(source, frac, np.arange(m)):
            patch *= turns[i]
            num[window(i)] -= weights * patch  # the canvas without this patch
            turn(i, patch)
            num[window(i)] += weights * patch
    return turns.reshape(b, c)


def _fourier_shifted(source: np.ndarray, frac: np.ndarray,
                     order: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(i, patch i moved by its fractional (x, y) shift frac[i]) for every i of `order`.

    source: (B, N, N, C) complex64, patch i = b·C + c is source[b, ..., c]; frac: (B·C, 2);
    yields (N, N) complex64 views of a chunk of SHIFT_CHUNK patches, computed a chunk at a time
    """
    c, n = source.shape[3], source.shape[1]
    freq = np.fft.fftfreq(n)
    for start in range(0, len(order), SHIFT_CHUNK):
        idx = order[start:start + SHIFT_CHUNK]
        ramp_y = np.exp(-2j * np.pi * frac[idx, 1, None] * freq).astype(np.complex64)  # (k, N)
        ramp_x = np.exp(-2j * np.pi * frac[idx, 0, None] * freq).astype(np.complex64)
        spectrum = np.fft.fft2(source[idx // c, :, :, idx % c])  # (k, N, N)
        spectrum *= ramp_y[:, :, None]
        spectrum *= ramp_x[:, None, :]
        yield from zip(idx.tolist(), np.fft.ifft2(spectrum).astype(np.complex64, copy=False), strict=True)


def reconstruct(model: PtychoModel, data: Any, batch_size: int = 64,
                align_phases: bool = True) -> np.ndarray:
    """Stitched complex object from a data set.

    data: attributes ``diffraction`` (B,N,N,C) float32 and ``coords`` (B,1,2,C) global patch
          positions; the frame is ``data.obj.shape`` when present (patches may overhang it:
          they are stitched on a larger canvas and the frame is cut out), else just large
          enough for every patch.
    align_phases: turn each patch by the constant phase that makes it agree with its
          neighbours first (``phase_turns``)
    returns: (H, W) complex64, patches averaged with |probe|² weights over ``support_window``
    """
    for name in ("diffraction", "coords"):
        if getattr(data, name, None) is None:
            raise ValueError(f"reconstruct: data has no '{name}' array")
    cfg = model.ptycho_config
    diffraction, coords = check_inputs(cfg, data.diffraction, data.coords, what="reconstruct")
    obj = getattr(data, "obj", None)
    weights = np.abs(model_probe(model)) ** 2
    weights /= weights.max()  # (N, N) |probe|², peak 1
    window = support_window(weights)
    patches = predict_patches(model, diffraction, batch_size, window)  # (B, M, M, C)
    weights = weights[window, window]
    if align_phases and cfg.C * len(patches) > 1:
        patches *= phase_turns(patches, coords, weights)[:, None, None, :]  # in place
    if obj is None:
        return stitch_patches(patches, coords, canvas_shape(coords, cfg.N), weights)
    return stitch_in_frame(patches, coords, tuple(np.shape(obj)), weights)
