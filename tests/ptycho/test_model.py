"""Model: shapes, physics layers against the simulator, execution paths, multi-N builds."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from ptycho.config import ModelConfig, SimConfig  # noqa: E402
from ptycho.diagnostics import dead_units  # noqa: E402
from ptycho.layers import FarField, ProbeIllumination, normalised_probe  # noqa: E402
from ptycho.model import build_model, check_inputs, model_config_for  # noqa: E402
from ptycho.overlap import OverlapConstraint, shifted_support  # noqa: E402
from ptycho.physics import far_field, simulate  # noqa: E402
from ptycho.translation import translate  # noqa: E402

pytestmark = pytest.mark.integration  # builds and trains models


@pytest.fixture(scope="module")
def sim32() -> object:
    return simulate(SimConfig(N=32, gridsize=2, n_images=24, nphotons=1e9, seed=3))


def _random_output_layers(*models: object, seed: int = 7) -> None:
    """Give the (zero-initialised) output convolutions the same random kernels in every model,
    so untrained models compared here predict a structured object, not a flat one."""
    rng = np.random.default_rng(seed)
    for name in ("amp_out", "phase_out"):
        values = rng.normal(0.0, 0.1, models[0].get_layer(name).kernel.shape).astype(np.float32)
        for model in models:
            model.get_layer(name).kernel.assign(values)


def _inputs(data: object, count: int | None = None) -> dict[str, np.ndarray]:
    sl = slice(None, count)
    return {"diffraction": data.diffraction[sl], "offsets": data.offsets[sl]}


@pytest.mark.parametrize(("gridsize", "pad_object"), [(1, True), (2, True), (2, False)])
def test_outputs_have_documented_shapes_and_dtypes(gridsize: int, pad_object: bool) -> None:
    data = simulate(SimConfig(N=16, gridsize=gridsize, n_images=8, seed=1))
    model = build_model(model_config_for(data, n_filters_scale=1, pad_object=pad_object))
    out = model.predict(_inputs(data), verbose=0)
    c = gridsize**2
    assert set(out) == {"amplitude", "sqrt_counts", "object"}
    assert out["amplitude"].shape == (8, 16, 16, c) and out["amplitude"].dtype == np.float32
    assert out["object"].shape == (8, 16, 16, c) and out["object"].dtype == np.complex64
    assert np.all(np.isfinite(out["amplitude"])) and np.all(out["amplitude"] >= 0)
    np.testing.assert_allclose(out["sqrt_counts"], out["amplitude"] * data.intensity_scale, rtol=1e-5)
    amplitude = np.abs(out["object"])
    support = slice(4, 12) if pad_object else slice(0, 16)  # the central N/2 × N/2, or all
    inside = amplitude[:, support, support]
    assert inside.min() > 0 and inside.max() < 4.0  # bounded positive activation
    outside = amplitude.copy()
    outside[:, support, support] = 0
    assert not outside.any()
    history = model.fit(_inputs(data), data.counts, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_default_model_reports_its_parameter_count() -> None:
    model = build_model(ModelConfig())  # N=64, gridsize 2, n_filters_scale 2
    params = model.count_params()
    # original PtychoPINN default: ~2.3 M parameters; this design learns with ~8x fewer
    # (docs/findings.md MODEL-LEARNS-001); the standardised second input channel adds 3·3·16
    # weights to the first convolution (RESOLUTION-LOSS-001)
    assert params == 296_132
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 275_506 + 3 * 3 * 16  # 275,506 before the second channel
    # not trained: the probe (real, imag), the overlap weights |probe|², the intensity scale,
    # the input statistics (μ, σ per pixel, the 'adapted' flag)
    assert trainable == params - 3 * 64 * 64 - 1 - (2 * 64 * 64 + 1)


def test_probe_illumination_and_far_field_reproduce_simulated_diffraction(sim32: object) -> None:
    """Ground-truth patches through the model's physics give the simulated patterns (up to the
    global scale fixed by the normalised probe), at 1e9 photons within shot noise."""
    probe = normalised_probe(sim32.probe)
    assert np.sum(np.abs(probe) ** 2) == pytest.approx((32 / 2) ** 2, rel=1e-5)
    patches = tf.constant(sim32.object_patches)
    amp = FarField()(ProbeIllumination(32, probe)(patches)).numpy()
    reference = far_field(sim32.probe, sim32.object_patches)
    scale = np.sum(amp * reference) / np.sum(amp * amp)
    np.testing.assert_allclose(amp * scale, reference, rtol=1e-4, atol=1e-4 * reference.max())
    measured = sim32.diffraction
    k = np.sqrt(np.sum(measured**2) / np.sum(amp**2))
    assert np.mean(np.abs(amp * k - measured)) < 0.01 * np.mean(measured)


def test_overlap_constraint_keeps_consistent_patches(sim32: object) -> None:
    """Patches cut from one object are already consistent: averaging them on the shared
    canvas and re-extracting changes the illuminated centre only by interpolation blur."""
    patches = tf.constant(sim32.object_patches)
    offsets = tf.constant(sim32.offsets)
    out = OverlapConstraint(pad=8)(patches, offsets).numpy()
    centre = slice(10, 22)
    truth = sim32.object_patches[:, centre, centre]
    err = np.mean(np.abs(out[:, centre, centre] - truth)) / np.mean(np.abs(truth))
    assert err < 0.04  # two bilinear interpolations of 1-px-blurred lines
    # inconsistent patches (one patch replaced) are pulled towards the group average
    broken = sim32.object_patches.copy()
    broken[..., 0] = 2.0
    changed = OverlapConstraint(pad=8)(tf.constant(broken), offsets).numpy()
    assert np.mean(np.abs(changed[:, centre, centre, 0] - 2.0)) > 0.1


def test_weighted_overlap_constraint_ignores_the_dark_periphery_of_patches(sim32: object) -> None:
    """With |probe|² weights, junk where a patch is not illuminated does not leak into the
    illuminated centres of its neighbours (it does with the unweighted average)."""
    k = np.arange(32) - 16
    weights = (np.hypot(k[:, None], k[None, :]) < 6).astype(np.float32)
    junk = sim32.object_patches.copy()
    junk[:, weights == 0] = 3.0  # outside every patch's disk
    offsets = tf.constant(sim32.offsets)
    centre = slice(13, 19)
    truth = sim32.object_patches[:, centre, centre]
    weighted = OverlapConstraint(pad=16, weights=weights)(tf.constant(junk), offsets).numpy()
    plain = OverlapConstraint(pad=16)(tf.constant(junk), offsets).numpy()
    err_weighted = np.mean(np.abs(weighted[:, centre, centre] - truth))
    err_plain = np.mean(np.abs(plain[:, centre, centre] - truth))
    assert err_weighted < 0.05 and err_plain > 5 * err_weighted
    with pytest.raises(ValueError, match="weights"):
        OverlapConstraint(pad=4, weights=np.zeros((32, 32)))


def test_overlap_constraint_paths_agree(sim32: object) -> None:
    patches = tf.constant(sim32.object_patches)
    offsets = tf.constant(sim32.offsets)
    reference = OverlapConstraint(pad=8, use_xla=True)(patches, offsets).numpy()
    compiled = OverlapConstraint(pad=8, use_xla=True, compile_xla=True)(patches, offsets).numpy()
    projective = OverlapConstraint(pad=8, use_xla=False)(patches, offsets).numpy()
    np.testing.assert_allclose(compiled, reference, atol=1e-5)
    np.testing.assert_allclose(projective, reference, atol=1e-5)
    single = patches[..., :1]
    assert np.array_equal(OverlapConstraint(pad=8)(single, offsets[..., :1]).numpy(), single.numpy())
    with pytest.raises(ValueError, match="compile_xla"):
        OverlapConstraint(pad=8, use_xla=False, compile_xla=True)


def test_shifted_support_equals_translating_a_mask_of_ones() -> None:
    rng = np.random.default_rng(0)
    shifts = tf.constant(rng.uniform(-7, 7, size=(6, 2)).astype(np.float32))
    n, pad = 16, 5
    ones = np.pad(np.ones((6, n, n, 1), np.float32), [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    expected = translate(ones, shifts, use_xla=True).numpy()
    np.testing.assert_allclose(shifted_support(n, pad, shifts).numpy(), expected, atol=1e-6)


def test_xla_and_non_xla_predictions_agree(sim32: object) -> None:
    cfg = model_config_for(sim32, n_filters_scale=1, mixed_precision=False)
    eager = build_model(cfg.replace(jit_compile=False), seed=5)
    xla = build_model(cfg.replace(jit_compile=True), seed=5)
    assert eager.execution.jit_compile is False and xla.execution.jit_compile is True
    _random_output_layers(eager, xla)
    a = eager.predict(_inputs(sim32, 16), batch_size=8, verbose=0)
    b = xla.predict(_inputs(sim32, 16), batch_size=8, verbose=0)
    scale = np.abs(a["amplitude"]).max()
    np.testing.assert_allclose(b["amplitude"], a["amplitude"], atol=1e-4 * scale)
    np.testing.assert_allclose(b["object"], a["object"], atol=1e-4)


@pytest.mark.parametrize("jit", [False, True])
def test_a_groups_prediction_does_not_depend_on_the_other_groups_of_its_batch(sim32: object,
                                                                             jit: bool) -> None:
    """PtychoPINN at 712c23f summed every group of a batch into one canvas once batch × C
    reached 64 (a fixed batch_size in its reassembly layer): training mixed 16 groups' physics
    and inference returned 63 patches for 2000 groups (docs/results/ptychopinn_sim/README.md).
    Here a batch of 16 groups of 4 (64 patterns) gives 16 outputs, each its own group's."""
    model = build_model(model_config_for(sim32, n_filters_scale=1, jit_compile=jit), seed=5)
    _random_output_layers(model)
    batch = _inputs(sim32, 16)
    alone = {k: v[:1] for k, v in batch.items()}
    others = {k: np.concatenate([v[:1], v[8:23]]) for k, v in _inputs(sim32).items()}
    outputs = [model.predict_on_batch(x) for x in (batch, others)]
    assert all(out["amplitude"].shape == (16, 32, 32, 4) for out in outputs)
    first = model.predict_on_batch(alone)
    for out in outputs:
        for key in ("amplitude", "object"):
            np.testing.assert_allclose(out[key][:1], first[key], rtol=0,
                                       atol=1e-4 * np.abs(first[key]).max())
    assert not np.allclose(outputs[0]["amplitude"][1], outputs[1]["amplitude"][1])


