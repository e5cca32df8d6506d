"""The study's one simulate -> train -> evaluate recipe for the PINN.

``run_recipe(cfg, nphotons, loss)`` is what every PINN arm of the study does (``runner``) and
what ``benchmarks/bench_quality.py`` times: simulate a training set of ``cfg.n_images`` groups
at ``nphotons`` from ``cfg.seed``, build and train the model with ``loss`` ("nll" | "mae"),
simulate a test set from ``cfg.test_seed`` (another object and scan), stitch its
reconstruction and score it over the scanned region with ``ptycho.metrics.evaluate``, beside a
constant image (the truth's mean amplitude, zero phase) as the floor any model must beat.

With ``on_epoch`` the test set is simulated before training and scored after every epoch
(``EpochScore``: training seconds of that epoch, evaluation excluded); without it the test set
is simulated after training, once the training arrays are released (lower peak memory). The
data depend only on the dose and the seeds, so both orders give identical data.

TensorFlow and ptycho's model code are imported inside the functions: importing this module
costs nothing.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .arms import StudyConfig

log = logging.getLogger(__name__)


class ArmFailure(RuntimeError):
    """An arm produced unusable results (e.g. a non-finite loss or reconstruction)."""


@dataclass(frozen=True)
class EpochScore:
    """One epoch of training: ``epoch`` (1-based), ``train_s`` (that epoch's training wall
    seconds, evaluation excluded) and ``scores`` (``ptycho.metrics.evaluate`` of the stitched
    test object)."""

    epoch: int
    train_s: float
    scores: dict[str, float]


@dataclass(frozen=True)
class RecipeResult:
    """What one recipe run produced.

    model:            the trained ``PtychoModel`` (keras.Model)
    model_cfg, train_cfg: the ``ModelConfig`` and ``TrainConfig`` it was built and trained with
    test:             the test ``SimulatedData`` (obj (H, W) complex64, counts (B, N, N, C) float32)
    recon:            (H, W) complex64 stitched reconstruction of the test object
    crop:             (rows, cols) slices of the scanned region, where the scores are computed
    scores:           ``evaluate(recon, test.obj, crop)``: amp/phase MAE, PSNR, SSIM, FRC50
    constant_scores:  the same for a constant image (truth mean amplitude, zero phase)
    train_mean_counts, intensity_scale: dose facts of the training set
    losses:           training loss per epoch
    wall_s:           seconds spent simulating (train + test), training, evaluating
    epochs:           per-epoch scores (empty without ``on_epoch``)
    slopes:           what the final reconstruction's per-pattern slope fit chose
                      (``patch_slopes.SlopeChoice.to_dict``; None when it did not run)
    """

    model: Any
    model_cfg: Any
    train_cfg: Any
    test: Any
    recon: np.ndarray
    crop: tuple[slice, slice]
    scores: dict[str, float]
    constant_scores: dict[str, float]
    train_mean_counts: float
    intensity_scale: float
    losses: list[float]
    wall_s: dict[str, float]
    epochs: tuple[EpochScore, ...] = ()
    slopes: dict[str, Any] | None = None


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


def sim_config(cfg: StudyConfig, nphotons: float, seed: int, n_images: int) -> Any:
    """The ``ptycho.config.SimConfig`` of one data set of the study.

    "dense" scans use ptycho's default canvas (one position per (N/8)² px); other densities
    widen the canvas so that the ``n_images`` random positions are ``cfg.scan_spacing()`` apart
    on average (same buffer, rounded up to a multiple of 8 px like the default).
    """
    from ptycho.config import SimConfig

    sim = SimConfig(N=cfg.N, gridsize=cfg.gridsize, nphotons=nphotons, n_images=n_images,
                    object_type=cfg.object_type, probe_defocus=cfg.probe_defocus, seed=seed)
    if cfg.positions == "dense":
        return sim
    side = math.ceil(math.sqrt(n_images)) * cfg.scan_spacing() + 2 * sim.buffer
    return dataclasses.replace(sim, object_size=int(math.ceil(side / 8) * 8))


def simulate(cfg: StudyConfig, nphotons: float, seed: int, n_images: int, what: str) -> Any:
    """Simulated data (``ptycho.physics.SimulatedData``) of ``n_images`` groups."""
    from ptycho.physics import simulate as simulate_data

    start = time.perf_counter()
    data = simulate_data(sim_config(cfg, nphotons, seed, n_images))
    log.info("simulated %.0e photons: %d %s groups in %.1f s", nphotons, data.n_groups, what,
             time.perf_counter() - start)
    return data


def reconstruct_with_slopes(model: Any, test: Any) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The (H, W) complex64 test object ``reconstruct`` stitches, and its slope fit's
    ``SlopeChoice.to_dict()`` (None when the slope fit did not run)."""
    from ptycho.inference import reconstruct

    slopes: list[dict[str, Any]] = []
    recon = reconstruct(model, test, on_slopes=lambda c: slopes.append(c.to_dict()))
    return np.asarray(recon, np.complex64), slopes[-1] if slopes else None


