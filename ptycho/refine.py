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

from ptycho.physics import extract_patches, far_field
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
    """

    steps: int = 20
    learning_rate: float = 0.02
    loss: str = "amplitude"
    chunk: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"RefineConfig.steps must be an integer >= 0, got {self.steps!r}")
        if not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
            raise ValueError(f"RefineConfig.learning_rate must be finite and > 0, got {self.learning_rate!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"RefineConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"RefineConfig.chunk must be an integer >= 1, got {self.chunk!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RefineResult:
    """obj (H, W) complex64 in the start's frame; losses: the loss before every step and after
    the last (steps + 1 values); wall_s: seconds of the steps (the one-off trace is trace_s);
    scale: the amplitude scale folded into the start."""

    obj: np.ndarray
    losses: list[float]
    wall_s: float
    trace_s: float
    scale: float
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
    """The start object refined by ``config.steps`` Adam steps against the patterns.

    start:     (H, W) complex, the frame of the positions (patches may overhang it: the
               object is refined on a canvas grown with edge values, and cut back)
    patterns:  (P, N, N) float measured amplitudes in the units of the probe's far field
               (network units for ``layers.normalised_probe``), zero frequency at (N//2, N//2)
    positions: (P, 2) float (x, y) frame position of every patch's pixel (N//2, N//2)
    probe:     (N, N) complex
    intensity_scale: counts = (pattern · intensity_scale)², needed by the poisson loss
    on_step:   called after every step with (step, wall seconds so far, the (H, W) object);
               its own time is not counted
    returns:   RefineResult, obj (H, W) complex64
    """
    import tensorflow as tf

    config = config or RefineConfig()
    start, patterns, positions, probe = _check(start, patterns, positions, probe,
                                               intensity_scale, config.loss)
    n = probe.shape[0]
    h, w = start.shape
    top, left, bottom, right = frame_padding(positions, n, (h, w))
    canvas = np.pad(start, ((top, bottom), (left, right)), mode="edge")
    positions = positions + [left, top]
    rows, cols, fx, fy = _windows(positions, n, canvas.shape)
    scale = _amplitude_scale(canvas, patterns, positions, probe, config.chunk)
    canvas *= np.complex64(scale)

    p = len(patterns)
    chunks = [slice(i, min(i + config.chunk, p)) for i in range(0, p, config.chunk)]
    counts_scale = float(intensity_scale) if config.loss == "poisson" else 1.0
    real = tf.Variable(canvas.real.copy(), name="object_real")
    imag = tf.Variable(canvas.imag.copy(), name="object_imag")
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    optimizer.build([real, imag])
    probe_t = tf.constant(probe)
    total = float(p * n * n)

    @tf.function(reduce_retracing=True)
    def chunk_loss_and_grads(r_idx: Any, c_idx: Any, fx_c: Any, fy_c: Any, measured: Any) -> Any:
        with tf.GradientTape() as tape:
            patch = tf.complex(_bilinear(real, r_idx, c_idx, fx_c, fy_c),
                               _bilinear(imag, r_idx, c_idx, fx_c, fy_c))
            amp = _far_field_amplitude(probe_t, patch)
            if config.loss == "amplitude":
                misfit = tf.reduce_sum(tf.square(amp - measured))
            else:
                rate = tf.square(amp * counts_scale) + _EPS
                counts = tf.square(measured * counts_scale)
                misfit = tf.reduce_sum(rate - counts - tf.math.xlogy(counts, rate / (counts + _EPS)))
                misfit /= counts_scale ** 2
            misfit /= total
        return misfit, tape.gradient(misfit, [real, imag])

    inputs = [(tf.constant(rows[s]), tf.constant(cols[s]), tf.constant(fx[s, None, None]),
               tf.constant(fy[s, None, None]), tf.constant(patterns[s])) for s in chunks]

    def evaluate() -> tuple[float, list[Any]]:
        loss, grads = 0.0, [tf.zeros_like(real), tf.zeros_like(imag)]
        for args in inputs:
            part, (g_re, g_im) = chunk_loss_and_grads(*args)
            loss += float(part)
            grads = [grads[0] + g_re, grads[1] + g_im]
        return loss, grads

    def frame() -> np.ndarray:
        whole = real.numpy() + 1j * imag.numpy()
        return whole[top:top + h, left:left + w].astype(np.complex64)

    began = time.perf_counter()
    loss, grads = evaluate()  # traces the chunk shapes once
    trace_s = time.perf_counter() - began
    losses = [loss]
    wall = 0.0
    for step in range(1, config.steps + 1):
        began = time.perf_counter()
        optimizer.apply_gradients(zip(grads, [real, imag], strict=True))
        loss, grads = evaluate()
        wall += time.perf_counter() - began
        losses.append(loss)
        if not np.isfinite(loss):
            raise FloatingPointError(f"refine_object: the {config.loss} loss became {loss} at step "
                                     f"{step} (learning rate {config.learning_rate})")
        if on_step is not None:
            on_step(step, wall, frame())
    log.info("refined %d positions, %d steps (%s, lr %g): loss %.4g -> %.4g in %.2f s",
             p, config.steps, config.loss, config.learning_rate, losses[0], losses[-1], wall)
    return RefineResult(obj=frame(), losses=losses, wall_s=wall, trace_s=trace_s,
                        scale=scale, config=config)


def refine_data(start: Any, data: Any, config: RefineConfig | None = None, *,
                on_step: StepCallback | None = None) -> RefineResult:
    """``refine_object`` on a data set's scan: every scan position's pattern (network units,
    ``canonical_write.per_position_patterns``) at its (xcoords, ycoords), with the data's probe
    normalised as the network's (``layers.normalised_probe``) and its intensity_scale.

    start: (H, W) complex in the data's frame (e.g. ``inference.reconstruct``'s output);
    data:  ``physics.SimulatedData`` or ``io.PtychoData``
    """
    from ptycho.canonical_write import per_position_patterns
    from ptycho.layers import normalised_probe

    used, patterns = per_position_patterns(data)
    positions = np.stack([np.asarray(data.xcoords)[used], np.asarray(data.ycoords)[used]], axis=1)
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


def _far_field_amplitude(probe: Any, patch: Any) -> Any:
    """|fftshift(fft2(probe · patch, norm="ortho"))|: (P, N, N) complex64 → float32."""
    import tensorflow as tf

    n = float(probe.shape[0])
    spectrum = tf.signal.fft2d(patch * probe[None]) / n
    return tf.abs(tf.signal.fftshift(spectrum, axes=(-2, -1)))


def _amplitude_scale(canvas: np.ndarray, patterns: np.ndarray, positions: np.ndarray,
                     probe: np.ndarray, chunk: int) -> float:
    """Least-squares s of s·|F(P·patch)| ≈ the patterns for the start canvas, ``chunk``
    positions at a time (1 when the start predicts nothing)."""
    n = probe.shape[0]
    cross = power = 0.0
    for i in range(0, len(patterns), chunk):
        amp = far_field(probe, extract_patches(canvas, positions[i:i + chunk], n, "bilinear"))
        cross += float(np.sum(amp * patterns[i:i + chunk], dtype=np.float64))
        power += float(np.sum(np.square(amp, dtype=np.float64)))
    return cross / power if power > 0 else 1.0