def test_bfloat16_path_is_close_to_float32(sim32: object) -> None:
    """Same weights; bf16 CNN (8-bit mantissa) vs float32: amplitudes agree to a few percent
    (documented tolerance: mean relative difference < 3%, max object difference < 0.15)."""
    cfg = model_config_for(sim32, n_filters_scale=1, jit_compile=False)
    f32 = build_model(cfg.replace(mixed_precision=False), seed=5)
    bf16 = build_model(cfg.replace(mixed_precision=True), seed=5)
    assert bf16.get_layer("enc_conv0a").dtype_policy.name == "mixed_bfloat16"
    assert bf16.get_layer("amplitude").dtype_policy.name == "float32"
    _random_output_layers(f32, bf16)
    for wa, wb in zip(f32.weights, bf16.weights, strict=True):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    a = f32.predict(_inputs(sim32, 16), verbose=0)
    b = bf16.predict(_inputs(sim32, 16), verbose=0)
    assert b["amplitude"].dtype == np.float32 and b["object"].dtype == np.complex64
    rel = np.mean(np.abs(b["amplitude"] - a["amplitude"])) / np.mean(np.abs(a["amplitude"]))
    assert rel < 0.03
    assert np.max(np.abs(b["object"] - a["object"])) < 0.15


def test_models_of_different_N_coexist_in_one_process() -> None:
    """Regression for stale XLA traces: N=64 and N=128 models built, trained one step and run
    in one process with the XLA translation on (gather path inside the overlap block's
    XLA-compiled function), then the first model still trains and predicts with its shapes.
    (Whole-step jit_compile is covered by test_xla_and_non_xla_predictions_agree.)"""
    models = {}
    for n, jit in ((64, False), (128, False)):
        data = simulate(SimConfig(N=n, gridsize=2, n_images=4, seed=n))
        cfg = model_config_for(data, n_filters_scale=1, jit_compile=jit, translation_xla=True)
        model = build_model(cfg)
        assert model.get_layer("overlap").compile_xla and model.get_layer("overlap").use_xla
        x = _inputs(data)
        model.fit(x, data.counts, batch_size=4, epochs=1, verbose=0)
        out = model.predict(x, batch_size=4, verbose=0)
        assert out["amplitude"].shape == (4, n, n, 4)
        assert np.all(np.isfinite(out["amplitude"]))
        models[(n, jit)] = (model, data)
    first, data = models[(64, False)]
    first.fit(_inputs(data), data.counts, batch_size=4, epochs=1, verbose=0)
    assert first.predict(_inputs(data), verbose=0)["object"].shape == (4, 64, 64, 4)