def _epoch_scorer(model: Any, test: Any, crop: tuple[slice, slice],
                  on_epoch: Callable[[EpochScore], None], out: list[EpochScore]) -> Any:
    """A keras callback scoring the test reconstruction after every epoch (``last_object``:
    the (H, W) complex64 object it scored last; ``last_slopes``: that reconstruction's
    ``SlopeChoice.to_dict()``, None when the slope fit did not run)."""
    import keras

    from ptycho.metrics import evaluate

    class EpochScorer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.t0 = 0.0
            self.last_object: np.ndarray | None = None
            self.last_slopes: dict[str, Any] | None = None

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            seconds = time.perf_counter() - self.t0
            self.last_object, self.last_slopes = reconstruct_with_slopes(model, test)
            score = EpochScore(epoch + 1, seconds, evaluate(self.last_object, test.obj, crop))
            out.append(score)
            on_epoch(score)

    return EpochScorer()


def run_recipe(cfg: StudyConfig, nphotons: float, loss: str, *, history_csv: Path | None = None,
               on_epoch: Callable[[EpochScore], None] | None = None) -> RecipeResult:
    """Simulate, train with ``loss`` at ``nphotons`` photons per pattern, reconstruct, evaluate.

    Raises ArmFailure when the training loss or the reconstruction is not finite.
    """
    from ptycho.config import TrainConfig
    from ptycho.inference import scanned_region
    from ptycho.model import build_model, model_config_for
    from ptycho.train import train

    t0 = time.perf_counter()
    train_data = simulate(cfg, nphotons, cfg.seed, cfg.n_images, "train")
    train_counts = mean_total_counts(train_data.counts)
    intensity_scale = float(train_data.intensity_scale)
    train_data = slim_training_data(train_data, loss)
    gc.collect()
    test = crop = None
    if on_epoch is not None:
        test = simulate(cfg, nphotons, cfg.test_seed, cfg.n_test_images, "test")
        crop = scanned_region(test.coords, test.obj.shape)
    t_sim = time.perf_counter() - t0
    # N, gridsize, intensity scale, probe and object support from the training data, as `train`
    model_cfg = model_config_for(train_data, loss=loss, n_filters_scale=cfg.n_filters_scale,
                                 activation=cfg.activation)
    train_cfg = TrainConfig(nepochs=cfg.nepochs, batch_size=cfg.batch_size,
                            learning_rate=cfg.learning_rate, seed=cfg.seed, clipnorm=cfg.clipnorm,
                            lr_schedule=cfg.lr_schedule)
    model = build_model(model_cfg, probe=train_data.probe, seed=cfg.seed)
    epochs: list[EpochScore] = []
    callbacks = [] if on_epoch is None else [_epoch_scorer(model, test, crop, on_epoch, epochs)]
    t1 = time.perf_counter()
    history = train(model, train_data, train_cfg, callbacks=callbacks, history_csv=history_csv)
    # with per-epoch scoring, the training time leaves the evaluations out
    t_train = sum(e.train_s for e in epochs) if epochs else time.perf_counter() - t1
    losses = [float(v) for v in history.history.get("loss", [])]
    if not losses or not all(math.isfinite(v) for v in losses):
        raise ArmFailure(f"{loss} at {nphotons:.0e} photons: training loss is not finite: "
                         f"{losses[-5:]}")
    del train_data, history
    gc.collect()

    if test is None:
        t2 = time.perf_counter()
        test = simulate(cfg, nphotons, cfg.test_seed, cfg.n_test_images, "test")
        crop = scanned_region(test.coords, test.obj.shape)  # positions actually used by groups
        t_sim += time.perf_counter() - t2
    t2 = time.perf_counter()
    if callbacks and epochs:  # the model as the last epoch left it, reconstructed and scored there
        recon, slope_fit = callbacks[0].last_object, callbacks[0].last_slopes
    else:
        recon, slope_fit = reconstruct_with_slopes(model, test)
    if not np.isfinite(recon[crop]).all():
        raise ArmFailure(f"{loss} at {nphotons:.0e} photons: reconstruction holds non-finite values")
    scores, constant_scores = score_with_constant(recon, test, crop)
    t_eval = time.perf_counter() - t2
    return RecipeResult(model=model, model_cfg=model_cfg, train_cfg=train_cfg, test=test,
                        recon=recon, crop=crop, scores=scores, constant_scores=constant_scores,
                        train_mean_counts=train_counts, intensity_scale=intensity_scale,
                        losses=losses, wall_s={"simulate": t_sim, "train": t_train,
                                               "evaluate": t_eval},
                        epochs=tuple(epochs), slopes=slope_fit)


