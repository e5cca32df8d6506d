"""Scan positions and nearest-neighbour grouping. Pure numpy.

Coordinates are (x, y) = (column, row) in canvas pixels. A scan position (x, y) is the
canvas location of the centre pixel (N//2, N//2) of that position's N×N patch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["random_positions", "nearest_neighbors", "group_positions", "group_offsets"]


def random_positions(n: int, size: int, buffer: int, rng: np.random.Generator) -> np.ndarray:
    """`n` positions uniform in [buffer, size - 1 - buffer]² (so N×N patches stay inside
    the canvas when buffer >= N//2 + 1, with room for bilinear interpolation).

    returns: (n, 2) float64 (x, y)
    """
    hi = size - 1 - buffer
    if hi < buffer:
        raise ValueError(f"random_positions: canvas {size} px is too small for buffer {buffer} px")
    return rng.uniform(buffer, hi, size=(n, 2))


def nearest_neighbors(positions: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices of the k nearest positions of every position (itself first).

    positions: (P, 2) float; k <= P
    returns:   (P, k) int64, sorted by distance (ties broken by index)
    """
    p = len(positions)
    if not 1 <= k <= p:
        raise ValueError(f"nearest_neighbors: k must be in [1, {p}] for {p} positions, got {k}")
    out = np.empty((p, k), np.int64)
    for lo in range(0, p, chunk):
        block = positions[lo : lo + chunk]
        d2 = ((block[:, None, :] - positions[None, :, :]) ** 2).sum(-1)
        d2[np.arange(len(block)), np.arange(lo, lo + len(block))] = -1.0  # self first
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < p else np.tile(np.arange(p), (len(block), 1))
        order = np.lexsort((part, np.take_along_axis(d2, part, axis=1)), axis=1)
        out[lo : lo + len(block)] = np.take_along_axis(part, order, axis=1)
    return out


def group_positions(
    positions: np.ndarray, gridsize: int, neighbor_count: int, rng: np.random.Generator
) -> np.ndarray:
    """One group per position: C = gridsize² positions drawn without replacement from its
    `neighbor_count` nearest neighbours (itself included among the candidates).

    gridsize 1 → each group is its own position (no randomness used).
    returns: (P, C) int64 scan indices
    """
    p = len(positions)
    c = gridsize * gridsize
    if c == 1:
        return np.arange(p, dtype=np.int64)[:, None]
    k = min(neighbor_count, p)
    if k < c:
        raise ValueError(
            f"group_positions: need at least gridsize² = {c} positions to form a group, "
            f"got {p} positions and neighbor_count={neighbor_count}"
        )
    candidates = nearest_neighbors(positions, k)
    pick = np.argsort(rng.random((p, k)), axis=1)[:, :c]
    return np.take_along_axis(candidates, pick, axis=1)


def group_offsets(positions: np.ndarray, scan_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global and centre-of-mass-relative coordinates of grouped positions.

    positions:  (P, 2) float64 (x, y); scan_index: (B, C) int
    returns:    coords (B, 1, 2, C) float32 global positions,
                offsets (B, 1, 2, C) float32 positions minus the group's mean position
    """
    members = positions[scan_index]  # (B, C, 2)
    relative = members - members.mean(axis=1, keepdims=True)
    coords = np.transpose(members, (0, 2, 1))[:, None].astype(np.float32)
    offsets = np.transpose(relative, (0, 2, 1))[:, None].astype(np.float32)
    return coords, offsets