def test_bad_inputs_raise_value_errors_naming_shapes(sim32: object) -> None:
    cfg = model_config_for(sim32, n_filters_scale=1)
    with pytest.raises(ValueError, match=r"\(B, 32, 32, 4\).*\(3, 16, 16, 4\)"):
        check_inputs(cfg, np.zeros((3, 16, 16, 4), np.float32))
    with pytest.raises(ValueError, match="complex"):
        check_inputs(cfg, np.zeros((3, 32, 32, 4), np.complex64))
    with pytest.raises(ValueError, match=r"\(3, 1, 2, 4\).*\(3, 2, 4\)"):
        check_inputs(cfg, np.zeros((3, 32, 32, 4), np.float32), np.zeros((3, 2, 4), np.float32))
    model = build_model(cfg)
    with pytest.raises(ValueError, match=r"32, 32, 4.*16, 16, 4|16, 16, 4.*32, 32, 4"):
        model({"diffraction": tf.zeros((2, 16, 16, 4)), "offsets": tf.zeros((2, 1, 2, 4))})
    with pytest.raises(ValueError, match="probe"):
        build_model(cfg, probe=np.ones((16, 16), np.complex64))
    with pytest.raises(TypeError, match="ModelConfig"):
        build_model({"N": 32})


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_a_unit_pushed_below_zero_everywhere_recovers_only_with_leaky_relu(
        sim32: object, activation: str) -> None:
    """LOW-DOSE-NLL-PHASE-001: in the failed low-dose NLL arm and on canonical data, 29-30 of
    the 32 ReLU channels before the amplitude output were negative on every input (dead), so
    the amplitude stayed flat and the phase decoder took the structure. A unit whose
    pre-activation is below zero everywhere gets no gradient through ReLU, ever; the default
    leaky ReLU keeps one."""
    cfg = model_config_for(sim32, n_filters_scale=1, activation=activation, jit_compile=False,
                           mixed_precision=False)
    model = build_model(cfg)
    _random_output_layers(model)  # zero at init: no gradient would reach amp_conv1b either way
    last = model.get_layer("amp_conv1b")  # the hidden layer that feeds amp_out
    kernel, bias = last.kernel, last.bias
    # every unit negative on every input (checked), but the amplitude's sigmoid not saturated
    bias.assign(tf.fill(bias.shape, -20.0))
    layer = next(u for u in dead_units(model, sim32.diffraction[:4]) if u.name == "amp_conv1b")
    assert layer.dead == layer.channels
    x = _inputs(sim32, 4)
    y = np.square(sim32.diffraction[:4] * sim32.intensity_scale)  # photon counts (the NLL target)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(y=y, y_pred=model(x, training=True))
    grad_kernel, grad_bias = tape.gradient(loss, [kernel, bias])
    norm = float(tf.norm(grad_kernel)) + float(tf.norm(grad_bias))
    if activation == "relu":
        assert norm == 0.0
    else:
        assert norm > 1e-6