def self_supervise(result: RecipeResult, nepochs: int, learning_rate: float,
                   on_epoch: Callable[[EpochScore], None] | None = None,
                   ) -> tuple[tuple[EpochScore, ...], np.ndarray]:
    """"PINN self-supervised on the scan": ``result.model`` goes on training, with its own
    physics loss and no ground truth, on the test scan's patterns (``result.test``) for
    ``nepochs`` epochs (cosine from ``learning_rate``, the recipe's batch and clipping), the
    test object scored after every epoch. The network's own object, but not inference on an
    unseen scan (docs/findings.md SELFSUP-001). Trains ``result.model`` in place.

    Returns the per-epoch scores and the final (H, W) complex64 stitched test object.
    Raises ArmFailure when the loss or the object is not finite."""
    from ptycho.train import train

    loss = result.model_cfg.loss
    train_cfg = dataclasses.replace(result.train_cfg, nepochs=nepochs, learning_rate=learning_rate,
                                    lr_schedule="cosine")  # validated: a bad value raises here
    epochs: list[EpochScore] = []
    scorer = _epoch_scorer(result.model, result.test, result.crop, on_epoch or (lambda _: None),
                           epochs)
    history = train(result.model, slim_training_data(result.test, loss), train_cfg,
                    callbacks=[scorer])
    losses = [float(v) for v in history.history.get("loss", [])]
    recon = scorer.last_object  # the object after the last epoch, scored there
    if not all(math.isfinite(v) for v in losses) or not np.isfinite(recon[result.crop]).all():
        raise ArmFailure(f"self-supervised {loss}: not finite (losses {losses[-3:]})")
    return tuple(epochs), recon


def refined_record(recon: np.ndarray, test: Any, crop: tuple[slice, slice]) -> dict[str, Any]:
    """"PINN + refinement": ``ptycho.refine`` (default ``RefineConfig``: known probe and
    positions, a tenth of the patterns held out to stop it) from the arm's stitched test
    object, scored like the arm. A solver's result, recorded beside the PINN's own scores."""
    from ptycho.metrics import evaluate
    from ptycho.refine import RefineConfig, refine_data

    config = RefineConfig()
    result = refine_data(recon, test, config)
    return {"description": "PINN + refinement (ptycho.refine from the PINN's object; a "
                           "solver's result, not the PINN's)",
            "config": config.to_dict(), "metrics": evaluate(result.obj, test.obj, crop),
            "best_step": result.best_step, "steps_taken": len(result.losses) - 1,
            "wall_s": round(result.wall_s, 3)}


def score_with_constant(recon: np.ndarray, test: Any,
                        crop: tuple[slice, slice]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``evaluate`` of ``recon`` (H, W) complex64 against the test object over ``crop``, and of
    the constant image (the truth's mean amplitude over ``crop``, zero phase): (scores, constant)."""
    from ptycho.metrics import evaluate

    constant = np.full(test.obj.shape, np.abs(test.obj[crop]).mean(), np.complex64)
    return evaluate(recon, test.obj, crop), evaluate(constant, test.obj, crop)


def save_recon(staging: Path, recon: np.ndarray, test: Any, crop: tuple[slice, slice]) -> np.ndarray:
    """``staging/recon.npz`` (recon, truth, a sample pattern, crop); returns the crop bounds
    (r0, r1, c0, c1) int64."""
    bounds = np.array([crop[0].start, crop[0].stop, crop[1].start, crop[1].stop], np.int64)
    np.savez_compressed(staging / "recon.npz", recon=recon, truth=np.asarray(test.obj, np.complex64),
                        diffraction_sample=np.asarray(test.counts[0, :, :, 0], np.float32), crop=bounds)
    return bounds


def constant_image_record(scores: dict[str, Any], constant: dict[str, Any]) -> dict[str, Any]:
    """The metrics.json fields comparing an arm with the constant image."""
    return {"baseline": {"description": "constant amplitude equal to the truth mean (scanned "
                                        "region), zero phase",
                         "amp_ssim": constant["amp_ssim"], "amp_psnr": constant["amp_psnr"]},
            "beats_baseline_ssim": bool(scores["amp_ssim"] > constant["amp_ssim"])}


def write_metrics(staging: Path, metrics: dict[str, Any]) -> None:
    """``staging/metrics.json`` (the staging directory is renamed into place when complete)."""
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")

