"""Test-time physics refinement: a stitched object refined against the measured patterns.

``refine_object(start, patterns, positions, probe, config)`` treats the object as a free
complex array and runs full-batch Adam on the misfit between the measured amplitudes and the
forward model of this package's simulator:

    predicted amplitude = |fftshift(fft2(probe · patch, norm="ortho"))|
    patch = the N×N window of the object at a scan position, bilinear at sub-pixel offsets
            (``physics.extract_patches(..., "bilinear")``)

with the probe and the positions known. It is a solver, not the network: started from the
PINN's stitched object it gives a "PINN + refinement" result, which must be reported as such,
beside the PINN alone and the conventional solver (docs/findings.md, REFINE-001). Started
from a flat object (``flat_start``) the same code is the solver alone, the control that
tells what the PINN's start is worth.

Losses (``RefineConfig.loss``), both means over every pixel of every pattern:
    "amplitude"  (a − m)²                       (m: measured amplitude, network units)
    "poisson"    (λ − k − k·log(λ/k)) / s², λ = (a·s)², k = (m·s)²   (s: the data's
                 intensity_scale; the Poisson deviance, 0 for a perfect fit)

One global amplitude scale, fitted by least squares from the start object, is folded into the
start (the network's object is defined up to it), so no ground truth enters. The patterns
are processed ``RefineConfig.chunk`` positions at a time with the gradients summed over the
chunks: one step is one full-batch step whatever the chunk, and the memory stays bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ptycho.physics import extract_patches, far_field, least_squares_scale
from ptycho.stitching import frame_padding

__all__ = ["RefineConfig", "RefineResult", "refine_object", "refine_data", "flat_start", "LOSSES"]

LOSSES = ("amplitude", "poisson")
_EPS = 1e-6  # floor of the Poisson rate (counts), keeps log λ finite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineConfig:
    """Options of ``refine_object``.

    steps:         full-batch Adam steps (0 returns the start, rescaled)
    learning_rate: Adam step size, in object units (the object's amplitude is about 1)
    loss:          one of LOSSES
    chunk:         positions per gradient evaluation (memory bound; the result does not
                   depend on it beyond float rounding)
    holdout:       fraction of the positions (seeded, random) left out of the fit to stop
                   it: the object returned is the one whose misfit on them is lowest, and the
                   steps end ``patience`` steps after that lowest point (0: fit every pattern,
                   return the last object). The held-out misfit measures how well unseen
                   patterns are predicted, which follows the PSNR more than the SSIM: at low
                   dose it limits the SSIM the fit loses to the noise but does not prevent
                   it (docs/findings.md, REFINE-001).
    patience:      steps without a lower held-out misfit before the steps end
    """

    steps: int = 30
    learning_rate: float = 0.02
    loss: str = "amplitude"
    chunk: int = 256
    holdout: float = 0.1
    patience: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"RefineConfig.steps must be an integer >= 0, got {self.steps!r}")
        if not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
            raise ValueError(f"RefineConfig.learning_rate must be finite and > 0, got {self.learning_rate!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"RefineConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"RefineConfig.chunk must be an integer >= 1, got {self.chunk!r}")
        if not 0.0 <= self.holdout < 0.5:
            raise ValueError(f"RefineConfig.holdout must be in [0, 0.5), got {self.holdout!r}")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"RefineConfig.patience must be an integer >= 1, got {self.patience!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RefineResult:
    """obj (H, W) complex64 in the start's frame; losses: the fitted patterns' loss before
    every step and after the last step taken; held_out_losses: the same on the held-out
    patterns ([] without ``holdout``); best_step: the step obj is from (0: the rescaled start);
    wall_s: seconds of the steps (the one-off trace is trace_s); scale: the amplitude scale
    folded into the start."""

    obj: np.ndarray
    losses: list[float]
    wall_s: float
    trace_s: float
    scale: float
    held_out_losses: list[float] = field(default_factory=list)
    best_step: int = 0
    config: RefineConfig = field(default_factory=RefineConfig)


StepCallback = Callable[[int, float, np.ndarray], None]  # (step, wall_s so far, (H, W) object)


def flat_start(shape: tuple[int, int]) -> np.ndarray:
    """A flat object of the given (H, W): ones, complex64 (the solver-alone start)."""
    return np.ones(shape, np.complex64)


def _check(start: Any, patterns: Any, positions: Any, probe: Any,
           intensity_scale: float | None, loss: str) -> tuple[np.ndarray, ...]:
    start = np.asarray(start)
    patterns = np.asarray(patterns)
    positions = np.asarray(positions, np.float64)
    probe = np.asarray(probe)
    if start.ndim != 2 or not np.iscomplexobj(start):
        raise ValueError(f"refine_object: start must be an (H, W) complex object, got "
                         f"{start.dtype} {start.shape}")
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"refine_object: probe must have shape (N, N), got {probe.shape}")
    n = probe.shape[0]
    if patterns.ndim != 3 or patterns.shape[1:] != (n, n) or len(patterns) == 0:
        raise ValueError(f"refine_object: patterns must have shape (P, {n}, {n}) with P >= 1 "
                         f"(the probe is {n}×{n}), got {patterns.shape}")
    if positions.shape != (len(patterns), 2):
        raise ValueError(f"refine_object: positions must have shape ({len(patterns)}, 2) to match "
                         f"the patterns, got {positions.shape}")
    for name, value in (("start", start), ("patterns", patterns), ("positions", positions), ("probe", probe)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"refine_object: {name} holds non-finite values")
    if loss == "poisson" and not (intensity_scale is not None and intensity_scale > 0):
        raise ValueError(f"refine_object: the poisson loss needs the data's intensity_scale > 0, "
                         f"got {intensity_scale!r}")
    return (start.astype(np.complex64), patterns.astype(np.float32), positions,
            probe.astype(np.complex64))


def _windows(positions: np.ndarray, n: int, canvas: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Row and column indices (P, N+1) int32 of every patch's bilinear window on the canvas and
    its fractional offsets (P,) float32 (x, y)."""
    origin = positions - n // 2
    base = np.floor(origin)
    frac = (origin - base).astype(np.float32)
    steps = np.arange(n + 1)
    rows = (base[:, 1, None] + steps).astype(np.int32)
    cols = (base[:, 0, None] + steps).astype(np.int32)
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= canvas[0] or cols.max() >= canvas[1]:
        raise ValueError(f"refine_object: a patch leaves the {canvas[0]}×{canvas[1]} canvas")
    return rows, cols, frac[:, 0], frac[:, 1]


def refine_object(start: Any, patterns: Any, positions: Any, probe: Any,
                  config: RefineConfig | None = None, *, intensity_scale: float | None = None,
                  on_step: StepCallback | None = None) -> RefineResult:
    """The start object refined by up to ``config.steps`` Adam steps against the patterns.

    start:     (H, W) complex, the frame of the positions (patches may overhang it: the
               object is refined on a canvas grown with edge values, and cut back)
    patterns:  (P, N, N) float measured amplitudes in the units of the probe's far field
               (network units for ``layers.normalised_probe``), zero frequency at (N//2, N//2)
    positions: (P, 2) float (x, y) frame position of every patch's pixel (N//2, N//2)
    probe:     (N, N) complex
    intensity_scale: counts = (pattern · intensity_scale)², needed by the poisson loss
    on_step:   called after every step with (step, wall seconds so far, the (H, W) object);
               its own time is not counted
    returns:   RefineResult, obj (H, W) complex64: the last object, or with
               ``config.holdout`` the one whose held-out loss was lowest
    """
    config = config or RefineConfig()
    start, patterns, positions, probe = _check(start, patterns, positions, probe,
                                               intensity_scale, config.loss)
    n = probe.shape[0]
    h, w = start.shape
    top, left, bottom, right = frame_padding(positions, n, (h, w))
    canvas = np.pad(start, ((top, bottom), (left, right)), mode="edge")
    positions = positions + [left, top]
    scale = _amplitude_scale(canvas, patterns, positions, probe, config.chunk)
    canvas *= np.complex64(scale)
    fit, held = _split(len(patterns), config.holdout)
    problem = _Problem(canvas, probe, config,
                       float(intensity_scale) if config.loss == "poisson" else 1.0)
    fit_chunks = problem.chunks(patterns[fit], positions[fit])
    held_chunks = problem.chunks(patterns[held], positions[held])

    def frame() -> np.ndarray:
        return problem.canvas()[top:top + h, left:left + w]

    began = time.perf_counter()
    loss, grads = problem.loss_and_grads(fit_chunks)  # traces the chunk shapes once
    held_losses = [problem.loss(held_chunks)] if held_chunks else []
    trace_s = time.perf_counter() - began
    losses, best, best_step, wall = [loss], frame(), 0, 0.0
    for step in range(1, config.steps + 1):
        began = time.perf_counter()
        problem.apply(grads)
        loss, grads = problem.loss_and_grads(fit_chunks)
        if held_chunks:
            held_losses.append(problem.loss(held_chunks))
        wall += time.perf_counter() - began
        losses.append(loss)
        if not np.isfinite(loss):
            raise FloatingPointError(f"refine_object: the {config.loss} loss became {loss} at step "
                                     f"{step} (learning rate {config.learning_rate})")
        current = frame()
        if on_step is not None:
            on_step(step, wall, current)
        if not held_chunks or held_losses[-1] < held_losses[best_step]:
            best, best_step = current, step
        elif step - best_step >= config.patience:
            break
    log.info("refined %d positions (%d held out), %d steps (%s, lr %g): loss %.4g -> %.4g in "
             "%.2f s; kept step %d", len(fit), len(held), len(losses) - 1, config.loss,
             config.learning_rate, losses[0], losses[-1], wall, best_step)
    return RefineResult(obj=best, losses=losses, wall_s=wall, trace_s=trace_s, scale=scale,
                        held_out_losses=held_losses, best_step=best_step, config=config)


def _split(p: int, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """(fitted, held-out) position indices: a seeded random ``holdout`` fraction held out
    (at least one when the fraction is > 0), the rest fitted."""
    count = min(p - 1, max(1, round(holdout * p))) if holdout > 0 else 0
    order = np.random.default_rng(0).permutation(p)
    return np.sort(order[count:]), np.sort(order[:count])


class _Problem:
    """The object as two float32 variables (real, imaginary) on the grown canvas, its Adam
    optimiser and the misfit of chunks of patterns (summed over chunks, a mean per pixel of
    the chunks given)."""

    def __init__(self, canvas: np.ndarray, probe: np.ndarray, config: RefineConfig,
                 counts_scale: float) -> None:
        import tensorflow as tf

        from ptycho.layers import far_field_amplitude

        self.config = config
        self.shape = canvas.shape
        self.real = tf.Variable(canvas.real.copy(), name="object_real")
        self.imag = tf.Variable(canvas.imag.copy(), name="object_imag")
        self.optimizer = tf.keras.optimizers.Adam(config.learning_rate)
        self.optimizer.build([self.real, self.imag])
        probe_t = tf.constant(probe)
        poisson = config.loss == "poisson"

        def misfit(rows: Any, cols: Any, fx: Any, fy: Any, measured: Any, weight: Any) -> Any:
            patch = tf.complex(_bilinear(self.real, rows, cols, fx, fy),
                               _bilinear(self.imag, rows, cols, fx, fy))
            amp = far_field_amplitude(patch * probe_t[None])
            if not poisson:
                return tf.reduce_sum(tf.square(amp - measured)) * weight
            rate = tf.square(amp * counts_scale) + _EPS
            counts = tf.square(measured * counts_scale)
            deviance = rate - counts - tf.math.xlogy(counts, rate / (counts + _EPS))
            return tf.reduce_sum(deviance) * weight / counts_scale ** 2

        @tf.function(reduce_retracing=True)
        def loss_and_grads(*chunk: Any) -> Any:
            with tf.GradientTape() as tape:
                value = misfit(*chunk)
            grads = tape.gradient(value, [self.real, self.imag])  # IndexedSlices (gather)
            return value, [tf.convert_to_tensor(g) for g in grads]

        self._misfit = tf.function(misfit, reduce_retracing=True)
        self._loss_and_grads = loss_and_grads

    def chunks(self, patterns: np.ndarray, positions: np.ndarray) -> list[tuple[Any, ...]]:
        """The TF inputs of ``config.chunk`` patterns at a time (none for no patterns), each
        weighted 1 / (all the patterns' pixels)."""
        import tensorflow as tf

        if not len(patterns):
            return []
        n = patterns.shape[1]
        rows, cols, fx, fy = _windows(positions, n, self.shape)
        weight = tf.constant(1.0 / (len(patterns) * n * n), tf.float32)
        step = self.config.chunk
        return [(tf.constant(rows[i:i + step]), tf.constant(cols[i:i + step]),
                 tf.constant(fx[i:i + step, None, None]), tf.constant(fy[i:i + step, None, None]),
                 tf.constant(patterns[i:i + step]), weight) for i in range(0, len(patterns), step)]

    def loss_and_grads(self, chunks: list[tuple[Any, ...]]) -> tuple[float, list[Any]]:
        loss, grads = 0.0, None
        for chunk in chunks:
            part, parts = self._loss_and_grads(*chunk)
            loss += float(part)
            grads = parts if grads is None else [g + q for g, q in zip(grads, parts, strict=True)]
        return loss, grads

    def loss(self, chunks: list[tuple[Any, ...]]) -> float:
        return sum(float(self._misfit(*chunk)) for chunk in chunks)

    def apply(self, grads: list[Any]) -> None:
        self.optimizer.apply_gradients(zip(grads, [self.real, self.imag], strict=True))

    def canvas(self) -> np.ndarray:
        return (self.real.numpy() + 1j * self.imag.numpy()).astype(np.complex64)


def refine_data(start: Any, data: Any, config: RefineConfig | None = None, *,
                on_step: StepCallback | None = None) -> RefineResult:
    """``refine_object`` on a data set's scan: every scan position's pattern (network units,
    ``canonical_write.per_position_scan``) at its (xcoords, ycoords), with the data's probe
    normalised as the network's (``layers.normalised_probe``) and its intensity_scale.

    start: (H, W) complex in the data's frame (e.g. ``inference.reconstruct``'s output);
    data:  ``physics.SimulatedData`` or ``io.PtychoData``
    """
    from ptycho.canonical_write import per_position_scan
    from ptycho.layers import normalised_probe

    patterns, positions = per_position_scan(data)
    return refine_object(start, patterns, positions, normalised_probe(data.probe), config,
                         intensity_scale=float(data.intensity_scale), on_step=on_step)


def _bilinear(canvas: Any, rows: Any, cols: Any, fx: Any, fy: Any) -> Any:
    """(P, N, N) float32 patches of the (H, W) canvas: the (P, N+1, N+1) windows at rows/cols,
    interpolated by the fractional offsets fx, fy (P, 1, 1) — physics.extract_patches'
    bilinear rule."""
    import tensorflow as tf

    window = tf.gather(tf.gather(canvas, rows, axis=0), cols, axis=2, batch_dims=1)
    across = window[:, :, :-1] + fx * (window[:, :, 1:] - window[:, :, :-1])
    return across[:, :-1] + fy * (across[:, 1:] - across[:, :-1])


def _amplitude_scale(canvas: np.ndarray, patterns: np.ndarray, positions: np.ndarray,
                     probe: np.ndarray, chunk: int) -> float:
    """Least-squares s of s·|F(P·patch)| ≈ the patterns for the start canvas, ``chunk``
    positions at a time (1 when the start predicts nothing)."""
    n = probe.shape[0]
    return least_squares_scale(
        (far_field(probe, extract_patches(canvas, positions[i:i + chunk], n, "bilinear")),
         patterns[i:i + chunk]) for i in range(0, len(patterns), chunk))
