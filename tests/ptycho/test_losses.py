"""Losses: Poisson NLL on intensities and amplitude MAE (values, minima, stability)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from ptycho.losses import (  # noqa: E402
    NLL_EPS,
    AmplitudeMAE,
    PoissonNLL,
    amplitude_mae,
    get_loss,
    poisson_nll,
)


def test_poisson_nll_matches_formula() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(20.0, size=(2, 4, 4, 3)).astype(np.float32)
    amp = rng.uniform(1.0, 6.0, size=counts.shape).astype(np.float32)
    lam = amp.astype(np.float64) ** 2
    expected = np.mean(lam - counts * np.log(lam))
    assert float(poisson_nll(counts, amp)) == pytest.approx(expected, rel=1e-5)


def test_poisson_nll_is_minimal_where_lambda_equals_counts() -> None:
    counts = tf.constant(np.full((1, 2, 2, 1), 9.0, np.float32))
    amp = tf.Variable(np.full((1, 2, 2, 1), 3.0, np.float32))  # λ = 9 = y
    with tf.GradientTape() as tape:
        loss = poisson_nll(counts, amp)
    assert np.allclose(tape.gradient(loss, amp).numpy(), 0.0, atol=1e-6)
    for other in (2.5, 3.5):
        assert float(poisson_nll(counts, tf.fill((1, 2, 2, 1), other))) > float(loss)


def test_poisson_nll_is_finite_for_zero_prediction() -> None:
    counts = np.array([[[[5.0]]]], np.float32)
    value = float(poisson_nll(counts, np.zeros_like(counts)))
    assert np.isfinite(value)
    assert value == pytest.approx(NLL_EPS - 5.0 * np.log(NLL_EPS), rel=1e-4)


def test_loss_objects_reduce_to_the_functional_mean() -> None:
    rng = np.random.default_rng(1)
    y = rng.poisson(4.0, size=(3, 4, 4, 2)).astype(np.float32)
    a = rng.uniform(0.5, 3.0, size=y.shape).astype(np.float32)
    assert float(PoissonNLL()(y, a)) == pytest.approx(float(poisson_nll(y, a)), rel=1e-5)
    assert float(AmplitudeMAE()(y, a)) == pytest.approx(float(amplitude_mae(y, a)), rel=1e-6)
    assert float(amplitude_mae(y, a)) == pytest.approx(np.mean(np.abs(y - a)), rel=1e-6)


def test_get_loss_names() -> None:
    assert isinstance(get_loss("nll"), PoissonNLL)
    assert isinstance(get_loss("mae"), AmplitudeMAE)
    with pytest.raises(ValueError, match="'mse'"):
        get_loss("mse")
