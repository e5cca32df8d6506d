"""A baseline arm: a conventional iterative reconstruction of the study's test scan.

The arm simulates the same test set as the PINN arms of its dose (``cfg.test_seed``, same scan
density), reconstructs it with a pty-chi engine through ``ptycho.baseline`` (the ``[baseline]``
extra: ``make baseline`` or ``pip install -e '.[baseline]'``) with the known probe for
``cfg.baseline_epochs`` iterations, and scores it with ``ptycho.metrics.evaluate`` over the same
scanned region as the PINN arms. Nothing is trained: the engine sees only the test scan.

Into the staging directory (``store.BASELINE_FILES``):
  recon.npz     recon (H, W) complex64 on the test object's canvas, truth (H, W) complex64,
                diffraction_sample (N, N) float32 counts of test pattern 0 (channel 0), crop (4,)
                int64 -- the same keys as a PINN arm, so the figure reads both alike
  metrics.json  the PINN arms' keys where they apply (metrics, baseline = the constant image,
                counts, crop, wall_time_s, versions) plus ``engine`` and ``engine_epochs``
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from .arms import ArmSpec, StudyConfig
from .recipe import (
    ArmFailure,
    constant_image_record,
    mean_total_counts,
    save_recon,
    score_with_constant,
    simulate,
    write_metrics,
)
from .store import utc_now

log = logging.getLogger(__name__)


def baseline_available() -> bool:
    """Whether the ``[baseline]`` extra (torch and pty-chi) is installed (nothing imported)."""
    from ptycho.baseline import available

    return available()


def engine_threads() -> int:
    """torch threads of the engine: the arm process's cap (``OMP_NUM_THREADS``, set by
    ``arm_process.child_env``), else every core."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else (os.cpu_count() or 1)


def reconstruct_with_engine(test: Any, engine: str, epochs: int,
                            seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """(recon (H, W) complex64 in the frame of ``test.obj``, engine info) of the simulated test
    set ``test`` by ``engine`` ("lsqml" | "epie" | "dm") after ``epochs`` iterations.

    Every scan position that a test group uses gives its pattern once, as an amplitude in
    sqrt(counts) (network units times ``test.intensity_scale``), at its (x, y) position; the
    probe is the simulation's, kept fixed (``ptycho.baseline.reconstruct_iterative``).
    """
    from ptycho.baseline import reconstruct_iterative
    from ptycho.canonical_write import per_position_scan

    patterns, positions = per_position_scan(test)
    amplitudes = patterns * np.float32(test.intensity_scale)  # sqrt(counts)
    threads = engine_threads()
    result = reconstruct_iterative(amplitudes, positions, test.probe, engine=engine,
                                   epochs=epochs, object_shape=tuple(test.obj.shape),
                                   threads=threads, seed=seed)
    last = result.epochs[-1].loss if result.epochs else None
    return np.asarray(result.obj, np.complex64), {
        "patterns": len(patterns), "threads": result.threads, "wall_s": round(result.wall_s, 3),
        "probe_scale": result.probe_scale, "loss_last": last}


class BaselineArmRunner:
    """Runs baseline arms for one StudyConfig (``study.ArmRunner`` signature)."""

    def __init__(self, cfg: StudyConfig) -> None:
        self.cfg = cfg

    def run(self, arm: ArmSpec, staging: Path) -> dict[str, Any]:
        """Simulate the test scan, reconstruct it with ``arm.loss`` (the engine), evaluate and
        save into ``staging``; the metrics.json object. ArmFailure on a non-finite result."""
        from ptycho.metrics import scanned_region

        if not arm.is_baseline:
            raise ValueError(f"arm {arm.name} is not a baseline-engine arm")
        cfg = self.cfg.for_arm(arm)
        nphotons = cfg.nphotons(arm)
        t0 = time.perf_counter()
        test = simulate(cfg, nphotons, cfg.test_seed, cfg.n_test_images, "test")
        crop = scanned_region(test.coords, test.obj.shape)
        t_sim = time.perf_counter() - t0
        t1 = time.perf_counter()
        recon, info = reconstruct_with_engine(test, arm.loss, cfg.baseline_epochs, cfg.seed)
        t_rec = time.perf_counter() - t1
        if recon.shape != test.obj.shape:
            raise ArmFailure(f"arm {arm.name}: engine returned shape {recon.shape}, expected "
                             f"the test object's {test.obj.shape}")
        if not np.isfinite(recon[crop]).all():
            raise ArmFailure(f"arm {arm.name}: reconstruction holds non-finite values")
        t2 = time.perf_counter()
        scores, base = score_with_constant(recon, test, crop)
        t_eval = time.perf_counter() - t2
        t3 = time.perf_counter()
        bounds = save_recon(staging, recon, test, crop)
        t_save = time.perf_counter() - t3
        metrics = {
            "arm": arm.name, "dose": arm.dose, "loss": arm.loss, "method": arm.loss,
            "nphotons": nphotons, "engine": arm.loss, "engine_epochs": cfg.baseline_epochs,
            "engine_info": info,
            "study_config": cfg.to_dict(), "positions": cfg.positions, "seed": cfg.seed,
            "test_sim_config": test.config.to_dict(),
            "metrics": scores,
            **constant_image_record(scores, base),
            "counts": {"test_mean_total": mean_total_counts(test.counts)},
            "history": {"epochs": cfg.baseline_epochs, "loss_first": None,
                        "loss_last": info.get("loss_last")},
            "crop": bounds.tolist(),
            "wall_time_s": {"simulate": round(t_sim, 3), "train": 0.0,
                            "reconstruct": round(t_rec, 3), "evaluate": round(t_eval, 3),
                            "save": round(t_save, 3),
                            "total": round(time.perf_counter() - t0, 3)},
            "versions": engine_versions(),
            "completed_utc": utc_now(),
        }
        write_metrics(staging, metrics)
        return metrics


def engine_versions() -> dict[str, str]:
    """Versions of python, numpy, torch and pty-chi (from the installed metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "ptychi"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
