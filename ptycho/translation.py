"""Sub-pixel bilinear translation of image batches (real or complex), two implementations.

Convention: an offset ``(dx, dy)`` moves content towards +x (column axis) and +y (row
axis), like ``np.roll(img, (dy, dx), axis=(0, 1))`` for integer shifts, except that pixels
shifted in from outside are zero instead of wrapping:

    out[m, y, x, k] = bilinear(images[m, :, :, k]) at (y - dy[m], x - dx[m])

Bilinear interpolation uses the four neighbouring pixels; a neighbour outside the image
contributes zero ("per-corner" zero fill, the semantics of ``ImageProjectiveTransformV3``
with ``fill_mode="CONSTANT"``, ``fill_value=0``). Both paths therefore agree everywhere,
including the borders, to float32 round-off.

* ``use_xla=True``  — separable gather-based implementation; XLA-compilable (works inside
  ``tf.function(jit_compile=True)``); gradients w.r.t. images are exact (adjoint).
* ``use_xla=False`` — ``tf.raw_ops.ImageProjectiveTransformV3`` (bilinear, constant fill);
  not XLA-compilable; complex images are transformed as stacked real/imag channels.

Batch broadcasting: images ``(M, H, W, K)`` with offsets ``(M', 2)`` where ``M == k·M'``
repeats every offset k times consecutively (image i uses offset ``i // k``) — the layout
produced by flattening ``(b, N, N, C)`` groups into ``(b·C, N, N, 1)`` when one offset per
group is given. Any other mismatch raises ``ValueError`` naming both shapes when the batch
sizes are known at trace time; with unknown (dynamic) batch sizes a graph assertion raises
``InvalidArgumentError`` with the same message, and under XLA (where assertions are
dropped) compilation fails at the node named ``translate_error_image_batch_not_multiple_
of_offset_batch``.

Nothing is built at import time.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

__all__ = ["translate", "fourier_translate", "Translation"]

_BATCH_ERROR_NODE = "translate_error_image_batch_not_multiple_of_offset_batch"


def _checked_inputs(name: str, images: Any, offsets: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """images (M, H, W, K) float32/complex64 and offsets (M', 2) real → tensors, the offsets
    float32 and repeated to M rows (``_match_batch``); TypeError/ValueError naming ``name``."""
    images = tf.convert_to_tensor(images)
    offsets = tf.convert_to_tensor(offsets)
    if images.dtype not in (tf.float32, tf.complex64):
        raise TypeError(f"{name}: images must be float32 or complex64, got {images.dtype.name}")
    if not (offsets.dtype.is_floating or offsets.dtype.is_integer):
        raise TypeError(f"{name}: offsets must be real numbers, got {offsets.dtype.name}")
    if images.shape.rank != 4:
        raise ValueError(f"{name}: images must have shape (M, H, W, K), got {images.shape}")
    if offsets.shape.rank != 2 or offsets.shape[1] not in (2, None):
        raise ValueError(f"{name}: offsets must have shape (M, 2) as (dx, dy), got {offsets.shape}")
    return images, _match_batch(images, tf.cast(offsets, tf.float32))


def translate(images: Any, offsets: Any, use_xla: bool = True) -> tf.Tensor:
    """Shift every image by its (dx, dy) offset with bilinear interpolation and zero fill.

    images:  (M, H, W, K) float32 or complex64
    offsets: (M', 2) float (dx, dy) in pixels, cast to float32; M == k·M' (k ≥ 1 integer)
    use_xla: gather path (XLA-compilable) if True, ImageProjectiveTransformV3 otherwise
    returns: (M, H, W, K), same dtype as images

    Raises TypeError for an unsupported dtype, ValueError for a wrong rank, a last offset
    dimension ≠ 2, or batch sizes that are not multiples (naming both shapes).
    """
    images, offsets = _checked_inputs("translate", images, offsets)
    if use_xla:
        return _translate_gather(images, offsets)
    return _translate_projective(images, offsets)


def _batch_message(images_shape: Any, offsets_shape: Any) -> str:
    return (
        f"translate: image batch must be an integer multiple k of the offset batch "
        f"(images shape {images_shape}, offsets shape {offsets_shape})"
    )


def _match_batch(images: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    """Return offsets (M, 2) matching the image batch; repeat each offset k = M // M' times."""
    m_static, n_static = images.shape[0], offsets.shape[0]
    if m_static is not None and n_static is not None:
        if n_static == 0 or m_static % n_static != 0:
            raise ValueError(_batch_message(tuple(images.shape), tuple(offsets.shape)))
        if m_static == n_static:
            return offsets
        return tf.repeat(offsets, m_static // n_static, axis=0)
    m = tf.shape(images)[0]
    n = tf.shape(offsets)[0]
    n_safe = tf.maximum(n, 1)
    ok = tf.logical_and(n > 0, tf.equal(tf.math.floormod(m, n_safe), 0))
    # Effective in eager/graph mode; XLA drops assertions, where the reshape below fails.
    # The reshape waits for the assertion (a control dependency): without it graph mode may run
    # the reshape first and report its bare size mismatch instead of this message.
    check = tf.debugging.Assert(
        ok,
        ["translate: image batch must be an integer multiple k of the offset batch; "
         "images shape", tf.shape(images), "offsets shape", tf.shape(offsets)],
    )
    with tf.control_dependencies([] if check is None else [check]):  # None when eager
        k = m // n_safe
        repeated = tf.broadcast_to(offsets[:, None, :], tf.stack([n, k, 2]))
        return tf.reshape(repeated, tf.stack([m, 2]), name=_BATCH_ERROR_NODE)


def fourier_translate(images: Any, offsets: Any) -> tf.Tensor:
    """Exact (band-limited) sub-pixel shift by a linear phase ramp in Fourier space.

    Unlike bilinear interpolation, which low-passes every fractional shift (a half-pixel
    shift averages neighbours and removes the Nyquist frequency), this keeps every spatial
    frequency; a shift and its inverse give back the image to round-off. The shift is
    circular: content leaving one edge enters the opposite one, so callers shift zero-padded
    images by less than their margin. Offsets follow ``translate`` ((dx, dy), +x moves content
    to larger column index; batch broadcasting as there).

    images:  (M, H, W, K) float32 or complex64; offsets: (M', 2) float, M == k·M'
    returns: (M, H, W, K), same dtype (real input → real part of the shifted image)
    """
    images, offsets = _checked_inputs("fourier_translate", images, offsets)
    h, w = images.shape[1], images.shape[2]
    fy = tf.constant(_fftfreq(h), tf.float32)  # cycles / px
    fx = tf.constant(_fftfreq(w), tf.float32)
    angle = -2.0 * 3.141592653589793 * (offsets[:, 1, None, None] * fy[None, :, None]
                                        + offsets[:, 0, None, None] * fx[None, None, :])
    ramp = tf.complex(tf.cos(angle), tf.sin(angle))[:, None]  # (M, 1, H, W)
    planes = tf.transpose(tf.cast(images, tf.complex64), [0, 3, 1, 2])  # FFT on the inner axes
    shifted = tf.transpose(tf.signal.ifft2d(tf.signal.fft2d(planes) * ramp), [0, 2, 3, 1])
    return shifted if images.dtype.is_complex else tf.math.real(shifted)


def _fftfreq(n: int) -> list[float]:
    """numpy.fft.fftfreq(n) as a list (cycles / px); the Nyquist bin of an even n is -0.5."""
    return [(k if k < (n + 1) // 2 else k - n) / n for k in range(n)]


# --------------------------------------------------------------------------- gather path
def _shift_axis(images: tf.Tensor, shift: tf.Tensor, axis: int) -> tf.Tensor:
    """Bilinear zero-fill shift of images (M, H, W, K) along axis 1 or 2 by shift (M,).

    The gradient is computed in closed form: a uniform bilinear shift by s with zero fill has
    the shift by −s as its exact adjoint, so the images' gradient is another pair of gathers,
    not the scatter-add that differentiating ``tf.gather`` gives (about three times the
    forward pass on the CPU, docs/findings.md STEP-COST-001). The shift's gradient is
    Σ upstream · (valid₀·g₀ − valid₁·g₁) per image, from the forward gathers.
    """

    @tf.custom_gradient
    def shifted(images: tf.Tensor, shift: tf.Tensor) -> Any:
        out, g0, g1, v0, v1 = _bilinear_axis(images, shift, axis)

        def grad(upstream: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            back = _bilinear_axis(upstream, -shift, axis)[0]
            slope = _axis_weights(g0.dtype, v0, -v1, axis)
            d_out = slope[0] * g0 + slope[1] * g1  # ∂out/∂shift
            d_shift = tf.reduce_sum(tf.math.real(tf.math.conj(upstream) * d_out), axis=[1, 2, 3])
            return back, d_shift

        return out, grad

    return shifted(images, shift)


def _axis_weights(dtype: tf.DType, a0: tf.Tensor, a1: tf.Tensor,
                  axis: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The per-row (axis 1) or per-column (axis 2) weights (M, n) shaped to broadcast over
    (M, H, W, K) images of ``dtype``."""
    if axis == 1:
        a0, a1 = a0[:, :, None, None], a1[:, :, None, None]
    else:
        a0, a1 = a0[:, None, :, None], a1[:, None, :, None]
    if dtype.is_complex:
        a0 = tf.complex(a0, tf.zeros_like(a0))
        a1 = tf.complex(a1, tf.zeros_like(a1))
    return a0, a1


def _bilinear_axis(images: tf.Tensor, shift: tf.Tensor, axis: int) -> tuple[tf.Tensor, ...]:
    """The shift of ``_shift_axis`` by plain TensorFlow ops: (out, g0, g1, valid0, valid1), the
    result, the two gathered neighbours (M, H, W, K) and their in-range masks (M, n)."""
    size = images.shape[axis] if images.shape[axis] is not None else tf.shape(images)[axis]
    grid = tf.cast(tf.range(size), tf.float32)
    src = grid[None, :] - shift[:, None]  # (M, n) source coordinate of every output pixel
    floor = tf.floor(src)
    w1 = src - floor  # same arithmetic as ImageProjectiveTransform: (x - x_floor)
    w0 = (floor + 1.0) - src  # (x_ceil - x)
    i0 = tf.cast(floor, tf.int32)
    i1 = i0 + 1
    size_i = tf.cast(size, tf.int32)
    v0 = tf.cast((i0 >= 0) & (i0 < size_i), tf.float32)
    v1 = tf.cast((i1 >= 0) & (i1 < size_i), tf.float32)
    g0 = tf.gather(images, tf.clip_by_value(i0, 0, size_i - 1), axis=axis, batch_dims=1)
    g1 = tf.gather(images, tf.clip_by_value(i1, 0, size_i - 1), axis=axis, batch_dims=1)
    a0, a1 = _axis_weights(images.dtype, w0 * v0, w1 * v1, axis)
    return a0 * g0 + a1 * g1, g0, g1, v0, v1


def _translate_gather(images: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    shifted = _shift_axis(images, offsets[:, 1], axis=1)
    return _shift_axis(shifted, offsets[:, 0], axis=2)


# --------------------------------------------------------------------------- projective path
def _translate_projective(images: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    m = tf.shape(offsets)[0]
    one, zero = tf.ones([m], tf.float32), tf.zeros([m], tf.float32)
    transforms = tf.stack(
        [one, zero, -offsets[:, 0], zero, one, -offsets[:, 1], zero, zero], axis=1
    )

    def warp(real: tf.Tensor) -> tf.Tensor:
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=real,
            transforms=transforms,
            output_shape=tf.shape(real)[1:3],
            fill_value=tf.constant(0.0, tf.float32),
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )

    if not images.dtype.is_complex:
        out = warp(images)
        out.set_shape(images.shape)
        return out
    channels = tf.shape(images)[3]
    stacked = tf.concat([tf.math.real(images), tf.math.imag(images)], axis=3)
    warped = warp(stacked)
    out = tf.complex(warped[..., :channels], warped[..., channels:])
    out.set_shape(images.shape)
    return out


# --------------------------------------------------------------------------- layer
@keras.saving.register_keras_serializable(package="ptycho")
class Translation(keras.layers.Layer):
    """Keras layer wrapping ``translate``; call with ``[images, offsets]``.

    images (M, H, W, K) float32|complex64, offsets (M', 2) (dx, dy), M == k·M'.
    The layer computes in float32 / complex64 regardless of a global mixed-precision
    policy (dtype defaults to "float32", no autocasting): it is part of the physics.
    """

    def __init__(self, use_xla: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if not isinstance(use_xla, bool):
            raise TypeError(f"Translation: use_xla must be a bool, got {use_xla!r}")
        self.use_xla = use_xla

    def call(self, inputs: Any) -> tf.Tensor:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError("Translation expects inputs [images, offsets]")
        images, offsets = inputs
        return translate(images, offsets, use_xla=self.use_xla)

    def compute_output_spec(self, inputs: Any) -> keras.KerasTensor:
        images = inputs[0]
        return keras.KerasTensor(images.shape, dtype=images.dtype)  # complex stays complex

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"use_xla": self.use_xla})
        return config
