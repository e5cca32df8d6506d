"""Stitching object patches at their scan positions: pure numpy, shared by the network's
inference (:mod:`ptycho.inference`) and the iterative baseline (:mod:`ptycho.baseline`).

Positions are (x, y) = (column, row) of patch pixel (N//2, N//2) in object pixels. Patches may
overhang the object frame (PtychoPINN places scan centres 15 px from the edge of its object, so
half a patch hangs outside): ``frame_padding`` gives the margins of a canvas large enough for
every patch, ``stitch_in_frame`` stitches there and crops back to the frame.
"""

from __future__ import annotations

import numpy as np

__all__ = ["WEIGHT_FLOOR", "SUPPORT_FLOOR", "canvas_shape", "flat_positions", "frame_padding",
           "splat_patches", "stitch_in_frame", "stitch_patches", "support_window", "weighted_average"]

WEIGHT_FLOOR = 1e-3  # stitched pixels with total weight below this fraction of the max → 0
SUPPORT_FLOOR = 1e-9  # patch pixels whose |probe|² is below this fraction of its peak are dropped
STITCH_CHUNK = 256  # patches splatted at a time: the working memory


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
    return weighted_average(*splat_patches(patches, coords, shape, weights))


def splat_patches(patches: np.ndarray, coords: np.ndarray, shape: tuple[int, int],
                  weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sums ``stitch_patches`` divides: Σ weights · patch and Σ weights, each patch
    spread bilinearly at its position. Sums of disjoint sets of patches add up to the sums of
    their union (``patch_slopes`` stitches folds of a scan that way).

    patches, coords, shape, weights: as ``stitch_patches``
    returns: (H, W) complex128 and (H, W) float64
    """
    patches = np.asarray(patches)
    coords = np.asarray(coords, np.float64)
    b, n, _, c = patches.shape
    if coords.shape != (b, 1, 2, c):
        raise ValueError(f"stitch_patches: coords must have shape ({b}, 1, 2, {c}) to match "
                         f"patches {patches.shape}; got {coords.shape}")
    h, w = shape
    weights = np.ones((n, n), np.float64) if weights is None else np.asarray(weights, np.float64)
    origin = flat_positions(coords) - n // 2  # (x, y) of pixel (0, 0)
    base = np.floor(origin).astype(np.int64)
    frac = origin - base
    if (base.min(axis=0) < 0).any() or base[:, 0].max() + n + 1 > w or base[:, 1].max() + n + 1 > h:
        raise ValueError(f"stitch_patches: patches at coords x∈[{origin[:, 0].min():.1f}, "
                         f"{origin[:, 0].max() + n:.1f}], y∈[{origin[:, 1].min():.1f}, "
                         f"{origin[:, 1].max() + n:.1f}] leave the {h}×{w} canvas")
    size = (h + 1) * (w + 1)
    grid = (np.arange(n + 1)[:, None] * (w + 1) + np.arange(n + 1)).ravel()  # an (N+1)² splat
    num_re, num_im, den = np.zeros(size), np.zeros(size), np.zeros(size)
    for start in range(0, b * c, STITCH_CHUNK):  # a chunk of patches at a time: the memory
        idx = np.arange(start, min(start + STITCH_CHUNK, b * c))
        fx, fy = frac[idx, 0, None, None], frac[idx, 1, None, None]
        index = ((base[idx, 1] * (w + 1) + base[idx, 0])[:, None] + grid).ravel()
        splat = _splat(patches[idx // c, :, :, idx % c] * weights, fx, fy).ravel()
        num_re += np.bincount(index, splat.real, size)
        num_im += np.bincount(index, splat.imag, size)
        den += np.bincount(index, _splat(weights[None], fx, fy).ravel(), size)
    num = (num_re + 1j * num_im).reshape(h + 1, w + 1)[:h, :w]
    return num, den.reshape(h + 1, w + 1)[:h, :w]


def weighted_average(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den (``splat_patches``' sums) as (H, W) complex64, 0 where den < WEIGHT_FLOOR·max."""
    valid = den > WEIGHT_FLOOR * den.max()
    out = np.zeros(den.shape, np.complex64)
    out[valid] = num[valid] / den[valid]
    return out


def _splat(values: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """(K, N, N) values spread bilinearly over (K, N+1, N+1) pixels by their fractional
    offsets fx, fy (K, 1, 1): the value at (y, x) goes to (y, x) times (1−fy)(1−fx), to
    (y, x+1) times (1−fy)·fx, to (y+1, x) times fy·(1−fx) and to (y+1, x+1) times fy·fx."""
    k, n = len(fx), values.shape[-1]
    out = np.zeros((k, n + 1, n + 1), np.result_type(values, np.float64))
    out[:, :n, :n] += (1 - fy) * (1 - fx) * values
    out[:, :n, 1:] += (1 - fy) * fx * values
    out[:, 1:, :n] += fy * (1 - fx) * values
    out[:, 1:, 1:] += fy * fx * values
    return out


def flat_positions(coords: np.ndarray) -> np.ndarray:
    """(B, 1, 2, C) group coords → (B·C, 2) float64 (x, y), patch i = b·C + c (the order of
    ``stitch_patches`` and ``patch_phases.fit_patch_phases``)."""
    coords = np.asarray(coords, np.float64)
    return np.moveaxis(coords[:, 0], 2, 1).reshape(-1, 2)


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
    top, left, bottom, right = frame_padding(flat_positions(coords), n, shape)
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
