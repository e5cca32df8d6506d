"""Physics layers of the PtychoPINN-style model (all compute in float32 / complex64).

Every layer here pins ``dtype="float32"``, so a model whose CNN runs under a
``mixed_bfloat16`` policy still does its physics (complex object, overlap constraint, probe
illumination, FFT) in full precision. Layers take their configuration in ``__init__``,
create weights in ``build`` and list every constructor argument in ``get_config``; all are
registered with Keras (``ptycho>Name``) and round-trip through ``serialize_keras_object``
(tests/ptycho/test_layer_round_trip.py). Nothing is built at import time.

Shapes use B = batch of groups, N = patch side, C = gridsize² patches per group.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptycho.layers_extra import LogCompress, align_group_phases
from ptycho.translation import fourier_translate, translate

__all__ = [
    "GroupsToBatch",
    "LogCompress",
    "BatchToGroups",
    "AmplitudeActivation",
    "PhaseActivation",
    "CombineComplex",
    "OverlapConstraint",
    "shifted_support",
    "ProbeIllumination",
    "FarField",
    "IntensityScale",
    "normalised_probe",
    "flatten_groups",
    "unflatten_groups",
    "flatten_offsets",
]

_PHYSICS_DTYPE = "float32"


def normalised_probe(probe: np.ndarray) -> np.ndarray:
    """Probe rescaled so that sum |P|² = (N/2)² (the normalisation of the network input).

    With this probe, an object of unit amplitude yields a predicted diffraction pattern whose
    summed square is (N/2)², the per-pattern normalisation of ``SimulatedData.diffraction``.
    probe: (N, N) complex; returns (N, N) complex64.
    """
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"probe must have shape (N, N), got {probe.shape}")
    power = float(np.sum(np.abs(probe) ** 2))
    if not math.isfinite(power) or power <= 0:
        raise ValueError(f"probe must be finite and non-zero, got sum |P|^2 = {power}")
    n = probe.shape[0]
    return (probe * (n / 2) / math.sqrt(power)).astype(np.complex64)


def _complex_config(values: np.ndarray | None) -> dict[str, Any] | None:
    """(N, N) complex array → ``{"real": …, "imag": …}`` nested float lists (JSON holds no complex)."""
    if values is None:
        return None
    return {"real": values.real.tolist(), "imag": values.imag.tolist()}


def _complex_from_config(value: Any) -> Any:
    """Inverse of ``_complex_config`` (complex64); any other value is returned unchanged."""
    if isinstance(value, dict):
        if set(value) != {"real", "imag"}:
            raise ValueError(f"a complex array's config needs keys 'real' and 'imag', got {sorted(value)}")
        return (np.asarray(value["real"], np.float32) + 1j * np.asarray(value["imag"], np.float32)
                ).astype(np.complex64)
    return value


def flatten_groups(x: tf.Tensor) -> tf.Tensor:
    """(B, H, W, C) → (B·C, H, W, 1); image index b·C + c holds channel c of group b."""
    shape = tf.shape(x)
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    x = tf.transpose(x, [0, 3, 1, 2])
    return tf.reshape(x, [shape[0] * c, h, w, 1])


def unflatten_groups(x: tf.Tensor, c: int) -> tf.Tensor:
    """(B·C, H, W, K) → (B, C, H, W, K), inverse layout of ``flatten_groups``."""
    h, w, k = x.shape[1], x.shape[2], x.shape[3]
    return tf.reshape(x, [-1, c, h, w, k])


def flatten_offsets(offsets: tf.Tensor) -> tf.Tensor:
    """(B, 1, 2, C) (x, y) → (B·C, 2), row b·C + c = offset of patch c of group b."""
    return tf.reshape(tf.transpose(offsets[:, 0, :, :], [0, 2, 1]), [-1, 2])


@keras.saving.register_keras_serializable(package="ptycho")
class GroupsToBatch(keras.layers.Layer):
    """(B, H, W, C) → (B·C, H, W, 1) (``flatten_groups``): the CNN sees one pattern at a time."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return flatten_groups(x)

    def compute_output_spec(self, x: Any) -> keras.KerasTensor:
        return keras.KerasTensor((None, x.shape[1], x.shape[2], 1), dtype=x.dtype)


@keras.saving.register_keras_serializable(package="ptycho")
class BatchToGroups(keras.layers.Layer):
    """(B·C, H, W, 1) → (B, H, W, C), the inverse of ``GroupsToBatch``."""

    def __init__(self, c: int, **kwargs: Any) -> None:
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.c = int(c)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        grouped = unflatten_groups(x, self.c)[..., 0]  # (B, C, H, W)
        return tf.transpose(grouped, [0, 2, 3, 1])

    def compute_output_spec(self, x: Any) -> keras.KerasTensor:
        return keras.KerasTensor((None, x.shape[1], x.shape[2], self.c), dtype=x.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "c": self.c}


