"""PtychoPINN's canonical per-position data layout: validation, photon scale, grouping.

A canonical file (NPZ, or HDF5 with the same dataset names) holds one diffraction pattern per
scan position; it carries no photon count and no grouping:

    diffraction (n, H, W) float32 amplitude (sqrt of intensity), any normalisation;
                older files name it ``diff3d`` (both present: they must be equal);
                (n, H, W, 1) and the legacy (H, W, n) order are accepted
    xcoords, ycoords (n,) float64 scan positions in object pixels (x = column, y = row; the
                patch centre pixel (H//2, W//2) sits there, as in ``physics.extract_patches``)
    probeGuess (H, W) complex64
    objectGuess (M, M) complex64 *    scan_index (n,) int *    Y (n, H, W) complex64 *
    xcoords_start, ycoords_start (n,) *                         (* optional)

``validate`` checks every array and raises ``CanonicalError`` naming the file and the key.
Amplitude or intensity (``detect_units``) is decided from evidence that a bright central beam
cannot fake: an integer dtype means counts (intensities); values that are integer multiples of
one constant with levels beyond {0, q} are counts too; squares that are (while the values are
not) are amplitudes of counts (sqrt of Poisson counts, PtychoPINN's simulator); with no
evidence the canonical contract (amplitudes) is assumed and a warning says so. The caller's
``intensity=True/False`` (``--intensity`` / ``--amplitude``) always wins.
``to_network_units`` turns the patterns into this project's network input (mean Σ x² per
pattern = (N/2)², as for simulated data) and Poisson counts for the NLL loss; the photon count
is, in order: given by the caller, the ``nphotons`` of the file's ``_metadata`` JSON, estimated
from the count quantisation of the data (sqrt of integer counts times one constant), or the
default 1e9 (logged). ``group`` builds the (B, C) neighbour groups from the coordinates; by
default each group draws its members from the scan positions within ``GROUP_RADIUS_FRACTION``
× the probe's illumination radius of its centre, so that a dense scan (PtychoPINN's: 2000
positions about 1 px apart) still gives groups whose members overlap in part, not patterns of
one spot (docs/findings.md PROBE-TWIN-001).
Writing the layout is :mod:`ptycho.canonical_write`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.grouping import default_neighbors, group_scan_positions, neighbors_within
from ptycho.probe import illumination_radius

__all__ = [
    "CanonicalError",
    "CanonicalData",
    "GroupingOptions",
    "DEFAULT_NPHOTONS",
    "CANONICAL_KEYS",
    "is_canonical",
    "validate",
    "count_quantum",
    "detect_units",
    "UnitsEvidence",
    "to_network_units",
]

log = logging.getLogger(__name__)

DEFAULT_NPHOTONS = 1e9
CANONICAL_KEYS = ("diffraction", "diff3d", "xcoords", "ycoords", "probeGuess", "objectGuess",
                  "scan_index", "Y", "xcoords_start", "ycoords_start", "_metadata")


# Group members come from within this fraction of the probe's illumination radius
# (probe.illumination_radius) of the group centre. On PtychoPINN's own files (16 epochs) the
# 7 nearest gave amp SSIM 0.827; 25 / 50 / 100 nearest (0.6 / 0.85 / 1.2 of the radius) gave
# 0.863 / 0.890 / 0.887 (docs/findings.md PROBE-TWIN-001).
GROUP_RADIUS_FRACTION = 1.0


class CanonicalError(ValueError):
    """A canonical data file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class GroupingOptions:
    """How per-position data become training groups.

    gridsize:  C = gridsize² patterns per group (>= 1)
    n_groups:  groups B (>= 1); None → one per scan position
    neighbors: candidates per group (>= gridsize²); None → the positions within
               ``GROUP_RADIUS_FRACTION`` × the probe's illumination radius, at least
               max(7, gridsize²) (``group_neighbors``)
    seed:      seed of the grouping draws
    nphotons:  mean photon count per pattern (> 0) for the NLL loss; None → from the data
    intensity: True: the file holds intensities (sqrt is taken); False: amplitudes; None:
               decided from the data (``detect_units``)
    """

    gridsize: int = 2
    n_groups: int | None = None
    neighbors: int | None = None
    seed: int = 0
    nphotons: float | None = None
    intensity: bool | None = None

    def __post_init__(self) -> None:
        def need_int(name: str, value: Any, minimum: int) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")

        need_int("gridsize", self.gridsize, 1)
        if self.n_groups is not None:
            need_int("n_groups", self.n_groups, 1)
        if self.neighbors is not None:
            need_int("neighbors", self.neighbors, self.gridsize**2)
        need_int("seed", self.seed, 0)
        if self.nphotons is not None and not (math.isfinite(self.nphotons) and self.nphotons > 0):
            raise ValueError(f"nphotons must be finite and > 0, got {self.nphotons!r}")
        if self.intensity is not None and not isinstance(self.intensity, bool):
            raise ValueError(f"intensity must be True, False or None, got {self.intensity!r}")


