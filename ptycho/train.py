"""Training with ``keras.Model.fit`` on a ``tf.data`` pipeline.

``train(model, data, train_cfg)`` shuffles by index permutation (one gather per batch, no
per-sample Python work), prefetches, logs one progress line per epoch and optionally writes
the epoch history as CSV (rewritten atomically after every epoch). With a
``tf.distribute.Strategy`` the model must have been built inside ``strategy.scope()``.

``data`` is any object with the attributes of ``physics.SimulatedData`` used here:
``diffraction`` (B,N,N,C) float32, ``offsets`` (B,1,2,C) float32, ``counts`` (B,N,N,C)
float32 (Poisson NLL only) and ``intensity_scale`` (float) — e.g. ``SimulatedData`` or
``io.PtychoData``.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import io
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptycho.config import TrainConfig
from ptycho.fsutil import atomic_write_text
from ptycho.model import PtychoModel, check_inputs, model_probe, overlap_reach
from ptycho.probe import TWIN_WARN_LEVEL, twin_symmetry

__all__ = ["train", "make_dataset", "training_arrays", "EpochProgress", "CsvHistory",
           "CosineLearningRate", "ReturnFreedHeap", "return_freed_heap"]

log = logging.getLogger(__name__)

PREFETCH_BATCHES = 2  # batches the input pipeline prepares ahead of the training step


def training_arrays(model: PtychoModel, data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (diffraction, offsets, target) float32 arrays for `model`'s loss.

    target is ``data.counts`` for "nll" and ``data.diffraction`` for "mae".
    Raises ValueError naming the offending shape or dtype.
    """
    cfg = model.ptycho_config
    for name in ("diffraction", "offsets"):
        if getattr(data, name, None) is None:
            raise ValueError(f"training data has no '{name}' array")
    diffraction, offsets = check_inputs(cfg, data.diffraction, data.offsets, what="training data")
    if cfg.loss == "nll":
        counts = getattr(data, "counts", None)
        if counts is None:
            raise ValueError("training data has no 'counts' array (needed by the Poisson NLL loss)")
        counts = np.asarray(counts)
        if counts.shape != diffraction.shape or not np.issubdtype(counts.dtype, np.number):
            raise ValueError(f"training data: counts must be real with the diffraction shape "
                             f"{diffraction.shape}; got {counts.shape} {counts.dtype}")
        target = counts.astype(np.float32, copy=False)
    else:
        target = diffraction
    largest = float(np.abs(offsets).max())
    reach = overlap_reach(cfg)
    if largest > reach:
        log.warning("largest offset %.1f px exceeds %d px, the shift the overlap canvas holds "
                    "without dropping object content (margin N//4%s)", largest, reach,
                    " + the zero border N//4 outside the object support" if cfg.pad_object else "")
    return diffraction, offsets, target


