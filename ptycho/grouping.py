"""Neighbour groups from scan coordinates (any number of positions, any scan pattern). Numpy only.

``k_nearest(positions, k)`` finds the k nearest scan positions of every position with a uniform
grid of buckets: each position is compared only with the positions of its own and the 8
surrounding cells, whose side is chosen so that a 3×3 block holds about 6·k positions. A
result is exact when its k-th distance is at most one cell side (nothing closer can lie
outside the block); the few positions where that fails (sparse edges, clustered scans) are
recomputed exactly by brute force. Ties are broken by index, so results do not depend on the
bucketing. 100,000 positions take well under a second (``benchmarks/bench_grouping.py``).

``group_scan_positions`` then draws C = gridsize² members for each group from the
``neighbors`` nearest positions of its centre (the centre among the candidates), with a seeded
generator: the same coordinates and seed give the same groups.
"""

from __future__ import annotations

import logging
import math

import numpy as np

__all__ = ["k_nearest", "group_scan_positions", "default_neighbors", "neighbors_within"]

log = logging.getLogger(__name__)

_CHUNK_ELEMENTS = 1 << 22  # candidate distances held at once (≈32 MB of float64)


def default_neighbors(gridsize: int) -> int:
    """Default candidate count for a group: 7, or gridsize² when that is larger."""
    return max(7, gridsize * gridsize)


def neighbors_within(positions: np.ndarray, radius: float, samples: int = 256) -> int:
    """Median number of scan positions (the position itself included) within `radius` px of a
    scan position, over up to `samples` positions spread evenly through the scan order.

    positions: (P, 2) float (x, y); radius: > 0 px; returns an int in [1, P]
    """
    positions = _check_positions(positions)
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"neighbors_within: radius must be finite and > 0, got {radius!r}")
    picks = np.unique(np.linspace(0, len(positions) - 1, min(samples, len(positions))).astype(np.int64))
    counts = [int(np.count_nonzero(np.hypot(*(positions - positions[i]).T) <= radius))
              for i in picks]
    return int(np.median(counts))


