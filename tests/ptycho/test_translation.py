"""Translation: XLA (gather) vs ImageProjectiveTransformV3 paths, semantics, batching, grads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from ptycho.translation import Translation, translate  # noqa: E402

PATHS = [pytest.param(True, id="xla"), pytest.param(False, id="projective")]


def _images(rng: np.random.Generator, shape: tuple[int, ...], complex_: bool) -> np.ndarray:
    real = rng.normal(size=shape).astype(np.float32)
    if not complex_:
        return real
    return (real + 1j * rng.normal(size=shape)).astype(np.complex64)


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_xla_and_projective_paths_agree_on_subpixel_shifts(complex_: bool) -> None:
    rng = np.random.default_rng(1)
    images = _images(rng, (12, 24, 20, 3), complex_)
    offsets = rng.uniform(-6, 6, size=(12, 2)).astype(np.float32)
    assert np.any(np.abs(offsets - np.round(offsets)) > 0.1)
    a = translate(images, offsets, use_xla=True).numpy()
    b = translate(images, offsets, use_xla=False).numpy()
    assert a.dtype == b.dtype == images.dtype and a.shape == images.shape
    # Same zero-fill semantics: compare the whole image, borders included.
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert np.abs(a - images).max() > 0.1  # really shifted


@pytest.mark.parametrize("use_xla", PATHS)
def test_integer_shift_equals_np_roll_in_interior_and_zero_fills(use_xla: bool) -> None:
    rng = np.random.default_rng(2)
    images = _images(rng, (2, 16, 18, 1), complex_=True)
    dx, dy = 3, -2
    out = translate(images, np.array([[dx, dy]] * 2, np.float32), use_xla=use_xla).numpy()
    rolled = np.roll(images, (dy, dx), axis=(1, 2))
    np.testing.assert_allclose(out[:, 2:-2, 3:-3], rolled[:, 2:-2, 3:-3], atol=1e-6)
    assert np.all(out[:, :, :dx] == 0)  # shifted in from outside: zero, not wrapped
    assert np.all(out[:, dy:, :] == 0)


@pytest.mark.parametrize("use_xla", PATHS)
def test_shift_then_inverse_shift_is_identity_in_interior(use_xla: bool) -> None:
    rng = np.random.default_rng(3)
    images = _images(rng, (4, 32, 32, 2), complex_=False)
    d = np.array([[4, -3], [-2, 5], [1, 1], [0, -6]], np.float32)
    back = translate(translate(images, d, use_xla), -d, use_xla).numpy()
    np.testing.assert_allclose(back[:, 6:-6, 6:-6], images[:, 6:-6, 6:-6], atol=1e-6)
    # sub-pixel: bilinear smooths, but a smooth image comes back to within a small error
    yy, xx = np.mgrid[:32, :32]
    smooth = np.exp(-((xx - 16.0) ** 2 + (yy - 15.0) ** 2) / 60.0).astype(np.float32)
    smooth = np.broadcast_to(smooth[None, :, :, None], (4, 32, 32, 1)).copy()
    d_sub = rng.uniform(-3, 3, size=(4, 2)).astype(np.float32)
    back = translate(translate(smooth, d_sub, use_xla), -d_sub, use_xla).numpy()
    err = np.abs(back - smooth)[:, 6:-6, 6:-6].max()
    assert err < 0.03


def test_subpixel_half_shift_is_average_of_neighbours() -> None:
    img = np.zeros((1, 5, 5, 1), np.float32)
    img[0, 2, 2, 0] = 1.0
    out = translate(img, np.array([[0.5, 0.0]], np.float32)).numpy()[0, :, :, 0]
    assert out[2, 2] == pytest.approx(0.5) and out[2, 3] == pytest.approx(0.5)
    assert out.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("use_xla", PATHS)
def test_gridsize2_regression_input_to_reshape_389376_values(use_xla: bool) -> None:
    """Seed bug: 'Input to reshape is a tensor with 389376 values, but the requested shape
    has 24336' — images flattened to (b·C, 78, 78, 1) with offsets for the b groups."""
    rng = np.random.default_rng(4)
    b, c, size = 16, 4, 78
    images = _images(rng, (b * c, size, size, 1), complex_=True)
    offsets = rng.uniform(-4, 4, size=(b, 2)).astype(np.float32)
    out = translate(images, offsets, use_xla=use_xla).numpy()
    assert out.shape == (b * c, size, size, 1)
    expected = translate(images, np.repeat(offsets, c, axis=0), use_xla=use_xla).numpy()
    np.testing.assert_array_equal(out, expected)
    # image i uses offset i // C (consecutive repetition), checked on one image directly
    single = translate(images[9:10], offsets[9 // c][None], use_xla=use_xla).numpy()
    np.testing.assert_array_equal(out[9:10], single)
    # and inside a compiled layer call with dynamic batch
    layer = Translation(use_xla=use_xla)
    fn = tf.function(
        layer,
        jit_compile=use_xla,
        input_signature=[[tf.TensorSpec([None, size, size, 1], tf.complex64),
                          tf.TensorSpec([None, 2], tf.float32)]],
    )
    np.testing.assert_allclose(fn([images, offsets]).numpy(), out, atol=1e-6)


def test_batch_mismatch_raises_value_error_naming_both_shapes() -> None:
    images = np.zeros((6, 8, 8, 1), np.float32)
    offsets = np.zeros((4, 2), np.float32)
    msg = r"images shape \(6, 8, 8, 1\), offsets shape \(4, 2\)"
    with pytest.raises(ValueError, match=msg):
        translate(images, offsets)
    with pytest.raises(ValueError, match=msg):  # at trace time under tf.function
        tf.function(lambda a, o: translate(a, o), jit_compile=True)(images, offsets)
    with pytest.raises(ValueError, match=r"offsets shape \(0, 2\)"):
        translate(images, np.zeros((0, 2), np.float32))


def test_batch_mismatch_with_unknown_batch_fails_at_run_time() -> None:
    spec = [tf.TensorSpec([None, 8, 8, 1], tf.float32), tf.TensorSpec([None, 2], tf.float32)]
    images, offsets = tf.zeros([6, 8, 8, 1]), tf.zeros([4, 2])
    graph_fn = tf.function(lambda a, o: translate(a, o, use_xla=False), input_signature=spec)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"integer multiple k of the offset batch"):
        graph_fn(images, offsets)
    # XLA drops assertions; compilation fails instead of silently clamping indices.
    xla_fn = tf.function(lambda a, o: translate(a, o), input_signature=spec, jit_compile=True)
    with pytest.raises(tf.errors.InvalidArgumentError):
        xla_fn(images, offsets)
    assert xla_fn(tf.zeros([8, 8, 8, 1]), offsets).shape == (8, 8, 8, 1)


def test_bad_dtype_and_rank_raise_clear_errors() -> None:
    with pytest.raises(TypeError, match="float32 or complex64, got float64"):
        translate(np.zeros((1, 4, 4, 1)), np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"images must have shape \(M, H, W, K\), got \(4, 4, 1\)"):
        translate(np.zeros((4, 4, 1), np.float32), np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"offsets must have shape \(M, 2\).*got \(1, 3\)"):
        translate(np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 3), np.float32))


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_runs_under_jit_compile(complex_: bool) -> None:
    rng = np.random.default_rng(5)
    images = _images(rng, (4, 16, 16, 2), complex_)
    offsets = rng.uniform(-3, 3, size=(2, 2)).astype(np.float32)
    fn = tf.function(lambda a, o: translate(a, o, use_xla=True), jit_compile=True)
    np.testing.assert_allclose(fn(images, offsets).numpy(),
                               translate(images, offsets, use_xla=False).numpy(), atol=1e-5)


