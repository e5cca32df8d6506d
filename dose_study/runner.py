"""Train and evaluate one arm with ``ptycho`` (imports TensorFlow; loaded only when needed).

Per arm, into the staging directory given by the caller:
  wts.h5.zip    ``ptycho.io.save_model`` archive (weights + config + intensity scale)
  history.csv   per-epoch history written by ``ptycho.train.train`` (after every epoch)
  recon.npz     recon (H, W) complex64 stitched test reconstruction, truth (H, W) complex64,
                diffraction_sample (N, N) float32 counts of test pattern 0 (channel 0),
                crop (4,) int64 [row0, row1, col0, col1]: bounding box of the test groups' patch
                centres (``ptycho.inference.scanned_region``), where metrics are computed
  metrics.json  see ``PtychoArmRunner.run``; ``refined``: "PINN + refinement"
                (``recipe.refined_record``), beside the PINN's own ``metrics``

The simulate -> train -> evaluate steps are ``recipe.run_recipe`` (shared with
``benchmarks/bench_quality.py``); this module saves what it returns. Memory: the study runs
each arm in a fresh process (``arm_process``), so nothing is cached between arms; within an
arm, see ``recipe`` (training set slimmed, test set simulated after training).
"""

from __future__ import annotations

import gc
import logging
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
    refined_record,
    run_recipe,
    save_recon,
    sim_config,
    write_metrics,
)
from .store import utc_now

log = logging.getLogger(__name__)


class PtychoArmRunner:
    """Runs arms for one StudyConfig (one arm per process in the study; nothing cached)."""

    def __init__(self, cfg: StudyConfig) -> None:
        import keras
        import tensorflow as tf

        self.cfg = cfg
        self._versions = {"python": platform.python_version(), "numpy": np.__version__,
                          "tensorflow": tf.__version__, "keras": keras.__version__}

    def run(self, arm: ArmSpec, staging: Path) -> dict[str, Any]:
        """Simulate, train, reconstruct, evaluate and save one arm into ``staging``.

        Returns the metrics.json object (also written there). Raises ArmFailure when the
        training loss or the reconstruction is not finite.
        """
        from ptycho.io import save_model

        cfg = self.cfg.for_arm(arm)  # a curve point's own seed and scan density
        nphotons = cfg.nphotons(arm)
        t0 = time.perf_counter()
        try:
            res = run_recipe(cfg, nphotons, arm.loss, history_csv=staging / "history.csv")
        except ArmFailure as exc:
            raise ArmFailure(f"arm {arm.name}: {exc}") from exc
        test, crop, model = res.test, res.crop, res.model
        refined = refined_record(res.recon, test, crop)

        t3 = time.perf_counter()
        save_model(model, staging / "wts.h5.zip")
        bounds = save_recon(staging, res.recon, test, crop)
        t_save = time.perf_counter() - t3
        metrics = {
            "arm": arm.name, "dose": arm.dose, "loss": arm.loss, "method": arm.loss,
            "nphotons": nphotons,
            "study_config": cfg.to_dict(),
            "positions": cfg.positions, "seed": cfg.seed,
            "sim_config": sim_config(cfg, nphotons, cfg.seed, cfg.n_images).to_dict(),
            "test_sim_config": test.config.to_dict(),
            "model_config": res.model_cfg.to_dict(),
            "train_config": res.train_cfg.to_dict(),
            "execution": model.execution.name, "device": model.execution.device,
            "n_params": int(model.count_params()),
            "metrics": res.scores,
            **constant_image_record(res.scores, res.constant_scores),
            "refined": refined,
            "counts": {"train_mean_total": res.train_mean_counts,
                       "test_mean_total": mean_total_counts(test.counts),
                       "intensity_scale": res.intensity_scale},
            "history": {"epochs": len(res.losses), "loss_first": res.losses[0],
                        "loss_last": res.losses[-1]},
            "crop": bounds.tolist(),
            "wall_time_s": {"simulate": round(res.wall_s["simulate"], 3), "simulate_cached": False,
                            "train": round(res.wall_s["train"], 3),
                            "evaluate": round(res.wall_s["evaluate"], 3),
                            "save": round(t_save, 3),
                            "total": round(time.perf_counter() - t0, 3)},
            "versions": self._versions,
            "completed_utc": utc_now(),
        }
        write_metrics(staging, metrics)
        del model, res
        gc.collect()
        return metrics