def test_unknown_activation_is_refused() -> None:
    from ptycho.config import ConfigError

    with pytest.raises(ConfigError, match="activation"):
        ModelConfig(activation="tanh")


def test_dead_units_reports_a_layer_pushed_below_zero(sim32: object) -> None:
    model = build_model(model_config_for(sim32, n_filters_scale=1))
    fresh = {u.name: u for u in dead_units(model, sim32.diffraction)}
    assert set(fresh) >= {"enc_conv0a", "amp_conv1b", "phase_conv1b"}
    assert "amp_out" not in fresh and fresh["amp_conv1b"].dead < fresh["amp_conv1b"].channels
    bias = model.get_layer("amp_conv1b").bias
    bias.assign(np.full(bias.shape, -1e3, np.float32))
    bias[0].assign(1e3)  # one unit kept alive: positive everywhere
    after = {u.name: u for u in dead_units(model, sim32.diffraction, batch_size=7)}
    unit = after["amp_conv1b"]
    assert unit.dead == unit.channels - 1
    assert unit.positive_frac == pytest.approx(1 / unit.channels)
    assert after["enc_conv0a"] == fresh["enc_conv0a"]  # layers before it are untouched


@pytest.mark.parametrize("pad_object", [True, False])
def test_an_untrained_model_predicts_a_flat_object(sim32: object, pad_object: bool) -> None:
    """LOW-DOSE-NLL-PHASE-001: the output convolutions start at zero, so training starts from a
    flat object (amplitude 1, phase 0 on the support) instead of random structure."""
    model = build_model(model_config_for(sim32, n_filters_scale=1, pad_object=pad_object))
    obj = model.predict(_inputs(sim32, 8), verbose=0)["object"]
    n = sim32.diffraction.shape[1]
    q = n // 4 if pad_object else 0
    support = obj[:, q: n - q, q: n - q, :]
    np.testing.assert_allclose(np.abs(support), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.angle(support), 0.0, atol=1e-6)
    assert np.all(obj[:, :q] == 0)  # outside the support
    # and the first step moves the output layers (their gradient is not zero)
    y = np.square(sim32.diffraction[:8] * sim32.intensity_scale)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(y=y, y_pred=model(_inputs(sim32, 8), training=True))
    kernels = [model.get_layer(name).kernel for name in ("amp_out", "phase_out")]
    assert all(float(tf.norm(g)) > 0 for g in tape.gradient(loss, kernels))


