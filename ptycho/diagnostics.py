"""Training diagnostics on a built model: which hidden units of the CNN are dead.

A unit (a channel of a convolution) is *dead* on a data set when its activation input is
below zero at every pixel of every pattern: through a ReLU it then outputs 0 and receives
no gradient, so training can never revive it. In the low-dose NLL arm of the full study
and on canonical data (docs/findings.md, LOW-DOSE-NLL-PHASE-001) 30-31 of the 32 channels
before the amplitude output were dead and the amplitude stayed flat. With the default
leaky ReLU such a unit still gets gradient; this report shows how many units are pushed
there anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

__all__ = ["LayerUnits", "dead_units"]


@dataclass(frozen=True)
class LayerUnits:
    """One convolution layer's units on a data set.

    name:          layer name (``enc_conv0a`` … ``amp_conv1b``, ``phase_conv1b``)
    channels:      number of units (output channels)
    dead:          units whose pre-activation is < 0 at every pixel of every pattern
    positive_frac: fraction of all pre-activations > 0
    """

    name: str
    channels: int
    dead: int
    positive_frac: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "channels": self.channels, "dead": self.dead,
                "positive_frac": round(self.positive_frac, 4)}


def _hidden_convs(model: keras.Model) -> list[keras.layers.Conv2D]:
    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D) and not layer.name.endswith("_out")]


def dead_units(model: keras.Model, diffraction: np.ndarray, batch_size: int = 64) -> list[LayerUnits]:
    """Dead units of every hidden convolution of a ptycho model on `diffraction`.

    model:       a ``PtychoModel`` (``build_model`` / ``load_model``)
    diffraction: (B, N, N, C) float32 network input
    returns:     one LayerUnits per hidden Conv2D, in model order

    The pre-activation is recomputed from the layer's input with its own kernel and bias
    (the layer's output is after the activation, where a leaky unit is never exactly 0).
    """
    convs = _hidden_convs(model)
    probe = keras.Model(model.input["diffraction"], [layer.input for layer in convs])
    counts = [np.zeros(layer.filters, np.int64) for layer in convs]
    totals = [0] * len(convs)
    for start in range(0, len(diffraction), batch_size):
        inputs = probe(np.asarray(diffraction[start:start + batch_size], np.float32), training=False)
        for k, (layer, x) in enumerate(zip(convs, inputs, strict=True)):
            kernel = keras.ops.cast(layer.kernel, "float32")  # bf16 CNNs: compare in float32
            pre = np.asarray(layer.convolution_op(keras.ops.cast(x, "float32"), kernel)
                             + keras.ops.cast(layer.bias, "float32"), np.float32)
            counts[k] += (pre > 0).reshape(-1, layer.filters).sum(axis=0)
            totals[k] += int(np.prod(pre.shape[:-1]))
    return [LayerUnits(layer.name, layer.filters, int(np.sum(c == 0)),
                       float(c.sum() / (t * layer.filters)))
            for layer, c, t in zip(convs, counts, totals, strict=True)]
