"""``bench_quality.py --figure``: the truth and each method's reconstruction, one row per object.

Every method's object is aligned to the truth (``ptycho.metrics.align_global``) and drawn in the
truth's grey (amplitude) or phase range, with its carrier SSIM in the title.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["draw_figure", "figure_panel"]


def figure_panel(out: dict[str, Any], images: dict[str, Any]) -> dict[str, Any]:
    """The figure's cell of one (object, dose): the truth, its carrier and [(method, object,
    carrier SSIM)] for the PINN, the PINN self-supervised on the scan, PINN + refinement and
    LSQML where ``run_one`` made them."""
    key = f"{out['carrier']}_ssim"
    ssims = {"PINN": out["final"][key],
             "PINN self-supervised": out.get("selfsup", {}).get("final", {}).get(key),
             "PINN + refinement": out["refined"].get("pinn_start", {}).get("final", {}).get(key),
             "LSQML": out["lsqml"].get(key)}
    return {"truth": images["truth"], "carrier": out["carrier"],
            "methods": [(m, images[m], ssims[m]) for m in ssims if m in images]}


def draw_figure(panels: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """One row per object: the truth, then per dose each method's reconstruction (carrier
    channel; ``figure_panel``)."""
    import numpy as np
    from matplotlib.figure import Figure

    from ptycho.metrics import align_global, format_metric
    from ptycho.plots import save_figure

    doses = sorted({d for per in panels.values() for d in per}, key=float, reverse=True)
    width = max(len(cell["methods"]) for per in panels.values() for cell in per.values())
    fig = Figure(figsize=(2.6 * (1 + width * len(doses)), 2.6 * len(panels)))
    axes = fig.subplots(len(panels), 1 + width * len(doses), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for row, (name, per) in enumerate(panels.items()):
        first = next(iter(per.values()))
        carrier, truth = first["carrier"], first["truth"]
        view = np.abs if carrier == "amp" else np.angle
        cells = {0: (f"{name} {carrier}: truth", view(truth), None)}
        for d, dose in enumerate(doses):
            for m, (method, obj, ssim) in enumerate(per.get(dose, {}).get("methods", [])):
                cells[1 + d * width + m] = (f"{method} {dose}",
                                            view(align_global(obj, per[dose]["truth"])), ssim)
        lo, hi = np.percentile(view(truth), [0.5, 99.5])
        for col, (label, image, ssim) in cells.items():
            ax = axes[row, col]
            ax.imshow(image, cmap="gray" if carrier == "amp" else "twilight", vmin=lo, vmax=hi)
            extra = "" if ssim is None else f"\nSSIM {format_metric(ssim)}"
            ax.set_title(f"{label}{extra}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