def test_fourier_overlap_constraint_blurs_less_with_smooth_weights_and_rings_with_the_disk(
        sim32: object) -> None:
    """Patches cut by Fourier shifts go through the constraint with less error by Fourier shifts
    than by bilinear ones when the weights are smooth; with the hard-edged disk probe as weights
    the Fourier shifts ring (why the model keeps bilinear; RESOLUTION-LOSS-001)."""
    sim = simulate(SimConfig(N=32, gridsize=2, n_images=24, nphotons=1e9, seed=3, subpixel="fourier",
                             object_type="thin_lines"))
    k = np.arange(32) - 16
    gauss = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / 60.0).astype(np.float32)
    disk = np.abs(normalised_probe(sim.probe)) ** 2
    patches, offsets = tf.constant(sim.object_patches), tf.constant(sim.offsets)
    centre = slice(12, 20)
    truth = sim.object_patches[:, centre, centre]

    def error(subpixel: str, weights: np.ndarray) -> float:
        out = OverlapConstraint(pad=8, weights=weights / weights.max(), subpixel=subpixel)(patches, offsets)
        return float(np.mean(np.abs(out.numpy()[:, centre, centre] - truth)) / np.mean(np.abs(truth)))

    assert error("fourier", gauss) < 0.05 and error("bilinear", gauss) > 1.3 * error("fourier", gauss)
    assert error("fourier", disk) > 0.1 > error("bilinear", disk)
    with pytest.raises(ValueError, match="subpixel"):
        OverlapConstraint(pad=8, subpixel="cubic")


@pytest.mark.parametrize("option", [{"upsampling": "transpose"}, {"upsampling": "bilinear"},
                                    {"input_transform": "log"}])
def test_model_options_build_and_predict_the_documented_shapes(sim32: object, option: dict) -> None:
    cfg = model_config_for(sim32, n_filters_scale=1, **option)
    model = build_model(cfg, probe=sim32.probe)
    out = model.predict({"diffraction": sim32.diffraction[:4], "offsets": sim32.offsets[:4]}, verbose=0)
    assert out["object"].shape == (4, 32, 32, 4) and out["object"].dtype == np.complex64
    assert np.isfinite(out["amplitude"]).all()
    names = {layer.name for layer in model.layers}
    assert ("log_input" in names) == (option.get("input_transform") == "log")
    plain = build_model(model_config_for(sim32, n_filters_scale=1), probe=sim32.probe)
    extra = model.count_params() - plain.count_params()
    assert (extra > 0) == (option.get("upsampling") == "transpose")  # only that one adds weights


def test_model_config_for_gives_the_whole_patch_to_a_probe_whose_light_leaves_the_half(
        ringed_probe: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    """RESOLUTION-SUPPORT-001: a focused probe's rings outside the central N/2 × N/2 cannot be
    fitted by an object that is zero there; the model then predicts the whole patch."""
    disk = simulate(SimConfig(N=32, gridsize=2, n_images=4, nphotons=1e6, seed=1))
    assert model_config_for(disk).pad_object  # the study's disk: nothing outside the half
    data = dataclasses.replace(disk, probe=ringed_probe.astype(np.complex64))
    with caplog.at_level("INFO", logger="ptycho.model"):
        assert not model_config_for(data).pad_object
    assert "predicts the whole 32×32 object patch" in caplog.text
    assert model_config_for(dataclasses.replace(data, nphotons=10.0)).pad_object  # lost in noise
    assert model_config_for(data, pad_object=True).pad_object  # the caller's choice wins
