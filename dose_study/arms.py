"""The study arms and the study configuration (no ptycho / TensorFlow import).

The four PINN arms cross two doses with two losses:

  high_nll  1e9 photons, Poisson NLL      high_mae  1e9 photons, amplitude MAE
  low_nll   1e4 photons, Poisson NLL      low_mae   1e4 photons, amplitude MAE

Both arms of one dose train on the same simulated data (same seed) and are evaluated on a
test set simulated from another seed (``test_seed = seed + TEST_SEED_OFFSET``). A baseline arm
per dose (``high_lsqml``, ``low_lsqml``; or ``epie`` / ``dm``) reconstructs that same test set
with a conventional iterative engine (``ptycho.baseline``, pty-chi): no training.

A point of the dose-response curve is an arm too (``curve_arm``): a dose, a scan density
(``SCAN_DENSITIES``), a method (nll, mae or an engine) and a seed, named e.g.
``c1e4-sparse-nll-s2``; ``get_arm`` parses such names, so arm processes and Dask tasks run
points exactly like the four arms.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from ptycho.config import ACTIVATIONS, LR_SCHEDULES

HIGH_DOSE = 1e9
LOW_DOSE = 1e4
TEST_SEED_OFFSET = 1000
# Probe defocus (rad at the edge of the probe disk, see ptycho.probe.make_probe) of both
# doses: a real disk probe is centro-symmetric, so each pattern is equally explained by the
# twin object conj(O(-r)); 2 rad makes it complex (docs/findings.md PROBE-TWIN-001).
PROBE_DEFOCUS = 2.0
PINN_LOSSES = ("nll", "mae")
BASELINE_ENGINES = ("lsqml", "epie", "dm")
# Scan density: the mean distance between neighbouring scan positions is N / divisor px (random
# positions, one per (N / divisor)² px of the scanned square). The probe disk is N / 3 px wide
# (SimConfig.probe_scale 3), so "dense" (N/8) overlaps neighbouring illuminations by ~62 % of
# the probe diameter (PtychoPINN-like) and "sparse" (N/4) by ~25 %: little overlap, where
# iterative engines lose most of their constraint.
SCAN_DENSITIES: dict[str, int] = {"dense": 8, "sparse": 4}
CURVE_NAME_RE = re.compile(r"^c(?P<dose>[0-9.e]+)-(?P<positions>[a-z]+)-(?P<method>[a-z]+)"
                           r"-s(?P<seed>\d+)$")


@dataclass(frozen=True)
class ArmSpec:
    """One arm: a dose and a loss."""

    name: str
    dose: str  # "high" | "low" | "curve" (a point of the dose-response curve)
    nphotons: float
    loss: str  # the method: a PINN loss ("nll" | "mae") or a baseline engine (BASELINE_ENGINES)
    positions: str = "dense"  # scan density, a key of SCAN_DENSITIES
    seed: int | None = None  # None: the study's --seed

    @property
    def is_baseline(self) -> bool:
        """A conventional iterative reconstruction (no training) rather than the PINN."""
        return self.loss in BASELINE_ENGINES

    @property
    def label(self) -> str:
        """Short human title, e.g. ``1e9 photons, NLL`` (``..., sparse, seed 2`` for curve points)."""
        text = f"{format_dose(self.nphotons)} photons, {self.loss.upper()}"
        return text if self.dose != "curve" else f"{text}, {self.positions}, seed {self.seed}"


ARMS: tuple[ArmSpec, ...] = (
    ArmSpec("high_nll", "high", HIGH_DOSE, "nll"),
    ArmSpec("high_mae", "high", HIGH_DOSE, "mae"),
    ArmSpec("low_nll", "low", LOW_DOSE, "nll"),
    ArmSpec("low_mae", "low", LOW_DOSE, "mae"),
)
ARM_NAMES: tuple[str, ...] = tuple(a.name for a in ARMS)


def baseline_arms(engine: str) -> tuple[ArmSpec, ...]:
    """The baseline arm of each dose for ``engine`` (``high_<engine>``, ``low_<engine>``)."""
    if engine not in BASELINE_ENGINES:
        raise ValueError(f"unknown baseline engine {engine!r}; choose from "
                         f"{', '.join(BASELINE_ENGINES)}")
    return (ArmSpec(f"high_{engine}", "high", HIGH_DOSE, engine),
            ArmSpec(f"low_{engine}", "low", LOW_DOSE, engine))


def dose_token(nphotons: float) -> str:
    """``1e4`` for 1e4, ``2.5e4`` for 25000: a name part that ``float()`` reads back exactly."""
    token = format_dose(nphotons)
    if float(token) != nphotons:
        mantissa, exponent = f"{nphotons:.6e}".split("e")
        token = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return token


def curve_arm(nphotons: float, positions: str, method: str, seed: int) -> ArmSpec:
    """The dose-response curve point (dose, scan density, method, seed) as an arm."""
    if positions not in SCAN_DENSITIES:
        raise ValueError(f"unknown scan density {positions!r}; choose from "
                         f"{', '.join(SCAN_DENSITIES)}")
    if method not in PINN_LOSSES + BASELINE_ENGINES:
        raise ValueError(f"unknown method {method!r}; choose from "
                         f"{', '.join(PINN_LOSSES + BASELINE_ENGINES)}")
    if not (math.isfinite(nphotons) and nphotons > 0):
        raise ValueError(f"photons per pattern must be finite and > 0, got {nphotons!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    name = f"c{dose_token(nphotons)}-{positions}-{method}-s{seed}"
    return ArmSpec(name, "curve", float(nphotons), method, positions, seed)


def get_arm(name: str) -> ArmSpec:
    """The arm called ``name`` (one of the four, a baseline arm such as ``low_lsqml``, or a
    curve point such as ``c1e4-sparse-nll-s2``); ValueError naming the known arms otherwise."""
    for arm in ARMS:
        if arm.name == name:
            return arm
    dose, _, engine = name.partition("_")
    if dose in ("high", "low") and engine in BASELINE_ENGINES:
        return baseline_arms(engine)[0 if dose == "high" else 1]
    match = CURVE_NAME_RE.match(name)
    if match:
        try:
            return curve_arm(float(match["dose"]), match["positions"], match["method"],
                             int(match["seed"]))
        except ValueError as exc:
            raise ValueError(f"bad curve point name {name!r}: {exc}") from exc
    raise ValueError(f"unknown arm {name!r}; known arms: {', '.join(ARM_NAMES)}, "
                     f"high_<engine>/low_<engine> ({', '.join(BASELINE_ENGINES)}) and curve "
                     "points c<dose>-<dense|sparse>-<method>-s<seed>")


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
    lr_schedule:     learning rate over the run (TrainConfig.lr_schedule: constant | cosine)
    positions:       scan density of train and test scans, a key of SCAN_DENSITIES
    baseline_epochs: iterations of a baseline engine (BASELINE_ENGINES) on the test scan
    quick:           whether the --quick sizes were the base of this config
    """

    N: int = 64
    gridsize: int = 2
    n_images: int = 2000
    n_test_images: int = 512
    nepochs: int = 50
    batch_size: int = 16
    learning_rate: float = 2e-3
    n_filters_scale: int = 2
    probe_defocus: float = PROBE_DEFOCUS
    seed: int = 0
    high_nphotons: float = HIGH_DOSE
    low_nphotons: float = LOW_DOSE
    object_type: str = "lines"
    activation: str = "leaky_relu"
    clipnorm: float | None = 1.0
    lr_schedule: str = "cosine"
    positions: str = "dense"
    baseline_epochs: int = 50
    quick: bool = False

    def __post_init__(self) -> None:
        for name in ("gridsize", "n_images", "n_test_images", "nepochs", "batch_size",
                     "n_filters_scale", "baseline_epochs"):
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
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, "
                             f"got {self.lr_schedule!r}")
        if self.positions not in SCAN_DENSITIES:
            raise ValueError(f"--positions must be one of {', '.join(SCAN_DENSITIES)}, "
                             f"got {self.positions!r}")
        if not (self.high_nphotons > 0 and self.low_nphotons > 0):
            raise ValueError("photon counts must be > 0, got "
                             f"high={self.high_nphotons!r} low={self.low_nphotons!r}")

    @property
    def test_seed(self) -> int:
        return self.seed + TEST_SEED_OFFSET

    def nphotons(self, arm: ArmSpec) -> float:
        """Photons per pattern of ``arm``: this config's high/low dose, or a curve point's own."""
        return {"high": self.high_nphotons, "low": self.low_nphotons}.get(arm.dose, arm.nphotons)

    def for_arm(self, arm: ArmSpec) -> StudyConfig:
        """The configuration ``arm`` runs with: a curve point's own seed and scan density."""
        if arm.dose != "curve":
            return self
        return dataclasses.replace(self, seed=arm.seed if arm.seed is not None else self.seed,
                                   positions=arm.positions)

    def scan_spacing(self) -> float:
        """Mean distance between neighbouring scan positions (px) at ``positions``."""
        return self.N / SCAN_DENSITIES[self.positions]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["test_seed"] = self.test_seed
        return d

    def training_signature(self, arm: ArmSpec | None = None) -> dict[str, Any]:
        """The settings that change an arm's result (used to refuse mixing runs): for a
        baseline arm no training setting, for a PINN arm no baseline setting."""
        d = self.to_dict()
        d.pop("quick")
        if arm is not None and arm.is_baseline:
            for key in PINN_ONLY_SETTINGS:
                d.pop(key, None)
        elif arm is not None:
            d.pop("baseline_epochs")
        return d


