"""PtychoPINN-style physics-informed model: ``build_model(cfg) -> PtychoModel``.

Architecture (B groups, N×N patches, C = gridsize² patches per group, channels-last):

    diffraction (B,N,N,C) f32 ─ GroupsToBatch (B·C,N,N,1) ─ input transform ─ encoder CNN
      ─┬─ amplitude decoder → 4·sigmoid ─┐
       └─ phase decoder     → π·tanh    ─┴─ BatchToGroups
      → object (B,N,N,C) c64, zero outside the central N/2 × N/2 (``pad_object``)
    object, offsets (B,1,2,C) ─ OverlapConstraint (C>1: |probe|²-weighted average on a shared canvas, re-extract)
      ─ ProbeIllumination (fixed probe, sum|P|² = (N/2)²) ─ FarField |FFT2|/N → amplitude (B,N,N,C) f32
      ─ IntensityScale (log scale, fixed by default) → sqrt_counts (B,N,N,C) f32

The input transform (``cfg.input_transform``) is by default "both": the amplitudes and their
per-pixel standardisation (x − μ) / σ with the training set's statistics (``InputStandardise``,
set by ``train``), 2 channels; "linear" feeds the amplitudes alone (RESOLUTION-LOSS-001).
The encoder has three levels of two 3×3 convolutions (``cfg.activation``, leaky ReLU by
default) + 2×2 max-pool with widths
``ENCODER_WIDTHS · n_filters_scale`` (N → N/8); each decoder has two levels of conv, nearest
up-sampling and conv (N/8 → N/2; three levels to N when ``pad_object`` is off), then a 3×3
conv to one channel. With ``shared_cnn`` (default) one CNN reconstructs each pattern of a group
on its own (weights shared over the C patterns); the overlap constraint alone couples them.
Why these choices: docs/findings.md (MODEL-LEARNS-001).
Outputs (dict): ``amplitude`` — predicted diffraction amplitude in the normalised units of the
input; ``sqrt_counts`` — the same in sqrt(photon counts), λ = sqrt_counts²; ``object`` — the
decoder's complex object patches (before the overlap constraint).

Execution: the CNN runs under a per-layer ``mixed_bfloat16`` policy when
``mixed_precision`` resolves true (the physics layers always compute in float32/complex64;
no global policy is touched); ``jit_compile`` compiles whole train/predict steps with XLA.
``None`` in the config means the fastest path for the device, decided when the model is built
(``ptycho.execution.resolve_execution``), never at import. Nothing is built at import time.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptycho.config import ModelConfig
from ptycho.execution import ExecutionPlan, device_defaults, resolve_execution
from ptycho.layers import (
    AmplitudeActivation,
    BatchToGroups,
    CombineComplex,
    FarField,
    GroupsToBatch,
    InputStandardise,
    IntensityScale,
    LogCompress,
    PhaseActivation,
    ProbeIllumination,
    normalised_probe,
)
from ptycho.losses import get_loss
from ptycho.overlap import OverlapConstraint
from ptycho.probe import half_support_fits, light_outside_half

__all__ = [
    "ENCODER_WIDTHS",
    "STANDARDISED_INPUTS",
    "ExecutionPlan",
    "PtychoModel",
    "build_model",
    "check_inputs",
    "device_defaults",
    "inference_model",
    "model_config_for",
    "model_probe",
    "overlap_pad",
    "overlap_reach",
    "resolve_execution",
]

log = logging.getLogger(__name__)

ENCODER_WIDTHS: tuple[int, ...] = (8, 16, 32)  # × n_filters_scale, one entry per level
# Upper bound of the predicted object amplitude. The data normalisation implies a
# probe-weighted RMS object amplitude of 1; the "lines" object (0.5–1.5, mostly 0.5) then
# spans ≈0.85–2.6, so 4 leaves head-room.
MAX_AMPLITUDE = 4.0
# Slope below zero of the default "leaky_relu" activation: every unit keeps a gradient, so none
# can die for good (a dead amplitude decoder was LOW-DOSE-NLL-PHASE-001).
LEAKY_SLOPE = 0.1
# ``input_transform="log"`` feeds the CNN log1p(amplitude / LOG_INPUT_FLOOR): the normalised
# amplitudes are ≈5 in the central beam and 1e-3–1e-2 at the highest angles.
LOG_INPUT_FLOOR = 0.01
# input transforms that put an ``InputStandardise`` layer ("input_standardise") before the CNN;
# ``train`` sets its statistics from the training set
STANDARDISED_INPUTS: tuple[str, ...] = ("standardise", "both")


# --------------------------------------------------------------------------- model
class PtychoModel(keras.Model):
    """Functional Keras model with the ptychography loss wired into ``compute_loss``.

    Inputs: {"diffraction": (B,N,N,C) float32, "offsets": (B,1,2,C) float32}.
    Training targets y: photon counts (B,N,N,C) for loss "nll" (compared with
    ``sqrt_counts``²), measured normalised amplitudes (B,N,N,C) for "mae" (compared with
    ``amplitude``). ``fit``, callbacks and ``tf.distribute`` work unchanged.
    """

    def __init__(self, inputs: Any, outputs: Any, config: ModelConfig, plan: ExecutionPlan,
                 name: str = "ptycho") -> None:
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        self.ptycho_config = config
        self.execution = plan
        self._ptycho_loss = get_loss(config.loss, config.balance_counts)
        self._inference_model: keras.Model | None = None

    @property
    def input_standardisation(self) -> InputStandardise | None:
        """The ``InputStandardise`` layer of a standardised input (``STANDARDISED_INPUTS``),
        else None."""
        if self.ptycho_config.input_transform not in STANDARDISED_INPUTS:
            return None
        return self.get_layer("input_standardise")

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        """``keras.Model.fit``, with a warning when the input standardisation was never set
        (``ptycho.train.train`` sets it from the training set; a bare ``fit`` trains with
        μ = 0, σ = 1, i.e. without it)."""
        layer = self.input_standardisation
        if layer is not None and not layer.is_adapted:
            log.warning("fit: the input standardisation is not set, so the CNN sees the raw "
                        "amplitudes twice; train with ptycho.train.train, or call "
                        "model.get_layer('input_standardise').adapt(diffraction) first")
        return super().fit(*args, **kwargs)

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                     sample_weight: Any = None, training: bool = True) -> Any:
        if y is None or y_pred is None:
            return None
        key = "sqrt_counts" if self.ptycho_config.loss == "nll" else "amplitude"
        total = self._ptycho_loss(y, y_pred[key], sample_weight)
        for extra in self.losses:
            total = total + tf.cast(extra, total.dtype)
        return total


def _activation(name: str) -> Any:
    """Hidden-layer activation for ``ModelConfig.activation``."""
    if name == "leaky_relu":
        return lambda x: keras.activations.leaky_relu(x, negative_slope=LEAKY_SLOPE)
    return keras.activations.get(name)


def _conv(x: Any, filters: int, name: str, dtype: str, seed: int, activation: str) -> Any:
    return keras.layers.Conv2D(
        filters, 3, padding="same", activation=_activation(activation), dtype=dtype, name=name,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
    )(x)


def _upsample(x: Any, width: int, name: str, dtype: str, seed: int, mode: str,
              activation: str) -> Any:
    """×2 up-sampling: "nearest" / "bilinear" resize, or a learned stride-2 transposed conv."""
    if mode == "transpose":
        return keras.layers.Conv2DTranspose(
            width, 4, strides=2, padding="same", activation=_activation(activation), dtype=dtype,
            name=name, kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    return keras.layers.UpSampling2D(2, interpolation=mode, dtype=dtype, name=name)(x)


def _decoder(x: Any, widths: tuple[int, ...], out_channels: int, prefix: str, dtype: str,
             seed: int, activation: str, upsampling: str = "nearest") -> Any:
    """Up-sampling blocks for `widths` (coarsest first), then a 3×3 conv to `out_channels`."""
    for level, width in enumerate(widths):
        x = _conv(x, width, f"{prefix}_conv{level}a", dtype, seed + 10 * level, activation)
        x = _upsample(x, width, f"{prefix}_up{level}", dtype, seed + 10 * level + 5, upsampling,
                      activation)
        x = _conv(x, width, f"{prefix}_conv{level}b", dtype, seed + 10 * level + 1, activation)
    # Last layer in float32 (it feeds the physics), initialised to zero: the untrained model
    # predicts a flat object (amplitude 1, phase 0), not random structure that training would
    # first have to suppress, at low dose by silencing the CNN (LOW-DOSE-NLL-PHASE-001).
    return keras.layers.Conv2D(
        out_channels, 3, padding="same", dtype="float32", name=f"{prefix}_out",
        kernel_initializer="zeros",
    )(x)


def build_model(cfg: ModelConfig, probe: np.ndarray | None = None, seed: int = 0) -> PtychoModel:
    """Build and compile a fresh model (weights initialised deterministically from `seed`).

    cfg:   ModelConfig (N, gridsize, n_filters_scale, loss, probe_scale, intensity_scale, …)
    probe: (N, N) complex illumination; None → ``make_probe(N, probe_scale, probe_defocus)``.
           It is rescaled to sum |P|² = (N/2)² (see ``layers.normalised_probe``).
    returns: a compiled PtychoModel (Adam, lr 1e-3; ``train`` sets the learning rate).
    Build inside ``strategy.scope()`` to train with a ``tf.distribute`` strategy.
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"build_model expects a ModelConfig, got {type(cfg).__name__}")
    n, c = cfg.N, cfg.C
    levels = len(ENCODER_WIDTHS)
    if n % (2**levels):
        raise ValueError(f"N={n} must be divisible by {2**levels} (three pooling levels)")
    if probe is None:
        from ptycho.physics import make_probe

        probe = make_probe(n, cfg.probe_scale, cfg.probe_defocus)
    if np.shape(probe) != (n, n):
        raise ValueError(f"probe must have shape ({n}, {n}) for N={n}, got {np.shape(probe)}")
    plan = resolve_execution(cfg)
    cnn = "mixed_bfloat16" if plan.mixed_precision else "float32"
    widths = tuple(w * cfg.n_filters_scale for w in ENCODER_WIDTHS)

    diffraction = keras.Input((n, n, c), dtype="float32", name="diffraction")
    offsets = keras.Input((1, 2, c), dtype="float32", name="offsets")
    shared = cfg.shared_cnn and c > 1
    x = GroupsToBatch(name="patterns")(diffraction) if shared else diffraction
    if cfg.input_transform == "log":
        x = LogCompress(LOG_INPUT_FLOOR, name="log_input")(x)
    elif cfg.input_transform in STANDARDISED_INPUTS:
        x = InputStandardise(keep_input=cfg.input_transform == "both", name="input_standardise")(x)
    for level, width in enumerate(widths):
        x = _conv(x, width, f"enc_conv{level}a", cnn, seed + 10 * level, cfg.activation)
        x = _conv(x, width, f"enc_conv{level}b", cnn, seed + 10 * level + 1, cfg.activation)
        x = keras.layers.MaxPooling2D(2, dtype=cnn, name=f"enc_pool{level}")(x)
    up = tuple(reversed(widths))[: levels - 1 if cfg.pad_object else levels]
    out_c = 1 if shared else c
    amp_logits = _decoder(x, up, out_c, "amp", cnn, seed + 1000, cfg.activation, cfg.upsampling)
    phase_logits = _decoder(x, up, out_c, "phase", cnn, seed + 2000, cfg.activation,
                            cfg.upsampling)
    if shared:
        amp_logits = BatchToGroups(c, name="amp_groups")(amp_logits)
        phase_logits = BatchToGroups(c, name="phase_groups")(phase_logits)
    amplitude = AmplitudeActivation(MAX_AMPLITUDE, name="object_amplitude")(amp_logits)
    phase = PhaseActivation(name="object_phase")(phase_logits)
    if cfg.pad_object:  # object support: the central N/2 × N/2, zero outside
        amplitude = keras.layers.ZeroPadding2D(n // 4, dtype="float32", name="amp_support")(amplitude)
        phase = keras.layers.ZeroPadding2D(n // 4, dtype="float32", name="phase_support")(phase)
    obj = CombineComplex(name="object")(amplitude, phase)
    probe = normalised_probe(probe)
    illumination = np.abs(probe) ** 2
    consistent = OverlapConstraint(
        pad=overlap_pad(n), use_xla=plan.translation_xla,
        compile_xla=plan.translation_xla and not plan.jit_compile,
        weights=illumination / illumination.max(), align_phases=cfg.align_phases, name="overlap",
    )(obj, offsets)
    waves = ProbeIllumination(n, probe, name="probe")(consistent)
    amp_pred = FarField(name="amplitude")(waves)
    trainable_scale = cfg.loss == "nll" and cfg.trainable_intensity_scale
    sqrt_counts = IntensityScale(cfg.intensity_scale, trainable_scale=trainable_scale,
                                 name="sqrt_counts")(amp_pred)
    model = PtychoModel(
        inputs={"diffraction": diffraction, "offsets": offsets},
        outputs={"amplitude": amp_pred, "sqrt_counts": sqrt_counts, "object": obj},
        config=cfg, plan=plan,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=plan.jit_compile)
    model.optimizer.build(model.trainable_variables)  # slot variables now, not in the first step
    log.info("built model N=%d gridsize=%d widths=%s params=%d path=%s (%s)", n, cfg.gridsize,
             widths, model.count_params(), plan.name, plan.device)
    return model


def model_config_for(data: Any, **overrides: Any) -> ModelConfig:
    """ModelConfig matching a data set: N and gridsize from ``data.diffraction`` (B,N,N,C),
    ``intensity_scale`` from the data, ``probe_scale`` and ``probe_defocus`` from
    ``data.config`` when present, ``pad_object`` off when the probe lights too much outside
    the central N/2 × N/2 for ``data.nphotons`` (``probe.half_support_fits``); `overrides`
    (loss, n_filters_scale, pad_object, jit_compile, …) win."""
    shape = np.shape(data.diffraction)
    if len(shape) != 4 or shape[1] != shape[2]:
        raise ValueError(f"diffraction must have shape (B, N, N, C), got {shape}")
    gridsize = math.isqrt(shape[3])
    if gridsize * gridsize != shape[3]:
        raise ValueError(f"diffraction channels C={shape[3]} is not a square gridsize²")
    values: dict[str, Any] = {"N": shape[1], "gridsize": gridsize,
                              "intensity_scale": float(data.intensity_scale)}
    sim_cfg = getattr(data, "config", None)
    if sim_cfg is not None:
        values["probe_scale"] = sim_cfg.probe_scale
        values["probe_defocus"] = sim_cfg.probe_defocus
    if "pad_object" not in overrides and not half_support_fits(data.probe, data.nphotons):
        values["pad_object"] = False
        outside = light_outside_half(data.probe)
        log.info("the probe puts %.2g of its light outside the central %d×%d (%.3g photons per "
                 "pattern): the model predicts the whole %d×%d object patch (pad_object off)",
                 outside, shape[1] // 2, shape[1] // 2, outside * data.nphotons, shape[1], shape[1])
    values.update(overrides)
    return ModelConfig(**values)


def overlap_pad(n: int) -> int:
    """Canvas margin of the overlap constraint: N//4 px (offsets from the group centre of
    simulated data are ≈N/8–N/5 at the default scan density)."""
    return n // 4


def overlap_reach(cfg: ModelConfig) -> int:
    """Largest |offset| (px) the overlap canvas holds without dropping object content: the
    canvas margin, plus the zero border N//4 outside the object support with ``pad_object``."""
    return overlap_pad(cfg.N) + (cfg.N // 4 if cfg.pad_object else 0)


def inference_model(model: PtychoModel) -> keras.Model:
    """Sub-model diffraction (B,N,N,C) f32 → object patches (B,N,N,C) complex64 (shared
    weights, no physics layers; built once per model and cached on it)."""
    if model._inference_model is None:
        sub = keras.Model(model.input["diffraction"], model.get_layer("object").output,
                          name="ptycho_inference")
        sub.compile(jit_compile=model.execution.jit_compile)
        # bypass Keras attribute tracking: the sub-model must not become part of the
        # model's saved state (its weights are the model's own)
        object.__setattr__(model, "_inference_model", sub)
    return model._inference_model


def model_probe(model: PtychoModel) -> np.ndarray:
    """The model's (normalised) probe, (N, N) complex64."""
    return np.asarray(model.get_layer("probe").probe().numpy(), np.complex64)


def check_inputs(cfg: ModelConfig, diffraction: Any, offsets: Any = None,
                 what: str = "model input") -> tuple[np.ndarray, np.ndarray | None]:
    """Validate and convert network inputs; raise ValueError naming the shapes.

    diffraction: (B, N, N, C) real; offsets: (B, 1, 2, C) real or None.
    returns float32 arrays.
    """
    expected = (cfg.N, cfg.N, cfg.C)
    diffraction = np.asarray(diffraction)
    if not (np.issubdtype(diffraction.dtype, np.floating) or np.issubdtype(diffraction.dtype, np.integer)):
        raise ValueError(f"{what}: diffraction must be real (float32), got dtype {diffraction.dtype}")
    if diffraction.ndim != 4 or diffraction.shape[1:] != expected:
        raise ValueError(f"{what}: diffraction must have shape (B, {cfg.N}, {cfg.N}, {cfg.C}) "
                         f"for N={cfg.N}, gridsize={cfg.gridsize}; got {diffraction.shape}")
    if diffraction.shape[0] == 0:
        raise ValueError(f"{what}: diffraction holds no groups (shape {diffraction.shape})")
    if offsets is None:
        return diffraction.astype(np.float32, copy=False), None
    offsets = np.asarray(offsets)
    if not (np.issubdtype(offsets.dtype, np.floating) or np.issubdtype(offsets.dtype, np.integer)):
        raise ValueError(f"{what}: offsets must be real (float32), got dtype {offsets.dtype}")
    if offsets.shape != (diffraction.shape[0], 1, 2, cfg.C):
        raise ValueError(f"{what}: offsets must have shape ({diffraction.shape[0]}, 1, 2, {cfg.C}) "
                         f"to match diffraction {diffraction.shape}; got {offsets.shape}")
    return diffraction.astype(np.float32, copy=False), offsets.astype(np.float32, copy=False)
