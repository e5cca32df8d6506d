"""``dose_comparison.png``: the study figure and its self-check.

With the complex reconstructions and the ground truth (``ArmView.recon`` and ``.truth``), the
figure has two rows per dose (amplitude, phase) and four columns: sample diffraction
(log10(1 + counts), amplitude rows only), ground truth, NLL reconstruction, MAE reconstruction,
plus a fifth, the baseline engine's reconstruction, when the study has a baseline arm.
Reconstructions are shown after the same global complex scale the metrics use
(``ptycho.metrics.align_global``), and every row shares one colour scale (the truth's range
widened to the 0.5-99.5 percentiles of the reconstructions), so the panels compare by eye.
Without them (views built from amplitudes alone) it is the 2 x 3 amplitude figure.
Titles carry dose, loss and amplitude PSNR/SSIM.

The self-check reads back the array each ``imshow`` actually holds and records, per panel,
``min/max/mean/std``, whether it is finite and non-constant (a ground-truth panel only needs
to be finite: the phase of the "lines" object is constant); ``figure_ok`` is true only when
all panels pass and the PNG was written. Uses the object-oriented matplotlib API (no pyplot,
no global backend switch).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .arms import ARMS, ArmSpec, format_dose

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROWS = ("high", "low")



def write_checked_png(fig: Any, path: str | Path, dpi: int) -> bool:
    """Write ``fig`` atomically with ``ptycho.plots.save_figure``; True when what landed on disk
    is a PNG of more than 1000 bytes."""
    from ptycho.plots import save_figure

    data = save_figure(fig, path, dpi=dpi).read_bytes()
    return data[:8] == PNG_SIGNATURE and len(data) > 1000

@dataclass(frozen=True)
class ArmView:
    """What the figure needs from one complete arm.

    diffraction: (N, N) float32 counts of one test pattern (channel 0)
    amplitude:   (H, W) float32 reconstruction amplitude, cropped to the scanned region
    recon:       (H, W) complex reconstruction, same crop (optional: phase rows)
    truth:       (H, W) complex ground truth, same crop (optional: truth column)
    """

    spec: ArmSpec
    nphotons: float
    diffraction: np.ndarray
    amplitude: np.ndarray
    psnr: float
    ssim: float
    recon: np.ndarray | None = None
    truth: np.ndarray | None = None

    @property
    def complete(self) -> bool:
        """Whether the view holds the complex reconstruction and the truth."""
        return self.recon is not None and self.truth is not None


@dataclass(frozen=True)
class Panel:
    row: str
    column: str
    title: str
    data: np.ndarray | None  # None -> missing arm
    source: str  # arm name the data came from, or the missing arm(s)
    quantity: str = "amplitude"  # "amplitude" | "phase" (row of the full layout)
    limits: tuple[float, float] | None = None  # shared colour limits of the row


@dataclass
class FigureReport:
    path: str
    png_ok: bool
    panels: list[dict[str, Any]] = field(default_factory=list)
    expected_panels: int = 14

    @property
    def ok(self) -> bool:
        return (self.png_ok and len(self.panels) == self.expected_panels
                and all(p["ok"] for p in self.panels))


def _title_method(arm: ArmSpec) -> str:
    return arm.loss.upper() + (" (pty-chi)" if arm.is_baseline else "")


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


def build_panels(views: dict[str, ArmView], arms: tuple[ArmSpec, ...] = ARMS) -> list[Panel]:
    """Panels in row-major order (per dose: diffraction, then each arm of ``arms``) from the
    complete arms (missing ones get data=None)."""
    panels: list[Panel] = []
    for row in ROWS:
        row_arms = [a for a in arms if a.dose == row]
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
            title = (f"{format_dose(view.nphotons)} photons, {_title_method(arm)} amplitude\n"
                     f"PSNR {view.psnr:.2f} dB, SSIM {view.ssim:.3f}")
            panels.append(Panel(row, arm.loss, title, np.asarray(view.amplitude), arm.name))
    return panels


def _aligned(view: ArmView) -> np.ndarray:
    """The view's reconstruction times the global complex scale the metrics use."""
    from ptycho.metrics import align_global

    return align_global(np.asarray(view.recon), np.asarray(view.truth))


