"""Conventional iterative reconstruction (pty-chi: LSQML, ePIE, DM) of this project's data.

An optional extra: ``pip install -e .[baseline]`` or ``make baseline`` (pty-chi 2.2 on the CPU
torch wheel). Nothing here imports torch or pty-chi at import time; ``available()`` says
whether they can be imported, ``install_hint()`` how to get them.

API (what the dose study and ``python -m ptycho reconstruct`` call)::

    result = reconstruct_iterative(diffraction, positions, probe, engine="lsqml", epochs=50,
                                   object_shape=(H, W), threads=1)
    result.obj          # (H, W) complex64, the object in the frame of `object_shape`

Conventions (this repo's canonical format → pty-chi):

* ``diffraction`` (P, N, N) float, **amplitudes** (sqrt of counts) by default, or
  **intensities** with ``intensity=True``; zero frequency at pixel (N//2, N//2) (fftshifted,
  as ``physics.far_field`` writes them). pty-chi wants intensities with the zero frequency at
  (0, 0): we square amplitudes and let pty-chi's ``fft_shift`` move the centre.
* **Data scale.** pty-chi is not scale invariant: a few constants are absolute, in the data's
  units: LSQML's joint step-size solve adds 1.2e-7 to each pattern's Σ|Δo·P|² (and to the
  probe's term), its Gaussian noise model divides by √I_pred + 1e-9, ePIE's and DM's magnitude
  projection adds 1e-7 to the intensities. With dim data (mean intensity per detector pixel below ~1) λ₀
  shrinks the steps and LSQML slows down or stalls (measured on the noise-free 32 px test scan
  of tests/ptycho/test_baseline.py, amplitude SSIM after 20 epochs at a mean intensity per
  pixel of 1e-7: 0.21, 1e-5: 0.81, 1e-3: 0.95, 0.1: 0.995, 10 to 1e11: 0.997–0.998; 1e15: NaN).
  So the intensities are handed to pty-chi at a canonical scale: multiplied by
  ``canonical_intensity_scale`` = 4**k (k an integer), which brings the mean intensity per
  pixel to within a factor 2 of ``CANONICAL_MEAN_INTENSITY`` (2**20). A power of four is
  exact in floating point and makes the probe factor a power of two, so files that differ by
  a power of two in amplitude give pty-chi bit-identical input and the same object. The
  object does not depend on this scale (the probe is normalised to the data pty-chi gets,
  below); the noise model sees canonical intensities: for the Gaussian model (σ = 0.5, step
  α = 0.5) the update is the plain magnitude projection, free of σ, so only the displayed
  loss depends on the scale, and it is converted back to the caller's units (× 1/scale for
  LSQML's and ePIE's mean squared amplitude error, × 1/√scale for DM's error norm).
* ``positions`` (P, 2) float64 **(x, y) = (column, row)** object pixels of patch pixel
  (N//2, N//2), origin at the top-left pixel of the object frame (``xcoords``, ``ycoords``).
  pty-chi takes separate y and x arrays and puts the patch centre (pixel (N - 1)/2) at
  position + ``position_origin_coords``: we pass y and x unchanged with the origin at the
  frame's top-left on the padded canvas plus (N - 1)/2 - N//2 (= -0.5 for even N), so that
  whole-pixel positions stay whole (pty-chi would otherwise shift the probe by half a pixel,
  a different model that does not reproduce the data: measured, see ``ptychi_positions``).
  Patches may overhang the frame (PtychoPINN's scans do): the canvas is grown by
  ``stitching.frame_padding`` and the frame is cut out of the result.
* ``probe`` (N, N) complex, any scale: it is rescaled so that Σ|P|² · N² (pty-chi's
  unnormalised FFT) equals the mean total intensity per pattern, i.e. an object of unit
  modulus transmits exactly the measured photons; the object then comes out near unit
  modulus whatever the probe's or the file's scale. The probe is kept fixed (known probe).
  ``probe_scale`` is the factor for the caller's data; pty-chi gets the probe times
  probe_scale · √data_scale (a power of two more).
* Even so, two runs whose inputs differ only by rounding (a different unit, or 1 + 2**-22)
  do not give the same object after a few epochs: the first iterate (flat object, a
  band-limited probe) predicts ~0 outside the probe's pupil, where the projection takes its
  phase from rounding noise. Amplitude SSIM of the noise-free test scan of
  ``tests/ptycho/test_baseline.py`` over 11 such runs: 0.916–0.948 after 5 LSQML epochs,
  0.985–0.991 after 10, 0.9969–0.9978 after 20.
* Engines: "lsqml" (Gaussian noise model, batches of 96), "epie" (α = 1, batches of 10),
  "dm" (difference map, all patterns at once). Object initialised to ones; float32; CPU; ``threads`` torch threads
  for the call (restored afterwards).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptycho.stitching import frame_padding

__all__ = ["ENGINES", "DEFAULT_BATCH", "CANONICAL_MEAN_INTENSITY", "EpochInfo", "IterativeResult",
           "BaselineUnavailable", "available", "install_hint", "check_importable",
           "canonical_intensity_scale", "normalise_probe", "ptychi_positions", "reconstruct_iterative"]

log = logging.getLogger(__name__)

ENGINES = ("lsqml", "epie", "dm")
#: patterns per update by engine: ePIE diverges with large batches (overlapping updates add up);
#: pty-chi's DM does not batch (it updates with all patterns at once).
DEFAULT_BATCH = {"lsqml": 96, "epie": 10, "dm": 1_000_000}
#: mean intensity per detector pixel that pty-chi is given (within a factor 2; see the module
#: docstring): mid-way, in decades, between where LSQML's absolute constants start to matter
#: (≲ 1) and float32 trouble (NaN at ~1e15).
CANONICAL_MEAN_INTENSITY = 2.0**20
#: the displayed loss scales as data_scale ** LOSS_POWER[engine] (mean squared amplitude
#: error for LSQML/ePIE, DM's error norm).
LOSS_POWER = {"lsqml": 1.0, "epie": 1.0, "dm": 0.5}


class BaselineUnavailable(RuntimeError):
    """pty-chi (the ``baseline`` extra) is not installed; the message says how to install it."""


@dataclass(frozen=True)
class EpochInfo:
    """One epoch: 1-based index, wall seconds since the start (setup included), pty-chi's
    displayed loss in the caller's data units (None if it has none), and the caller's scores
    (``on_epoch``'s return)."""

    epoch: int
    wall_s: float
    loss: float | None
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class IterativeResult:
    """obj (H, W) complex64 in the frame of ``object_shape``; wall_s: total seconds (setup +
    epochs, scoring callbacks excluded); epochs: per-epoch info (losses in the caller's
    units); engine, threads, probe_scale: the factor that makes the given probe predict the
    caller's data (``normalise_probe``), and data_scale: the power of four the intensities
    were multiplied by for pty-chi (``canonical_intensity_scale``)."""

    obj: np.ndarray
    wall_s: float
    epochs: tuple[EpochInfo, ...]
    engine: str
    threads: int
    probe_scale: float
    data_scale: float


def install_hint() -> str:
    """How to install the extra, for error messages."""
    return ("the iterative baseline needs pty-chi: run `make baseline` (or `pip install "
            "torch==2.13.0` then `pip install -e .[baseline]` in the venv)")


def available() -> bool:
    """True when torch and pty-chi can be found (nothing is imported; a module blocked with
    ``sys.modules[name] = None`` counts as absent)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("torch", "ptychi"))
    except (ImportError, ValueError):
        return False


def check_importable() -> str:
    """Import torch and pty-chi for real (``make test-baseline`` runs this first, so a run in
    which every baseline test would skip fails instead); returns their versions."""
    torch, _, _ = _import_ptychi()
    from importlib.metadata import version

    return f"torch {torch.__version__}, ptychi {version('ptychi')}"


def _import_ptychi() -> tuple[Any, Any, Any]:
    """(torch, ptychi.api, PtychographyTask). PyPI's torchvision wheels are CUDA builds: next to the CPU torch
    wheel their C extension cannot load, and ``import torchvision`` (which pty-chi needs only
    for a pure-Python Gaussian blur) then fails on registering fake kernels for the
    ``torchvision::nms``/``qnms`` operators. Those two schemas are then defined (no kernels;
    nothing here calls them) and the import is retried."""
    if not available():
        raise BaselineUnavailable(install_hint())
    import torch

    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _torchvision_schemas(torch)
        import torchvision  # noqa: F401
    import ptychi.api as api
    from ptychi.api.task import PtychographyTask

    return torch, api, PtychographyTask


def _torchvision_schemas(torch: Any) -> Any:
    """Define torchvision::nms and ::qnms once per process; the library handle lives on the
    torch.ops namespace object so that it is not garbage-collected (which would undefine them)."""
    namespace = torch.ops.torchvision
    handle = getattr(namespace, "_ptycho_schemas", None)
    if handle is None:
        handle = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            handle.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        namespace._ptycho_schemas = handle
    return handle


def canonical_intensity_scale(intensities: np.ndarray) -> float:
    """4**k (k an integer) such that intensities · 4**k have a mean per pixel within a factor 2
    of ``CANONICAL_MEAN_INTENSITY``: the scale pty-chi sees (see the module docstring).

    intensities (P, N, N) float ≥ 0, not all zero. A power of four is exact in floating point,
    so data that differ by a power of two in amplitude come out bit-identical.
    """
    mean = float(np.mean(intensities, dtype=np.float64))
    if not np.isfinite(mean) or mean <= 0:
        raise ValueError(f"canonical_intensity_scale: the mean intensity must be finite and > 0, got {mean}")
    return float(4.0 ** round(np.log(CANONICAL_MEAN_INTENSITY / mean) / np.log(4.0)))


def normalise_probe(probe: np.ndarray, intensities: np.ndarray) -> tuple[np.ndarray, float]:
    """(probe · s, s) with s > 0 such that Σ|P s|² · N² = mean Σ intensities per pattern.

    probe (N, N) complex; intensities (P, N, N) float ≥ 0. pty-chi's far field is an
    unnormalised FFT, so a unit-modulus object then predicts the measured total counts.
    """
    probe = np.asarray(probe, np.complex64)
    n2 = probe.shape[0] * probe.shape[1]
    power = float(np.sum(np.abs(probe.astype(np.complex128)) ** 2)) * n2
    if power <= 0:
        raise ValueError("normalise_probe: the probe is all zero")
    mean_total = float(np.mean(np.sum(np.asarray(intensities, np.float64), axis=(1, 2))))
    if mean_total <= 0:
        raise ValueError("normalise_probe: the patterns are all zero")
    scale = float(np.sqrt(mean_total / power))
    return (probe * np.float32(scale)).astype(np.complex64), scale


def ptychi_positions(positions: np.ndarray, n: int, pad: tuple[int, int],
                     ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(y, x, origin): pty-chi positions and ``position_origin_coords`` for this repo's (x, y)
    positions on a canvas whose frame starts at (top, left) = `pad`.

    pty-chi puts the patch centre (pixel (N - 1)/2) at canvas pixel position + origin; ours
    puts pixel N//2 at the position, so origin = (top, left) + (N - 1)/2 - N//2 (half a pixel
    back for even N). The positions themselves are passed unchanged: pty-chi snaps them to
    whole pixels and shifts the probe by the remainder, so whole-pixel scans (ours and
    PtychoPINN's simulations on a grid) need no sub-pixel shift at all.
    positions (P, 2) float (x, y); returns y (P,), x (P,) float64, origin (row, col) floats.
    """
    xy = np.asarray(positions, np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"positions must be (P, 2) (x, y), got shape {xy.shape}")
    centre = (n - 1) / 2 - n // 2
    return xy[:, 1].copy(), xy[:, 0].copy(), (pad[0] + centre, pad[1] + centre)


def _options(api: Any, engine: str, epochs: int, batch_size: int, seed: int) -> Any:
    if engine == "lsqml":
        options = api.LSQMLOptions()
        options.reconstructor_options.noise_model = api.NoiseModels.GAUSSIAN
    elif engine == "epie":
        options = api.EPIEOptions()
        options.object_options.alpha = 1.0
    elif engine == "dm":
        options = api.DMOptions()
    else:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    options.object_options.optimizable = True
    options.object_options.optimizer = api.Optimizers.SGD
    options.object_options.step_size = 1.0
    options.probe_options.optimizable = False
    options.probe_position_options.optimizable = False
    options.object_options.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    rec = options.reconstructor_options
    rec.num_epochs = epochs
    rec.batch_size = batch_size
    rec.default_device = api.Devices.CPU
    rec.random_seed = seed
    rec.allow_nondeterministic_algorithms = False
    return options


def _initial_object(obj: np.ndarray | None, shape: tuple[int, int],
                    pad: tuple[int, int, int, int]) -> np.ndarray:
    """(1, H', W') complex64 canvas: ones, with `obj` (H, W) placed in the frame."""
    top, left, bottom, right = pad
    canvas = np.ones((1, shape[0] + top + bottom, shape[1] + left + right), np.complex64)
    if obj is not None:
        if np.shape(obj) != tuple(shape):
            raise ValueError(f"initial_object must have the object shape {shape}, got {np.shape(obj)}")
        canvas[0, top:top + shape[0], left:left + shape[1]] = obj
    return canvas


def reconstruct_iterative(
    diffraction: np.ndarray,
    positions: np.ndarray,
    probe: np.ndarray,
    *,
    engine: str = "lsqml",
    epochs: int = 50,
    object_shape: tuple[int, int] | None = None,
    intensity: bool = False,
    batch_size: int | None = None,
    threads: int = 1,
    seed: int = 0,
    on_epoch: Callable[[int, np.ndarray], dict[str, float] | None] | None = None,
    initial_object: np.ndarray | None = None,
) -> IterativeResult:
    """Reconstruct the object with a known, fixed probe (see the module docstring).

    diffraction (P, N, N) float ≥ 0 amplitudes (``intensity=False``) or intensities, zero
    frequency at (N//2, N//2); positions (P, 2) (x, y) object pixels; probe (N, N) complex;
    object_shape (H, W) of the frame (default: just large enough for every patch, positions
    as given); epochs ≥ 1; batch_size: patterns per update (default ``DEFAULT_BATCH[engine]``);
    threads ≥ 1 torch threads; seed: pty-chi's random seed (batch order).
    on_epoch(epoch, obj (H, W) complex64) → scores: called after every epoch (its time is not
    counted in wall_s); when None the epochs run in one call. initial_object: (H, W) complex
    start (default ones; outside the frame always ones).
    returns IterativeResult (obj (H, W) complex64).
    """
    patterns = np.asarray(diffraction, np.float32)
    if patterns.ndim != 3 or patterns.shape[1] != patterns.shape[2]:
        raise ValueError(f"diffraction must be (P, N, N), got shape {patterns.shape}")
    p, n, _ = patterns.shape
    xy = np.asarray(positions, np.float64)
    if xy.shape != (p, 2):
        raise ValueError(f"positions must be ({p}, 2) (x, y) to match diffraction {patterns.shape}, "
                         f"got {xy.shape}")
    if np.shape(probe) != (n, n):
        raise ValueError(f"probe must be ({n}, {n}) to match diffraction, got {np.shape(probe)}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    batch_size = DEFAULT_BATCH[engine] if batch_size is None else batch_size
    for name, value in (("epochs", epochs), ("threads", threads), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not np.isfinite(patterns).all() or (patterns < 0).any():
        raise ValueError("diffraction must be finite and >= 0")
    intensities = patterns if intensity else np.square(patterns)
    if object_shape is None:
        object_shape = (int(np.ceil(xy[:, 1].max())) + n - n // 2 + 1,
                        int(np.ceil(xy[:, 0].max())) + n - n // 2 + 1)
    h, w = object_shape
    top, left, bottom, right = frame_padding(xy, n, (h, w))
    data_scale = canonical_intensity_scale(intensities)
    intensities = intensities * np.float32(data_scale)  # exact: a power of four
    scaled_probe, canonical_probe_scale = normalise_probe(probe, intensities)
    probe_scale = canonical_probe_scale / float(np.sqrt(data_scale))  # for the caller's data
    ys, xs, origin = ptychi_positions(xy, n, (top, left))
    torch, api, task_class = _import_ptychi()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        start = time.perf_counter()
        options = _options(api, engine, epochs, min(batch_size, p), seed)
        options.data_options.fft_shift = True
        options.object_options.position_origin_coords = np.asarray(origin, np.float64)
        task = task_class(
            options, diffraction_data=intensities,
            object_data=torch.as_tensor(_initial_object(initial_object, (h, w), (top, left, bottom, right))),
            probe_data=torch.as_tensor(scaled_probe[None, None]),
            probe_position_x_px=torch.as_tensor(xs, dtype=torch.float32),
            probe_position_y_px=torch.as_tensor(ys, dtype=torch.float32))
        infos: list[EpochInfo] = []
        scoring = 0.0

        def frame() -> np.ndarray:
            obj = task.get_data_to_cpu("object", as_numpy=True)[0]
            return np.ascontiguousarray(obj[top:top + h, left:left + w], np.complex64)

        def loss() -> float | None:
            table = getattr(getattr(task.reconstructor, "loss_tracker", None), "table", None)
            if table is None or not len(table):
                return None
            return float(table.iloc[-1]["loss"]) / data_scale ** LOSS_POWER[engine]

        if on_epoch is None:
            task.run(epochs)
            infos.append(EpochInfo(epochs, time.perf_counter() - start, loss()))
        else:
            for epoch in range(1, epochs + 1):
                task.run(1)
                wall = time.perf_counter() - start - scoring
                tick = time.perf_counter()
                scores = on_epoch(epoch, frame()) or {}
                scoring += time.perf_counter() - tick
                infos.append(EpochInfo(epoch, wall, loss(), dict(scores)))
        obj = frame()
        wall_s = time.perf_counter() - start - scoring
    finally:
        torch.set_num_threads(previous_threads)
    log.info("pty-chi %s: %d epochs, %d patterns, %.2f s on %d thread(s), data x %g", engine,
             epochs, p, wall_s, threads, data_scale)
    return IterativeResult(obj=obj, wall_s=wall_s, epochs=tuple(infos), engine=engine,
                           threads=int(threads), probe_scale=probe_scale, data_scale=data_scale)