@keras.saving.register_keras_serializable(package="ptycho")
class AmplitudeActivation(keras.layers.Layer):
    """Positive bounded amplitude ``max_amplitude · sigmoid(x + shift)`` in float32.

    ``shift = −log(max_amplitude − 1)`` makes x = 0 map to amplitude 1 (the mean object
    amplitude implied by the data normalisation), so an untrained model starts near it.
    """

    def __init__(self, max_amplitude: float = 4.0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", _PHYSICS_DTYPE)
        super().__init__(**kwargs)
        if not max_amplitude > 1.0:
            raise ValueError(f"AmplitudeActivation: max_amplitude must be > 1, got {max_amplitude!r}")
        self.max_amplitude = float(max_amplitude)
        self.shift = -math.log(self.max_amplitude - 1.0)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.max_amplitude * tf.sigmoid(tf.cast(x, tf.float32) + self.shift)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_amplitude": self.max_amplitude}


@keras.saving.register_keras_serializable(package="ptycho")
class PhaseActivation(keras.layers.Layer):
    """Phase in (−π, π): ``π · tanh(x)`` in float32."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", _PHYSICS_DTYPE)
        super().__init__(**kwargs)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return math.pi * tf.tanh(tf.cast(x, tf.float32))


@keras.saving.register_keras_serializable(package="ptycho")
class CombineComplex(keras.layers.Layer):
    """amplitude (B,N,N,C) float, phase (B,N,N,C) float → amplitude·exp(i·phase) complex64."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", _PHYSICS_DTYPE)
        super().__init__(**kwargs)

    def call(self, amplitude: tf.Tensor, phase: tf.Tensor) -> tf.Tensor:
        amplitude = tf.cast(amplitude, tf.float32)
        phase = tf.cast(phase, tf.float32)
        return tf.complex(amplitude * tf.cos(phase), amplitude * tf.sin(phase))

    def compute_output_spec(self, amplitude: Any, phase: Any) -> keras.KerasTensor:
        return keras.KerasTensor(amplitude.shape, dtype="complex64")


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
        kwargs.setdefault("dtype", _PHYSICS_DTYPE)
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


@keras.saving.register_keras_serializable(package="ptycho")
class ProbeIllumination(keras.layers.Layer):
    """Multiply every patch by the (non-trainable) probe.

    The probe is stored as two non-trainable float32 weights (real, imag) so it travels with
    the saved weights. probe: (N, N) complex, used as given (see ``normalised_probe``), or its
    ``get_config`` form ``{"real": (N, N), "imag": (N, N)}`` nested lists.
    call: (B, N, N, C) complex64 → (B, N, N, C) complex64
    """

    def __init__(self, n: int, probe: np.ndarray | dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("dtype", _PHYSICS_DTYPE)
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.n = int(n)
        probe = _complex_from_config(probe)
        if probe is not None and np.shape(probe) != (self.n, self.n):
            raise ValueError(f"ProbeIllumination: probe must be ({n}, {n}), got {np.shape(probe)}")
        self._initial_probe = None if probe is None else np.asarray(probe, np.complex64)

    def build(self, input_shape: Any) -> None:
        init = self._initial_probe
        real = np.zeros((self.n, self.n), np.float32) if init is None else init.real
        imag = np.zeros((self.n, self.n), np.float32) if init is None else init.imag
        self.probe_real = self.add_weight(
            name="probe_real", shape=(self.n, self.n), trainable=False,
            initializer=keras.initializers.Constant(real),
        )
        self.probe_imag = self.add_weight(
            name="probe_imag", shape=(self.n, self.n), trainable=False,
            initializer=keras.initializers.Constant(imag),
        )

    def probe(self) -> tf.Tensor:
        """(N, N) complex64 current probe."""
        return tf.complex(tf.convert_to_tensor(self.probe_real), tf.convert_to_tensor(self.probe_imag))

    def call(self, patches: tf.Tensor) -> tf.Tensor:
        return patches * self.probe()[None, :, :, None]

    def compute_output_spec(self, patches: Any) -> keras.KerasTensor:
        return keras.KerasTensor(patches.shape, dtype="complex64")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n, "probe": _complex_config(self._initial_probe)}


@keras.saving.register_keras_serializable(package="ptycho")
class FarField(keras.layers.Layer):
    """Far-field diffraction amplitude |FFT2(x)| / N, zero frequency at pixel (N//2, N//2).

    The 1/N factor makes the FFT unitary (sum of squares preserved).
    call: (B, N, N, C) complex64 exit waves → (B, N, N, C) float32 amplitudes
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", _PHYSICS_DTYPE)
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, waves: tf.Tensor) -> tf.Tensor:
        n = waves.shape[1]
        planes = tf.transpose(waves, [0, 3, 1, 2])  # FFT acts on the two innermost axes
        spectrum = tf.signal.fftshift(tf.signal.fft2d(planes), axes=(-2, -1))
        amplitude = tf.abs(spectrum) / float(n)
        return tf.transpose(amplitude, [0, 2, 3, 1])

    def compute_output_spec(self, waves: Any) -> keras.KerasTensor:
        return keras.KerasTensor(waves.shape, dtype="float32")


@keras.saving.register_keras_serializable(package="ptycho")
class IntensityScale(keras.layers.Layer):
    """sqrt of expected counts: amplitude (normalised units) · exp(log_scale).

    ``log_scale`` is a scalar weight initialised to log(initial_scale); trainable when the
    model is trained with the Poisson NLL (the MAE loss never uses it).
    call: (B, N, N, C) float32 → (B, N, N, C) float32
    """

    def __init__(self, initial_scale: float = 1.0, trainable_scale: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", _PHYSICS_DTYPE)
        super().__init__(**kwargs)
        if not (math.isfinite(initial_scale) and initial_scale > 0):
            raise ValueError(f"IntensityScale: initial_scale must be > 0, got {initial_scale!r}")
        self.initial_scale = float(initial_scale)
        self.trainable_scale = bool(trainable_scale)

    def build(self, input_shape: Any) -> None:
        self.log_scale = self.add_weight(
            name="log_scale", shape=(), trainable=self.trainable_scale,
            initializer=keras.initializers.Constant(math.log(self.initial_scale)),
        )

    def call(self, amplitude: tf.Tensor) -> tf.Tensor:
        return amplitude * tf.exp(tf.convert_to_tensor(self.log_scale))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "initial_scale": self.initial_scale,
            "trainable_scale": self.trainable_scale,
        }
