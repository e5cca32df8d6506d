"""Frozen, validated configuration objects for simulation, model and training.

Every config is a frozen dataclass validated in ``__post_init__``: a bad value fails at
construction with a ``ConfigError`` (a ``ValueError``) naming the field,
the offending value and the expected range. Configs are passed explicitly to the
functions that need them; there is no global configuration.

Serialisation: ``to_dict()`` returns plain JSON/YAML types; ``from_dict()`` rejects
unknown keys (naming them) and coerces numeric strings for float fields, because
PyYAML reads ``1e9`` (no dot) as a string. ``to_json``/``from_json`` and
``to_yaml``/``from_yaml`` wrap them for text round trips.

This module imports neither TensorFlow nor numpy.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

__all__ = [
    "ConfigError",
    "SimConfig",
    "ModelConfig",
    "TrainConfig",
    "OBJECT_TYPES",
    "LOSSES",
    "LR_SCHEDULES",
    "MODEL_LAYOUT_VERSION",
    "LAYOUT_DEFAULTS",
    "layout_defaults",
    "default_object_size",
    "default_scan_buffer",
]

# "lines", "random", "disk": ptycho/objects.py; the rest: the bench objects of ptycho/bench_objects.py
OBJECT_TYPES: tuple[str, ...] = ("lines", "random", "disk", "thin_lines", "thick_lines", "siemens",
                                 "phase_blobs", "mixed_blobs", "pinn_lines")
LOSSES: tuple[str, ...] = ("nll", "mae")
# Hidden-layer activations of the CNN. "relu" units can die for good (docs/findings.md,
# LOW-DOSE-NLL-PHASE-001); "leaky_relu" (slope 0.1 below zero) keeps a gradient everywhere.
ACTIVATIONS: tuple[str, ...] = ("leaky_relu", "relu")
# ×2 up-sampling of the decoders: a resize ("nearest", "bilinear") or a learned transposed conv.
UPSAMPLINGS: tuple[str, ...] = ("nearest", "bilinear", "transpose")
# How the simulation cuts patches at fractional scan positions (SimConfig.subpixel).
SUBPIXELS: tuple[str, ...] = ("bilinear", "fourier")
# Learning rate over a training run (TrainConfig.lr_schedule).
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
# What the CNN sees of the diffraction amplitudes (ModelConfig.input_transform).
INPUT_TRANSFORMS: tuple[str, ...] = ("linear", "log", "standardise", "both")
# Version of the network layout a saved model's weights belong to (``io.save_model`` writes it).
# 1: every archive written before the version was recorded; 2: ModelConfig's upsampling,
# input_transform and align_phases options (docs/findings.md, RESOLUTION-LOSS-001).
MODEL_LAYOUT_VERSION = 3
# ModelConfig keys an archive of layout k may not have written (later layouts added them or
# changed their default), with what that layout built: such an archive loads as it was trained.
# Layout 1: ReLU, before ``activation`` existed; layout 2: the plain NLL (``balance_counts`` 0).
# Layout 3 writes every key (the standardised input "both" and the ring balance are defaults).
LAYOUT_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {"activation": "relu", "upsampling": "nearest", "input_transform": "linear",
        "align_phases": False},
    2: {"balance_counts": 0.0},
}


def layout_defaults(layout: int) -> dict[str, Any]:
    """The ModelConfig values an archive of model layout `layout` built where it wrote no key."""
    merged: dict[str, Any] = {}
    for version in sorted(LAYOUT_DEFAULTS, reverse=True):
        if version >= layout:
            merged.update(LAYOUT_DEFAULTS[version])
    return merged


class ConfigError(ValueError):
    """A configuration value is out of range, of the wrong kind, or unknown."""


# --------------------------------------------------------------------------- checks
def _check_int(name: str, value: Any, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def _coerce_float(obj: Any, name: str, value: Any, positive: bool = True) -> None:
    """Accept int/float (not bool), store as float; require finite and > 0 if `positive`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    object.__setattr__(obj, name, value)


def _check_bool(name: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, bool):
        expected = "a bool or None" if optional else "a bool"
        raise ConfigError(f"{name} must be {expected}, got {value!r}")


