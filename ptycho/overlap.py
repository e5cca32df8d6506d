"""The overlap constraint of the model (gridsize > 1), float32 / complex64.

``OverlapConstraint`` places the C patches of a group on one shared canvas by their offsets,
averages them (|probe|²-weighted when given weights), and re-extracts them, so the C patches
agree on one object; ``shifted_support`` is the closed-form shifted support mask it uses, and
``align_group_phases`` the per-patch constant-phase alignment it applies with
``align_phases=True`` (docs/findings.md, RESOLUTION-LOSS-001). Registered with Keras as
``ptycho>OverlapConstraint``; nothing is built at import time.

Shapes use B = batch of groups, N = patch side, C = gridsize² patches per group.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptycho.layers import PHYSICS_DTYPE, flatten_groups, flatten_offsets, unflatten_groups
from ptycho.translation import fourier_translate, translate

__all__ = ["OverlapConstraint", "shifted_support", "align_group_phases"]


def shifted_support(n: int, pad: int, shifts: tf.Tensor) -> tf.Tensor:
    """``translate`` of the support mask of an N×N patch padded to P = N + 2·pad, in closed form.

    Bilinear shifting with zero fill is separable, so the shifted mask is the outer product
    of two shifted 1-D boxes; identical to translating a (M, P, P, 1) mask of ones.
    shifts: (M, 2) float32 (dx, dy); returns (M, P, P, 1) float32.
    """
    size = n + 2 * pad
    grid = tf.range(size, dtype=tf.float32)

    def box(shift: tf.Tensor) -> tf.Tensor:  # (M,) → (M, P)
        src = grid[None, :] - shift[:, None]
        floor = tf.floor(src)
        w1 = src - floor
        inside0 = tf.cast((floor >= pad) & (floor < pad + n), tf.float32)
        inside1 = tf.cast((floor + 1 >= pad) & (floor + 1 < pad + n), tf.float32)
        return (1.0 - w1) * inside0 + w1 * inside1

    return (box(shifts[:, 1])[:, :, None] * box(shifts[:, 0])[:, None, :])[..., None]


@keras.saving.register_keras_serializable(package="ptycho")
class OverlapConstraint(keras.layers.Layer):
    """Make the C patches of a group consistent with one object (gridsize > 1).

    Every patch is zero-padded to a P×P canvas (P = N + 2·pad) centred on the group centre
    and shifted by its offset with ``translate`` (+offset moves content towards +x/+y); the
    shifted patches are summed and divided by the summed shifted support masks (their average
    where they overlap); each patch is re-extracted by shifting the averaged canvas back by
    −offset and cropping the central N×N. Content shifted beyond the canvas (|offset| > pad)
    is lost. With C == 1 the layer is the identity.

    ``weights`` (N, N) ≥ 0 (the model passes |probe|² / max): a weighted average instead, so
    each patch counts where it is illuminated. Without it, the unconstrained periphery of every
    patch (where the probe is dark and the data say nothing) is averaged, with equal weight,
    into the illuminated centres of its neighbours. Stored as a non-trainable weight.

    ``subpixel``: how patches move by fractional offsets: "bilinear" (``translate``; a
    round trip low-passes the patch, worst at half-pixel offsets) or "fourier"
    (``fourier_translate``: exact for band-limited content; the weighted path only). With the
    model's hard-edged disk probe as weights the Fourier shifts ring (relative error 0.17-0.35
    against 0.04 bilinear, RESOLUTION-LOSS-001), so the model keeps "bilinear"; "fourier"
    needs smooth (e.g. Gaussian) weights.

    ``align_phases`` (weighted path only): before averaging, every patch of a group is turned
    by the constant phase that best matches the group's average. A pattern does not change
    when its patch is multiplied by e^{iθ}, so the CNN can only predict each patch's phase up
    to such a constant; without the turn, neighbours' differing constants cancel in the
    average, and training favours a flattened phase (RESOLUTION-LOSS-001).

    ``compile_xla=True`` runs the block as an XLA-compiled function owned by this layer
    instance (traced per instance and input shape, never shared between models); it needs
    ``use_xla=True`` and is pointless when the whole step is already jit-compiled.

    inputs:  [patches (B, N, N, C) complex64, offsets (B, 1, 2, C) float32 (x, y) px]
    returns: (B, N, N, C) complex64
    """

    def __init__(self, pad: int, use_xla: bool = True, compile_xla: bool = False,
                 weights: np.ndarray | None = None, subpixel: str = "bilinear",
                 align_phases: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", PHYSICS_DTYPE)
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if weights is not None:
            weights = np.asarray(weights, np.float32)
            if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or not (
                    np.isfinite(weights).all() and (weights >= 0).all() and weights.max() > 0):
                raise ValueError("OverlapConstraint: weights must be a finite (N, N) map >= 0 "
                                 f"with a positive maximum, got shape {weights.shape}")
        self._initial_weights = weights
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
            raise ValueError(f"OverlapConstraint: pad must be an int >= 0, got {pad!r}")
        if compile_xla and not use_xla:
            raise ValueError("OverlapConstraint: compile_xla=True needs use_xla=True")
        if subpixel not in ("bilinear", "fourier"):
            raise ValueError(f"OverlapConstraint: subpixel must be 'bilinear' or 'fourier', got {subpixel!r}")
        self.subpixel = subpixel
        self.align_phases = bool(align_phases)
        self.pad = pad
        self.use_xla = bool(use_xla)
        self.compile_xla = bool(compile_xla)
        self._compiled = (  # autograph off: straight-line tensor code, saves seconds of tracing
            tf.function(self._constrain, jit_compile=True, autograph=False) if compile_xla else None
        )

    def build(self, patches_shape: Any, offsets_shape: Any = None) -> None:
        if self._initial_weights is not None:
            init = self._initial_weights
            self.pixel_weights = self.add_weight(
                name="pixel_weights", shape=init.shape, trainable=False,
                initializer=keras.initializers.Constant(init),
            )
        else:
            self.pixel_weights = None

    def call(self, patches: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        if patches.shape[3] == 1:
            return patches
        offsets = tf.cast(offsets, tf.float32)
        if self._compiled is not None:
            return self._compiled(patches, offsets)
        return self._constrain(patches, offsets)

    def _constrain(self, patches: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        n, c, p = patches.shape[1], patches.shape[3], self.pad
        flat = flatten_groups(patches)[..., 0]  # (B·C, N, N) complex, index b·C + c
        stacked = tf.stack([tf.math.real(flat), tf.math.imag(flat)], axis=-1)
        stacked = tf.pad(stacked, [[0, 0], [p, p], [p, p], [0, 0]])  # (B·C, P, P, 2)
        shifts = flatten_offsets(offsets)  # (B·C, 2)
        if self.pixel_weights is None:
            placed = translate(stacked, shifts, use_xla=self.use_xla)
            summed = tf.reduce_sum(unflatten_groups(placed, c), axis=1)  # (B, P, P, 2)
            weight = tf.reduce_sum(unflatten_groups(shifted_support(n, p, shifts), c), axis=1)
            floor = 1e-3
        else:  # weighted average: each patch counts where its weight map (|probe|²) is large
            w = tf.pad(tf.convert_to_tensor(self.pixel_weights), [[p, p], [p, p]])
            stacked = tf.concat([stacked * w[None, :, :, None],
                                 tf.broadcast_to(w[None, :, :, None], tf.shape(stacked[..., :1]))],
                                axis=-1)  # (B·C, P, P, 3): re·w, im·w, w
            placed = unflatten_groups(self._shift(stacked, shifts), c)  # (B, C, P, P, 3)
            floor = 1e-3 * tf.reduce_max(w)
            if self.align_phases:
                placed = align_group_phases(placed, floor)
            placed = tf.reduce_sum(placed, axis=1)  # (B, P, P, 3)
            summed, weight = placed[..., :2], placed[..., 2:]
        mean = summed / tf.where(weight > floor, weight, tf.ones_like(weight))
        canvas = tf.repeat(mean, c, axis=0)  # (B·C, P, P, 2): patch b·C + c reads canvas b
        back = self._shift(canvas, -shifts)[:, p : p + n, p : p + n, :]
        out = tf.complex(back[..., 0], back[..., 1])  # (B·C, N, N)
        return tf.transpose(tf.reshape(out, [-1, c, n, n]), [0, 2, 3, 1])

    def _shift(self, images: tf.Tensor, shifts: tf.Tensor) -> tf.Tensor:
        if self.subpixel == "fourier":
            return fourier_translate(images, shifts)
        return translate(images, shifts, use_xla=self.use_xla)

    def compute_output_spec(self, patches: Any, offsets: Any) -> keras.KerasTensor:
        return keras.KerasTensor(patches.shape, dtype="complex64")

    def get_config(self) -> dict[str, Any]:
        weights = None if self._initial_weights is None else self._initial_weights.tolist()
        return {**super().get_config(), "pad": self.pad, "use_xla": self.use_xla,
                "compile_xla": self.compile_xla, "subpixel": self.subpixel,
                "align_phases": self.align_phases, "weights": weights}


def align_group_phases(placed: tf.Tensor, floor: tf.Tensor) -> tf.Tensor:
    """Turn each patch of a group by the phase of its weighted correlation with the group's
    weighted average. placed: (B, C, P, P, 3) = re·w, im·w, w on the group canvas."""
    z = tf.complex(placed[..., 0], placed[..., 1])  # (B, C, P, P) patch · w
    weight = tf.reduce_sum(placed[..., 2], axis=1)  # (B, P, P)
    # the mean is z / weight: divide the real and imaginary parts (a cast of the real weight
    # to complex would discard the imaginary part of its gradient with a warning every trace)
    total = tf.reduce_sum(z, axis=1)
    weight = tf.maximum(weight, floor)
    mean = tf.complex(tf.math.real(total) / weight, tf.math.imag(total) / weight)
    corr = tf.reduce_sum(tf.math.conj(z) * mean[:, None], axis=[2, 3])  # (B, C)
    size = tf.maximum(tf.abs(corr), 1e-12)
    turn = tf.complex(tf.math.real(corr) / size, tf.math.imag(corr) / size)[:, :, None, None]
    z = z * turn
    return tf.stack([tf.math.real(z), tf.math.imag(z), placed[..., 2]], axis=-1)
