"""The four study arms and the study configuration (no ptycho / TensorFlow import).

Arms cross two doses with two losses:

  high_nll  1e9 photons, Poisson NLL      high_mae  1e9 photons, amplitude MAE
  low_nll   1e4 photons, Poisson NLL      low_mae   1e4 photons, amplitude MAE

Both arms of one dose train on the same simulated data (same seed) and are evaluated on a
test set simulated from another seed (``test_seed = seed + TEST_SEED_OFFSET``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ptycho.config import ACTIVATIONS

HIGH_DOSE = 1e9
LOW_DOSE = 1e4
TEST_SEED_OFFSET = 1000
# Probe defocus (rad at the edge of the probe disk, see ptycho.probe.make_probe) of both
# doses: a real disk probe is centro-symmetric, so each pattern is equally explained by the
# twin object conj(O(-r)); 2 rad makes it complex (docs/findings.md PROBE-TWIN-001).
PROBE_DEFOCUS = 2.0


@dataclass(frozen=True)
class ArmSpec:
    """One arm: a dose and a loss."""

    name: str
    dose: str  # "high" | "low"
    nphotons: float
    loss: str  # "nll" | "mae"

    @property
    def label(self) -> str:
        """Short human title, e.g. ``1e9 photons, NLL``."""
        return f"{format_dose(self.nphotons)} photons, {self.loss.upper()}"


ARMS: tuple[ArmSpec, ...] = (
    ArmSpec("high_nll", "high", HIGH_DOSE, "nll"),
    ArmSpec("high_mae", "high", HIGH_DOSE, "mae"),
    ArmSpec("low_nll", "low", LOW_DOSE, "nll"),
    ArmSpec("low_mae", "low", LOW_DOSE, "mae"),
)
ARM_NAMES: tuple[str, ...] = tuple(a.name for a in ARMS)


def get_arm(name: str) -> ArmSpec:
    """The arm called ``name``; ValueError naming the known arms otherwise."""
    for arm in ARMS:
        if arm.name == name:
            return arm
    raise ValueError(f"unknown arm {name!r}; known arms: {', '.join(ARM_NAMES)}")


def format_dose(nphotons: float) -> str:
    """``1e9`` style label for a photon count."""
    mantissa, exponent = f"{nphotons:.0e}".split("e")
    exp = int(exponent)
    return f"1e{exp}" if mantissa == "1" else f"{mantissa}e{exp}"


@dataclass(frozen=True)
class StudyConfig:
    """Sizes and seeds shared by every arm.

    N, gridsize:     patch side (px) and grouping (C = gridsize**2 patches per group)
    n_images:        training groups per dose
    n_test_images:   test groups per dose (simulated from ``seed + TEST_SEED_OFFSET``)
    nepochs, batch_size, learning_rate: training
    n_filters_scale: CNN width multiplier (ModelConfig.n_filters_scale)
    probe_defocus:   pupil-edge defocus phase of the probe in rad (SimConfig.probe_defocus;
                     PROBE_DEFOCUS by default, see there)
    seed:            simulation and training seed
    activation:      CNN hidden-layer activation (ModelConfig.activation)
    clipnorm:        global gradient-norm clipping of each step (TrainConfig.clipnorm)
    quick:           whether the --quick sizes were the base of this config
    """

    N: int = 64
    gridsize: int = 2
    n_images: int = 2000
    n_test_images: int = 512
    nepochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    n_filters_scale: int = 2
    probe_defocus: float = PROBE_DEFOCUS
    seed: int = 0
    high_nphotons: float = HIGH_DOSE
    low_nphotons: float = LOW_DOSE
    object_type: str = "lines"
    activation: str = "leaky_relu"
    clipnorm: float | None = 1.0
    quick: bool = False

    def __post_init__(self) -> None:
        for name in ("gridsize", "n_images", "n_test_images", "nepochs", "batch_size",
                     "n_filters_scale"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{flag_name(name)} must be an integer >= 1, got {value!r}")
        if not isinstance(self.N, int) or self.N < 16 or self.N % 8:
            raise ValueError(f"--patch-size (N) must be a multiple of 8 and >= 16, got {self.N!r}")
        if not math.isfinite(self.probe_defocus):
            raise ValueError(f"--probe-defocus must be finite, got {self.probe_defocus!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning-rate must be > 0, got {self.learning_rate!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if self.clipnorm is not None and not (math.isfinite(self.clipnorm) and self.clipnorm > 0):
            raise ValueError(f"clipnorm must be > 0 or None, got {self.clipnorm!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"--activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if not (self.high_nphotons > 0 and self.low_nphotons > 0):
            raise ValueError("photon counts must be > 0, got "
                             f"high={self.high_nphotons!r} low={self.low_nphotons!r}")

    @property
    def test_seed(self) -> int:
        return self.seed + TEST_SEED_OFFSET

    def nphotons(self, arm: ArmSpec) -> float:
        return self.high_nphotons if arm.dose == "high" else self.low_nphotons

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["test_seed"] = self.test_seed
        return d

    def training_signature(self) -> dict[str, Any]:
        """The settings that change an arm's result (used to refuse mixing runs)."""
        d = self.to_dict()
        d.pop("quick")
        return d