# Full preset: 4 arms in <= 60 min on 2 CPU cores. benchmarks/bench_quality.py (same data and
# model, high dose, NLL) on a 2-core EPYC under load 6-7, lr 1e-3: amp SSIM 0.50 / 0.68 / 0.72
# / 0.82 / 0.84 / 0.86 / 0.89 / 0.89 after epochs 1-8 at 30-45 s per epoch; at lr 2e-3 it
# stayed at the constant image (0.43) for 2 epochs. Full runs 2026-11-30, seeds 0/1/2 (with the
# LOW-DOSE-NLL-PHASE-001 fix), amp SSIM high_nll / high_mae / low_nll / low_mae: 0.924 ± 0.011 /
# 0.925 ± 0.007 / 0.876 ± 0.016 / 0.772 ± 0.010; 1112-1196 s per study with two arms at a time
# (docs/results/full_study). Since RESOLUTION-LOSS-001 section 6 both presets train at lr 2e-3
# with a per-step cosine decay to 5 % (StudyConfig defaults): bench_quality on the full-size
# pinn_lines object, Intel Xeon at load 2.4-3.2 beside another job: 0.909 after 163 s (epoch 5),
# 0.960 after 16 epochs.
FULL = StudyConfig(nepochs=16)
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
# With the standardised input (RESOLUTION-LOSS-001 section 5) lr 2e-3 no longer stalls: at lr 2e-3
# with the cosine decay seed 1 gave 0.974 / 0.975 / 0.956 / 0.870, 4 arms in 276 s of arm time
# beside a benchmark (Intel Xeon, load 4-5; section 6).
# 2026-12-07 (QUICK-AVX2-001): on a 2-core AVX2-only EPYC those sizes (1024 groups, batch 16,
# 14 epochs) took 10 min 53 s in `make run` and timed out; a training step costs the same per
# group at batch 8 or 16 there, so the arms now train 512 groups at batch 8 for 8 epochs (512
# steps against 896): 0.960 / 0.957 / 0.943 / 0.891 in 305 s alone on that CPU (1024 groups,
# batch 16, 14 epochs: 0.969 / 0.968 / 0.950 / -, killed at 600 s).
QUICK = StudyConfig(N=32, gridsize=2, n_images=512, n_test_images=512, nepochs=8,
                    batch_size=8, n_filters_scale=1, quick=True)

