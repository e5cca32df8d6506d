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
    y = counts.astype(np.float64)
    log_ratio = np.log(np.where(y > 0, y, 1.0) / lam)
    expected = np.mean(lam - y + np.where(y > 0, y * log_ratio, 0.0))  # deviance / 2
    assert float(poisson_nll(counts, amp)) == pytest.approx(expected, rel=1e-5)


def test_deviance_has_the_nll_gradient_and_reads_one_half_per_pixel_at_high_dose() -> None:
    """Same gradient as λ − y·log λ; at 1e8 counts the loss of the true λ is ≈ ½ per pixel, which
    float32 resolves (the plain form's value there is ≈ −1.7e9 per pixel)."""
    rng = np.random.default_rng(3)
    lam_true = np.full((4, 8, 8, 1), 1e8)
    counts = rng.poisson(lam_true).astype(np.float32)
    amp = tf.Variable(np.sqrt(lam_true * rng.uniform(0.999, 1.001, lam_true.shape)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        deviance = poisson_nll(counts, amp)
        lam = tf.square(amp)
        plain = tf.reduce_mean(lam - counts * tf.math.log(lam))
    np.testing.assert_allclose(tape.gradient(deviance, amp).numpy(), tape.gradient(plain, amp).numpy(),
                               rtol=1e-3, atol=1e-3)
    at_truth = float(poisson_nll(counts, np.sqrt(lam_true).astype(np.float32)))
    assert 0.3 < at_truth < 0.7  # E[deviance / 2] = ½ for large λ; 256 pixels
    assert float(deviance) > 10 * at_truth  # 0.1 % amplitude errors are ≈ 50× the noise


@pytest.mark.parametrize(("dim", "bright", "floor"),
                         [(1.0, 1e3, 100.0), (5e4, 1e6, (1e6 + 63 * 5e4) / 64)])
def test_ring_balance_weights_bright_pixels_down_to_the_floor(dim: float, bright: float,
                                                               floor: float) -> None:
    """A pixel whose batch-mean counts exceed f = max(c, the average pixel) is weighted by
    f / mean, the rest by 1: with c = 100, 63 pixels of 1 count and one of 1e3, f is c; with 63
    of 5e4 and one of 1e6, f is the average pixel (6.5e4) and the dim pixels keep weight 1."""
    counts = np.full((2, 8, 8, 2), dim, np.float32)
    counts[:, 0, 0, :] = bright  # a bright 'central beam' pixel
    amp = np.sqrt(counts * 1.21).astype(np.float32)  # 10 % amplitude error everywhere
    lam, y = counts.astype(np.float64) * 1.21, counts.astype(np.float64)
    deviance = lam - y + y * np.log(y / lam)
    weights = np.ones_like(y)
    weights[:, 0, 0, :] = floor / bright
    assert float(poisson_nll(counts, amp)) == pytest.approx(deviance.mean(), rel=1e-5)
    balanced = float(poisson_nll(counts, amp, balance_counts=100.0))
    assert balanced == pytest.approx((deviance * weights).mean(), rel=1e-5)
    loss = PoissonNLL(balance_counts=100.0)
    assert PoissonNLL.from_config(loss.get_config()).balance_counts == 100.0
    assert float(loss(counts, amp)) == pytest.approx(balanced, rel=1e-5)


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
    assert value == pytest.approx(NLL_EPS - 5.0 + 5.0 * np.log(5.0 / NLL_EPS), rel=1e-4)


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
