"""Patch phase alignment: the constant phase of every predicted patch that makes overlapping
patches agree.

A diffraction pattern does not change when its patch is multiplied by e^{iθ}, so the CNN, which
sees one pattern, predicts each patch's phase only up to such a constant; averaged unaligned,
the low spatial frequencies of the phase cancel (docs/findings.md, RESOLUTION-LOSS-001).
``fit_patch_phases`` finds the constants from the patches' overlaps, first greedily and then by
a joint least-squares fit of every overlapping pair (PATCH-RAMP-001); ``align_patch_phases``
applies them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ptycho.stitching import flat_positions, support_window

__all__ = ["fit_patch_phases", "align_patch_phases"]

SYNC_ITERATIONS = 2  # re-linearisations of the joint fit (each a conjugate-gradient solve)
FIT_FLOOR = 1e-3  # the joint fit reads patch pixels whose |probe|² is at least this of the peak
SHIFT_CHUNK = 64  # patches Fourier-shifted, or pairs compared, at a time: the working memory


def align_patch_phases(patches: np.ndarray, coords: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Patches each multiplied by its ``fit_patch_phases`` constant: (B, N, N, C) complex64,
    a new array."""
    turns = fit_patch_phases(patches, coords, weights)
    return np.asarray(patches, np.complex64) * turns[:, None, None, :]


