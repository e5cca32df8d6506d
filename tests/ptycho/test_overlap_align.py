"""``overlap.align_group_phases``: the per-patch constant phase the overlap constraint removes
(``ModelConfig.align_phases``, the default since RESOLUTION-LOSS-001 section 6)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

from ptycho.config import ModelConfig
from ptycho.overlap import align_group_phases


def _placed(patches: np.ndarray, weight: np.ndarray) -> tf.Tensor:
    """(B, C, P, P, 3) = re·w, im·w, w from complex patches (B, C, P, P) and weights (P, P)."""
    w = np.broadcast_to(weight, patches.shape)
    return tf.constant(np.stack([patches.real * w, patches.imag * w, w], axis=-1), tf.float32)


def test_patches_differing_by_a_constant_phase_come_out_equal(
        caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    obj = (1 + 0.3 * rng.random((12, 12))) * np.exp(1j * rng.uniform(-1, 1, (12, 12)))
    turns = np.exp(1j * np.array([0.0, 2.0, -2.5, 1.0]))  # C = 4 patches of one group
    patches = (obj[None] * turns[:, None, None])[None]  # (1, 4, 12, 12)
    weight = np.exp(-((np.arange(12) - 5.5) ** 2)[:, None] / 20 - ((np.arange(12) - 5.5) ** 2) / 20)
    placed = tf.Variable(_placed(patches, weight))
    with caplog.at_level(logging.WARNING), tf.GradientTape() as tape:
        out = align_group_phases(placed, tf.constant(1e-6))
        loss = tf.reduce_sum(out[..., 0] ** 2)
    grad = tape.gradient(loss, placed)
    z = (out[..., 0].numpy() + 1j * out[..., 1].numpy())[0]  # (4, 12, 12) patch · w
    for k in range(1, 4):
        np.testing.assert_allclose(z[k], z[0], atol=1e-4)  # one common phase for the group
    np.testing.assert_allclose(out[..., 2].numpy(), placed[..., 2].numpy())  # weights kept
    assert np.isfinite(grad.numpy()).all()
    assert not [r for r in caplog.records if "casting" in r.getMessage()]


def test_the_overlap_constraint_aligns_phases_by_default() -> None:
    assert ModelConfig().align_phases is True
