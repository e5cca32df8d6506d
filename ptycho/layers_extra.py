"""Input compression and group phase alignment of the model (float32 / complex64).

``LogCompress`` is the network-input layer of ``ModelConfig.input_transform="log"``;
``align_group_phases`` is the per-patch constant-phase alignment ``layers.OverlapConstraint``
applies with ``align_phases=True`` (docs/findings.md, RESOLUTION-LOSS-001). Nothing is built at
import time.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

__all__ = ["LogCompress", "align_group_phases"]

_PHYSICS_DTYPE = "float32"


@keras.saving.register_keras_serializable(package="ptycho")
class LogCompress(keras.layers.Layer):
    """Network-input compression ``log1p(x / floor)`` (elementwise, float32).

    Normalised diffraction amplitudes span four decades: ≈5 in the central beam, 1e-3–1e-2
    at the high scattering angles that carry the finest object detail. A CNN fed the linear
    amplitudes barely sees the latter; the logarithm puts every ring on a similar scale
    (docs/findings.md, RESOLUTION-LOSS-001). Only the network input is compressed: the
    physics and the loss still use the measured amplitudes.
    call: (..., N, N, C) float32 ≥ 0 → same shape float32 ≥ 0
    """

    def __init__(self, floor: float = 0.01, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", _PHYSICS_DTYPE)
        super().__init__(**kwargs)
        if not (math.isfinite(floor) and floor > 0):
            raise ValueError(f"LogCompress: floor must be > 0, got {floor!r}")
        self.floor = float(floor)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.math.log1p(tf.maximum(tf.cast(x, tf.float32), 0.0) / self.floor)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "floor": self.floor}



def align_group_phases(placed: tf.Tensor, floor: tf.Tensor) -> tf.Tensor:
    """Turn each patch of a group by the phase of its weighted correlation with the group's
    weighted average. placed: (B, C, P, P, 3) = re·w, im·w, w on the group canvas."""
    z = tf.complex(placed[..., 0], placed[..., 1])  # (B, C, P, P) patch · w
    weight = tf.reduce_sum(placed[..., 2], axis=1)  # (B, P, P)
    mean = tf.reduce_sum(z, axis=1) / tf.cast(tf.maximum(weight, floor), tf.complex64)
    corr = tf.reduce_sum(tf.math.conj(z) * mean[:, None], axis=[2, 3])  # (B, C)
    size = tf.maximum(tf.abs(corr), 1e-12)
    turn = tf.complex(tf.math.real(corr) / size, tf.math.imag(corr) / size)[:, :, None, None]
    z = z * turn
    return tf.stack([tf.math.real(z), tf.math.imag(z), placed[..., 2]], axis=-1)