def fit_patch_phases(patches: np.ndarray, coords: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The unit complex constant for every patch that makes overlapping patches agree.

    1. A start (``_greedy_turns``): one pass grows the canvas from the scan's centre outwards
       (patches in order of distance from the centroid), turning each patch by the phase of
       its |probe|²-weighted correlation with what is already on the canvas under it.
    2. All at once: the phase differences of every overlapping pair (``_pair_overlaps``) are
       fitted by weighted least squares (``_synchronise``). Passes patch by patch, each
       aligning one patch to the rest of the canvas, spread a correction one neighbour further
       per pass and left the scan's slow phase drifts in place (PATCH-RAMP-001).

    For the fit each patch is moved by its fractional position with a Fourier shift and placed
    on whole pixels. The result is defined up to one global phase (which
    ``metrics.align_global`` removes).
    patches: (B, N, N, C) complex (read only); coords: (B, 1, 2, C) (x, y) of patch pixel
    (N//2, N//2); weights: (N, N) ≥ 0 (|probe|²); returns (B, C) complex64
    """
    b, n, _, c = patches.shape
    source = np.asarray(patches, np.complex64)  # patch i = b·C + c is source[b, ..., c]
    xy = flat_positions(coords)
    origin = np.rint(xy - n // 2).astype(np.int64)
    frac = xy - n // 2 - origin  # placed on whole pixels after a Fourier shift by the rest
    origin -= origin.min(axis=0)  # (x, y) of every patch's pixel (0, 0) on a fitted canvas
    weights = np.asarray(weights, np.float64)
    turns = _greedy_turns(source, origin, frac, weights)
    if b * c > 2:
        # the lit part of every turned patch on whole pixels, gathered after step 1 (beside
        # its canvas it would raise the peak): the square the joint fit reads
        lit = support_window(weights, FIT_FLOOR)
        size = len(range(n)[lit])
        moved = np.empty((b * c, size, size), np.complex64)
        for i, patch in _fourier_shifted(source, frac, np.arange(b * c)):
            moved[i] = patch[lit, lit] * np.complex64(turns[i])
        first, second, overlap = _pair_overlaps(moved, origin, weights[lit, lit])
        turns *= np.exp(1j * _synchronise(first, second, overlap, b * c))
    return (turns / np.abs(turns)).astype(np.complex64).reshape(b, c)


def _greedy_turns(source: np.ndarray, origin: np.ndarray, frac: np.ndarray,
                  weights: np.ndarray) -> np.ndarray:
    """Step 1 of ``fit_patch_phases``: (B·C,) complex128 unit constants."""
    m, n = len(origin), source.shape[1]
    turns = np.ones(m, np.complex128)
    h, w = int(origin[:, 1].max()) + n, int(origin[:, 0].max()) + n
    num = np.zeros((h, w), np.complex128)  # Σ weights · turned patch, and Σ weights
    den = np.zeros((h, w), np.float64)

    def window(i: int) -> tuple[slice, slice]:
        return slice(origin[i, 1], origin[i, 1] + n), slice(origin[i, 0], origin[i, 0] + n)

    xy = origin + frac
    for i, patch in _fourier_shifted(source, frac, np.argsort(np.hypot(*(xy - xy.mean(axis=0)).T),
                                                              kind="stable")):
        corr = np.sum(np.conj(patch) * num[window(i)] * weights / np.maximum(den[window(i)], 1e-12))
        if corr != 0:
            turns[i] = corr / abs(corr)
        num[window(i)] += weights * patch * np.complex64(turns[i])
        den[window(i)] += weights
    return turns


def _pair_overlaps(moved: np.ndarray, origin: np.ndarray,
                   weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of patches whose lit squares overlap by at least a quarter (offsets under
    half the square along x and y; pairs overlapping less changed the fitted phases little:
    PATCH-RAMP-001), and Σ w_i w_j · p_j · conj(p_i) over the overlap.

    moved: (P, K, K) complex64, the lit square of every turned patch on whole pixels, pixel
    (0, 0) at ``origin`` (P, 2) (x, y) plus a common offset; weights: (K, K)
    returns (first (Q,) int, second (Q,) int, overlap (Q,) complex128)
    """
    size = moved.shape[1]
    first, second = _pairs_within(origin, max(1, size // 2))
    offset = origin[second] - origin[first]  # j's pixel u − offset is i's pixel u
    overlap = np.zeros(len(first), np.complex128)
    span = 2 * size + 1  # |offset| < size: one integer key per (dx, dy), sorted as the pairs
    keys, inverse, counts = np.unique((offset[:, 0] + size) * span + offset[:, 1] + size,
                                      return_inverse=True, return_counts=True)
    by_offset = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    for key, same in zip(keys.tolist(), by_offset, strict=True):
        dx, dy = key // span - size, key % span - size
        ys, xs = slice(max(0, dy), min(size, size + dy)), slice(max(0, dx), min(size, size + dx))
        yj, xj = slice(ys.start - dy, ys.stop - dy), slice(xs.start - dx, xs.stop - dx)
        both = weights[ys, xs] * weights[yj, xj]
        for start in range(0, len(same), SHIFT_CHUNK):  # a chunk of pairs at a time
            sel = same[start:start + SHIFT_CHUNK]
            overlap[sel] = np.einsum("pyx,pyx,yx->p", moved[second[sel], yj, xj],
                                     np.conj(moved[first[sel], ys, xs]), both)
    return first, second, overlap


def _pairs_within(origin: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair i ≠ j (once) of points ``origin`` (P, 2) int less than ``reach`` apart along
    x and along y: (first (Q,), second (Q,)) indices."""
    order = np.argsort(origin[:, 0], kind="stable")
    xs = origin[order]
    firsts, seconds = [], []
    for step in range(1, len(order)):
        near = np.flatnonzero(xs[step:, 0] - xs[:-step, 0] < reach)  # sorted by x
        if len(near) == 0:
            break
        near = near[np.abs(xs[near + step, 1] - xs[near, 1]) < reach]
        firsts.append(order[near])
        seconds.append(order[near + step])
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(firsts), np.concatenate(seconds)


def _synchronise(first: np.ndarray, second: np.ndarray, overlap: np.ndarray, m: int,
                 iterations: int = SYNC_ITERATIONS) -> np.ndarray:
    """Phase corrections θ (m,) float64 that best make every pair agree: weighted least
    squares of θ_i − θ_j = arg(overlap_ij) with weights |overlap_ij| (a weighted graph
    Laplacian, solved by Jacobi-preconditioned conjugate gradients), re-linearised about the
    corrected phases ``iterations`` times."""
    weight = np.abs(overlap)
    degree = np.bincount(first, weight, m) + np.bincount(second, weight, m)
    degree += 1e-9 * max(float(degree.mean()), 1e-30)  # fixes the free global phase

    def laplacian(x: np.ndarray) -> np.ndarray:
        return (degree * x - np.bincount(first, weight * x[second], m)
                - np.bincount(second, weight * x[first], m))

    theta = np.zeros(m)
    for _ in range(iterations):
        residual = np.angle(overlap * np.exp(-1j * (theta[first] - theta[second])))
        rhs = np.bincount(first, weight * residual, m) - np.bincount(second, weight * residual, m)
        theta += _conjugate_gradients(laplacian, rhs, 1.0 / degree)
    return theta


def _conjugate_gradients(apply: Callable[[np.ndarray], np.ndarray], rhs: np.ndarray, inverse_diagonal: np.ndarray,
                         tol: float = 1e-8, max_iter: int = 5000) -> np.ndarray:
    """x with apply(x) = rhs for a symmetric positive (semi)definite operator, Jacobi
    preconditioned; stops when |residual| ≤ tol·|rhs|."""
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = inverse_diagonal * r
    d = z.copy()
    rz = float(r @ z)
    target = tol * float(np.linalg.norm(rhs))
    for _ in range(max_iter):
        if float(np.linalg.norm(r)) <= target:
            break
        ad = apply(d)
        alpha = rz / float(d @ ad)
        x += alpha * d
        r -= alpha * ad
        z = inverse_diagonal * r
        rz, rz_old = float(r @ z), rz
        d = z + (rz / rz_old) * d
    return x


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