@pytest.mark.parametrize("use_xla", PATHS)
def test_gradient_wrt_images_is_the_adjoint(use_xla: bool) -> None:
    # translate is linear in images: d<T x, g>/dx = T^T g, so <x, grad> == <T x, g>.
    rng = np.random.default_rng(6)
    x = tf.constant(_images(rng, (3, 12, 12, 1), complex_=False))
    g = tf.constant(_images(rng, (3, 12, 12, 1), complex_=False))
    offsets = rng.uniform(-2, 2, size=(3, 2)).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(translate(x, offsets, use_xla) * g)
    grad = tape.gradient(value, x)
    assert grad is not None and np.all(np.isfinite(grad.numpy()))
    assert float(tf.reduce_sum(x * grad)) == pytest.approx(float(value), rel=1e-4, abs=1e-4)


def _plain_gather_translate(images: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    """The gather path with TensorFlow's own gradients (scatter-adds through the gathers)."""
    from ptycho.translation import _bilinear_axis

    rows = _bilinear_axis(images, offsets[:, 1], axis=1)[0]
    return _bilinear_axis(rows, offsets[:, 0], axis=2)[0]


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_closed_form_gradients_equal_those_of_differentiating_the_gathers(complex_: bool,
                                                                          jit: bool) -> None:
    # fractional, integer, zero and beyond-the-image shifts, on both axes
    rng = np.random.default_rng(11)
    x = tf.constant(_images(rng, (6, 9, 11, 2), complex_))
    g = tf.constant(_images(rng, (6, 9, 11, 2), complex_))
    offsets = tf.constant([[0.3, -2.7], [4.0, 1.5], [0.0, 0.0], [-12.5, 0.25], [2.75, 9.5],
                           [-0.5, -3.0]], tf.float32)

    def grads(fn: object) -> list[np.ndarray]:
        def run() -> list[tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch([x, offsets])
                value = tf.reduce_sum(tf.math.real(tf.math.conj(g) * fn(x, offsets)))
            return tape.gradient(value, [x, offsets])

        return [t.numpy() for t in (tf.function(run, jit_compile=True) if jit else run)()]

    closed = grads(lambda a, o: translate(a, o, use_xla=True))
    plain = grads(_plain_gather_translate)
    np.testing.assert_allclose(closed[0], plain[0], atol=1e-5)  # images
    np.testing.assert_allclose(closed[1], plain[1], rtol=1e-5, atol=1e-4)  # offsets
    # every shift that keeps part of the image gets a gradient (rows 3 and 4 leave nothing)
    assert np.abs(closed[1][[0, 1, 2, 5]]).min() > 0 and not closed[1][[3, 4]].any()


def test_image_gradient_of_the_gather_path_compiles_without_a_scatter() -> None:
    # The shift's adjoint is a shift back: gathers, not XLA's slow scatter-add (STEP-COST-001).
    rng = np.random.default_rng(12)
    x = tf.constant(_images(rng, (8, 24, 24, 3), complex_=False))
    offsets = tf.constant(rng.uniform(-4, 4, size=(8, 2)).astype(np.float32))

    def image_grad(fn: object) -> str:
        @tf.function(jit_compile=True)
        def run(a: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(a)
                value = tf.reduce_sum(fn(a, offsets) ** 2)
            return tape.gradient(value, a)

        return run.experimental_get_compiler_ir(x)(stage="hlo")

    assert "scatter" in image_grad(_plain_gather_translate)  # the control: the check can fail
    assert "scatter" not in image_grad(lambda a, o: translate(a, o, use_xla=True))


def test_gradient_flows_through_layer_under_jit_for_complex_images() -> None:
    layer = Translation(use_xla=True)
    x = tf.Variable(tf.complex(tf.ones([4, 10, 10, 1]), tf.zeros([4, 10, 10, 1])))
    offsets = tf.constant([[0.5, -1.25], [2.0, 0.3]])

    @tf.function(jit_compile=True)
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.abs(layer([x, offsets])) ** 2)
        return tape.gradient(loss, x)

    grad = step().numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_layer_get_config_round_trip_and_float32_under_mixed_policy() -> None:
    layer = Translation(use_xla=False, name="shift")
    config = layer.get_config()
    clone = Translation.from_config(config)
    assert clone.get_config() == config and clone.use_xla is False
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, Translation) and restored.use_xla is False
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        out = Translation()([tf.ones([2, 8, 8, 1]), tf.constant([[0.5, 0.5]])])
    finally:
        keras.config.set_dtype_policy(previous)
    assert out.dtype == tf.float32
    with pytest.raises(TypeError, match="use_xla must be a bool"):
        Translation(use_xla="yes")


def test_layer_in_functional_model_keeps_complex_dtype() -> None:
    images = keras.Input((16, 16, 1), dtype="complex64")
    offsets = keras.Input((2,))
    shifted = Translation()([images, offsets])
    assert shifted.dtype == "complex64" and tuple(shifted.shape) == (None, 16, 16, 1)
    model = keras.Model([images, offsets], shifted)
    x = np.ones((8, 16, 16, 1), np.complex64)
    out = model([x, np.full((2, 2), 0.5, np.float32)])  # 8 images, 2 offsets → repeated 4×
    assert out.shape == (8, 16, 16, 1) and out.dtype == tf.complex64


RACE_SCRIPT = """
import tensorflow as tf
from ptycho.translation import translate
spec = [tf.TensorSpec([None, 8, 8, 1], tf.float32), tf.TensorSpec([None, 2], tf.float32)]
fn = tf.function(lambda a, o: translate(a, o, use_xla=False), input_signature=spec)
images, offsets = tf.zeros([6, 8, 8, 1]), tf.zeros([4, 2])
bare = 0
for _ in range(200):
    try:
        fn(images, offsets)
    except tf.errors.InvalidArgumentError as exc:
        bare += "integer multiple k of the offset batch" not in str(exc)
    else:
        raise SystemExit("no error raised")
print("bare reshape errors:", bare)
raise SystemExit(1 if bare else 0)
"""


@pytest.mark.integration  # a fresh TensorFlow process, 200 calls
def test_batch_mismatch_message_is_not_raced_by_the_reshape() -> None:
    """The graph-mode assertion runs before the reshape, every call: without the control
    dependency a fresh process reported the bare reshape mismatch in ~2 of 3 of 200 calls."""
    proc = subprocess.run([sys.executable, "-c", RACE_SCRIPT], capture_output=True, text=True,
                          timeout=240, cwd=Path(__file__).resolve().parents[2],
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-500:] + proc.stderr[-2000:]


def test_fourier_translate_keeps_every_frequency_where_bilinear_blurs() -> None:
    from ptycho.translation import fourier_translate

    rng = np.random.default_rng(7)
    img = np.zeros((2, 32, 32, 1), np.complex64)
    img[:, 8:24, 8:24, 0] = _images(rng, (2, 16, 16), True)  # zero margin: no wrap-around
    shifts = np.array([[2.5, -1.25], [0.3, 3.7]], np.float32)
    there = fourier_translate(img, shifts)
    back = fourier_translate(there, -shifts).numpy()
    np.testing.assert_allclose(back, img, atol=1e-5)  # lossless round trip
    blurred = translate(translate(img, shifts), -shifts).numpy()
    assert np.abs(blurred - img).max() > 0.2  # bilinear round trip loses detail
    # integer shifts agree with the bilinear path; the real path returns real images
    ints = np.array([[3.0, -2.0], [-1.0, 4.0]], np.float32)
    np.testing.assert_allclose(fourier_translate(img, ints).numpy(), translate(img, ints).numpy(), atol=1e-5)
    real = fourier_translate(img.real.copy(), ints)
    assert real.dtype == tf.float32
    np.testing.assert_allclose(real.numpy(), translate(img.real.copy(), ints).numpy(), atol=1e-5)
    jit = tf.function(fourier_translate, jit_compile=True)
    np.testing.assert_allclose(jit(img, shifts).numpy(), there.numpy(), atol=1e-5)
