"""Training losses: Poisson negative log-likelihood on intensities and amplitude MAE.

Pure functions (``poisson_nll``, ``amplitude_mae``) plus ``keras.losses.Loss`` wrappers, so the
usual reduction and the per-replica scaling of ``tf.distribute`` apply.

Units: ``poisson_nll`` takes measured photon counts ``y`` and the model's predicted
sqrt of expected counts ``a`` (the ``sqrt_counts`` model output), λ = a²;
``amplitude_mae`` compares amplitudes in the normalised units of the network input.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

__all__ = ["poisson_nll", "amplitude_mae", "PoissonNLL", "AmplitudeMAE", "get_loss", "NLL_EPS"]

NLL_EPS = 1e-6  # floor of λ: keeps log λ finite where the model predicts no photons


def poisson_nll(counts: Any, sqrt_lambda: Any, eps: float = NLL_EPS) -> tf.Tensor:
    """Mean Poisson negative log-likelihood ``λ − y·log λ`` (the data-only log y! term dropped).

    counts:      (B, N, N, C) float, measured counts y ≥ 0
    sqrt_lambda: (B, N, N, C) float, predicted amplitude in counts units; λ = max(a², eps)
    returns:     () float32, mean over all elements
    """
    y = tf.cast(counts, tf.float32)
    lam = tf.maximum(tf.square(tf.cast(sqrt_lambda, tf.float32)), eps)
    return tf.reduce_mean(lam - y * tf.math.log(lam))


def amplitude_mae(target: Any, amplitude: Any) -> tf.Tensor:
    """Mean absolute error of amplitudes.

    target, amplitude: (B, N, N, C) float (normalised units); returns () float32
    """
    return tf.reduce_mean(tf.abs(tf.cast(target, tf.float32) - tf.cast(amplitude, tf.float32)))


class PoissonNLL(keras.losses.Loss):
    """``poisson_nll`` per sample; y_true = counts, y_pred = sqrt of expected counts."""

    def __init__(self, eps: float = NLL_EPS, name: str = "poisson_nll", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.eps = float(eps)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        y = tf.cast(y_true, tf.float32)
        lam = tf.maximum(tf.square(tf.cast(y_pred, tf.float32)), self.eps)
        return tf.reduce_mean(lam - y * tf.math.log(lam), axis=[1, 2, 3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "eps": self.eps}


class AmplitudeMAE(keras.losses.Loss):
    """``amplitude_mae`` per sample; y_true = measured amplitude, y_pred = predicted."""

    def __init__(self, name: str = "amplitude_mae", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        diff = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
        return tf.reduce_mean(diff, axis=[1, 2, 3])


def get_loss(name: str) -> keras.losses.Loss:
    """Loss object for ``ModelConfig.loss`` ("nll" | "mae")."""
    if name == "nll":
        return PoissonNLL()
    if name == "mae":
        return AmplitudeMAE()
    raise ValueError(f"unknown loss {name!r}; expected 'nll' or 'mae'")
