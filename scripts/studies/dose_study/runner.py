"""Train and evaluate one arm with ``ptycho`` (imports TensorFlow; loaded only when needed).

Per arm, into the staging directory given by the caller:
  wts.h5.zip    ``ptycho.io.save_model`` archive (weights + config + intensity scale)
  history.csv   per-epoch history written by ``ptycho.train.train`` (after every epoch)
  recon.npz     recon (H, W) complex64 stitched test reconstruction, truth (H, W) complex64,
                diffraction_sample (N, N) float32 counts of test pattern 0 (channel 0),
                crop (4,) int64 [row0, row1, col0, col1]: bounding box of the test groups' patch
                centres (``ptycho.inference.scanned_region``), where metrics are computed
  metrics.json  see ``PtychoArmRunner.run``

Memory: the study runs each arm in a fresh process (``arm_process``), so nothing is cached
between arms. Within an arm, the training set keeps only what training needs (the ground-truth
patches, and for the MAE loss the counts, are dropped after their statistics are taken), and
the test set is simulated after training, once the training arrays are released. The data
depend only on the dose and the seeds, so every process simulates identical data.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from .arms import ArmSpec, StudyConfig
from .store import utc_now

log = logging.getLogger(__name__)


class ArmFailure(RuntimeError):
    """An arm produced unusable results (e.g. a non-finite loss or reconstruction)."""


def mean_total_counts(counts: np.ndarray) -> float:
    """Mean total counts per pattern of (B, N, N, C) counts."""
    return float(np.asarray(counts, np.float64).sum(axis=(1, 2)).mean())


def slim_training_data(data: Any, loss: str) -> Any:
    """``data`` without what ``ptycho.train.train`` does not read for ``loss``: the (B, N, N, C)
    complex64 ground-truth patches, and the (B, N, N, C) float32 counts unless loss is "nll"."""
    drop: dict[str, Any] = {"object_patches": None}
    if loss != "nll":
        drop["counts"] = None
    return dataclasses.replace(data, **drop)


class PtychoArmRunner:
    """Runs arms for one StudyConfig (one arm per process in the study; nothing cached)."""

    def __init__(self, cfg: StudyConfig) -> None:
        import keras
        import tensorflow as tf

        self.cfg = cfg
        self._versions = {"python": platform.python_version(), "numpy": np.__version__,
                          "tensorflow": tf.__version__, "keras": keras.__version__}

    def sim_config(self, nphotons: float, seed: int, n_images: int) -> Any:
        from ptycho.config import SimConfig

        return SimConfig(N=self.cfg.N, gridsize=self.cfg.gridsize, nphotons=nphotons,
                         n_images=n_images, object_type=self.cfg.object_type,
                         probe_defocus=self.cfg.probe_defocus, seed=seed)

    def simulate(self, nphotons: float, seed: int, n_images: int, what: str) -> Any:
        from ptycho.physics import simulate

        start = time.perf_counter()
        data = simulate(self.sim_config(nphotons, seed, n_images))
        log.info("simulated %.0e photons: %d %s groups in %.1f s", nphotons, data.n_groups, what,
                 time.perf_counter() - start)
        return data

    def run(self, arm: ArmSpec, staging: Path) -> dict[str, Any]:
        """Simulate, train, reconstruct, evaluate and save one arm into ``staging``.

        Returns the metrics.json object (also written there). Raises ArmFailure when the
        training loss or the reconstruction is not finite.
        """
        from ptycho.config import ModelConfig, TrainConfig
        from ptycho.inference import reconstruct, scanned_region
        from ptycho.io import save_model
        from ptycho.metrics import evaluate
        from ptycho.model import build_model
        from ptycho.train import train

        cfg = self.cfg
        nphotons = cfg.nphotons(arm)
        t0 = time.perf_counter()
        train_data = self.simulate(nphotons, cfg.seed, cfg.n_images, "train")
        train_counts = mean_total_counts(train_data.counts)
        intensity_scale = float(train_data.intensity_scale)
        train_data = slim_training_data(train_data, arm.loss)
        gc.collect()
        t_sim = time.perf_counter() - t0
        model_cfg = ModelConfig(N=cfg.N, gridsize=cfg.gridsize, loss=arm.loss,
                                n_filters_scale=cfg.n_filters_scale,
                                probe_defocus=cfg.probe_defocus, activation=cfg.activation,
                                intensity_scale=intensity_scale)
        train_cfg = TrainConfig(nepochs=cfg.nepochs, batch_size=cfg.batch_size,
                                learning_rate=cfg.learning_rate, seed=cfg.seed,
                                clipnorm=cfg.clipnorm)
        model = build_model(model_cfg, probe=train_data.probe, seed=cfg.seed)
        t1 = time.perf_counter()
        history = train(model, train_data, train_cfg, history_csv=staging / "history.csv")
        t_train = time.perf_counter() - t1
        losses = [float(v) for v in history.history.get("loss", [])]
        if not losses or not all(math.isfinite(v) for v in losses):
            raise ArmFailure(f"arm {arm.name}: training loss is not finite: {losses[-5:]}")
        del train_data, history
        gc.collect()

        t2 = time.perf_counter()
        test = self.simulate(nphotons, cfg.test_seed, cfg.n_test_images, "test")
        t_sim += time.perf_counter() - t2
        t2 = time.perf_counter()
        recon = np.asarray(reconstruct(model, test), np.complex64)
        crop = scanned_region(test.coords, test.obj.shape)  # positions actually used by groups
        if not np.isfinite(recon[crop]).all():
            raise ArmFailure(f"arm {arm.name}: reconstruction holds non-finite values")
        scores = evaluate(recon, test.obj, crop)
        truth_amp = np.abs(test.obj[crop])
        constant = np.full(test.obj.shape, truth_amp.mean(), np.complex64)
        base = evaluate(constant, test.obj, crop)
        t_eval = time.perf_counter() - t2

        t3 = time.perf_counter()
        save_model(model, staging / "wts.h5.zip")
        bounds = np.array([crop[0].start, crop[0].stop, crop[1].start, crop[1].stop], np.int64)
        np.savez_compressed(staging / "recon.npz", recon=recon,
                            truth=np.asarray(test.obj, np.complex64),
                            diffraction_sample=np.asarray(test.counts[0, :, :, 0], np.float32),
                            crop=bounds)
        t_save = time.perf_counter() - t3
        metrics = {
            "arm": arm.name, "dose": arm.dose, "loss": arm.loss, "nphotons": arm.nphotons,
            "study_config": cfg.to_dict(),
            "sim_config": self.sim_config(arm.nphotons, cfg.seed, cfg.n_images).to_dict(),
            "test_sim_config": test.config.to_dict(),
            "model_config": model_cfg.to_dict(),
            "train_config": train_cfg.to_dict(),
            "execution": model.execution.name, "device": model.execution.device,
            "n_params": int(model.count_params()),
            "metrics": scores,
            "baseline": {"description": "constant amplitude equal to the truth mean (scanned "
                                        "region), zero phase",
                         "amp_ssim": base["amp_ssim"], "amp_psnr": base["amp_psnr"]},
            "beats_baseline_ssim": bool(scores["amp_ssim"] > base["amp_ssim"]),
            "counts": {"train_mean_total": train_counts,
                       "test_mean_total": mean_total_counts(test.counts),
                       "intensity_scale": intensity_scale},
            "history": {"epochs": len(losses), "loss_first": losses[0], "loss_last": losses[-1]},
            "crop": bounds.tolist(),
            "wall_time_s": {"simulate": round(t_sim, 3), "simulate_cached": False,
                            "train": round(t_train, 3), "evaluate": round(t_eval, 3),
                            "save": round(t_save, 3),
                            "total": round(time.perf_counter() - t0, 3)},
            "versions": self._versions,
            "completed_utc": utc_now(),
        }
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n",
                                              encoding="utf-8")
        del model
        gc.collect()
        return metrics
