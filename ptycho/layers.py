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

__all__ = [
    "GroupsToBatch",
    "LogCompress",
    "InputStandardise",
    "BatchToGroups",
    "AmplitudeActivation",
    "PhaseActivation",
    "CombineComplex",
    "ProbeIllumination",
    "FarField",
    "far_field_amplitude",
    "IntensityScale",
    "normalised_probe",
    "flatten_groups",
    "unflatten_groups",
    "flatten_offsets",
]

PHYSICS_DTYPE = "float32"


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


def _positive(owner: str, name: str, value: float) -> float:
    """`value` as a float; ValueError "<owner>: <name> must be > 0, got …" unless finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    return float(value)


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
        kwargs.setdefault("dtype", PHYSICS_DTYPE)
        super().__init__(**kwargs)
        self.floor = _positive("LogCompress", "floor", floor)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.math.log1p(tf.maximum(tf.cast(x, tf.float32), 0.0) / self.floor)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "floor": self.floor}


@keras.saving.register_keras_serializable(package="ptycho")
class InputStandardise(keras.layers.Layer):
    """Per-detector-pixel standardisation of the network input, ``(x − μ) / σ``.

    μ and σ (N, N, C) are the training set's per-pixel mean and standard deviation, set once by
    ``adapt`` (``ptycho.train.train`` calls it before the first epoch) and saved with the
    weights; ``adapted`` records that (``PtychoModel.fit`` warns when it is not set). The
    linear amplitudes span four decades and vary from pattern to pattern by a few per cent of
    their mean (the central beam's variation carries each patch's mean transmission), so a CNN
    fed them sees mostly the mean pattern; standardised, every pixel's variation is O(1). σ is
    floored at ``floor`` × its median so that pixels that (almost) never vary do not blow up.
    With ``keep_input`` the input itself is passed on too, as the first C channels.
    call: (B, N, N, C) float32 → (B, N, N, C) float32, or (B, N, N, 2C) with ``keep_input``
    """

    def __init__(self, floor: float = 0.1, keep_input: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", PHYSICS_DTYPE)
        super().__init__(**kwargs)
        self.floor = _positive("InputStandardise", "floor", floor)
        self.keep_input = bool(keep_input)

    def build(self, input_shape: Any) -> None:
        shape = tuple(int(d) for d in input_shape[1:])
        self.mean = self.add_weight(name="mean", shape=shape, initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=shape, initializer="ones", trainable=False)
        self.adapted = self.add_weight(name="adapted", shape=(), initializer="zeros",
                                       trainable=False)

    @property
    def is_adapted(self) -> bool:
        return bool(self.built and float(self.adapted.numpy()) > 0)

    def adapt(self, x: np.ndarray, chunk: int = 256) -> None:
        """Set μ, σ from samples x (S, N, N, C) float, C = this layer's channels or, for a
        one-channel layer (the shared CNN's view), any C: then every channel is a sample.
        Accumulated in float64 over chunks of `chunk` samples (no full-size temporary)."""
        shape = tuple(int(d) for d in self.mean.shape)
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1:3] != shape[:2] or (x.shape[3] != shape[2] and shape[2] != 1):
            raise ValueError(f"InputStandardise.adapt: samples must be (S, {', '.join(map(str, shape))}), "
                             f"got {x.shape}")
        total = np.zeros(shape[:2] + (x.shape[3],), np.float64)
        squares = np.zeros_like(total)
        for start in range(0, x.shape[0], chunk):
            part = x[start:start + chunk].astype(np.float64)
            total += part.sum(axis=0)
            squares += np.square(part).sum(axis=0)
        count = x.shape[0]
        if shape[2] == 1:  # pool the channels: each pattern is a sample
            total, squares, count = total.sum(-1, keepdims=True), squares.sum(-1, keepdims=True), count * x.shape[3]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
        floor = self.floor * max(float(np.median(std)), 1e-12)
        self.mean.assign(mean.astype(np.float32))
        self.std.assign(np.maximum(std, floor).astype(np.float32))
        self.adapted.assign(1.0)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, tf.float32)
        standard = (x - self.mean) / self.std
        return tf.concat([x, standard], axis=-1) if self.keep_input else standard

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        channels = input_shape[-1]
        if self.keep_input:
            channels = None if channels is None else 2 * channels
        return (*input_shape[:-1], channels)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "floor": self.floor, "keep_input": self.keep_input}


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
        kwargs.setdefault("dtype", PHYSICS_DTYPE)
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
        kwargs.setdefault("dtype", PHYSICS_DTYPE)
        super().__init__(**kwargs)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return math.pi * tf.tanh(tf.cast(x, tf.float32))


@keras.saving.register_keras_serializable(package="ptycho")
class CombineComplex(keras.layers.Layer):
    """amplitude (B,N,N,C) float, phase (B,N,N,C) float → amplitude·exp(i·phase) complex64."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", PHYSICS_DTYPE)
        super().__init__(**kwargs)

    def call(self, amplitude: tf.Tensor, phase: tf.Tensor) -> tf.Tensor:
        amplitude = tf.cast(amplitude, tf.float32)
        phase = tf.cast(phase, tf.float32)
        return tf.complex(amplitude * tf.cos(phase), amplitude * tf.sin(phase))

    def compute_output_spec(self, amplitude: Any, phase: Any) -> keras.KerasTensor:
        return keras.KerasTensor(amplitude.shape, dtype="complex64")


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
        kwargs.setdefault("dtype", PHYSICS_DTYPE)
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


def far_field_amplitude(planes: tf.Tensor) -> tf.Tensor:
    """|FFT2(planes)| / N over the two innermost axes, zero frequency at pixel (N//2, N//2)
    (``FarField``'s operator, shared with ``ptycho.refine``).

    planes: (..., N, N) complex64 exit waves → (..., N, N) float32 amplitudes
    """
    n = planes.shape[-1]
    return tf.abs(tf.signal.fftshift(tf.signal.fft2d(planes), axes=(-2, -1))) / float(n)


@keras.saving.register_keras_serializable(package="ptycho")
class FarField(keras.layers.Layer):
    """Far-field diffraction amplitude |FFT2(x)| / N, zero frequency at pixel (N//2, N//2).

    The 1/N factor makes the FFT unitary (sum of squares preserved).
    call: (B, N, N, C) complex64 exit waves → (B, N, N, C) float32 amplitudes
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", PHYSICS_DTYPE)
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, waves: tf.Tensor) -> tf.Tensor:
        planes = tf.transpose(waves, [0, 3, 1, 2])  # FFT acts on the two innermost axes
        return tf.transpose(far_field_amplitude(planes), [0, 2, 3, 1])

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
        kwargs.setdefault("dtype", PHYSICS_DTYPE)
        super().__init__(**kwargs)
        self.initial_scale = _positive("IntensityScale", "initial_scale", initial_scale)
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
