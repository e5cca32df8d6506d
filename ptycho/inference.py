"""Inference: predict object patches and stitch them into one object.

``reconstruct(model, data)`` predicts the complex object patch of every diffraction pattern
(the decoder output, before the overlap constraint) and averages overlapping patches at their
global positions, weighting each pixel by the probe intensity |P|² (pixels the probe barely
illuminates carry little information), on a canvas grown so that patches overhanging the
ground truth's frame fit (``ptycho.stitching``). ``scanned_region`` (from ``ptycho.metrics``,
re-exported here) gives the crop for metrics.

Before stitching, every patch is turned by the constant phase factor that makes it agree with
its neighbours (``ptycho.patch_phases``): a diffraction pattern does not change when its patch
is multiplied by e^{iθ}, so the CNN, which sees one pattern, predicts each patch's phase only
up to such a constant; averaged unaligned, the low spatial frequencies of the phase cancel
(docs/findings.md, RESOLUTION-LOSS-001, PATCH-RAMP-001).

Before that alignment, by default, each patch's amplitude constant and amplitude and phase
slopes are fitted to its own measured pattern (``ptycho.patch_slopes``): the CNN trades a
patch's phase slope against its amplitude slope, and one pattern tells them apart
(PATCH-SLOPE-001). The fit is applied in the fraction whose stitched object best predicts
patterns held out of it, then made once more on patches cut from the stitched object when that
predicts them better (PATCH-REFIT-001).

``reconstruct`` keeps of every predicted patch only the window the probe lights
(``support_window``: |probe|² ≥ ``SUPPORT_FLOOR`` of its peak), which both the alignment and the
stitching weight by |probe|²: the dropped pixels would add under 1e-9 of the weight, and the
patches held in memory shrink (2.6× for the study's probe at N=64).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ptycho.metrics import scanned_region
from ptycho.model import PtychoModel, check_inputs, inference_model, model_probe
from ptycho.patch_phases import fit_patch_phases
from ptycho.patch_slopes import SlopeChoice, correct_patch_slopes
from ptycho.stitching import (
    SUPPORT_FLOOR,
    WEIGHT_FLOOR,
    canvas_shape,
    stitch_in_frame,
    stitch_patches,
    support_window,
)

__all__ = ["predict_patches", "stitch_patches", "reconstruct", "scanned_region", "canvas_shape",
           "support_window", "WEIGHT_FLOOR", "SUPPORT_FLOOR"]

log = logging.getLogger(__name__)


def predict_patches(model: PtychoModel, diffraction: Any, batch_size: int = 64,
                    window: slice | None = None) -> np.ndarray:
    """Object patches for every group, predicted batch by batch into one preallocated array
    (peak memory: the result plus one batch).

    diffraction: (B, N, N, C) float32 (normalised network input)
    window:      rows and columns kept of every patch (``support_window``); None keeps all
    returns:     (B, M, M, C) complex64, M = N or the window's length
    """
    diffraction, _ = check_inputs(model.ptycho_config, diffraction, what="reconstruct")
    sub = inference_model(model)
    b, n, _, c = diffraction.shape
    keep = slice(0, n) if window is None else window
    m = len(range(n)[keep])
    batch = max(1, min(batch_size, b))
    out = np.empty((b, m, m, c), np.complex64)
    for start in range(0, b, batch):
        chunk = diffraction[start:start + batch]
        size = chunk.shape[0]
        if size < batch:  # pad the last batch: one input shape, no retracing/recompiling
            chunk = np.concatenate([chunk, np.zeros((batch - size, *chunk.shape[1:]), np.float32)])
        out[start:start + size] = np.asarray(sub.predict_on_batch(chunk))[:size, keep, keep]
    return out


def reconstruct(model: PtychoModel, data: Any, batch_size: int = 64,
                align_phases: bool = True, fit_slopes: bool = True,
                on_slopes: Callable[[SlopeChoice], None] | None = None) -> np.ndarray:
    """Stitched complex object from a data set.

    data: attributes ``diffraction`` (B,N,N,C) float32 and ``coords`` (B,1,2,C) global patch
          positions; the frame is ``data.obj.shape`` when present (patches may overhang it:
          they are stitched on a larger canvas and the frame is cut out), else just large
          enough for every patch.
    align_phases: turn each patch by the constant phase that makes it agree with its
          neighbours first (``patch_phases.fit_patch_phases``)
    fit_slopes: fit each patch's amplitude constant and amplitude and phase slopes to its own
          pattern, applied in the fraction whose stitched object best predicts held-out
          patterns, then refit once to patches cut from the stitched object when that
          predicts held-out patterns better (``patch_slopes.correct_patch_slopes``; the
          Poisson likelihood of the counts when ``data`` has an ``intensity_scale``)
    on_slopes: called with the ``patch_slopes.SlopeChoice`` the slope fit made
    returns: (H, W) complex64, patches averaged with |probe|² weights over ``support_window``
    """
    for name in ("diffraction", "coords"):
        if getattr(data, name, None) is None:
            raise ValueError(f"reconstruct: data has no '{name}' array")
    cfg = model.ptycho_config
    diffraction, coords = check_inputs(cfg, data.diffraction, data.coords, what="reconstruct")
    obj = getattr(data, "obj", None)
    weights = np.abs(model_probe(model)) ** 2
    weights /= weights.max()  # (N, N) |probe|², peak 1
    window = support_window(weights)
    patches = predict_patches(model, diffraction, batch_size, window)  # (B, M, M, C)
    weights = weights[window, window]
    align = align_phases and cfg.C * len(patches) > 1
    if fit_slopes and cfg.C * len(patches) > 1:
        scale = getattr(data, "intensity_scale", None)
        patches, choice = correct_patch_slopes(
            patches, coords, weights, diffraction, model_probe(model),
            counts_scale=None if scale is None else float(scale), align=align)
        if on_slopes is not None:
            on_slopes(choice)
    elif align:
        patches *= fit_patch_phases(patches, coords, weights)[:, None, None, :]  # in place
    if obj is None:
        return stitch_patches(patches, coords, canvas_shape(coords, cfg.N), weights)
    return stitch_in_frame(patches, coords, tuple(np.shape(obj)), weights)
