"""``input_transform="standardise"``: per-pixel input statistics set from the training set once,
used as set, and saved with the model (docs/findings.md, RESOLUTION-LOSS-001)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ptycho.config import SimConfig, TrainConfig  # noqa: E402
from ptycho.io import load_model, save_model  # noqa: E402
from ptycho.layers import InputStandardise  # noqa: E402
from ptycho.model import build_model, model_config_for  # noqa: E402
from ptycho.physics import simulate  # noqa: E402
from ptycho.train import train  # noqa: E402


def test_adapted_layer_standardises_each_pixel_and_floors_still_pixels() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 0.5, (200, 4, 4, 2)).astype(np.float32)
    x[:, 0, 0, 0] = 7.0  # a pixel that never varies: σ floored, no division by zero
    layer = InputStandardise(floor=0.1)
    layer.build(x.shape)
    assert not layer.is_adapted
    np.testing.assert_array_equal(layer(x).numpy(), x)  # identity until adapted
    layer.adapt(x)
    assert layer.is_adapted
    y = layer(x).numpy()
    np.testing.assert_allclose(y.mean(axis=0)[1:], 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=0)[1:], 1.0, atol=1e-3)
    assert np.all(y[:, 0, 0, 0] == 0.0)
    assert float(layer.std.numpy()[0, 0, 0]) == pytest.approx(0.1 * np.median(x.std(axis=0)), rel=1e-4)
    with pytest.raises(ValueError, match=r"samples must be \(S, 4, 4, 2\), got \(3, 4, 4\)"):
        layer.adapt(x[:3, :, :, 0])
    chunked = InputStandardise(floor=0.1)
    chunked.build(x.shape)
    chunked.adapt(x, chunk=7)  # the same statistics, accumulated over chunks
    np.testing.assert_allclose(chunked.mean.numpy(), layer.mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(chunked.std.numpy(), layer.std.numpy(), rtol=1e-5)


@pytest.mark.integration  # trains a model
def test_train_sets_the_statistics_once_and_the_archive_keeps_them(tmp_path: Path) -> None:
    data = simulate(SimConfig(N=16, gridsize=2, n_images=32, nphotons=1e6, seed=3))
    model = build_model(model_config_for(data, n_filters_scale=1, input_transform="standardise"))
    layer = model.get_layer("input_standardise")
    assert not layer.is_adapted
    train(model, data, TrainConfig(nepochs=1, batch_size=8))
    patterns = np.moveaxis(data.diffraction, -1, 1).reshape(-1, 16, 16, 1)  # the shared CNN's view
    np.testing.assert_allclose(layer.mean.numpy(), patterns.mean(axis=0), rtol=1e-5, atol=1e-6)
    mean = layer.mean.numpy().copy()
    other = simulate(SimConfig(N=16, gridsize=2, n_images=32, nphotons=1e6, seed=4))
    train(model, other, TrainConfig(nepochs=1, batch_size=8))  # more training: same statistics
    np.testing.assert_array_equal(layer.mean.numpy(), mean)
    path = save_model(model, tmp_path / "m.wts.h5.zip", intensity_scale=data.intensity_scale)
    loaded, cfg, _ = load_model(path)
    assert cfg.input_transform == "standardise"
    restored = loaded.get_layer("input_standardise")
    assert restored.is_adapted
    np.testing.assert_array_equal(restored.mean.numpy(), mean)
    x = {"diffraction": data.diffraction, "offsets": data.offsets}
    np.testing.assert_array_equal(model.predict(x, verbose=0)["object"],
                                  loaded.predict(x, verbose=0)["object"])


def test_a_bare_fit_warns_that_the_standardisation_is_not_set(
        caplog: pytest.LogCaptureFixture) -> None:
    data = simulate(SimConfig(N=16, gridsize=2, n_images=16, nphotons=1e6, seed=5))
    model = build_model(model_config_for(data, n_filters_scale=1))  # input_transform "both"
    x = {"diffraction": data.diffraction, "offsets": data.offsets}
    with caplog.at_level("WARNING", logger="ptycho.model"):
        model.fit(x, data.counts, batch_size=8, epochs=1, verbose=0)
    assert any("input standardisation is not set" in r.getMessage() for r in caplog.records)
    caplog.clear()
    model.get_layer("input_standardise").adapt(data.diffraction)
    with caplog.at_level("WARNING", logger="ptycho.model"):
        model.fit(x, data.counts, batch_size=8, epochs=1, verbose=0)
    assert not [r for r in caplog.records if "standardisation" in r.getMessage()]