def _check_positions(positions: np.ndarray) -> np.ndarray:
    positions = np.asarray(positions, np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions must have shape (P, 2) as (x, y), got {positions.shape}")
    if not np.isfinite(positions).all():
        raise ValueError("positions contain NaN or Inf")
    return positions


def _brute_force(positions: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Exact k nearest (ties by index) of positions[rows] among all positions: (len(rows), k)."""
    p = len(positions)
    out = np.empty((len(rows), k), np.int64)
    chunk = max(1, _CHUNK_ELEMENTS // p)
    for lo in range(0, len(rows), chunk):
        sel = rows[lo:lo + chunk]
        ddx = positions[sel, 0, None] - positions[None, :, 0]
        ddy = positions[sel, 1, None] - positions[None, :, 1]
        d2 = ddx * ddx + ddy * ddy
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < p else np.tile(np.arange(p), (len(sel), 1))
        dist = np.take_along_axis(d2, part, axis=1)
        # ties at the k-th distance: argpartition may pick any of them; prefer lower indices
        kth = dist.max(axis=1, keepdims=True)
        tied = (d2 == kth).sum(axis=1) > (dist == kth).sum(axis=1)
        for r in np.flatnonzero(tied):
            order = np.lexsort((np.arange(p), d2[r]))[:k]
            part[r], dist[r] = order, d2[r, order]
        order = np.lexsort((part, dist), axis=1)
        out[lo:lo + len(sel)] = np.take_along_axis(part, order, axis=1)
    return out


def k_nearest(positions: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest positions of every position, itself first.

    positions: (P, 2) float (x, y), finite; 1 <= k <= P
    returns:   (P, k) int64 sorted by distance, ties broken by index (exact, deterministic)
    """
    positions = _check_positions(positions)
    p = len(positions)
    if isinstance(k, bool) or not 1 <= int(k) <= p:
        raise ValueError(f"k_nearest: k must be in [1, {p}] for {p} positions, got {k!r}")
    k = int(k)
    if k == 1:
        return np.arange(p, dtype=np.int64)[:, None]
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    extent = hi - lo
    extent = np.maximum(extent, extent.max() / math.sqrt(p))  # a line scan is thin, not empty
    area = float(np.prod(extent))
    cell = math.sqrt(area * (2.0 * k / 3.0) / p)  # a 3×3 block holds ≈ 6k positions
    if p <= 4 * k or cell <= 0 or not math.isfinite(cell):
        return _brute_force(positions, np.arange(p), k)
    ncx, ncy = (np.floor((hi - lo) / cell).astype(np.int64) + 1)
    cx = np.floor((positions[:, 0] - lo[0]) / cell).astype(np.int64)
    cy = np.floor((positions[:, 1] - lo[1]) / cell).astype(np.int64)
    cell_id = cy * ncx + cx
    order = np.argsort(cell_id, kind="stable")
    counts = np.bincount(cell_id, minlength=ncx * ncy)
    width = int(counts.max())
    if 9 * width > 64 * k:  # strongly clustered scan: buckets do not help
        return _brute_force(positions, np.arange(p), k)
    # table[c, j] = j-th position in cell c (padded with P, a sentinel at infinity)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(p) - np.repeat(starts, counts)
    table = np.full((ncx * ncy + 1, width), p, np.int64)  # last row: cells off the grid
    table[cell_id[order], slot] = order
    padded_x = np.append(positions[:, 0], np.inf)  # index P: a sentinel at infinity
    padded_y = np.append(positions[:, 1], np.inf)

    out = np.empty((p, k), np.int64)
    todo = np.arange(p)
    for ring in (1, 2, 3):  # search (2·ring+1)² cells; exact when the k-th distance <= ring·cell
        kth = np.empty(len(todo))
        shifts = [(dx, dy) for dy in range(-ring, ring + 1) for dx in range(-ring, ring + 1)]
        if len(shifts) * width < k:  # too few candidates per row: search a wider block
            continue
        chunk = max(1, _CHUNK_ELEMENTS // (len(shifts) * width))
        for start in range(0, len(todo), chunk):
            rows = todo[start:start + chunk]
            cands = []
            for dx, dy in shifts:
                nx, ny = cx[rows] + dx, cy[rows] + dy
                inside = (nx >= 0) & (nx < ncx) & (ny >= 0) & (ny < ncy)
                cands.append(table[np.where(inside, ny * ncx + nx, ncx * ncy)])
            cand = np.concatenate(cands, axis=1)  # (R, cells·width)
            ddx = padded_x[cand] - positions[rows, 0, None]
            ddy = padded_y[cand] - positions[rows, 1, None]
            d2 = ddx * ddx + ddy * ddy
            part = np.argpartition(d2, k - 1, axis=1)[:, :k]
            idx = np.take_along_axis(cand, part, axis=1)
            dist = np.take_along_axis(d2, part, axis=1)
            sort = np.lexsort((idx, dist), axis=1)
            out[rows] = np.take_along_axis(idx, sort, axis=1)
            last = np.take_along_axis(dist, sort[:, -1:], axis=1)
            # a tie at the k-th distance may have been cut by argpartition: redo those rows
            tie = (d2 == last).sum(axis=1) > (dist == last).sum(axis=1)
            kth[start:start + len(rows)] = np.where(tie, np.inf, last[:, 0])
        todo = todo[~(kth <= (ring * cell) ** 2)]
        if not len(todo):
            return out
    log.debug("k_nearest: %d of %d positions recomputed by brute force", len(todo), p)
    out[todo] = _brute_force(positions, todo, k)
    return out


def group_scan_positions(positions: np.ndarray, gridsize: int, neighbors: int | None = None,
                         n_groups: int | None = None, seed: int = 0) -> np.ndarray:
    """Groups of C = gridsize² neighbouring scan positions.

    positions: (P, 2) float (x, y) scan coordinates
    gridsize:  >= 1; C = gridsize² members per group (gridsize 1: each group one position)
    neighbors: candidates per group: the ``neighbors`` nearest positions of the group's centre
               (>= C; None → ``default_neighbors(gridsize)``, capped at P)
    n_groups:  B; None → one group per position (B = P, centres in scan order). B < P → a
               random subset of centres; B > P → every position, then random extra centres
    seed:      seeds every random choice (centres and members)
    returns:   (B, C) int64 indices into positions
    """
    positions = _check_positions(positions)
    p = len(positions)
    if isinstance(gridsize, bool) or not isinstance(gridsize, (int, np.integer)) or gridsize < 1:
        raise ValueError(f"gridsize must be an int >= 1, got {gridsize!r}")
    c = int(gridsize) ** 2
    if p < c:
        raise ValueError(f"{p} scan positions are fewer than gridsize² = {c}: cannot form a group "
                         f"(use a smaller gridsize)")
    wanted = default_neighbors(int(gridsize)) if neighbors is None else int(neighbors)
    if wanted < c:
        raise ValueError(f"neighbors must be >= gridsize² = {c}, got {neighbors}")
    if n_groups is not None and (isinstance(n_groups, bool) or int(n_groups) < 1):
        raise ValueError(f"n_groups must be >= 1, got {n_groups!r}")
    rng = np.random.default_rng(seed)
    b = p if n_groups is None else int(n_groups)
    if b == p:
        centres = np.arange(p, dtype=np.int64)
    elif b < p:
        centres = np.sort(rng.choice(p, size=b, replace=False))
    else:
        centres = np.concatenate([np.arange(p), rng.integers(0, p, size=b - p)])
    if c == 1:
        return centres[:, None].astype(np.int64)
    k = min(wanted, p)
    candidates = k_nearest(positions, k)[centres]  # (B, k)
    pick = np.argsort(rng.random((b, k)), axis=1)[:, :c]
    return np.take_along_axis(candidates, pick, axis=1)
