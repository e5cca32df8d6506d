"""Stitching object patches at their scan positions: pure numpy, shared by the network's
inference (:mod:`ptycho.inference`) and the iterative baseline (:mod:`ptycho.baseline`).

Positions are (x, y) = (column, row) of patch pixel (N//2, N//2) in object pixels. Patches may
overhang the object frame (PtychoPINN places scan centres 15 px from the edge of its object, so
half a patch hangs outside): ``frame_padding`` gives the margins of a canvas large enough for
every patch, ``stitch_in_frame`` stitches there and crops back to the frame.
"""

from __future__ import annotations

import numpy as np

__all__ = ["WEIGHT_FLOOR", "SUPPORT_FLOOR", "canvas_shape", "frame_padding", "stitch_patches",
           "stitch_in_frame", "support_window"]

WEIGHT_FLOOR = 1e-3  # stitched pixels with total weight below this fraction of the max → 0
SUPPORT_FLOOR = 1e-9  # patch pixels whose |probe|² is below this fraction of its peak are dropped


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



def frame_padding(positions: np.ndarray, n: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Margins (top, left, bottom, right) ≥ 0 that put every N×N patch (plus the one pixel
    bilinear splatting needs) at `positions` on the (H, W) frame `shape` grown by them.

    positions: (P, 2) float (x, y) patch-centre positions in frame pixels
    """
    xy = np.asarray(positions, np.float64).reshape(-1, 2)
    lo = np.floor(xy.min(axis=0)) - n // 2  # (x, y) of the first patch pixel
    hi = np.floor(xy.max(axis=0)) - n // 2 + n + 2  # one past the last pixel, +1 for splatting
    left, top = (max(0, int(-v)) for v in lo)
    right, bottom = max(0, int(hi[0]) - shape[1]), max(0, int(hi[1]) - shape[0])
    return top, left, bottom, right


def stitch_in_frame(patches: np.ndarray, coords: np.ndarray, shape: tuple[int, int],
                    weights: np.ndarray | None = None) -> np.ndarray:
    """``stitch_patches`` on a canvas grown so overhanging patches fit, cropped to `shape`.

    patches (B, N, N, C) complex; coords (B, 1, 2, C) (x, y) frame positions; shape (H, W);
    returns (H, W) complex64 (the frame; what lies outside it is dropped).
    """
    coords = np.asarray(coords, np.float64)
    n = np.shape(patches)[1]
    top, left, bottom, right = frame_padding(np.moveaxis(coords[:, 0], 2, 1).reshape(-1, 2), n, shape)
    moved = coords.copy()
    moved[:, 0, 0, :] += left
    moved[:, 0, 1, :] += top
    canvas = stitch_patches(patches, moved, (shape[0] + top + bottom, shape[1] + left + right), weights)
    return canvas[top:top + shape[0], left:left + shape[1]]


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
