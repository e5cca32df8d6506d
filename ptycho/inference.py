"""Inference: predict object patches and stitch them into one object.

``reconstruct(model, data)`` predicts the complex object patch of every diffraction pattern
(the decoder output, before the overlap constraint) and averages overlapping patches at their
global positions, weighting each pixel by the probe intensity |P|² (pixels the probe barely
illuminates carry little information). ``scanned_region`` (from ``ptycho.metrics``, re-exported
here) gives the crop for metrics.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ptycho.metrics import scanned_region
from ptycho.model import PtychoModel, check_inputs, inference_model, model_probe

__all__ = ["predict_patches", "stitch_patches", "reconstruct", "scanned_region", "canvas_shape",
           "WEIGHT_FLOOR"]

log = logging.getLogger(__name__)

WEIGHT_FLOOR = 1e-3  # stitched pixels with total weight below this fraction of the max → 0


def predict_patches(model: PtychoModel, diffraction: Any, batch_size: int = 64) -> np.ndarray:
    """Object patches for every group, predicted batch by batch into one preallocated array
    (peak memory: the result plus one batch).

    diffraction: (B, N, N, C) float32 (normalised network input)
    returns:     (B, N, N, C) complex64
    """
    diffraction, _ = check_inputs(model.ptycho_config, diffraction, what="reconstruct")
    sub = inference_model(model)
    n = diffraction.shape[0]
    batch = max(1, min(batch_size, n))
    out = np.empty(diffraction.shape, np.complex64)
    for start in range(0, n, batch):
        chunk = diffraction[start:start + batch]
        size = chunk.shape[0]
        if size < batch:  # pad the last batch: one input shape, no retracing/recompiling
            chunk = np.concatenate([chunk, np.zeros((batch - size, *chunk.shape[1:]), np.float32)])
        out[start:start + size] = np.asarray(sub.predict_on_batch(chunk))[:size]
    return out


def canvas_shape(coords: np.ndarray, n: int) -> tuple[int, int]:
    """Smallest (H, W) canvas holding every N×N patch centred (pixel N//2) at `coords`."""
    xs, ys = coords[:, 0, 0, :], coords[:, 0, 1, :]
    return int(np.ceil(ys.max())) + n - n // 2 + 1, int(np.ceil(xs.max())) + n - n // 2 + 1


def stitch_patches(patches: np.ndarray, coords: np.ndarray, shape: tuple[int, int],
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted average of patches at their global positions (bilinear splatting).

    patches: (B, N, N, C) complex; patch pixel (N//2, N//2) sits at the canvas position
    coords:  (B, 1, 2, C) float (x, y) canvas positions
    shape:   (H, W) canvas
    weights: (N, N) float ≥ 0 per-pixel weight of every patch; None → uniform
    returns: (H, W) complex64; pixels whose total weight < WEIGHT_FLOOR·max are 0
    """
    patches = np.asarray(patches)
    coords = np.asarray(coords, np.float64)
    b, n, _, c = patches.shape
    if coords.shape != (b, 1, 2, c):
        raise ValueError(f"stitch_patches: coords must have shape ({b}, 1, 2, {c}) to match "
                         f"patches {patches.shape}; got {coords.shape}")
    h, w = shape
    weights = np.ones((n, n), np.float64) if weights is None else np.asarray(weights, np.float64)
    origin = np.moveaxis(coords[:, 0], 2, 1).reshape(b * c, 2) - n // 2  # (x, y) of pixel (0,0)
    base = np.floor(origin).astype(np.int64)
    frac = origin - base
    if (base.min(axis=0) < 0).any() or base[:, 0].max() + n + 1 > w or base[:, 1].max() + n + 1 > h:
        raise ValueError(f"stitch_patches: patches at coords x∈[{origin[:, 0].min():.1f}, "
                         f"{origin[:, 0].max() + n:.1f}], y∈[{origin[:, 1].min():.1f}, "
                         f"{origin[:, 1].max() + n:.1f}] leave the {h}×{w} canvas")
    num = np.zeros((h + 1, w + 1), np.complex128)
    den = np.zeros((h + 1, w + 1), np.float64)
    for i, ((x0, y0), (fx, fy)) in enumerate(zip(base, frac, strict=True)):
        patch = patches[i // c, :, :, i % c] * weights  # no full-size temporaries
        for dy, wy in ((0, 1.0 - fy), (1, fy)):
            for dx, wx in ((0, 1.0 - fx), (1, fx)):
                k = wx * wy
                if k == 0.0:
                    continue
                num[y0 + dy:y0 + dy + n, x0 + dx:x0 + dx + n] += k * patch
                den[y0 + dy:y0 + dy + n, x0 + dx:x0 + dx + n] += k * weights
    num, den = num[:h, :w], den[:h, :w]
    valid = den > WEIGHT_FLOOR * den.max()
    out = np.zeros((h, w), np.complex64)
    out[valid] = num[valid] / den[valid]
    return out


def reconstruct(model: PtychoModel, data: Any, batch_size: int = 64) -> np.ndarray:
    """Stitched complex object from a data set.

    data: attributes ``diffraction`` (B,N,N,C) float32 and ``coords`` (B,1,2,C) global patch
          positions; the canvas is ``data.obj.shape`` when present, else just large enough.
    returns: (H, W) complex64, patches averaged with |probe|² weights
    """
    for name in ("diffraction", "coords"):
        if getattr(data, name, None) is None:
            raise ValueError(f"reconstruct: data has no '{name}' array")
    cfg = model.ptycho_config
    diffraction, coords = check_inputs(cfg, data.diffraction, data.coords, what="reconstruct")
    obj = getattr(data, "obj", None)
    shape = tuple(np.shape(obj)) if obj is not None else canvas_shape(coords, cfg.N)
    patches = predict_patches(model, diffraction, batch_size)
    weights = np.abs(model_probe(model)) ** 2
    return stitch_patches(patches, coords, shape, weights / weights.max())
