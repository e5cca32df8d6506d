"""``dose_comparison.png``: 2 rows (high, low dose) x 3 columns and its self-check.

Columns: sample diffraction (log10(1 + counts)), NLL reconstruction amplitude, MAE
reconstruction amplitude. Titles carry dose, loss and amplitude PSNR/SSIM.

The self-check reads back the array each ``imshow`` actually holds and records, per panel,
``min/max/mean/std``, whether it is finite and non-constant; ``figure_ok`` is true only when all
six panels pass and the PNG was written. Uses the object-oriented matplotlib API (no pyplot,
no global backend switch).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.fsutil import atomic_write_bytes

from .arms import ARMS, ArmSpec, format_dose

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLUMNS = ("diffraction", "nll", "mae")
ROWS = ("high", "low")


@dataclass(frozen=True)
class ArmView:
    """What the figure needs from one complete arm.

    diffraction: (N, N) float32 counts of one test pattern (channel 0)
    amplitude:   (H, W) float32 reconstruction amplitude, cropped to the scanned region
    """

    spec: ArmSpec
    nphotons: float
    diffraction: np.ndarray
    amplitude: np.ndarray
    psnr: float
    ssim: float


@dataclass(frozen=True)
class Panel:
    row: str
    column: str
    title: str
    data: np.ndarray | None  # None -> missing arm
    source: str  # arm name the data came from, or the missing arm(s)


@dataclass
class FigureReport:
    path: str
    png_ok: bool
    panels: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.png_ok and len(self.panels) == 6 and all(p["ok"] for p in self.panels)


def panel_stats(values: np.ndarray | None) -> dict[str, Any]:
    """Finite / non-constant check of one panel's drawn array (masked entries count as bad)."""
    if values is None:
        return {"present": False, "finite": False, "nonconstant": False, "ok": False}
    arr = np.ma.getdata(values).astype(np.float64)
    mask = np.ma.getmaskarray(values)
    finite = bool(arr.size > 1 and arr.ndim == 2 and not mask.any() and np.isfinite(arr).all())
    good = arr[np.isfinite(arr) & ~mask]
    if good.size:
        lo, hi, mean, std = (float(good.min()), float(good.max()), float(good.mean()),
                             float(good.std()))
    else:
        lo = hi = mean = std = float("nan")
    scale = max(abs(lo), abs(hi), 1e-30) if good.size else 1.0
    nonconstant = bool(good.size > 1 and std > 1e-6 * scale)
    return {"present": True, "shape": list(arr.shape), "min": lo, "max": hi, "mean": mean,
            "std": std, "finite": finite, "nonconstant": nonconstant,
            "ok": finite and nonconstant}


def display_range(data: np.ndarray, column: str) -> tuple[float | None, float | None]:
    """Colour limits: full range for diffraction, 0.5-99.5 percentiles for amplitudes (a few
    unfilled stitching pixels must not wash out the contrast)."""
    finite = np.asarray(data, np.float64)
    finite = finite[np.isfinite(finite)]
    if column == "diffraction" or finite.size < 2:
        return None, None
    lo, hi = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    return (lo, hi) if hi > lo else (None, None)


def build_panels(views: dict[str, ArmView]) -> list[Panel]:
    """Six panels in row-major order from the complete arms (missing ones get data=None)."""
    panels: list[Panel] = []
    for row in ROWS:
        row_arms = [a for a in ARMS if a.dose == row]
        present = [views[a.name] for a in row_arms if a.name in views]
        dose = format_dose(present[0].nphotons) if present else row
        if present:
            diff = np.log10(1.0 + np.asarray(present[0].diffraction, dtype=np.float64))
            panels.append(Panel(row, "diffraction",
                                f"{dose} photons: sample diffraction\nlog10(1 + counts)",
                                diff, present[0].spec.name))
        else:
            names = "/".join(a.name for a in row_arms)
            panels.append(Panel(row, "diffraction", f"{row} dose: diffraction\n(no complete arm)",
                                None, names))
        for arm in row_arms:
            view = views.get(arm.name)
            if view is None:
                panels.append(Panel(row, arm.loss, f"{arm.name}: missing\n(arm not complete)",
                                    None, arm.name))
                continue
            title = (f"{format_dose(view.nphotons)} photons, {arm.loss.upper()} amplitude\n"
                     f"PSNR {view.psnr:.2f} dB, SSIM {view.ssim:.3f}")
            panels.append(Panel(row, arm.loss, title, np.asarray(view.amplitude), arm.name))
    return panels


def render_figure(views: dict[str, ArmView], path: Path, suptitle: str) -> FigureReport:
    """Draw the 2x3 figure to ``path`` atomically and self-check every panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = build_panels(views)
    fig = Figure(figsize=(14, 9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ROWS), len(COLUMNS))
    report = FigureReport(path=str(path), png_ok=False)
    for panel, ax in zip(panels, axes.ravel()):
        ax.set_title(panel.title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        if panel.data is None:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=14,
                    transform=ax.transAxes, color="crimson")
            drawn = None
        else:
            cmap = "magma" if panel.column == "diffraction" else "gray"
            lo, hi = display_range(panel.data, panel.column)
            image = ax.imshow(panel.data, cmap=cmap, interpolation="nearest", vmin=lo, vmax=hi)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
            drawn = image.get_array()
        stats = panel_stats(drawn)
        stats.update({"row": panel.row, "column": panel.column, "source": panel.source,
                      "title": panel.title.replace("\n", " | ")})
        report.panels.append(stats)
    fig.suptitle(suptitle, fontsize=13)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    report.png_ok = Path(path).read_bytes()[:8] == PNG_SIGNATURE and len(data) > 1000
    bad = [f"{p['row']}/{p['column']}" for p in report.panels if not p["ok"]]
    if bad:
        log.warning("figure self-check: bad or missing panels %s", ", ".join(bad))
    return report
