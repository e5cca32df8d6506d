"""Writing PtychoPINN's canonical per-position layout (see :mod:`ptycho.canonical` for the keys):
the arrays of a canonical file, the per-position patterns of a grouped data set, our simulations
in that layout, and the atomic NPZ/HDF5 writer."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.fsutil import atomic_path
from ptycho.io import write_h5_arrays

__all__ = ["canonical_arrays", "from_simulation", "per_position_patterns", "per_position_scan",
           "save_canonical"]

log = logging.getLogger(__name__)


def canonical_arrays(per_position: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
                     probe: np.ndarray, obj: np.ndarray | None = None,
                     metadata: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Arrays of a canonical file (keys of the module docstring, ``scan_index`` = 0..n-1).

    per_position (n, N, N) float amplitude; xcoords, ycoords (n,); probe (N, N);
    obj (M, M') or None; metadata → ``_metadata`` JSON string.
    """
    per_position = np.asarray(per_position, np.float32)
    n = per_position.shape[0]
    arrays: dict[str, np.ndarray] = {
        "diffraction": per_position,
        "xcoords": np.asarray(xcoords, np.float64).reshape(n),
        "ycoords": np.asarray(ycoords, np.float64).reshape(n),
        "probeGuess": np.asarray(probe, np.complex64),
        "scan_index": np.arange(n, dtype=np.int64),
    }
    if obj is not None:
        arrays["objectGuess"] = np.asarray(obj, np.complex64)
    if metadata:
        arrays["_metadata"] = np.asarray(json.dumps(metadata, sort_keys=True))
    return arrays


def per_position_patterns(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """(positions, their patterns): every scan position of a canonical data set, else those
    that occur in ``data.scan_index`` (sorted), with one (N, N) network-unit pattern each.

    returns: indices (P',) int64 into xcoords/ycoords, patterns (P', N, N) float32
    """
    per_position = getattr(data, "per_position", None)
    if per_position is not None:
        return np.arange(len(per_position)), np.asarray(per_position, np.float32)
    index = np.asarray(data.scan_index)
    used = np.unique(index)
    diffraction = np.asarray(data.diffraction, np.float32)
    patterns = np.empty((int(index.max()) + 1, *diffraction.shape[1:3]), np.float32)
    for k in range(index.shape[1]):
        patterns[index[:, k]] = diffraction[..., k]
    return used, patterns[used]


def per_position_scan(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """The positions of ``per_position_patterns`` as a scan: (patterns (P', N, N) float32 in
    network units, positions (P', 2) float64 (x, y))."""
    used, patterns = per_position_patterns(data)
    positions = np.stack([np.asarray(data.xcoords, np.float64)[used],
                          np.asarray(data.ycoords, np.float64)[used]], axis=1)
    return patterns, positions


def save_canonical(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> Path:
    """Write canonical arrays (:func:`canonical_arrays`) by suffix (.npz or .h5/.hdf5),
    atomically."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".npz":
        with atomic_path(target) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    elif suffix in (".h5", ".hdf5"):
        write_h5_arrays(target, arrays)
    else:
        raise ValueError(f"{path}: unknown data format {suffix!r}; expected .npz, .h5 or .hdf5")
    log.info("wrote canonical %s (%d positions)", target, len(arrays["xcoords"]))
    return target


def from_simulation(sim: Any) -> dict[str, np.ndarray]:
    """Canonical arrays of a ``physics.SimulatedData``: one pattern per scan position.

    Positions that occur in a group keep exactly the pattern of the groups; the others (not
    drawn into any group) are simulated here with the same probe, object and dose and a
    Poisson draw seeded by (seed, 1). Amplitudes stay in network units (sqrt(counts) /
    intensity_scale); ``_metadata`` records nphotons and the SimConfig.
    """
    from ptycho.physics import extract_patches, far_field

    index = np.asarray(sim.scan_index)
    positions = np.stack([sim.xcoords, sim.ycoords], axis=1)
    n = sim.diffraction.shape[1]
    patterns = np.zeros((len(positions), n, n), np.float32)
    used = np.zeros(len(positions), bool)
    for k in range(index.shape[1]):
        patterns[index[:, k]] = sim.diffraction[..., k]
        used[index[:, k]] = True
    missing = np.flatnonzero(~used)
    if len(missing):
        rng = np.random.default_rng([int(sim.seed), 1])
        intensity = far_field(sim.probe, extract_patches(sim.obj, positions[missing], n)) ** 2
        counts = rng.poisson(intensity.astype(np.float64) * sim.dose_scale)
        patterns[missing] = np.sqrt(counts) / np.float32(sim.intensity_scale)
    metadata = {"nphotons": float(sim.nphotons), "generator": "ptycho-harness simulate",
                "amplitude_units": "sqrt(counts) / intensity_scale",
                "intensity_scale": float(sim.intensity_scale),
                "sim_config": sim.config.to_dict() if sim.config is not None else None}
    return canonical_arrays(patterns, sim.xcoords, sim.ycoords, sim.probe, sim.obj, metadata)