PINN_ONLY_SETTINGS = ("n_images", "nepochs", "batch_size", "learning_rate", "n_filters_scale",
                      "activation", "clipnorm", "lr_schedule")

FLAG_NAMES = {"N": "--patch-size", "n_images": "--n-images", "n_test_images": "--n-test-images",
              "nepochs": "--nepochs", "batch_size": "--batch-size", "seed": "--seed",
              "gridsize": "--gridsize", "learning_rate": "--learning-rate",
              "n_filters_scale": "--filters-scale", "probe_defocus": "--probe-defocus",
              "activation": "--activation", "positions": "--positions",
              "lr_schedule": "--lr-schedule",
              "baseline_epochs": "--baseline-epochs"}


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
            f"lr {cfg.learning_rate:g} ({cfg.lr_schedule}), filters scale {cfg.n_filters_scale}")


def describe_arm(cfg: StudyConfig, arm: ArmSpec) -> str:
    """One line for an arm's log: the training sizes for a PINN arm, the engine's iterations
    and test scan for a baseline arm (which trains nothing)."""
    if arm.is_baseline:
        return (f"N={cfg.N}, {cfg.n_test_images} test groups, {cfg.baseline_epochs} "
                f"{arm.loss.upper()} epochs")
    return describe_sizes(cfg)
