"""Inference: predict object patches and stitch them into one object.

``reconstruct(model, data)`` predicts the complex object patch of every diffraction pattern
(the decoder output, before the overlap constraint) and averages overlapping patches at their
global positions, weighting each pixel by the probe intensity |P|² (pixels the probe barely
illuminates carry little information), on a canvas grown so that patches overhanging the
ground truth's frame fit (``ptycho.stitching``). ``scanned_region`` (from ``ptycho.metrics``,
re-exported here) gives the crop for metrics.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ptycho.metrics import scanned_region
from ptycho.model import PtychoModel, check_inputs, inference_model, model_probe
from ptycho.stitching import WEIGHT_FLOOR, canvas_shape, stitch_in_frame, stitch_patches

__all__ = ["predict_patches", "stitch_patches", "reconstruct", "scanned_region", "canvas_shape",
           "WEIGHT_FLOOR"]

log = logging.getLogger(__name__)


def predict_patches(model: PtychoModel, diffraction: Any, batch_size: int = 64) -> np.ndarray:
    """Object patches for every group, predicted batch by batch into one preallocated array
    (peak memory: the result plus one batch).

    diffraction: (B, N, N, C) float32 (normalised network input)
    returns:     (B, N, N, C) complex64
    """
    diffraction, _ = check_inputs(model.ptycho_config, diffraction, what="reconstruct")
    sub = inference_model(model)
    n = diffraction.shape[0]
    batch = max(1, min(batch_size, n))
    out = np.empty(diffraction.shape, np.complex64)
    for start in range(0, n, batch):
        chunk = diffraction[start:start + batch]
        size = chunk.shape[0]
        if size < batch:  # pad the last batch: one input shape, no retracing/recompiling
            chunk = np.concatenate([chunk, np.zeros((batch - size, *chunk.shape[1:]), np.float32)])
        out[start:start + size] = np.asarray(sub.predict_on_batch(chunk))[:size]
    return out


def reconstruct(model: PtychoModel, data: Any, batch_size: int = 64) -> np.ndarray:
    """Stitched complex object from a data set.

    data: attributes ``diffraction`` (B,N,N,C) float32 and ``coords`` (B,1,2,C) global patch
          positions; the frame is ``data.obj.shape`` when present (patches may overhang it:
          they are stitched on a larger canvas and the frame is cut out), else just large
          enough for every patch.
    returns: (H, W) complex64, patches averaged with |probe|² weights
    """
    for name in ("diffraction", "coords"):
        if getattr(data, name, None) is None:
            raise ValueError(f"reconstruct: data has no '{name}' array")
    cfg = model.ptycho_config
    diffraction, coords = check_inputs(cfg, data.diffraction, data.coords, what="reconstruct")
    obj = getattr(data, "obj", None)
    patches = predict_patches(model, diffraction, batch_size)
    weights = np.abs(model_probe(model)) ** 2
    if obj is None:
        return stitch_patches(patches, coords, canvas_shape(coords, cfg.N), weights / weights.max())
    return stitch_in_frame(patches, coords, tuple(np.shape(obj)), weights / weights.max())
