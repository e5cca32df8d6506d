"""``dose_curve.png``: metrics against photons per pattern, and its self-check.

One row per scan density, one column per metric (amplitude SSIM, phase SSIM, amplitude PSNR,
phase PSNR); in every panel one line per method (the PINN with each loss, the baseline engine)
through the mean over seeds with ± one sample standard deviation as error bars, on a log x
axis. The self-check reads back what each line holds: a panel is ok when every plotted mean and
spread is finite and the panel's values are not all equal (a flat panel means every point gave
the same number: a broken run, not a result). ``ok`` is true when every panel passes and the
PNG was written. Object-oriented matplotlib (no pyplot, no global backend switch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .arms import SCAN_DENSITIES
from .figure import write_checked_png

log = logging.getLogger(__name__)

PANEL_METRICS = (("amp_ssim", "amplitude SSIM"), ("phase_ssim", "phase SSIM"),
                 ("amp_psnr", "amplitude PSNR (dB)"), ("phase_psnr", "phase PSNR (dB)"))
METHOD_STYLE = {"nll": ("tab:blue", "o", "PINN, Poisson NLL"),
                "mae": ("tab:orange", "s", "PINN, amplitude MAE")}


@dataclass
class CurveFigureReport:
    path: str
    png_ok: bool
    expected_panels: int
    panels: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.png_ok and len(self.panels) == self.expected_panels
                and all(p["ok"] for p in self.panels))


def check_panel(lines: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Self-check of one panel from what its lines hold: method -> (x, mean, std)."""
    means = [np.asarray(m, np.float64) for _, m, _ in lines.values()]
    stds = [np.asarray(s, np.float64) for _, _, s in lines.values()]
    xs = [np.asarray(x, np.float64) for x, _, _ in lines.values()]
    values = np.concatenate(means) if means else np.zeros(0)
    finite = bool(values.size > 0 and all(np.isfinite(a).all() for a in means + stds + xs))
    good = values[np.isfinite(values)]
    nonconstant = bool(good.size > 1 and float(good.max() - good.min()) > 1e-9 * max(
        1.0, float(np.abs(good).max())))
    return {"methods": sorted(lines), "points": int(values.size), "finite": finite,
            "nonconstant": nonconstant, "ok": finite and nonconstant,
            "min": float(good.min()) if good.size else None,
            "max": float(good.max()) if good.size else None}


def _series(table: list[dict[str, Any]], pos: str, key: str) -> dict[str, tuple]:
    """method -> (doses, means, stds) sorted by dose, for one density and metric."""
    out: dict[str, tuple] = {}
    for method in dict.fromkeys(r["method"] for r in table if r["positions"] == pos):
        rows = sorted((r for r in table if r["positions"] == pos and r["method"] == method
                       and r[key] is not None), key=lambda r: r["nphotons"])
        if not rows:
            continue
        out[method] = (np.array([r["nphotons"] for r in rows], np.float64),
                       np.array([r[key]["mean"] for r in rows], np.float64),
                       np.array([r[key]["std"] for r in rows], np.float64))
    return out


def render_curve_figure(table: list[dict[str, Any]], path: Path, suptitle: str) -> CurveFigureReport:
    """Draw the curve to ``path`` atomically (see the module docstring) and check it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    densities = [p for p in SCAN_DENSITIES if any(r["positions"] == p for r in table)] or ["dense"]
    fig = Figure(figsize=(4.2 * len(PANEL_METRICS), 3.6 * len(densities) + 0.8),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(len(densities), len(PANEL_METRICS), squeeze=False))
    report = CurveFigureReport(path=str(path), png_ok=False,
                               expected_panels=len(densities) * len(PANEL_METRICS))
    for i, pos in enumerate(densities):
        for j, (key, label) in enumerate(PANEL_METRICS):
            ax = axes[i, j]
            drawn: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
            for method, (x, mean, std) in _series(table, pos, key).items():
                color, marker, name = METHOD_STYLE.get(
                    method, ("tab:green", "^", f"baseline, {method.upper()} (pty-chi)"))
                container = ax.errorbar(x, mean, yerr=std, color=color, marker=marker,
                                        capsize=3, label=name)
                line = container.lines[0]
                drawn[method] = (np.asarray(line.get_xdata()), np.asarray(line.get_ydata()), std)
            ax.set_xscale("log")
            ax.set_xlabel("photons per pattern")
            ax.set_ylabel(label)
            ax.set_title(f"{pos} scan: {label}", fontsize=11)
            ax.grid(True, which="major", alpha=0.3)
            if drawn and i == 0 and j == 0:
                ax.legend(fontsize=8, loc="lower right")
            applicable = any(r["positions"] == pos and r[key] is not None for r in table)
            if applicable:
                stats = check_panel(drawn)
            else:  # e.g. the phase of an object without phase: said in the panel, not drawn as numbers
                ax.text(0.5, 0.5, "not applicable:\nconstant truth channel", ha="center", va="center",
                        transform=ax.transAxes, fontsize=10, color="0.4")
                ax.set_xticks([])
                ax.set_yticks([])
                stats = {"methods": [], "points": 0, "finite": True, "nonconstant": False,
                         "ok": True, "not_applicable": True, "min": None, "max": None}
            stats.update({"positions": pos, "metric": key})
            report.panels.append(stats)
    fig.suptitle(suptitle, fontsize=12)
    report.png_ok = write_checked_png(fig, path, dpi=90)
    bad = [f"{p['positions']}/{p['metric']}" for p in report.panels if not p["ok"]]
    if bad:
        log.warning("dose curve self-check: bad panels %s", ", ".join(bad))
    return report