def _check_patch_size(name: str, n: Any) -> None:
    _check_int(name, n)
    if n < 16 or n % 8 != 0:
        raise ConfigError(f"{name} must be a multiple of 8 and >= 16 (e.g. 32, 64, 128), got {n}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")


def default_scan_buffer(n: int) -> int:
    """Default margin (px) between the canvas edge and any scan position: N//2 + 4."""
    return n // 2 + 4


def default_object_size(n: int, n_images: int, scan_buffer: int) -> int:
    """Default canvas side (px) for `n_images` scan positions of N×N patches.

    The scanned square has side ceil(sqrt(n_images)) · N/8, i.e. on average one scan
    position per (N/8)² pixels, so the `neighbor_count` nearest neighbours of a position lie
    within roughly N/4 of it (strong overlap, PtychoPINN-like density). The canvas adds
    `scan_buffer` on each side and is rounded up to a multiple of 8.
    """
    side = math.ceil(math.sqrt(n_images)) * n / 8 + 2 * scan_buffer
    return int(math.ceil(side / 8) * 8)


# --------------------------------------------------------------------------- mixin
class _ConfigMixin:
    """to_dict/from_dict and JSON/YAML helpers shared by the config dataclasses."""

    _FLOAT_FIELDS: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON/YAML serialisable)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a dict; unknown keys raise ConfigError naming them and the valid keys."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} key(s): {', '.join(map(str, unknown))}; "
                f"valid keys: {', '.join(known)}"
            )
        kwargs = dict(data)
        for name in cls._FLOAT_FIELDS:
            value = kwargs.get(name)
            if isinstance(value, str):
                try:
                    kwargs[name] = float(value)
                except ValueError:
                    raise ConfigError(f"{name} must be a number, got {value!r}") from None
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid {cls.__name__} JSON: {exc}") from exc
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str) -> Self:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid {cls.__name__} YAML: {exc}") from exc
        return cls.from_dict(data if data is not None else {})

    def replace(self, **changes: Any) -> Self:
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class SimConfig(_ConfigMixin):
    """Simulation of a ptychographic data set.

    N:              patch / diffraction pattern side (px); multiple of 8, >= 16.
    gridsize:       patches per group side; C = gridsize² patches per sample (>= 1).
    nphotons:       mean total counts per diffraction pattern (> 0).
    n_images:       number of groups B (>= 1); also the number of scan positions.
    object_size:    canvas side (px); None → `default_object_size(N, n_images, buffer)`.
    object_type:    one of OBJECT_TYPES ("lines", "random", "disk" or a bench object).
    probe_scale:    probe disk radius = N / (2·probe_scale) px (> 0; 3 → diameter N/3); see
                    make_probe.
    probe_defocus:  quadratic (defocus) phase at the disk edge (rad, finite; 0 → real,
                    centro-symmetric probe); see make_probe.
    neighbor_count: nearest-neighbour candidates a group is drawn from (>= gridsize²).
    scan_buffer:    margin (px) between canvas edge and every scan position; must be
                    >= N//2 + 1 so each N×N patch (with sub-pixel shift) lies inside;
                    None → N//2 + 4.
    seed:           seed of every random draw (object, scan, grouping, Poisson noise).
    subpixel:       how patches are cut at fractional positions, one of SUBPIXELS
                    ("bilinear" blurs the patch; "fourier" is a band-limited shift).
    """

    N: int = 64
    gridsize: int = 2
    nphotons: float = 1e9
    n_images: int = 2000
    object_size: int | None = None
    object_type: str = "lines"
    probe_scale: float = 3.0
    probe_defocus: float = 0.0
    neighbor_count: int = 7
    scan_buffer: int | None = None
    seed: int = 0
    subpixel: str = "bilinear"

    _FLOAT_FIELDS: ClassVar[tuple[str, ...]] = ("nphotons", "probe_scale", "probe_defocus")

    def __post_init__(self) -> None:
        _check_patch_size("N", self.N)
        _check_int("gridsize", self.gridsize, 1)
        _coerce_float(self, "nphotons", self.nphotons)
        _check_int("n_images", self.n_images, 1)
        _check_choice("object_type", self.object_type, OBJECT_TYPES)
        _coerce_float(self, "probe_scale", self.probe_scale)
        _coerce_float(self, "probe_defocus", self.probe_defocus, positive=False)
        _check_int("neighbor_count", self.neighbor_count)
        c = self.gridsize**2
        if self.neighbor_count < c:
            raise ConfigError(
                f"neighbor_count must be >= gridsize² = {c} (gridsize={self.gridsize}), "
                f"got {self.neighbor_count}"
            )
        _check_int("seed", self.seed)
        _check_choice("subpixel", self.subpixel, SUBPIXELS)
        if self.scan_buffer is not None:
            _check_int("scan_buffer", self.scan_buffer, self.N // 2 + 1)
        if self.object_size is not None:
            _check_int("object_size", self.object_size)
            minimum = 2 * self.buffer + 1
            if self.object_size < minimum:
                raise ConfigError(
                    f"object_size must be >= 2·scan_buffer + 1 = {minimum} for N={self.N}, "
                    f"got {self.object_size}"
                )

    @property
    def C(self) -> int:
        """Patches per group (gridsize²)."""
        return self.gridsize**2

    @property
    def buffer(self) -> int:
        """Effective scan buffer (px)."""
        return self.scan_buffer if self.scan_buffer is not None else default_scan_buffer(self.N)

    @property
    def canvas_size(self) -> int:
        """Effective object canvas side (px)."""
        if self.object_size is not None:
            return self.object_size
        return default_object_size(self.N, self.n_images, self.buffer)


@dataclass(frozen=True)
class ModelConfig(_ConfigMixin):
    """Model architecture and execution options.

    N, gridsize:       as in SimConfig (must match the data).
    n_filters_scale:   width multiplier of the CNN (>= 1).
    loss:              "nll" (Poisson NLL on intensities) | "mae" (amplitude MAE).
    probe_scale:       probe disk parameter (> 0), as in SimConfig.
    probe_defocus:     probe defocus (rad), as in SimConfig.
    intensity_scale:   sqrt(counts) per unit of network amplitude (> 0; from the data).
    jit_compile:       whole-model XLA; None → fastest measured default for the device.
    mixed_precision:   bfloat16 compute for the CNN (physics stays f32/c64); None → per device.
    translation_xla:   use the gather-based (XLA-compilable) translation path.
    pad_object:        the decoders predict the central N/2 × N/2 of each object patch and the
                       rest is zero (a real-space support; the probe's light must lie inside
                       it: ``model_config_for`` turns it off when it does not,
                       ``probe.half_support_fits``; RESOLUTION-SUPPORT-001).
    shared_cnn:        one encoder/decoder applied to each of the C patterns of a group (as
                       a batch of B·C single patterns) instead of one CNN over C channels.
    trainable_intensity_scale: let the NLL loss train the intensity scale (default: fixed at
                       ``intensity_scale``, which the data normalisation determines).
    activation:        hidden-layer activation of the CNN, one of ACTIVATIONS ("leaky_relu":
                       no unit can die; "relu": the model before LOW-DOSE-NLL-PHASE-001).
    upsampling:        ×2 up-sampling of the decoders, one of UPSAMPLINGS.
    input_transform:   what the CNN sees: "linear" amplitudes, "log" (``layers.LogCompress``) or
                       "standardise" (per pixel, training-set statistics, ``layers.InputStandardise``)
                       or "both" (the linear amplitudes and the standardised ones, 2 channels).
    balance_counts:    ring balance of the NLL, a count floor c ≥ 0: 0 → the plain Poisson NLL;
                       c > 0 → pixels brighter than max(c, the average pixel) are weighted down
                       to it (``ptycho.losses``; RESOLUTION-LOSS-001).
    align_phases:      the overlap constraint turns each patch by the constant phase that
                       matches its group's average before averaging (``OverlapConstraint``), so
                       the loss does not see the constant a single pattern cannot fix; on by
                       default (phase blobs 0.893 → 0.960, RESOLUTION-LOSS-001 section 6).
    """

    N: int = 64
    gridsize: int = 2
    n_filters_scale: int = 2
    loss: str = "nll"
    probe_scale: float = 3.0
    probe_defocus: float = 0.0
    intensity_scale: float = 1.0
    jit_compile: bool | None = None
    mixed_precision: bool | None = None
    translation_xla: bool = True
    pad_object: bool = True
    shared_cnn: bool = True
    trainable_intensity_scale: bool = False
    activation: str = "leaky_relu"
    upsampling: str = "nearest"
    input_transform: str = "both"
    align_phases: bool = True
    balance_counts: float = 100.0

    _FLOAT_FIELDS: ClassVar[tuple[str, ...]] = ("probe_scale", "probe_defocus", "intensity_scale",
                                               "balance_counts")

    def __post_init__(self) -> None:
        _check_patch_size("N", self.N)
        _check_int("gridsize", self.gridsize, 1)
        _check_int("n_filters_scale", self.n_filters_scale, 1)
        _check_choice("loss", self.loss, LOSSES)
        _coerce_float(self, "probe_scale", self.probe_scale)
        _coerce_float(self, "probe_defocus", self.probe_defocus, positive=False)
        _coerce_float(self, "intensity_scale", self.intensity_scale)
        _check_bool("jit_compile", self.jit_compile, optional=True)
        _check_bool("mixed_precision", self.mixed_precision, optional=True)
        _check_bool("translation_xla", self.translation_xla)
        _check_bool("pad_object", self.pad_object)
        _check_bool("shared_cnn", self.shared_cnn)
        _check_bool("trainable_intensity_scale", self.trainable_intensity_scale)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("upsampling", self.upsampling, UPSAMPLINGS)
        _check_choice("input_transform", self.input_transform, INPUT_TRANSFORMS)
        _check_bool("align_phases", self.align_phases)
        _coerce_float(self, "balance_counts", self.balance_counts, positive=False)
        if self.balance_counts < 0:
            raise ConfigError(f"balance_counts must be >= 0 (0 turns the ring balance off), "
                             f"got {self.balance_counts}")

    @property
    def C(self) -> int:
        """Patches per group (gridsize²)."""
        return self.gridsize**2


@dataclass(frozen=True)
class TrainConfig(_ConfigMixin):
    """Training loop options: epochs, batch size, learning rate, seed, shuffling.

    clipnorm: each step's gradients are scaled down to this global norm when larger (Adam's
              ``global_clipnorm``); None turns clipping off. Without it the 1e4-photon NLL arm
              at N=64 stalled at a flat object in some runs (docs/findings.md,
              LOW-DOSE-NLL-PHASE-001).
    learning_rate, lr_schedule: 2e-3 with the cosine decay by default (RESOLUTION-LOSS-001
              section 6: in 14 quick-size epochs it beat 1e-3 constant on the thin lines, the
              Siemens star and the phase blobs, and reached 0.9 sooner). "constant" keeps
              ``learning_rate``; "cosine" decays it per step from ``learning_rate`` to
              ``learning_rate · lr_final_fraction`` along a half cosine over the ``nepochs``
              epochs of one ``train`` call.
    lr_final_fraction: the last step's learning rate as a fraction of ``learning_rate``
              (0 < f <= 1; "cosine" only).
    """

    nepochs: int = 50
    batch_size: int = 16
    learning_rate: float = 2e-3
    seed: int = 0
    shuffle: bool = True
    clipnorm: float | None = 1.0
    lr_schedule: str = "cosine"
    lr_final_fraction: float = 0.05

    _FLOAT_FIELDS: ClassVar[tuple[str, ...]] = ("learning_rate", "clipnorm", "lr_final_fraction")

    def __post_init__(self) -> None:
        _check_int("nepochs", self.nepochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _coerce_float(self, "learning_rate", self.learning_rate)
        _check_int("seed", self.seed)
        _check_bool("shuffle", self.shuffle)
        if self.clipnorm is not None:
            _coerce_float(self, "clipnorm", self.clipnorm)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _coerce_float(self, "lr_final_fraction", self.lr_final_fraction)
        if self.lr_final_fraction > 1:
            raise ConfigError(f"lr_final_fraction must be <= 1, got {self.lr_final_fraction}")
