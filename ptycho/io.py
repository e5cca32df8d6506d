"""Model archives (``*.wts.h5.zip``) and data sets (NPZ, HDF5); every write is atomic.

Model archive = one zip holding ``model.weights.h5`` (Keras weights, probe included),
``model_config.json`` (``ModelConfig.to_dict()``) and ``meta.json`` (format name and version,
``model_layout`` (``config.MODEL_LAYOUT_VERSION``; older layouts load as they were built, a newer
one fails naming it), intensity scale, library versions, parameter count). ``load_model`` rebuilds the model from
the config and loads the weights: predictions are identical to the saved model's on the same
execution path.

Data sets use the keys of the PtychoPINN NPZ convention plus what training needs:

    diffraction (B,N,N,C) f32   xcoords, ycoords (P,) f64   probeGuess (N,N) c64
    scan_index (B,C) i64        nphotons ()                 intensity_scale ()
    objectGuess (H,W) c64 *     counts (B,N,N,C) f32 *      offsets, coords (B,1,2,C) f32 *
    sim_config (JSON str) *     format_version ()           (* optional)

``offsets``/``coords`` missing → derived from the scan positions and ``scan_index``.

PtychoPINN's canonical per-position files (``diffraction``/``diff3d`` (n, H, W), no photon
count, no grouping; see ``ptycho.canonical``) are recognised by their keys and shapes and
grouped on loading according to a ``GroupingOptions``; ``ptycho.canonical_write`` writes that layout.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.canonical import GroupingOptions, is_canonical
from ptycho.config import MODEL_LAYOUT_VERSION, ConfigError, ModelConfig, SimConfig, layout_defaults
from ptycho.fsutil import atomic_path

__all__ = ["ARCHIVE_FORMAT", "ARCHIVE_VERSION", "DATA_FORMAT_VERSION", "PtychoData", "save_model", "load_model",
           "save_npz", "load_npz", "save_h5", "load_h5", "load_data", "save_data", "GroupingOptions"]

log = logging.getLogger(__name__)

ARCHIVE_FORMAT = "ptycho-harness/wts.h5.zip"
ARCHIVE_VERSION = 1
DATA_FORMAT_VERSION = 1
_WEIGHTS, _CONFIG, _META = "model.weights.h5", "model_config.json", "meta.json"
_REQUIRED = ("diffraction", "xcoords", "ycoords", "probeGuess", "scan_index", "nphotons")
_OPTIONAL = ("objectGuess", "counts", "offsets", "coords", "intensity_scale", "sim_config",
             "format_version")


# --------------------------------------------------------------------------- model archive
def save_model(model: Any, path: str | os.PathLike[str], cfg: ModelConfig | None = None,
               intensity_scale: float | None = None, training: dict[str, Any] | None = None) -> Path:
    """Save weights + config + intensity scale of a PtychoModel to one zip (atomically).

    cfg: defaults to ``model.ptycho_config``; intensity_scale: the data's scale (defaults to
    the model's current exp(log_scale)); training: what it was trained on
    (``ptycho.finetune.training_record``), kept in the metadata. Conventional suffix:
    ``.wts.h5.zip``.
    """
    cfg = cfg if cfg is not None else model.ptycho_config
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"save_model: cfg must be a ModelConfig, got {type(cfg).__name__}")
    import keras
    import tensorflow as tf

    current = float(np.exp(model.get_layer("sqrt_counts").log_scale.numpy()))
    meta = {
        "format": ARCHIVE_FORMAT,
        "format_version": ARCHIVE_VERSION,
        "model_layout": MODEL_LAYOUT_VERSION,
        "intensity_scale": float(intensity_scale) if intensity_scale is not None else current,
        "model_intensity_scale": current,
        "param_count": int(model.count_params()),
        "execution": {"device": model.execution.device, "path": model.execution.name},
        "saved_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__},
    }
    if training is not None:
        meta["training"] = training
    target = Path(path)
    with tempfile.TemporaryDirectory(prefix="ptycho-save-") as tmpdir:
        weights = Path(tmpdir) / _WEIGHTS
        with warnings.catch_warnings():  # Keras' own numpy-2 __array__ notice, not ours
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    message="__array__ implementation doesn't accept a copy")
            model.save_weights(weights)
        with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w") as zf:
            zf.write(weights, _WEIGHTS, compress_type=zipfile.ZIP_STORED)
            zf.writestr(_CONFIG, json.dumps(cfg.to_dict(), indent=2, sort_keys=True),
                        compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(_META, json.dumps(meta, indent=2, sort_keys=True),
                        compress_type=zipfile.ZIP_DEFLATED)
    log.info("saved model to %s", target)
    return target


def load_model(path: str | os.PathLike[str]) -> tuple[Any, ModelConfig, dict[str, Any]]:
    """Load an archive written by ``save_model``: returns (model, cfg, meta).

    Raises FileNotFoundError for a missing file and ValueError naming the file for anything
    that is not a complete archive of this format (truncated, foreign zip, bad config).
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"model archive not found: {source}")
    try:
        with zipfile.ZipFile(source) as zf:
            names = set(zf.namelist())
            missing = [m for m in (_WEIGHTS, _CONFIG, _META) if m not in names]
            if missing:
                raise ValueError(f"{source}: not a ptycho model archive: missing {missing} "
                                 f"(found {sorted(names)[:5]})")
            bad = zf.testzip()
            if bad is not None:
                raise ValueError(f"{source}: corrupt model archive: bad CRC in {bad}")
            meta = json.loads(zf.read(_META))
            config = json.loads(zf.read(_CONFIG))
            with tempfile.TemporaryDirectory(prefix="ptycho-load-") as tmpdir:
                zf.extract(_WEIGHTS, tmpdir)
                model, cfg = _restore(source, meta, config, Path(tmpdir) / _WEIGHTS)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{source}: not a readable model archive (truncated or not a zip file): {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: invalid JSON in model archive: {exc}") from exc
    return model, cfg, meta


def _restore(source: Path, meta: Any, config: Any, weights: Path) -> tuple[Any, ModelConfig]:
    if not isinstance(meta, dict) or meta.get("format") != ARCHIVE_FORMAT:
        raise ValueError(f"{source}: meta.json does not describe a {ARCHIVE_FORMAT} archive")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > ARCHIVE_VERSION:
        raise ValueError(f"{source}: unsupported archive format_version {version!r} "
                         f"(this library reads <= {ARCHIVE_VERSION})")
    layout = meta.get("model_layout", 1)
    if isinstance(layout, bool) or not isinstance(layout, int) or layout < 1:
        raise ValueError(f"{source}: invalid model_layout {layout!r} in meta.json")
    if layout > MODEL_LAYOUT_VERSION:
        raise ValueError(f"{source}: the archive's network has model layout version {layout}, newer "
                         f"than this library's {MODEL_LAYOUT_VERSION}; update ptycho-harness to load it")
    if isinstance(config, dict):  # keys an older layout did not write: what it built
        config = {**layout_defaults(layout), **config}
    try:
        cfg = ModelConfig.from_dict(config)
    except ConfigError as exc:
        raise ValueError(f"{source}: invalid model_config.json (model layout version {layout}): "
                         f"{exc}") from exc
    from ptycho.model import build_model

    model = build_model(cfg)
    model.optimizer.build(model.trainable_variables)  # the archive holds its state too
    try:
        model.load_weights(weights)
    except Exception as exc:  # h5py/keras raise many types for damaged or foreign weights
        raise ValueError(f"{source}: weights of model layout version {layout} do not match the "
                         f"network its config builds (this library: layout version "
                         f"{MODEL_LAYOUT_VERSION}): {exc}") from exc
    return model, cfg


# --------------------------------------------------------------------------- data sets
@dataclass(frozen=True, eq=False)
class PtychoData:
    """A data set loaded from disk; attribute names match ``physics.SimulatedData``.

    diffraction (B,N,N,C) float32, offsets/coords (B,1,2,C) float32, scan_index (B,C) int64,
    xcoords/ycoords (P,) float64, probe (N,N) complex64, intensity_scale, nphotons,
    counts (B,N,N,C) float32 | None, obj (H,W) complex64 | None, config SimConfig | None.
    Canonical files also give per_position (P,N,N) float32 network-unit patterns,
    source_format "canonical", nphotons_source (given|metadata|count quantisation|default) and
    units: "amplitude"|"intensity" — what the file held, with the reason (``canonical.detect_units``).
    """

    diffraction: np.ndarray
    offsets: np.ndarray
    coords: np.ndarray
    scan_index: np.ndarray
    xcoords: np.ndarray
    ycoords: np.ndarray
    probe: np.ndarray
    intensity_scale: float
    nphotons: float
    counts: np.ndarray | None = None
    obj: np.ndarray | None = None
    config: SimConfig | None = None
    per_position: np.ndarray | None = None
    source_format: str = "grouped"
    nphotons_source: str = "file"
    units: str = "amplitude (grouped file)"

    @property
    def n_groups(self) -> int:
        return int(self.diffraction.shape[0])


def _to_arrays(data: Any) -> dict[str, np.ndarray]:
    """Dataset keys → arrays from a SimulatedData/PtychoData-like object."""
    out: dict[str, Any] = {
        "diffraction": np.asarray(data.diffraction, np.float32),
        "xcoords": np.asarray(data.xcoords, np.float64),
        "ycoords": np.asarray(data.ycoords, np.float64),
        "probeGuess": np.asarray(data.probe, np.complex64),
        "scan_index": np.asarray(data.scan_index, np.int64),
        "nphotons": np.asarray(float(data.nphotons)),
        "intensity_scale": np.asarray(float(data.intensity_scale)),
        "offsets": np.asarray(data.offsets, np.float32),
        "coords": np.asarray(data.coords, np.float32),
        "format_version": np.asarray(DATA_FORMAT_VERSION),
    }
    if getattr(data, "counts", None) is not None:
        out["counts"] = np.asarray(data.counts, np.float32)
    if getattr(data, "obj", None) is not None:
        out["objectGuess"] = np.asarray(data.obj, np.complex64)
    if getattr(data, "config", None) is not None:
        out["sim_config"] = np.asarray(data.config.to_json())
    return out


def _from_canonical(source: Path, get: Callable[[str], np.ndarray | None],
                    options: GroupingOptions) -> PtychoData:
    """Validate a per-position file, normalise it and group it from its scan coordinates."""
    from ptycho import canonical
    from ptycho.scan import group_offsets

    data = canonical.validate(source, get, options.gridsize, options.intensity)
    units = canonical.to_network_units(data, options.nphotons)
    index, grouped = canonical.group(data.positions, units.diffraction, data.probe, options)
    counts = np.square(grouped * np.float32(units.intensity_scale))
    coords, offsets = group_offsets(data.positions, index)
    log.info("%s: %d positions → %d groups of %d", source, data.n_positions, len(index),
             index.shape[1])
    return PtychoData(
        diffraction=grouped, offsets=offsets, coords=coords, scan_index=index,
        xcoords=data.positions[:, 0].copy(), ycoords=data.positions[:, 1].copy(),
        probe=data.probe, intensity_scale=units.intensity_scale, nphotons=units.nphotons,
        counts=counts, obj=data.obj, per_position=units.diffraction,
        source_format="canonical", nphotons_source=units.nphotons_source,
        units=f"{data.units} ({data.units_reason})",
    )


def _from_arrays(source: Path, read: Callable[[str], np.ndarray | None],
                 options: GroupingOptions | None = None) -> PtychoData:
    """Validate keys and shapes; raise ValueError naming the file and the offending key."""
    cache: dict[str, np.ndarray | None] = {}

    def cached(key: str) -> np.ndarray | None:  # each array is read from the file once
        if key not in cache:
            cache[key] = read(key)
        return cache[key]

    get = cached
    if is_canonical(get):
        return _from_canonical(source, get, options or GroupingOptions())
    arrays = {k: get(k) for k in (*_REQUIRED, *_OPTIONAL)}
    missing = [k for k in _REQUIRED if arrays[k] is None]
    if missing:
        raise ValueError(f"{source}: missing required key(s) {missing}")

    def fail(key: str, expected: str) -> None:
        raise ValueError(f"{source}: '{key}' must be {expected}, got shape "
                         f"{np.shape(arrays[key])} dtype {np.asarray(arrays[key]).dtype}")

    diff = arrays["diffraction"]
    if diff.ndim != 4 or diff.shape[1] != diff.shape[2] or not np.issubdtype(diff.dtype, np.floating):
        fail("diffraction", "float (B, N, N, C)")
    b, n, _, c = diff.shape
    xs, ys = arrays["xcoords"], arrays["ycoords"]
    if xs.ndim != 1 or xs.shape != ys.shape or xs.size == 0:
        fail("xcoords", f"(P,) like ycoords {ys.shape}")
    p = xs.size
    if arrays["probeGuess"].shape != (n, n):
        fail("probeGuess", f"({n}, {n}) to match diffraction {diff.shape}")
    index = arrays["scan_index"]
    if index.shape != (b, c) or not np.issubdtype(index.dtype, np.integer):
        fail("scan_index", f"int ({b}, {c}) to match diffraction {diff.shape}")
    if index.min() < 0 or index.max() >= p:
        raise ValueError(f"{source}: 'scan_index' values must lie in [0, {p}), got "
                         f"[{index.min()}, {index.max()}]")
    for key in ("counts",):
        if arrays[key] is not None and arrays[key].shape != diff.shape:
            fail(key, f"{diff.shape} like diffraction")
    for key in ("offsets", "coords"):
        if arrays[key] is not None and arrays[key].shape != (b, 1, 2, c):
            fail(key, f"({b}, 1, 2, {c})")
    if arrays["objectGuess"] is not None and arrays["objectGuess"].ndim != 2:
        fail("objectGuess", "2-D (H, W)")
    nphotons = float(arrays["nphotons"])
    scale = arrays["intensity_scale"]
    intensity_scale = float(scale) if scale is not None else float(np.sqrt(nphotons) / (n / 2))
    coords, offsets = arrays["coords"], arrays["offsets"]
    if coords is None or offsets is None:
        from ptycho.scan import group_offsets

        coords, offsets = group_offsets(np.stack([xs, ys], axis=1), index)
    config = None
    if arrays["sim_config"] is not None:
        try:
            config = SimConfig.from_json(str(arrays["sim_config"]))
        except ConfigError as exc:
            raise ValueError(f"{source}: invalid 'sim_config': {exc}") from exc
    return PtychoData(
        diffraction=diff.astype(np.float32, copy=False),
        offsets=np.asarray(offsets, np.float32), coords=np.asarray(coords, np.float32),
        scan_index=index.astype(np.int64, copy=False),
        xcoords=xs.astype(np.float64, copy=False), ycoords=ys.astype(np.float64, copy=False),
        probe=arrays["probeGuess"].astype(np.complex64, copy=False),
        intensity_scale=intensity_scale, nphotons=nphotons,
        counts=None if arrays["counts"] is None else arrays["counts"].astype(np.float32, copy=False),
        obj=None if arrays["objectGuess"] is None else arrays["objectGuess"].astype(np.complex64, copy=False),
        config=config,
    )


def save_npz(path: str | os.PathLike[str], data: Any, compress: bool = False) -> Path:
    """Write a data set (SimulatedData / PtychoData) to an NPZ file atomically."""
    arrays = _to_arrays(data)
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        (np.savez_compressed if compress else np.savez)(handle, **arrays)
    log.info("wrote %s (%d groups)", target, arrays["diffraction"].shape[0])
    return target


def load_npz(path: str | os.PathLike[str], options: GroupingOptions | None = None) -> PtychoData:
    """Read and validate an NPZ data set (grouped or canonical; `options` group canonical
    files, default ``GroupingOptions()``); errors name the file and the offending key."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"data file not found: {source}")
    try:
        npz = np.load(source, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive of named arrays")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{source}: not a readable NPZ file: {exc}") from exc
    try:
        with npz:
            keys = set(npz.files)
            return _from_arrays(source, lambda k: npz[k] if k in keys else None, options)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{source}: damaged NPZ file: {exc}") from exc


def write_h5_arrays(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """One HDF5 dataset per array (strings as file attributes), written atomically."""
    import h5py

    with atomic_path(target) as tmp, h5py.File(tmp, "w") as h5:
        for key, value in arrays.items():
            if value.dtype.kind == "U":
                h5.attrs[key] = str(value)
            else:
                h5.create_dataset(key, data=value)


def save_h5(path: str | os.PathLike[str], data: Any) -> Path:
    """Write a data set to HDF5 (one dataset per key, same keys as NPZ) atomically."""
    arrays = _to_arrays(data)
    target = Path(path)
    write_h5_arrays(target, arrays)
    log.info("wrote %s (%d groups)", target, arrays["diffraction"].shape[0])
    return target


def load_h5(path: str | os.PathLike[str], options: GroupingOptions | None = None) -> PtychoData:
    """Read and validate an HDF5 data set (``save_h5``'s, or canonical keys as datasets)."""
    import h5py

    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"data file not found: {source}")
    try:
        with h5py.File(source, "r") as h5:
            def get(key: str) -> np.ndarray | None:
                if key in h5:
                    return np.asarray(h5[key][()])
                if key in h5.attrs:
                    return np.asarray(h5.attrs[key])
                return None

            return _from_arrays(source, get, options)
    except OSError as exc:
        raise ValueError(f"{source}: not a readable HDF5 file: {exc}") from exc


def load_data(path: str | os.PathLike[str], options: GroupingOptions | None = None) -> PtychoData:
    """Load a data set by suffix: .npz → NPZ, .h5/.hdf5 → HDF5. Canonical per-position files
    are grouped with `options` (default ``GroupingOptions()``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return load_npz(path, options)
    if suffix in (".h5", ".hdf5"):
        return load_h5(path, options)
    raise ValueError(f"{path}: unknown data format {suffix!r}; expected .npz, .h5 or .hdf5")


def save_data(path: str | os.PathLike[str], data: Any) -> Path:
    """Save a data set by suffix: .npz → NPZ, .h5/.hdf5 → HDF5."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return save_npz(path, data)
    if suffix in (".h5", ".hdf5"):
        return save_h5(path, data)
    raise ValueError(f"{path}: unknown data format {suffix!r}; expected .npz, .h5 or .hdf5")

