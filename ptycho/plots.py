"""PNG figures of objects and diffraction patterns (matplotlib, Agg, no display).

Figures are built with ``matplotlib.figure.Figure`` and rendered by ``FigureCanvasAgg``
directly: no pyplot, no global backend switch, no state kept between calls. matplotlib is
imported inside the functions, so ``import ptycho.plots`` is cheap. PNGs are written
atomically (temporary file + ``os.replace``); invalid input raises ``ValueError`` before
anything is written.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ptycho.fsutil import atomic_write_bytes
from ptycho.metrics import align_global, format_metric

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "object_figure",
    "diffraction_figure",
    "comparison_figure",
    "save_figure",
    "save_object_png",
    "save_diffraction_png",
    "save_comparison_png",
]

log = logging.getLogger(__name__)


def _image(values: Any, name: str, complex_ok: bool) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ValueError(f"{name}: expected a 2-D image (H, W), got shape {arr.shape}")
    if not complex_ok and np.iscomplexobj(arr):
        raise ValueError(f"{name}: expected a real image, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: image contains NaN or infinite values")
    return arr


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panel(fig: Figure, ax: Any, data: np.ndarray, title: str, cmap: str, label: str,
           limits: tuple[float, float] | None = None) -> None:
    lo, hi = limits if limits is not None else (None, None)
    im = ax.imshow(data, cmap=cmap, interpolation="nearest", vmin=lo, vmax=hi)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, shrink=0.8, label=label)


def object_figure(obj: Any, title: str | None = None) -> Figure:
    """Amplitude and phase panels of a complex object.

    obj: (H, W) complex (real accepted: zero phase)
    """
    arr = _image(obj, "object_figure", complex_ok=True)
    fig = _new_figure(8.0, 3.8)
    ax_amp, ax_phase = fig.subplots(1, 2)
    _panel(fig, ax_amp, np.abs(arr), "amplitude", "gray", "|O|")
    _panel(fig, ax_phase, np.angle(arr), "phase", "twilight", "rad")
    if title:
        fig.suptitle(title)
    return fig


def diffraction_figure(pattern: Any, title: str | None = None) -> Figure:
    """A diffraction pattern on a log scale: log10(1 + max(pattern, 0)).

    pattern: (N, N) or (N, N, 1) real, counts or amplitudes
    """
    arr = _image(pattern, "diffraction_figure", complex_ok=False)
    fig = _new_figure(4.6, 3.8)
    ax = fig.subplots()
    _panel(fig, ax, np.log10(1.0 + np.maximum(arr, 0.0)), title or "diffraction", "viridis", "log10(1 + I)")
    return fig


def _shared_range(images: list[np.ndarray]) -> tuple[float, float]:
    """0.5-99.5 percentile range over all `images` (a few unscanned pixels don't set it)."""
    lo, hi = np.percentile(np.concatenate([a.ravel() for a in images]), [0.5, 99.5])
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 0.5, float(lo) + 0.5)


def comparison_figure(
    pred: Any, truth: Any, metrics: Mapping[str, float] | None = None, title: str | None = None
) -> Figure:
    """2×2 panels: amplitude and phase of the reconstruction (top) and ground truth (bottom).

    pred, truth: (H, W) complex of equal shape; metrics: optional dict shown in the title
    (e.g. ``metrics.evaluate`` output; amp_psnr / amp_ssim are displayed if present).
    The reconstruction is shown after the global phase and amplitude scale that the metrics
    also remove (``metrics.align_global``), and each column shares one colour scale, so the
    two rows can be compared by eye.
    """
    p = _image(pred, "comparison_figure pred", complex_ok=True)
    t = _image(truth, "comparison_figure truth", complex_ok=True)
    if p.shape != t.shape:
        raise ValueError(f"comparison_figure: shapes differ: pred {p.shape} vs truth {t.shape}")
    if np.any(p):
        p = align_global(p, t)
    rows = (("reconstruction (aligned)", p), ("ground truth", t))
    amp = [np.abs(arr) for _, arr in rows]
    phase = [np.angle(arr) for _, arr in rows]
    amp_limits, phase_limits = _shared_range(amp), _shared_range(phase)
    fig = _new_figure(8.0, 7.2)
    axes = fig.subplots(2, 2)
    for row, (name, _) in enumerate(rows):
        _panel(fig, axes[row, 0], amp[row], f"{name}: amplitude", "gray", "|O|", amp_limits)
        _panel(fig, axes[row, 1], phase[row], f"{name}: phase", "twilight", "rad", phase_limits)
    parts = [title] if title else []
    if metrics:
        parts += [f"{k}={format_metric(metrics[k], '.3g')}"
                  for k in ("amp_psnr", "amp_ssim", "phase_ssim") if k in metrics]
    if parts:
        fig.suptitle("  ".join(parts))
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Render `fig` to PNG and write it atomically to `path` (parents created)."""
    target = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = buf.getvalue()
    atomic_write_bytes(target, data)
    log.info("wrote %s (%d bytes)", target, len(data))
    return target


def save_object_png(obj: Any, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write amplitude/phase panels of a complex (H, W) object to a PNG; returns the path."""
    return save_figure(object_figure(obj, title), path)


def save_diffraction_png(pattern: Any, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write a log-scale diffraction pattern (N, N) to a PNG; returns the path."""
    return save_figure(diffraction_figure(pattern, title), path)


def save_comparison_png(
    pred: Any,
    truth: Any,
    path: str | os.PathLike[str],
    metrics: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Write reconstruction-vs-truth amplitude/phase panels to a PNG; returns the path."""
    return save_figure(comparison_figure(pred, truth, metrics, title), path)