@dataclass(frozen=True, eq=False)
class CanonicalData:
    """Validated per-position data (file units).

    amplitude (n, N, N) float32 ≥ 0 (sqrt taken already for intensity files),
    positions (n, 2) float64 (x, y), probe (N, N) complex64, obj (M, M') complex64 | None,
    metadata: the file's ``_metadata`` JSON object ({} when absent),
    units: what the file held ("amplitude" | "intensity") and units_reason: why that was taken.
    """

    amplitude: np.ndarray
    positions: np.ndarray
    probe: np.ndarray
    obj: np.ndarray | None
    metadata: dict[str, Any]
    units: str = "amplitude"
    units_reason: str = "canonical contract"

    @property
    def n_positions(self) -> int:
        return int(self.amplitude.shape[0])


def is_canonical(get: Callable[[str], np.ndarray | None]) -> bool:
    """True for per-position files: ``diff3d`` present, or ``diffraction`` not 4-D, or
    (n, H, W, 1) without a (B, C) ``scan_index``. A 4-D ``diffraction`` is otherwise this
    project's grouped (B, N, N, C) layout."""
    if get("diff3d") is not None:
        return True
    diff, index = get("diffraction"), get("scan_index")
    if diff is None or diff.ndim != 4:
        return True
    return diff.shape[-1] == 1 and (index is None or index.ndim == 1)