# Full preset: 4 arms in <= 60 min on 2 CPU cores. benchmarks/bench_quality.py (same data and
# model, high dose, NLL) on a 2-core EPYC under load 6-7, lr 1e-3: amp SSIM 0.50 / 0.68 / 0.72
# / 0.82 / 0.84 / 0.86 / 0.89 / 0.89 after epochs 1-8 at 30-45 s per epoch; at lr 2e-3 it
# stayed at the constant image (0.43) for 2 epochs. Full runs 2026-11-30, seeds 0/1/2 (with the
# LOW-DOSE-NLL-PHASE-001 fix), amp SSIM high_nll / high_mae / low_nll / low_mae: 0.924 ± 0.011 /
# 0.925 ± 0.007 / 0.876 ± 0.016 / 0.772 ± 0.010; 1112-1196 s per study with two arms at a time
# (docs/results/full_study).
FULL = StudyConfig(nepochs=16, learning_rate=1e-3)
# --quick: 4 arms in <= 5 min on 2 CPU cores (DESIGN §7 target). Amp SSIM high_nll / high_mae /
# low_nll / low_mae (constant baseline 0.480) and the 4-arm wall time on a loaded 2-core EPYC
# (docs/findings.md MODEL-LEARNS-001 for the model changes behind them):
#   before 2026-11-29 (pupil probe, 4-pattern CNN, 20 epochs, lr 2e-3): 0.59 / 0.69 / 0.54 / 0.57
#   2026-11-29, 20 epochs: 0.971 / 0.969 / 0.962 / 0.883, 338 s (load 7, beside another job)
#   2026-11-29, 14 epochs, lr 1e-3 (this preset), seeds 0/1/2: 0.955 ± 0.009 / 0.960 ± 0.010 /
#     0.949 ± 0.007 / 0.878 ± 0.010; 240 / 339 / 311 s beside the full study (load 6.5-7.7)
# The test region of 128 groups (≈46 px square at N=32) held no line at all for seed 1 (a
# constant image scored SSIM 0.983 there); 512 test groups (≈90 px) cost a second of inference.
# lr 2e-3 stalled the high_nll arm of seed 1 at the constant image (SSIM 0.453 = baseline);
# lr 1e-3 gives 0.82 / 0.91 / 0.86 after 4 epochs for seeds 0 / 1 / 2.
QUICK = StudyConfig(N=32, gridsize=2, n_images=1024, n_test_images=512, nepochs=14,
                    batch_size=16, learning_rate=1e-3, n_filters_scale=1, quick=True)

FLAG_NAMES = {"N": "--patch-size", "n_images": "--n-images", "n_test_images": "--n-test-images",
              "nepochs": "--nepochs", "batch_size": "--batch-size", "seed": "--seed",
              "gridsize": "--gridsize", "learning_rate": "--learning-rate",
              "n_filters_scale": "--filters-scale", "probe_defocus": "--probe-defocus",
              "activation": "--activation"}


def flag_name(field: str) -> str:
    return FLAG_NAMES.get(field, field)


def make_config(quick: bool, **overrides: Any) -> StudyConfig:
    """Full or --quick defaults with the given (non-None) flag values on top.

    Raises ValueError naming the flag and the bad value.
    """
    base = QUICK if quick else FULL
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - {f.name for f in dataclasses.fields(StudyConfig)}
    if unknown:
        raise ValueError(f"unknown study settings: {sorted(unknown)}")
    return dataclasses.replace(base, **given)


def describe_sizes(cfg: StudyConfig) -> str:
    """One line for --help and logs."""
    return (f"N={cfg.N}, gridsize={cfg.gridsize}, {cfg.n_images} train / {cfg.n_test_images} "
            f"test groups, {cfg.nepochs} epochs, batch {cfg.batch_size}, "
            f"lr {cfg.learning_rate:g}, filters scale {cfg.n_filters_scale}")