def make_dataset(diffraction: np.ndarray, offsets: np.ndarray, target: np.ndarray,
                 batch_size: int, shuffle: bool, seed: int, drop_remainder: bool) -> tf.data.Dataset:
    """Batched ({"diffraction", "offsets"}, target) dataset; reshuffled every epoch.

    diffraction, target: (B, N, N, C) float32; offsets: (B, 1, 2, C) float32.
    Shuffling permutes indices and gathers whole batches, so per-batch cost is one gather.
    The batches are gathered from the caller's arrays themselves: a ``tf.constant`` of each
    would hold a second copy of them for the whole training (134 MB at 1024 groups of N=64,
    docs/findings.md TRAIN-MEMORY-002).
    """
    arrays = tuple(np.ascontiguousarray(a, np.float32) for a in (diffraction, offsets, target))
    n = int(arrays[0].shape[0])
    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    indices = indices.batch(batch_size, drop_remainder=drop_remainder)
    rows = batch_size if drop_remainder else None

    def take(idx: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(a[idx] for a in arrays)

    def gather(idx: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        d, o, t = tf.numpy_function(take, [idx], [tf.float32] * 3, stateful=False)
        for tensor, a in zip((d, o, t), arrays, strict=True):
            tensor.set_shape((rows, *a.shape[1:]))
        return {"diffraction": d, "offsets": o}, t

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # No autotuning: on 2 cores its background tuner made whole epochs of the bf16 path run on
    # one core at a time (half the speed, every core half idle) in about half the epochs; a
    # fixed two-batch prefetch keeps both cores on the model (docs/findings.md, TRAIN-SPEED-001).
    options.autotune.enabled = False
    return indices.map(gather).prefetch(PREFETCH_BATCHES).with_options(options)


def return_freed_heap() -> bool:
    """Give the heap pages that malloc holds free back to the system (glibc's ``malloc_trim``).

    Returns False where the C library has no ``malloc_trim`` (not glibc): nothing is done.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


class ReturnFreedHeap(keras.callbacks.Callback):
    """Returns freed heap pages after every epoch. Without it glibc kept the freed parts of
    each step's buffers resident, and the resident memory (and so the peak, step buffers on
    top) grew by 12-30 MB an epoch on the AVX2 EPYC (docs/findings.md TRAIN-MEMORY-002)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        return_freed_heap()


class EpochProgress(keras.callbacks.Callback):
    """Logs one line per epoch: loss, wall time and groups/s."""

    def __init__(self, n_groups: int, nepochs: int) -> None:
        super().__init__()
        self.n_groups = n_groups
        self.nepochs = nepochs
        self.epoch_seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        if logs is not None:
            logs["epoch_time_s"] = seconds
        metrics = " ".join(f"{k}={v:.6g}" for k, v in sorted((logs or {}).items())
                           if k != "epoch_time_s" and isinstance(v, (int, float)))
        log.info("epoch %d/%d %s time=%.2fs groups/s=%.1f", epoch + 1, self.nepochs, metrics,
                 seconds, self.n_groups / max(seconds, 1e-9))


class CosineLearningRate(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every step: a half cosine from `peak` at the
    first step to ``peak · final_fraction`` at step ``total_steps - 1`` (held after that).
    Steps count from this callback's first batch, so each ``train`` call runs its own decay.
    The epoch logs get the learning rate of the epoch's last step as ``lr``."""

    def __init__(self, peak: float, final_fraction: float, total_steps: int) -> None:
        super().__init__()
        if not (peak > 0 and 0 < final_fraction <= 1 and total_steps >= 1):
            raise ValueError(f"CosineLearningRate: need peak > 0, 0 < final_fraction <= 1 and "
                             f"total_steps >= 1; got {peak}, {final_fraction}, {total_steps}")
        self.peak = peak
        self.final_fraction = final_fraction
        self.total_steps = total_steps
        self._step = 0
        self._last = peak

    def rate(self, step: int) -> float:
        """Learning rate of step `step` (0-based)."""
        progress = min(step / max(self.total_steps - 1, 1), 1.0)
        floor = self.peak * self.final_fraction
        return floor + (self.peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._last = self.rate(self._step)
        self.model.optimizer.learning_rate.assign(self._last)
        self._step += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["lr"] = self._last


class CsvHistory(keras.callbacks.Callback):
    """Writes the epoch history (epoch, then sorted log keys) to `path` after every epoch,
    atomically (temp file + os.replace), so the file is always complete."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        self.rows.append(row)
        keys = ["epoch"] + sorted({k for r in self.rows for k in r} - {"epoch"})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())


def train(model: PtychoModel, data: Any, train_cfg: TrainConfig,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          history_csv: str | os.PathLike[str] | None = None,
          strategy: tf.distribute.Strategy | None = None) -> keras.callbacks.History:
    """Train `model` on `data` for ``train_cfg.nepochs`` epochs with ``fit``.

    model:       PtychoModel from ``build_model`` (built inside ``strategy.scope()`` if given)
    data:        diffraction (B,N,N,C), offsets (B,1,2,C), counts (B,N,N,C) for "nll"
    train_cfg:   epochs, batch size, learning rate and gradient clipping (Adam), shuffle seed
    history_csv: where to write the per-epoch history (CSV), optional
    returns:     the ``keras.callbacks.History`` of ``fit``

    Batches are full-size (the remainder of an epoch is dropped when B > batch_size) so that
    compiled steps see one static shape.
    """
    if not isinstance(model, PtychoModel):
        raise TypeError(f"train expects a PtychoModel from build_model, got {type(model).__name__}")
    if not isinstance(train_cfg, TrainConfig):
        raise TypeError(f"train expects a TrainConfig, got {type(train_cfg).__name__}")
    diffraction, offsets, target = training_arrays(model, data)
    if strategy is not None and model.distribute_strategy is not strategy:
        raise ValueError("train: the model was not built inside strategy.scope(); build it with "
                         "`with strategy.scope(): model = build_model(cfg)`")
    _check_intensity_scale(model, data)
    _check_twin_probe(model)
    _adapt_input(model, diffraction)
    n = int(diffraction.shape[0])
    batch = min(train_cfg.batch_size, n)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    dataset = make_dataset(diffraction, offsets, target, batch, train_cfg.shuffle, train_cfg.seed,
                           drop_remainder=n >= batch * replicas)
    model.optimizer.learning_rate.assign(train_cfg.learning_rate)
    if model.optimizer.global_clipnorm != train_cfg.clipnorm:
        model.optimizer.global_clipnorm = train_cfg.clipnorm
        model.train_function = None  # a traced step holds the old setting: trace it again
    progress = EpochProgress(n_groups=(n // batch) * batch, nepochs=train_cfg.nepochs)
    all_callbacks: list[keras.callbacks.Callback] = [progress, ReturnFreedHeap(), *callbacks]
    if train_cfg.lr_schedule == "cosine":
        steps = max(len(dataset) // replicas, 1) * train_cfg.nepochs
        all_callbacks.insert(0, CosineLearningRate(train_cfg.learning_rate,
                                                   train_cfg.lr_final_fraction, steps))
    if history_csv is not None:
        all_callbacks.append(CsvHistory(history_csv))
    log.info("training %d groups, batch %d, %d epochs, loss %s, lr %g (%s), path %s", n, batch,
             train_cfg.nepochs, model.ptycho_config.loss, train_cfg.learning_rate,
             train_cfg.lr_schedule, model.execution.name)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return model.fit(dataset, epochs=train_cfg.nepochs, callbacks=all_callbacks, verbose=0,
                         shuffle=False)


def _adapt_input(model: PtychoModel, diffraction: np.ndarray) -> None:
    """Set the input standardisation's statistics from the training set, once (a model that
    already has them, e.g. trained before or loaded, keeps them)."""
    layer = model.input_standardisation
    if layer is None or layer.is_adapted:
        return
    layer.adapt(diffraction)  # (B, N, N, C); the shared CNN's one-channel layer pools the C patterns
    log.info("input standardisation set from %d groups", diffraction.shape[0])


def _check_twin_probe(model: PtychoModel) -> None:
    """Warn when the model's probe is (nearly) its own twin (``probe.twin_symmetry``)."""
    symmetry = twin_symmetry(model_probe(model))
    if symmetry >= TWIN_WARN_LEVEL:
        log.warning("the probe is %.2f of the way to its own twin conj(P(-r)) (a real, "
                    "centro-symmetric probe is 1.0): one diffraction pattern fits the object and "
                    "its point-reflected twin alike, so the network learns the object only through "
                    "the overlap of its groups, slowly, and blurs what it cannot tell apart "
                    "(docs/findings.md PROBE-TWIN-001); a probe with a defocus curvature avoids "
                    "this", symmetry)


def _check_intensity_scale(model: PtychoModel, data: Any) -> None:
    """Warn when the NLL model's intensity scale is far from the data's (slow calibration)."""
    scale = getattr(data, "intensity_scale", None)
    if model.ptycho_config.loss != "nll" or scale is None:
        return
    current = float(np.exp(model.get_layer("sqrt_counts").log_scale.numpy()))
    if abs(math.log(current / float(scale))) > math.log(2.0):
        log.warning("model intensity scale %.4g differs from the data's %.4g; build the model with "
                    "ModelConfig(intensity_scale=data.intensity_scale)", current, float(scale))