def count_quantum(values: np.ndarray, tolerance: float = 0.01) -> float | None:
    """The constant q with values ≈ q · (non-negative integers), if there is one.

    values: any float array ≥ 0. Looks at values up to 1000 q (float32 keeps them exact to
    1e-4); q is the smallest non-zero value divided by 1..4. None when fewer than 100 such
    values exist or more than 1% of them are off an integer by more than `tolerance`.
    """
    flat = np.asarray(values, np.float64).ravel()
    if flat.size > 4_000_000:
        flat = flat[:: flat.size // 4_000_000 + 1]
    nonzero = flat[flat > 0]
    if nonzero.size < 100:
        return None
    smallest = float(nonzero.min())
    for divisor in (1, 2, 3, 4):
        q = smallest / divisor
        ratio = nonzero[nonzero <= 1000.5 * q] / q
        if ratio.size < 100:
            continue
        if np.mean(np.abs(ratio - np.rint(ratio)) > tolerance) <= 0.01:
            return q
    return None


def _metadata(source: Path, raw: np.ndarray | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(str(raw.item() if raw.ndim == 0 else raw))
    except (json.JSONDecodeError, ValueError) as exc:
        raise CanonicalError(f"{source}: '_metadata' must be a JSON string: {exc}") from exc
    return value if isinstance(value, dict) else {}


def validate(source: Path, get: Callable[[str], np.ndarray | None], gridsize: int = 1,
             intensity: bool | None = None) -> CanonicalData:
    """Check a canonical file's arrays; raise CanonicalError naming the file and the key.

    get: key → array or None (absent). gridsize: the grouping that will be asked for
    (n must be >= gridsize²). intensity: True the patterns are intensities (sqrt is taken),
    False amplitudes, None decided by ``detect_units`` (logged; a warning when unsure).
    """
    def fail(key: str, message: str) -> CanonicalError:
        return CanonicalError(f"{source}: '{key}' {message}")

    diff, alias = get("diffraction"), get("diff3d")
    if diff is None and alias is None:
        raise CanonicalError(f"{source}: missing required key 'diffraction' (or 'diff3d')")
    key = "diffraction" if diff is not None else "diff3d"
    if diff is not None and alias is not None and (
            diff.shape != alias.shape or not np.array_equal(diff, alias)):
        raise fail("diff3d", f"differs from 'diffraction' ({alias.shape} vs {diff.shape}); "
                             f"a file may hold both only when they are equal")
    patterns = diff if diff is not None else alias
    missing = [k for k in ("xcoords", "ycoords", "probeGuess") if get(k) is None]
    if missing:
        raise CanonicalError(f"{source}: missing required key(s) {missing}")
    xs, ys = get("xcoords"), get("ycoords")
    if patterns.ndim == 4 and patterns.shape[-1] == 1:  # (n, H, W, 1): a trailing channel
        patterns = patterns[..., 0]
    if (patterns.ndim == 3 and xs.ndim == 1 and patterns.shape[0] != xs.shape[0]
            and patterns.shape[2] == xs.shape[0] and patterns.shape[0] == patterns.shape[1]):
        log.info("%s: '%s' is in the legacy (H, W, n) order; using (n, H, W)", source, key)
        patterns = np.moveaxis(patterns, 2, 0)
    if patterns.ndim != 3:
        raise fail(key, f"must be (n, H, W) per-position patterns, got rank {patterns.ndim} "
                        f"shape {patterns.shape}")
    if patterns.dtype.kind not in "fiu":
        raise fail(key, f"must be real numbers (float32), got dtype {patterns.dtype}")
    n, h, w = patterns.shape
    if h != w:
        raise fail(key, f"patterns must be square, got {h}×{w}")
    for name, coords in (("xcoords", xs), ("ycoords", ys)):
        if coords.ndim != 1 or coords.dtype.kind not in "fiu":
            raise fail(name, f"must be a real (n,) vector, got shape {coords.shape} dtype {coords.dtype}")
        if coords.shape[0] != n:
            raise fail(name, f"has {coords.shape[0]} positions but '{key}' has {n} patterns")
        if not np.isfinite(coords).all():
            raise fail(name, "contains NaN or Inf")
    if n < gridsize * gridsize:
        raise fail(key, f"holds {n} scan positions, fewer than gridsize² = {gridsize ** 2} "
                        f"(gridsize {gridsize}); use a smaller --gridsize")
    probe = get("probeGuess")
    if probe.shape != (h, w):
        raise fail("probeGuess", f"must have the pattern shape ({h}, {w}), got {probe.shape}")
    if probe.dtype.kind not in "fciu":
        raise fail("probeGuess", f"must be complex (complex64), got dtype {probe.dtype}")
    if not np.isfinite(probe).all():
        raise fail("probeGuess", "contains NaN or Inf")
    if not np.any(probe):
        raise fail("probeGuess", "is all zero")
    values = patterns.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        bad = int(np.size(values) - np.isfinite(values).sum())
        raise fail(key, f"contains {bad} NaN or Inf value(s)")
    evidence = detect_units(patterns.dtype, values)
    if intensity is None:
        units, reason = evidence.units, evidence.reason
        if evidence.certain:
            log.info("%s: '%s' holds %ss: %s", source, key, units, reason)
        else:
            log.warning("%s: '%s': %s; assuming %ss (pass --intensity or --amplitude to say "
                        "which)", source, key, reason, units)
    else:
        units = "intensity" if intensity else "amplitude"
        reason = "given (--intensity)" if intensity else "given (--amplitude)"
        if evidence.certain and evidence.units != units:
            log.warning("%s: '%s' declared %ss, but the data look like %ss (%s); using the "
                        "declaration", source, key, units, evidence.units, evidence.reason)
    if (values < 0).any():
        raise fail(key, f"contains negative values (min {float(values.min()):.4g}); {units}s "
                        f"must be >= 0")
    if not values.any():
        raise fail(key, "is all zero")
    if units == "intensity":
        values = np.sqrt(values)
    obj = get("objectGuess")
    if obj is not None:
        if obj.ndim != 2:
            raise fail("objectGuess", f"must be 2-D (M, M), got shape {obj.shape}")
        if not np.isfinite(obj).all():
            raise fail("objectGuess", "contains NaN or Inf")
    for name, shape in (("scan_index", (n,)), ("xcoords_start", (n,)), ("ycoords_start", (n,)),
                        ("Y", (n, h, w))):
        extra = get(name)
        if extra is not None and extra.shape != shape:
            raise fail(name, f"must have shape {shape} to match '{key}' {patterns.shape}, "
                             f"got {extra.shape}")
    return CanonicalData(
        amplitude=np.ascontiguousarray(values, np.float32),
        positions=np.stack([xs, ys], axis=1).astype(np.float64),
        probe=probe.astype(np.complex64), obj=None if obj is None else obj.astype(np.complex64),
        metadata=_metadata(source, get("_metadata")), units=units, units_reason=reason,
    )


@dataclass(frozen=True)
class UnitsEvidence:
    """What the numbers of a pattern stack say about their units.

    units: "amplitude" | "intensity"; reason: the evidence in words; certain: False when
    nothing in the data decides (then ``units`` is the canonical contract's amplitude).
    """

    units: str
    reason: str
    certain: bool


def detect_units(dtype: np.dtype, values: np.ndarray) -> UnitsEvidence:
    """Amplitude or intensity, from evidence a bright central beam cannot fake.

    dtype: the file's dtype; values: (n, H, W) float ≥ 0 (the patterns as stored).
    Integer dtype → intensity (detector counts). Values q·{0, 1, 2, …} with some level ≥ 2 →
    intensity (counts times a constant; sqrt of counts is not, since sqrt 2 is no integer).
    Squares q·{0, 1, 2, …} while the values are not → amplitude (sqrt of counts). Values
    only 0 or q: both readings agree up to scale → amplitude. Otherwise uncertain → amplitude.
    """
    if np.dtype(dtype).kind in "iu":
        return UnitsEvidence("intensity", f"integer dtype {np.dtype(dtype)} (detector counts)", True)
    values = np.asarray(values)
    q = count_quantum(values)
    if q is not None:
        if float(values.max()) >= 1.5 * q:
            return UnitsEvidence("intensity", "the values are integer multiples of one constant "
                                              "(photon counts)", True)
        return UnitsEvidence("amplitude", "the values are 0 or one constant (amplitude and "
                                          "intensity agree up to scale)", True)
    if count_quantum(np.square(values, dtype=np.float64)) is not None:
        return UnitsEvidence("amplitude", "the squared values are integer multiples of one "
                                          "constant (sqrt of photon counts)", True)
    peak = float(values.max()) / max(float(values.mean()), 1e-30)
    return UnitsEvidence("amplitude", f"no count quantisation in the values or their squares "
                                      f"(peak / mean = {peak:.3g})", False)


@dataclass(frozen=True, eq=False)
class NetworkUnits:
    """Per-position network input and its photon scale.

    diffraction (n, N, N) float32 with mean Σ x² per pattern = (N/2)²; intensity_scale with
    counts = (x · intensity_scale)²; nphotons = mean total counts per pattern; nphotons_source
    says where it came from ("given", "metadata", "count quantisation", "default").
    """

    diffraction: np.ndarray
    intensity_scale: float
    nphotons: float
    nphotons_source: str


def to_network_units(data: CanonicalData, nphotons: float | None = None) -> NetworkUnits:
    """Normalise per-position amplitudes and fix the photon scale (see module docstring)."""
    amp = data.amplitude
    n = amp.shape[1]
    mean_power = float(np.mean(np.sum(np.square(amp, dtype=np.float64), axis=(1, 2))))
    if nphotons is not None:
        photons, source = float(nphotons), "given"
    elif isinstance(data.metadata.get("nphotons"), (int, float)) and data.metadata["nphotons"] > 0:
        photons, source = float(data.metadata["nphotons"]), "metadata"
    else:
        q = count_quantum(np.square(amp, dtype=np.float64))
        if q is not None:
            photons, source = mean_power / q, "count quantisation"
        else:
            photons, source = DEFAULT_NPHOTONS, "default"
            log.warning("no photon count given and none detectable in the data (not sqrt of "
                        "integer counts): assuming %.3g photons per pattern; set it with "
                        "--nphotons", DEFAULT_NPHOTONS)
    norm = math.sqrt(mean_power) / (n / 2)
    diffraction = (amp / np.float32(norm)).astype(np.float32)
    scale = math.sqrt(photons) / (n / 2)
    log.info("canonical data: %d patterns, photons per pattern %.4g (%s)", len(amp), photons,
             source)
    return NetworkUnits(diffraction, scale, photons, source)


def group_neighbors(positions: np.ndarray, probe: np.ndarray, options: GroupingOptions) -> int:
    """Candidates per group: ``options.neighbors``, or when None the median number of scan
    positions within ``GROUP_RADIUS_FRACTION`` × the probe's illumination radius, at least
    ``default_neighbors(gridsize)``.

    positions (n, 2) float64 (x, y); probe (N, N) complex
    """
    if options.neighbors is not None:
        return options.neighbors
    radius = GROUP_RADIUS_FRACTION * illumination_radius(probe)
    within = neighbors_within(positions, radius)
    chosen = max(default_neighbors(options.gridsize), within)
    log.info("grouping: members drawn from the %d nearest positions (%d lie within %.1f px, "
             "%.2g × the probe's illumination radius)", chosen, within, radius,
             GROUP_RADIUS_FRACTION)
    return chosen


def group(positions: np.ndarray, per_position: np.ndarray, probe: np.ndarray,
          options: GroupingOptions) -> tuple[np.ndarray, np.ndarray]:
    """(B, C) scan_index and the (B, N, N, C) grouped patterns.

    positions (n, 2) float64; per_position (n, N, N) float32; probe (N, N) complex
    """
    index = group_scan_positions(positions, options.gridsize,
                                 group_neighbors(positions, probe, options),
                                 options.n_groups, options.seed)
    b, c = index.shape
    out = np.empty((b, *per_position.shape[1:], c), per_position.dtype)
    for k in range(c):
        out[..., k] = per_position[index[:, k]]
    return index, out