def _row_limits(truth: np.ndarray | None, recons: list[np.ndarray],
                phase: bool) -> tuple[float, float] | None:
    """One colour scale for a row: the truth's range widened to the 0.5-99.5 percentiles of
    the reconstructions (symmetric about 0 for phase, at least ±0.1 rad)."""
    values = [np.asarray(truth, np.float64).ravel()] if truth is not None else []
    for recon in recons:
        finite = np.asarray(recon, np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            values.append(np.percentile(finite, [0.5, 99.5]))
    if not values:
        return None
    both = np.concatenate(values)
    if phase:
        bound = max(float(np.abs(both).max()), 0.1)
        return -bound, bound
    lo, hi = float(both.min()), float(both.max())
    return (lo, hi) if hi > lo else None


def build_full_panels(views: dict[str, ArmView],
                      arms: tuple[ArmSpec, ...] = ARMS) -> list[Panel | None]:
    """4 x (2 + arms per dose) cells, row-major: per dose an amplitude row (diffraction, truth,
    NLL, MAE[, baseline]) and a phase row (blank, truth, ...); None marks the blank cell."""
    cells: list[Panel | None] = []
    for row in ROWS:
        row_arms = [a for a in arms if a.dose == row]
        present = [views[a.name] for a in row_arms if a.name in views]
        complete = [v for v in present if v.complete]
        dose = format_dose(present[0].nphotons) if present else row
        truth = np.asarray(complete[0].truth) if complete else None
        aligned = {v.spec.name: _aligned(v) for v in complete}
        for quantity in ("amplitude", "phase"):
            part = np.abs if quantity == "amplitude" else np.angle
            recons = [part(a) for a in aligned.values()]
            limits = _row_limits(part(truth) if truth is not None else None, recons,
                                 quantity == "phase")
            if quantity == "amplitude" and present:
                diff = np.log10(1.0 + np.asarray(present[0].diffraction, dtype=np.float64))
                cells.append(Panel(row, "diffraction",
                                   f"{dose} photons: sample diffraction\nlog10(1 + counts)",
                                   diff, present[0].spec.name, quantity))
            elif quantity == "amplitude":
                cells.append(Panel(row, "diffraction", f"{row} dose: diffraction\n(no complete arm)",
                                   None, "/".join(a.name for a in row_arms), quantity))
            else:
                cells.append(None)
            cells.append(Panel(row, "truth", f"{dose} photons: ground truth {quantity}",
                               part(truth) if truth is not None else None,
                               "truth" if truth is not None else "/".join(a.name for a in row_arms),
                               quantity, limits))
            for arm in row_arms:
                view = views.get(arm.name)
                if view is None or arm.name not in aligned:
                    cells.append(Panel(row, arm.loss, f"{arm.name}: missing\n(arm not complete)",
                                       None, arm.name, quantity))
                    continue
                title = f"{format_dose(view.nphotons)} photons, {_title_method(arm)} {quantity}"
                if quantity == "amplitude":
                    title += f"\nPSNR {view.psnr:.2f} dB, SSIM {view.ssim:.3f}"
                cells.append(Panel(row, arm.loss, title, part(aligned[arm.name]), arm.name,
                                   quantity, limits))
    return cells


def render_figure(views: dict[str, ArmView], path: Path, suptitle: str,
                  arms: tuple[ArmSpec, ...] = ARMS) -> FigureReport:
    """Draw the figure of ``arms`` (the four, optionally a baseline arm per dose) to ``path``
    atomically and self-check every panel (the 4 x (2 + arms per dose) layout when any view
    holds its complex reconstruction and truth, else the 2 x (1 + arms per dose) one)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_row = max(sum(1 for a in arms if a.dose == row) for row in ROWS)
    full = any(v.complete for v in views.values())
    cells: list[Panel | None] = (build_full_panels(views, arms) if full
                                 else list(build_panels(views, arms)))
    shape = (2 * len(ROWS), 2 + per_row) if full else (len(ROWS), 1 + per_row)
    fig = Figure(figsize=(4 * shape[1], 15) if full else (4.7 * shape[1], 9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(*shape)
    report = FigureReport(path=str(path), png_ok=False,
                          expected_panels=sum(c is not None for c in cells))
    for panel, ax in zip(cells, axes.ravel(), strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        if panel is None:
            ax.set_axis_off()
            continue
        ax.set_title(panel.title, fontsize=11)
        if panel.data is None:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=14,
                    transform=ax.transAxes, color="crimson")
            drawn = None
        else:
            if panel.column == "diffraction":
                cmap, (lo, hi) = "magma", (None, None)
            elif panel.quantity == "phase":
                cmap, (lo, hi) = "twilight", panel.limits or (None, None)
            else:
                cmap = "gray"
                lo, hi = panel.limits or display_range(panel.data, panel.column)
            image = ax.imshow(panel.data, cmap=cmap, interpolation="nearest", vmin=lo, vmax=hi)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
            drawn = image.get_array()
        stats = panel_stats(drawn)
        if panel.column == "truth" and stats["present"]:
            stats["ok"] = stats["finite"]  # a constant truth (zero phase) is correct
        stats.update({"row": panel.row, "column": panel.column, "source": panel.source,
                      "title": panel.title.replace("\n", " | ")})
        if full:
            stats["quantity"] = panel.quantity
        report.panels.append(stats)
    fig.suptitle(suptitle, fontsize=13)
    report.png_ok = write_checked_png(fig, path, dpi=100)
    bad = [f"{p['row']}/{p.get('quantity', 'amplitude')}/{p['column']}"
           for p in report.panels if not p["ok"]]
    if bad:
        log.warning("figure self-check: bad or missing panels %s", ", ".join(bad))
    return report


def load_complete_view(arm_dir: Path, arm: ArmSpec, metrics: dict[str, Any]) -> ArmView:
    """An ArmView with the complex reconstruction and truth, from ``<arm_dir>/recon.npz``
    (``recon``, ``truth``, ``diffraction_sample``, ``crop``) and the arm's metrics.json dict.
    Raises ValueError naming the file when it is unreadable."""
    path = Path(arm_dir) / "recon.npz"
    try:
        with np.load(path) as npz:
            recon, truth = npz["recon"], npz["truth"]
            diffraction, crop = npz["diffraction_sample"], npz["crop"]
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable recon archive: {exc}") from exc
    r0, r1, c0, c1 = (int(v) for v in crop)
    recon, truth = recon[r0:r1, c0:c1], truth[r0:r1, c0:c1]
    return ArmView(spec=arm, nphotons=float(metrics["nphotons"]),
                   diffraction=np.asarray(diffraction, dtype=np.float32),
                   amplitude=np.abs(recon).astype(np.float32),
                   psnr=float(metrics["metrics"]["amp_psnr"]),
                   ssim=float(metrics["metrics"]["amp_ssim"]), recon=recon, truth=truth)


def main(argv: list[str] | None = None) -> int:
    """``python -m dose_study.figure STUDY_DIR [OUT.png]``: draw the full figure (truth column, phase rows) from
    the complete arms of a study directory; prints the self-check as JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        print("usage: python -m dose_study.figure STUDY_DIR [OUT.png]", file=sys.stderr)
        return 2
    root = Path(args[0])
    out = Path(args[1]) if len(args) == 2 else root / "dose_comparison.png"
    views = {}
    for arm in ARMS:
        metrics_path = root / arm.name / "metrics.json"
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            views[arm.name] = load_complete_view(root / arm.name, arm, metrics)
    report = render_figure(views, out, f"Dose-response study: {root.name}")
    print(json.dumps({"path": report.path, "figure_ok": report.ok, "panels": report.panels}))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
