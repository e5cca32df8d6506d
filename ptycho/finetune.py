"""Fine-tuning an archived model on another scan, and the record of what a model was trained on.

A PINN's loss needs no ground truth, so a trained model can go on training on the very scan it
is asked to reconstruct ("self-supervised on the scan", docs/findings.md SELFSUP-001). That is
a different claim from inference on an unseen scan, so every archive records the data it was
trained on (``training_record``: the file and its SHA-256, and the archive it started from,
recursively), and ``ptycho infer`` says whether the scan it reconstructs was among them
(``trained_on``).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PROBE_TOLERANCE", "check_fine_tune", "data_fingerprint", "trained_on",
           "training_record"]

# largest relative L2 difference between the data's normalised probe and the archive's
# for which fine-tuning on the data keeps the archive's (fixed) probe
PROBE_TOLERANCE = 1e-3


def data_fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def training_record(data_path: str | os.PathLike[str], init_model: str | os.PathLike[str] | None = None,
                    init_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a training run saw, for the archive's metadata: {"data", "data_sha256",
    "init_model": None or {"archive", "saved_utc", "training": that archive's own record}}."""
    record: dict[str, Any] = {"data": str(data_path), "data_sha256": data_fingerprint(data_path),
                              "init_model": None}
    if init_model is not None:
        meta = init_meta or {}
        record["init_model"] = {"archive": str(init_model), "saved_utc": meta.get("saved_utc"),
                                "training": meta.get("training")}
    return record


def _fingerprints(record: dict[str, Any]) -> tuple[list[str], bool]:
    """Every data SHA-256 in a training record and the records of the archives it started
    from, and whether that chain is complete (False when it started from an archive that has
    no record)."""
    hashes: list[str] = []
    while True:
        hashes.append(record["data_sha256"])
        start = record.get("init_model")
        if start is None:
            return hashes, True
        if not start.get("training"):
            return hashes, False
        record = start["training"]


def trained_on(meta: dict[str, Any], data_path: str | os.PathLike[str]) -> bool | None:
    """Whether the archive (``meta`` from ``io.load_model``) was trained on this very file,
    at any stage; None when that cannot be told: an archive without a training record (older
    archives), or a file not found in a chain that starts from such an archive."""
    record = meta.get("training")
    if not record:
        return None
    hashes, complete = _fingerprints(record)
    if data_fingerprint(data_path) in hashes:
        return True
    return False if complete else None


def check_fine_tune(model: Any, data: Any, data_path: Path, archive: Path) -> None:
    """Raise ValueError, naming both files, when ``data`` cannot train the archived ``model``:
    another pattern size N, another gridsize, or another probe (the model's probe is fixed;
    relative difference above ``PROBE_TOLERANCE`` after normalisation)."""
    from ptycho.layers import normalised_probe
    from ptycho.model import model_probe

    cfg = model.ptycho_config
    _, n, _, channels = np.shape(data.diffraction)
    if n != cfg.N or channels != cfg.gridsize ** 2:
        raise ValueError(f"{data_path}: patterns {n}×{n} in groups of {channels} do not fit "
                         f"{archive} (N={cfg.N}, gridsize {cfg.gridsize})")
    mine = model_probe(model)
    theirs = normalised_probe(data.probe)
    difference = float(np.linalg.norm(theirs - mine) / np.linalg.norm(mine))
    if difference > PROBE_TOLERANCE:
        raise ValueError(f"{data_path}: its probe differs from the one {archive} was trained with "
                         f"(relative difference {difference:.3g} > {PROBE_TOLERANCE:g}); the "
                         "model's probe is fixed, so train a new model for this probe")
