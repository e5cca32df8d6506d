"""Training losses: Poisson negative log-likelihood on intensities and amplitude MAE.

Pure functions (``poisson_nll``, ``amplitude_mae``) plus ``keras.losses.Loss`` wrappers, so the
usual reduction and the per-replica scaling of ``tf.distribute`` apply.

Units: ``poisson_nll`` takes measured photon counts ``y`` and the model's predicted
sqrt of expected counts ``a`` (the ``sqrt_counts`` model output), λ = a²;
``amplitude_mae`` compares amplitudes in the normalised units of the network input.

The NLL is written as the Poisson deviance / 2, ``λ − y + y·log(y/λ)``: the negative
log-likelihood less its data-only terms, so it has the NLL's gradient, is ≥ 0, is ≈ ½ per pixel
at the noise level and ≈ 2(a − √y)² near the fit. The plain form ``λ − y·log λ`` sums terms of
≈ y·log y (4e8 per central pixel at 1e9 photons) whose float32 rounding buries the progress of
training (the epoch mean moved in its 7th digit: docs/findings.md, RESOLUTION-LOSS-001).

Ring balance (``balance_counts`` c > 0): each detector pixel's deviance is weighted by
f / max(f, ȳ), ȳ the batch-mean counts at that pixel and f = max(c, mean of ȳ over the
pattern). Pixels dimmer than the average pixel (or than c counts) keep the NLL's weight; the
bright central beam, which otherwise outweighs the faint high-angle rings (where fine detail
scatters) by orders of magnitude, is weighted down to the average pixel. Where the data are far
above the noise the minimum is unchanged, only the conditioning of the gradient; at low dose
(every pixel below c) the loss is the NLL. An absolute floor alone (f = c) flattened every ring
at 1e9 photons and N=32 (a relative error everywhere) and lost the thin lines there
(RESOLUTION-LOSS-001).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

__all__ = ["poisson_nll", "poisson_deviance", "amplitude_mae", "PoissonNLL", "AmplitudeMAE", "get_loss", "NLL_EPS"]

NLL_EPS = 1e-6  # floor of λ: keeps log λ finite where the model predicts no photons


def poisson_deviance(counts: Any, sqrt_lambda: Any, eps: float = NLL_EPS,
                     balance_counts: float = 0.0) -> tf.Tensor:
    """Per-element (ring-balanced) Poisson deviance / 2, ``λ − y + y·log(y/λ)``.

    counts, sqrt_lambda as in ``poisson_nll``; returns (B, N, N, C) float32 (½ at the noise
    level; ``scripts/diagnostics/ring_deviance.py`` averages it per detector ring)."""
    y = tf.cast(counts, tf.float32)
    lam = tf.maximum(tf.square(tf.cast(sqrt_lambda, tf.float32)), eps)
    deviance = lam - y + tf.math.xlogy(y, y / lam)
    if balance_counts > 0:
        mean = tf.reduce_mean(y, axis=[0, 3], keepdims=True)  # (1, N, N, 1) batch-mean counts
        floor = tf.maximum(tf.constant(balance_counts, tf.float32), tf.reduce_mean(mean))
        deviance = deviance * (floor / tf.maximum(mean, floor))
    return deviance


def poisson_nll(counts: Any, sqrt_lambda: Any, eps: float = NLL_EPS,
                balance_counts: float = 0.0) -> tf.Tensor:
    """Mean Poisson negative log-likelihood as the deviance / 2, ``λ − y + y·log(y/λ)``.

    counts:         (B, N, N, C) float, measured counts y ≥ 0
    sqrt_lambda:    (B, N, N, C) float, predicted amplitude in counts units; λ = max(a², eps)
    balance_counts: ring balance count floor c (0: off; see the module docstring)
    returns:        () float32, mean over all elements
    """
    return tf.reduce_mean(poisson_deviance(counts, sqrt_lambda, eps, balance_counts))


def amplitude_mae(target: Any, amplitude: Any) -> tf.Tensor:
    """Mean absolute error of amplitudes.

    target, amplitude: (B, N, N, C) float (normalised units); returns () float32
    """
    return tf.reduce_mean(tf.abs(tf.cast(target, tf.float32) - tf.cast(amplitude, tf.float32)))


class PoissonNLL(keras.losses.Loss):
    """``poisson_nll`` per sample; y_true = counts, y_pred = sqrt of expected counts."""

    def __init__(self, eps: float = NLL_EPS, balance_counts: float = 0.0, name: str = "poisson_nll",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.eps = float(eps)
        self.balance_counts = float(balance_counts)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return tf.reduce_mean(poisson_deviance(y_true, y_pred, self.eps, self.balance_counts),
                              axis=[1, 2, 3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "eps": self.eps, "balance_counts": self.balance_counts}


class AmplitudeMAE(keras.losses.Loss):
    """``amplitude_mae`` per sample; y_true = measured amplitude, y_pred = predicted."""

    def __init__(self, name: str = "amplitude_mae", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        diff = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
        return tf.reduce_mean(diff, axis=[1, 2, 3])


def get_loss(name: str, balance_counts: float = 0.0) -> keras.losses.Loss:
    """Loss object for ``ModelConfig.loss`` ("nll" | "mae"); `balance_counts`: the NLL's ring
    balance (``ModelConfig.balance_counts``)."""
    if name == "nll":
        return PoissonNLL(balance_counts=balance_counts)
    if name == "mae":
        return AmplitudeMAE()
    raise ValueError(f"unknown loss {name!r}; expected 'nll' or 'mae'")
