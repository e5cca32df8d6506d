"""Per-pattern slope fit: each predicted patch's low orders, fitted to its own measured pattern.

The CNN predicts each patch right up to a constant and a linear phase, and the linear phase
it misses is traded against the patch's amplitude slope (docs/findings.md, PATCH-RAMP-001).
One pattern does tell them apart: ``fit_patch_slopes`` multiplies every predicted patch by

    exp(c + a_x·u + a_y·v + i·(b_x·u + b_y·v)),   u, v = (column, row − M//2) / M

and fits the five numbers (log-amplitude constant, log-amplitude slopes, phase slopes; the
phase constant is left to ``ptycho.patch_phases``) to that patch's own measured pattern by
Levenberg–Marquardt: on Σ (s·|F(probe · patch)| − m)², with one global scale s fitted first,
or on the Poisson likelihood of the counts when their scale is known. The patterns are fitted
independently: no overlap and no ground truth enters.

Fitted alone, the slopes also absorb errors of finer structure that a patch's linear terms
cannot express (line objects), or at low dose the noise, and the stitched object gets worse.
``correct_patch_slopes`` therefore applies a fraction of the fitted terms, 0 (the network's
patches) to 1, and keeps the fraction whose stitched object best predicts patterns it was not
fitted to (``stitched_misfit``, folds of the scan positions): a choice made by the data
(PATCH-SLOPE-001).

A patch's finer errors also bias the fit of its own slopes. Cut from the stitched object,
where the overlaps average those errors down, the patches' slopes fit truer: one refit from
the stitched object, kept when it predicts held-out patterns better (PATCH-REFIT-001).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import numpy as np

from ptycho.patch_phases import fit_patch_phases
from ptycho.physics import extract_patches, far_field, least_squares_scale
from ptycho.stitching import canvas_shape, flat_positions, splat_patches, weighted_average

__all__ = ["SlopeChoice", "fit_patch_slopes", "apply_patch_slopes", "stitched_misfit",
           "correct_patch_slopes", "SLOPE_TERMS", "FRACTIONS"]

SLOPE_TERMS = ("log_amplitude", "log_amplitude_x", "log_amplitude_y", "phase_x", "phase_y")
LM_ITERATIONS = 3  # Levenberg–Marquardt steps (the fit is nearly linear: 2 reach the optimum)
LM_DAMPING = 1e-3  # initial damping, relative to the diagonal of JᵀJ
TERM_LIMIT = 10.0  # |term| bound: an untrained network's patches cannot overflow the factors
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # fractions of the fitted terms ``correct_patch_slopes`` compares
_RATE_FLOOR = 1e-6  # floor of a Poisson rate (counts): keeps log λ finite
HOLDOUT_FOLDS = 4  # ``stitched_misfit``: each fold's patterns predicted from the others' patches
CHUNK = 256  # patterns scaled, or patches compared, at a time: the working memory
LM_CHUNK = 64  # patterns fitted at a time (their Jacobians: 0.4 MB a pattern at N=64)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SlopeChoice:
    """What ``correct_patch_slopes`` chose: ``fraction`` of the fitted terms (0: none), the
    stitched object's held-out misfit for every fraction compared (``misfits``, in the order
    of ``fractions``), the held-out misfit of the refit from the stitched object
    (``refit_misfit``, None when not tried) and whether the refit was kept (``refitted``)."""

    fraction: float
    fractions: tuple[float, ...]
    misfits: tuple[float, ...]
    refit_misfit: float | None = None
    refitted: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"fraction": self.fraction, "fractions": list(self.fractions),
                "misfits": list(self.misfits), "refit_misfit": self.refit_misfit,
                "refitted": self.refitted}


def _patterns(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Patterns ``rows`` of a (B, K, K, C) array, gathered: (len(rows), K, K); pattern
    i = b·C + c (``fit_patch_phases``' order). Only the rows asked for are copied."""
    c = x.shape[-1]
    return x[rows // c, :, :, rows % c]


def _chunks(count: int, size: int = CHUNK) -> list[np.ndarray]:
    """0 … count − 1 in runs of `size`: the patterns handled at a time."""
    return [np.arange(i, min(i + size, count)) for i in range(0, count, size)]


def _factors(terms: np.ndarray, m: int) -> np.ndarray:
    """(K, 5) terms → (K, M, M) complex64 factors exp(c + a·u + i·b·u), built as the outer
    product of one factor along the rows and one along the columns."""
    u = ((np.arange(m) - m // 2) / m).astype(np.float32)
    t = np.asarray(terms, np.float32)
    along_x = np.exp(t[:, 0, None] + (t[:, 1, None] + 1j * t[:, 3, None]) * u)  # (K, M)
    along_y = np.exp((t[:, 2, None] + 1j * t[:, 4, None]) * u)
    return (along_y[:, :, None] * along_x[:, None, :]).astype(np.complex64)


def _spectra(waves: np.ndarray, n: int) -> np.ndarray:
    """(K, M, M) exit waves, the centre of N×N → (K, N, N) complex64 unitary FFT (zero
    frequency at pixel 0)."""
    m = waves.shape[-1]
    start = n // 2 - m // 2
    full = np.zeros((len(waves), n, n), np.complex64)
    full[:, start:start + m, start:start + m] = waves
    return np.fft.fft2(full, norm="ortho").astype(np.complex64)


def fit_patch_slopes(patches: np.ndarray, diffraction: np.ndarray, probe: np.ndarray,
                     counts_scale: float | None = None,
                     iterations: int = LM_ITERATIONS) -> np.ndarray:
    """The five low-order terms (``SLOPE_TERMS``) of every patch, fitted to its own pattern.

    patches:      (B, M, M, C) complex, the network's patches or their centred M×M window
                  (``stitching.support_window``: the probe must be negligible outside it)
    diffraction:  (B, N, N, C) float, the measured amplitudes (zero frequency at N//2)
    probe:        (N, N) complex, the illumination of the network's forward model
    counts_scale: None fits the amplitudes by least squares; a number s fits the counts
                  (s·diffraction)² by their Poisson likelihood (Fisher scoring), which low
                  doses need
    returns:      (B, C, 5) float32 (slopes per patch width M); ``apply_patch_slopes``
                  applies them
    """
    patches, diffraction = np.asarray(patches), np.asarray(diffraction)
    b, m, _, c = patches.shape
    n = np.shape(probe)[0]
    if np.shape(diffraction) != (b, n, n, c) or np.shape(probe) != (n, n) or m > n:
        raise ValueError(f"fit_patch_slopes: patches {patches.shape}, diffraction "
                         f"{np.shape(diffraction)} and probe {np.shape(probe)} do not match")
    return _fit_terms(patches, diffraction, np.arange(b * c), probe, counts_scale,
                      iterations).reshape(b, c, 5)


def _fit_terms(patches: np.ndarray, diffraction: np.ndarray, rows: np.ndarray,
               probe: np.ndarray, counts_scale: float | None, iterations: int) -> np.ndarray:
    """``fit_patch_slopes`` of the K patterns of (·, M, M, ·) patches, each to the pattern
    ``rows[k]`` of the (B, N, N, C) diffraction, a chunk of patterns at a time (no copy of
    either array is made): (K, 5) float32."""
    m, n = patches.shape[1], np.shape(probe)[0]
    start = n // 2 - m // 2
    lit = np.asarray(probe, np.complex64)[start:start + m, start:start + m]
    gain = least_squares_scale(
        (np.fft.fftshift(np.abs(_spectra(_patterns(patches, k) * lit, n)), axes=(1, 2)),
         _patterns(diffraction, rows[k])) for k in _chunks(len(rows)))
    poisson = counts_scale is not None
    if poisson:
        gain *= float(counts_scale)
    terms = np.zeros((len(rows), 5), np.float32)
    for k in _chunks(len(rows), LM_CHUNK):  # each pattern's fit is its own
        waves = np.asarray(_patterns(patches, k), np.complex64) * (lit * np.float32(gain))
        measured = np.fft.ifftshift(_patterns(diffraction, rows[k]), axes=(1, 2)).astype(np.float32)
        target = np.square(measured * np.float32(counts_scale)) if poisson else measured
        terms[k] = _levenberg_marquardt(waves, target, n, iterations, poisson)
    return terms


def _levenberg_marquardt(waves: np.ndarray, target: np.ndarray, n: int, iterations: int,
                         poisson: bool) -> np.ndarray:
    """(K, 5) terms from zero that fit A = |F(wave · factor)| to the target, per pattern.

    waves (K, M, M) complex64; target (K, N, N) float32, zero frequency at pixel 0: amplitudes
    (misfit Σ (A − target)²) or, when ``poisson``, counts k (negative log-likelihood
    Σ A² − k·log A², whose Fisher scoring step is the Gauss–Newton step of the residual
    (A − k/A)/2).
    dF/dc = F, dF/da_x = F(u·ψ), dF/db_x = i·F(u·ψ) (the same in v), and dA = Re(F̄·dF)/A:
    two FFTs per step for the Jacobian, one for the trial step.
    """
    k, m = len(waves), waves.shape[-1]
    u = ((np.arange(m) - m // 2) / m).astype(np.float32)
    terms = np.zeros((k, 5))
    damping = np.full(k, LM_DAMPING)

    def evaluate(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        psi = waves * _factors(t, m)
        spec = _spectra(psi, n)
        amp = np.abs(spec)
        if poisson:
            rate = np.maximum(np.square(amp), _RATE_FLOOR)
            misfit = rate - target * np.log(rate)
        else:
            misfit = np.square(amp - target)
        return psi, spec, np.sum(misfit, axis=(1, 2), dtype=np.float64)

    psi, spec, loss = evaluate(terms)
    for _ in range(iterations):
        amp = np.maximum(np.abs(spec), np.float32(np.sqrt(_RATE_FLOOR)))
        unit = np.conj(spec) / amp  # F̄ / A
        dx = unit * _spectra(psi * u[None, None, :], n)
        dy = unit * _spectra(psi * u[None, :, None], n)
        jac = np.stack([amp, dx.real, dy.real, -dx.imag, -dy.imag], 1).reshape(k, 5, -1)
        resid = (amp - target / amp) / 2 if poisson else amp - target
        jtj = np.einsum("kpi,kqi->kpq", jac, jac).astype(np.float64)
        jtr = np.einsum("kpi,ki->kp", jac, resid.reshape(k, -1)).astype(np.float64)
        diag = np.diagonal(jtj, axis1=1, axis2=2)[:, :, None] * np.eye(5)
        lhs = jtj + damping[:, None, None] * diag + 1e-12 * np.eye(5)
        trial = np.clip(terms - np.linalg.solve(lhs, jtr[..., None])[..., 0], -TERM_LIMIT, TERM_LIMIT)
        t_psi, t_spec, t_loss = evaluate(trial)
        better = t_loss < loss  # per pattern: take the step, or raise the damping
        terms[better], psi[better], spec[better], loss[better] = (
            trial[better], t_psi[better], t_spec[better], t_loss[better])
        damping = np.where(better, np.maximum(damping / 3, 1e-9), damping * 4)
    return terms


def apply_patch_slopes(patches: np.ndarray, terms: np.ndarray, fraction: float = 1.0,
                       out: np.ndarray | None = None) -> np.ndarray:
    """Every patch multiplied by exp(fraction · its terms): (B, M, M, C) complex64, new, or
    written into ``out`` (which may be ``patches`` itself).

    patches (B, M, M, C) complex; terms (B, C, 5) from ``fit_patch_slopes`` for these patches
    """
    b, m, _, c = patches.shape
    terms = fraction * np.asarray(terms, np.float32).reshape(b, c, 5)
    if out is None:
        out = np.empty((b, m, m, c), np.complex64)
    step = max(1, CHUNK // c)  # a chunk of factors at a time: the working memory
    for i in range(0, b, step):
        factors = _factors(terms[i:i + step].reshape(-1, 5), m).reshape(-1, c, m, m)
        np.multiply(np.asarray(patches[i:i + step], np.complex64), np.moveaxis(factors, 1, 3),
                    out=out[i:i + step])
    return out


@dataclasses.dataclass(frozen=True)
class _Folds:
    """The held-out folds of a scan: canvas positions ``xy`` (P, 2) float64 of the P = B·C
    patterns (every N×N patch and a pixel on the ``shape`` canvas) and each one's ``fold``
    (P,) int in [0, ``count``); patterns at one scan position share their fold."""

    xy: np.ndarray
    shape: tuple[int, int]
    fold: np.ndarray
    count: int


def _scan_folds(coords: np.ndarray, n: int, seed: int) -> _Folds | None:
    """The scan positions dealt at random (``seed``) into ``HOLDOUT_FOLDS`` folds, or None
    when all the patterns were measured at one position (none can be held out)."""
    xy = flat_positions(coords)
    xy = xy + 1 - np.floor(xy.min(axis=0) - n // 2)
    h, w = canvas_shape(xy.reshape(-1, 1, 2, 1), n)
    _, position = np.unique(np.round(xy, 3), axis=0, return_inverse=True)
    count = int(position.max()) + 1
    if count < 2:
        return None
    folds = min(HOLDOUT_FOLDS, count)
    fold = (np.random.default_rng(seed).permutation(count) % folds)[position.ravel()]
    return _Folds(xy, (h + 1, w + 1), fold, folds)


def stitched_misfit(patches: np.ndarray, coords: np.ndarray, weights: np.ndarray,
                    diffraction: np.ndarray, probe: np.ndarray,
                    counts_scale: float | None = None, seed: int = 0) -> float:
    """How badly the stitched patches predict patterns they were not fitted to.

    The scan positions are dealt at random (``seed``) into ``HOLDOUT_FOLDS`` folds. For each
    fold, the patches of every other fold are stitched, and that object predicts the fold's
    patterns: a bilinear patch of it at each position, the probe's far field a, scaled by the
    least-squares s. Returned is the mean over the folds of Σ (s·a − m)² / Σ m², or with
    ``counts_scale`` the Poisson deviance per count, 2·Σ (λ − k − k·log(λ/k)) / Σ k with
    k = (counts_scale·m)² and λ = (counts_scale·s·a)². A pattern's own fitted terms never enter
    its prediction, so a fit of the noise does not look like a better object (PATCH-SLOPE-001).

    patches (B, M, M, C) complex (centred windows of N×N, as ``fit_patch_slopes``); coords
    (B, 1, 2, C) (x, y); weights (M, M) |probe|²; diffraction (B, N, N, C); probe (N, N)
    """
    folds = _scan_folds(coords, np.shape(probe)[0], seed)
    if folds is None:
        raise ValueError(f"stitched_misfit: {np.size(coords) // 2} patterns at one scan "
                         "position: none can be held out")
    return _held_out_misfit(_fold_sums(np.asarray(patches), folds, weights), folds, weights,
                            np.asarray(diffraction), probe, counts_scale)


_Sums = list[tuple[np.ndarray, np.ndarray]]  # per fold: Σ w·patch (H, W) complex128, Σ w float64


def _fold_sums(patches: np.ndarray, folds: _Folds, weights: np.ndarray) -> _Sums:
    """Every fold's (B, M, M, C) patches splatted on the folds' canvas (``splat_patches``);
    the sums of several folds add up to the sums of their union."""
    members = (np.flatnonzero(folds.fold == f) for f in range(folds.count))
    return [splat_patches(_patterns(patches, rows)[..., None], folds.xy[rows][:, None, :, None],
                          folds.shape, weights) for rows in members]


def _stitched(sums: _Sums, folds: Iterable[int]) -> np.ndarray:
    """The object the patches of ``folds`` stitch to: (H, W) complex64 (added in fold order)."""
    chosen = sorted(folds)
    return weighted_average(sum(sums[f][0] for f in chosen), sum(sums[f][1] for f in chosen))


def _cut(canvas: np.ndarray, folds: _Folds, rows: np.ndarray, width: int) -> np.ndarray:
    """The patterns ``rows``' width×width patches cut (bilinear) from ``canvas``:
    (K, width, width) complex64."""
    return extract_patches(canvas, folds.xy[rows], width, "bilinear")


def _held_out_misfit(sums: _Sums, folds: _Folds, weights: np.ndarray, diffraction: np.ndarray,
                     probe: np.ndarray, counts_scale: float | None, refit: bool = False) -> float:
    """``stitched_misfit`` of the patches whose ``_fold_sums`` are ``sums``, against the
    (B, N, N, C) measured amplitudes: each held-out object is the average of the other folds'
    sums.

    With ``refit``, the misfit of a refit instead (``correct_patch_slopes``): the other folds'
    (M, M) patches (M: the side of ``weights``) are cut from that object, their slopes fitted
    to their own patterns, and the object they stitch to predicts the fold. No held-out
    pattern enters its prediction.
    """
    n, m = np.shape(probe)[0], np.shape(weights)[0]
    misfits = []
    for held in range(folds.count):
        canvas = _stitched(sums, set(range(folds.count)) - {held})
        if refit:
            fitted = np.flatnonzero(folds.fold != held)
            cut = _cut(canvas, folds, fitted, m)[..., None]
            terms = _fit_terms(cut, diffraction, fitted, probe, counts_scale, LM_ITERATIONS)
            apply_patch_slopes(cut, terms, out=cut)
            canvas = weighted_average(*splat_patches(cut, folds.xy[fitted][:, None, :, None],
                                                     folds.shape, weights))
        rows = np.flatnonzero(folds.fold == held)
        pairs = [(far_field(probe, _cut(canvas, folds, rows[i:i + CHUNK], n)),
                  np.asarray(_patterns(diffraction, rows[i:i + CHUNK]), np.float32))
                 for i in range(0, len(rows), CHUNK)]  # the fold's predictions, kept for both sums
        misfits.append(_misfit(pairs, least_squares_scale(pairs), counts_scale))
    return float(np.mean(misfits))


def _misfit(pairs: Iterable[tuple[np.ndarray, np.ndarray]], scale: float,
            counts_scale: float | None) -> float:
    """Σ (s·a − m)² / Σ m², or the Poisson deviance per count (``stitched_misfit``)."""
    misfit = total = 0.0
    for amp, m in pairs:
        if counts_scale is None:
            misfit += float(np.sum(np.square(scale * amp - m), dtype=np.float64))
            total += float(np.sum(np.square(m), dtype=np.float64))
        else:
            rate = np.maximum(np.square(counts_scale * scale * amp, dtype=np.float64), _RATE_FLOOR)
            counts = np.square(counts_scale * m, dtype=np.float64)
            log_ratio = np.log(np.where(counts > 0, counts, 1.0) / rate)
            misfit += 2 * float(np.sum(rate - counts + counts * log_ratio))
            total += float(np.sum(counts))
    return misfit / total if total > 0 else 0.0


def correct_patch_slopes(patches: np.ndarray, coords: np.ndarray, weights: np.ndarray,
                         diffraction: np.ndarray, probe: np.ndarray, *,
                         counts_scale: float | None = None, align: bool = True,
                         fractions: tuple[float, ...] = FRACTIONS,
                         refit: bool = True) -> tuple[np.ndarray, SlopeChoice]:
    """The patches with the fraction of their fitted slopes (``fit_patch_slopes``) whose
    stitched object explains the patterns best (``stitched_misfit``), each fraction's patches
    phase-aligned first when ``align`` (``patch_phases.fit_patch_phases``).

    Then, with ``refit``, every pattern's patch is cut from the object the patches stitch to,
    its slopes are fitted to its pattern again (in full) and the patches are aligned; the refit
    is kept when it lowers the held-out misfit. The network's errors of finer structure bias a
    slope fit to its own patch; averaged over the overlaps they bias it much less
    (PATCH-REFIT-001). Once refitted, every patch holds every pattern's information, and a
    second refit could not be judged on held-out patterns: there is one.

    patches (B, M, M, C) complex; coords (B, 1, 2, C); weights (M, M) |probe|²;
    diffraction (B, N, N, C) measured amplitudes; probe (N, N); counts_scale: as
    ``fit_patch_slopes`` (None: least squares of the amplitudes; else the Poisson likelihood)
    returns: ((B, M, M, C) complex64 patches, aligned when ``align``; the ``SlopeChoice``)
    """
    if not fractions:
        raise ValueError("correct_patch_slopes: no fractions to compare")
    folds = _scan_folds(coords, np.shape(probe)[0], seed=0)
    if folds is None:
        log.warning("patch slopes: one scan position, no held-out pattern to judge a fit by: "
                    "the network's patches are kept")
        out = np.array(patches, np.complex64)
        if align:
            out *= fit_patch_phases(out, coords, weights)[:, None, None, :]
        return out, SlopeChoice(0.0, (), ())
    patches, diffraction = np.asarray(patches), np.asarray(diffraction)
    terms = fit_patch_slopes(patches, diffraction, probe, counts_scale)

    turns: dict[float, np.ndarray] = {}  # each fraction's phase alignment, (B, C) complex

    def candidate(fraction: float) -> np.ndarray:
        out = apply_patch_slopes(patches, terms, fraction)
        if align:
            if fraction not in turns:
                turns[fraction] = fit_patch_phases(out, coords, weights)
            out *= turns[fraction][:, None, None, :]
        return out

    misfits, out, chosen = [], None, None
    for fraction in fractions:
        out = None  # one candidate held at a time: the working memory
        out = candidate(fraction)
        sums = _fold_sums(out, folds, weights)
        misfits.append(_held_out_misfit(sums, folds, weights, diffraction, probe, counts_scale))
        if chosen is None or misfits[-1] < min(misfits[:-1]):
            chosen = sums  # the best fraction's sums so far (the first of equals, as argmin)
    best = int(np.argmin(misfits))
    log.info("patch slopes: fraction %.2f of the fitted terms (stitched misfit %s)",
             fractions[best], ", ".join(f"{f:g}: {v:.3e}" for f, v in zip(fractions, misfits, strict=True)))
    if best != len(fractions) - 1:
        out = None
        out = candidate(fractions[best])
    choice = SlopeChoice(float(fractions[best]), tuple(map(float, fractions)), tuple(misfits))
    if not refit:
        return out, choice
    refit_misfit = _held_out_misfit(chosen, folds, weights, diffraction, probe, counts_scale,
                                    refit=True)
    log.info("patch slopes: refit from the stitched object, held-out misfit %.3e (before %.3e)",
             refit_misfit, misfits[best])
    if refit_misfit >= misfits[best]:
        return out, dataclasses.replace(choice, refit_misfit=refit_misfit)
    b, m, _, c = out.shape  # every pattern's patch cut from the object all the patches stitch to
    out = np.moveaxis(_cut(_stitched(chosen, range(folds.count)), folds, np.arange(b * c), m)
                      .reshape(b, c, m, m), 1, 3)
    apply_patch_slopes(out, fit_patch_slopes(out, diffraction, probe, counts_scale), out=out)
    if align:
        out *= fit_patch_phases(out, coords, weights)[:, None, None, :]
    return out, dataclasses.replace(choice, refit_misfit=refit_misfit, refitted=True)
