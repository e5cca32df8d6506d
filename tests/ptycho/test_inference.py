"""Inference: stitching reproduces the object, reconstruct shapes/paths, scanned region."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ptycho.config import SimConfig  # noqa: E402
from ptycho.inference import (  # noqa: E402
    canvas_shape,
    predict_patches,
    reconstruct,
    scanned_region,
    stitch_patches,
)
from ptycho.model import build_model, model_config_for  # noqa: E402
from ptycho.physics import simulate  # noqa: E402
from ptycho.stitching import (  # noqa: E402
    STITCH_CHUNK,
    frame_padding,
    splat_patches,
    stitch_in_frame,
    weighted_average,
)

pytestmark = pytest.mark.integration  # builds and runs models


@pytest.fixture(scope="module")
def sim() -> object:
    return simulate(SimConfig(N=32, gridsize=2, n_images=100, nphotons=1e9, seed=7))


def test_stitching_ground_truth_patches_reproduces_the_object(sim: object) -> None:
    weights = np.abs(sim.probe) ** 2
    obj = stitch_patches(sim.object_patches, sim.coords, sim.obj.shape, weights / weights.max())
    assert obj.shape == sim.obj.shape and obj.dtype == np.complex64
    crop = scanned_region(sim.coords, obj.shape)
    err = np.mean(np.abs(obj[crop] - sim.obj[crop])) / np.mean(np.abs(sim.obj[crop]))
    assert err < 0.02  # bilinear extraction + splatting blur only
    # a patch shifted by one pixel in its coordinates is clearly detected
    moved = sim.coords.copy()
    moved[:, 0, 0, :] += 3.0
    wrong = stitch_patches(sim.object_patches, moved, sim.obj.shape, weights / weights.max())
    assert np.mean(np.abs(wrong[crop] - sim.obj[crop])) > 3 * np.mean(np.abs(obj[crop] - sim.obj[crop]))


def _splat_by_pixel(patches: np.ndarray, coords: np.ndarray, shape: tuple[int, int],
                    weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear splatting written out pixel by pixel: the reference of the vectorised one."""
    b, n, _, c = patches.shape
    num, den = np.zeros(shape, np.complex128), np.zeros(shape)
    for i in range(b):
        for k in range(c):
            x0, y0 = coords[i, 0, 0, k] - n // 2, coords[i, 0, 1, k] - n // 2
            bx, by = int(np.floor(x0)), int(np.floor(y0))
            fx, fy = x0 - bx, y0 - by
            for y in range(n):
                for x in range(n):
                    for dy, wy in ((0, 1 - fy), (1, fy)):
                        for dx, wx in ((0, 1 - fx), (1, fx)):
                            num[by + y + dy, bx + x + dx] += wx * wy * weights[y, x] * patches[i, y, x, k]
                            den[by + y + dy, bx + x + dx] += wx * wy * weights[y, x]
    return num, den


def test_splatting_matches_the_pixel_rule_and_adds_over_disjoint_sets() -> None:
    rng = np.random.default_rng(3)
    b, n, c = STITCH_CHUNK // 2 + 7, 5, 2  # more patches than one chunk: the chunks join
    patches = (rng.normal(size=(b, n, n, c)) + 1j * rng.normal(size=(b, n, n, c))).astype(np.complex64)
    coords = rng.uniform(3, 20, size=(b, 1, 2, c))
    weights = rng.uniform(0.1, 1, size=(n, n))
    num, den = splat_patches(patches, coords, (26, 26), weights)
    ref_num, ref_den = _splat_by_pixel(patches, coords, (26, 26), weights)
    np.testing.assert_allclose(num, ref_num, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(den, ref_den, rtol=1e-12, atol=1e-12)
    halves = [splat_patches(patches[part], coords[part], (26, 26), weights)
              for part in (slice(0, 40), slice(40, None))]
    np.testing.assert_allclose(halves[0][0] + halves[1][0], num, rtol=1e-9, atol=1e-9)
    assert np.array_equal(stitch_patches(patches, coords, (26, 26), weights), weighted_average(num, den))


def test_stitching_averages_overlapping_patches() -> None:
    patches = np.zeros((2, 4, 4, 1), np.complex64)
    patches[0] = 1.0
    patches[1] = 3.0
    coords = np.array([[[[2.0], [2.0]]], [[[4.0], [2.0]]]], np.float32)  # (2, 1, 2, 1)
    out = stitch_patches(patches, coords, (8, 10))
    assert out[1, 1] == 1.0 and out[1, 5] == 3.0
    assert out[1, 2] == pytest.approx(2.0) and out[1, 3] == pytest.approx(2.0)
    assert out[6, 6] == 0.0  # never covered
    with pytest.raises(ValueError, match="leave the 8×10 canvas"):
        stitch_patches(patches, coords + 5.0, (8, 10))
    with pytest.raises(ValueError, match=r"\(2, 1, 2, 1\)"):
        stitch_patches(patches, coords[:, :, :, :0], (8, 10))


@pytest.mark.parametrize("jit", [False, True], ids=["non_jit", "xla"])
def test_reconstruct_returns_the_canvas(sim: object, jit: bool) -> None:
    model = build_model(model_config_for(sim, n_filters_scale=1, jit_compile=jit))
    obj = reconstruct(model, sim, batch_size=32)  # 100 groups: a partial last batch
    assert obj.shape == sim.obj.shape and obj.dtype == np.complex64
    crop = scanned_region(sim.coords, obj.shape)
    assert np.all(np.abs(obj[crop]) > 0) and np.all(np.isfinite(obj))
    patches = predict_patches(model, sim.diffraction[:5])
    assert patches.shape == (5, 32, 32, 4) and patches.dtype == np.complex64


def test_reconstruct_without_ground_truth_sizes_the_canvas_from_coords(sim: object) -> None:
    class NoTruth:
        diffraction = sim.diffraction[:10]
        coords = sim.coords[:10]

    model = build_model(model_config_for(sim, n_filters_scale=1))
    obj = reconstruct(model, NoTruth())
    assert obj.shape == canvas_shape(sim.coords[:10], 32)
    rows, cols = scanned_region(NoTruth.coords, obj.shape)
    assert rows.stop <= obj.shape[0] and cols.stop <= obj.shape[1]


def test_scanned_region_is_the_bounding_box_of_positions() -> None:
    coords = np.array([[[[10.2, 30.7], [5.5, 40.0]]]], np.float32)  # x: 10.2, 30.7  y: 5.5, 40
    rows, cols = scanned_region(coords, (100, 100))
    assert (rows.start, rows.stop, cols.start, cols.stop) == (6, 41, 11, 31)
    assert scanned_region(coords, (20, 100))[0] == slice(6, 20)
    with pytest.raises(ValueError, match=r"coords must have shape \(B, 1, 2, C\) or \(P, 2\), got \(3,\)"):
        scanned_region(np.zeros(3))


def test_reconstruct_rejects_bad_input(sim: object) -> None:
    model = build_model(model_config_for(sim, n_filters_scale=1))

    class Wrong:
        diffraction = sim.diffraction[:, :16, :16]
        coords = sim.coords

    with pytest.raises(ValueError, match=r"\(B, 32, 32, 4\).*\(100, 16, 16, 4\)"):
        reconstruct(model, Wrong())
    Wrong.diffraction = sim.diffraction
    Wrong.coords = sim.coords[:50]
    with pytest.raises(ValueError, match=r"\(100, 1, 2, 4\).*\(50, 1, 2, 4\)"):
        reconstruct(model, Wrong())
    Wrong.coords = None
    with pytest.raises(ValueError, match="coords"):
        reconstruct(model, Wrong())


def _ptychopinn_like_scan(size: int, n: int, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object (size²), positions (P, 2) (x, y) on a grid from `margin` to size - margin (the
    extreme patches reach margin - n//2 outside the object), and exact patches (P, n, n)
    zero outside the object (PtychoPINN pads its object with zeros)."""
    rng = np.random.default_rng(1)
    obj = (0.6 + rng.random((size, size))).astype(np.complex64)
    axis = np.round(np.linspace(margin, size - margin, 6))  # whole pixels: exact patches
    xy = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    padded = np.pad(obj, n)
    patches = np.stack([padded[int(y) - n // 2 + n:int(y) - n // 2 + 2 * n,
                               int(x) - n // 2 + n:int(x) - n // 2 + 2 * n] for x, y in xy])
    return obj, xy, patches


@pytest.mark.parametrize(("size", "n", "margin"), [(48, 16, 3.0), (48, 16, 8.0)],
                         ids=["overhang", "exact_fill"])
def test_patches_overhanging_or_exactly_filling_the_frame_are_stitched(size: int, n: int,
                                                                       margin: float) -> None:
    """PtychoPINN's scans put centres 15 px from the edge (N=64 patches overhang by 17 px);
    centres N/2 from the edge fill the frame exactly. Both used to be refused as 'leaving
    the canvas'; now stitched on a larger canvas and cut back to the frame."""
    obj, xy, patches = _ptychopinn_like_scan(size, n, margin)
    coords = xy.reshape(-1, 1, 2, 1)
    with pytest.raises(ValueError, match="leave the"):  # the frame alone cannot hold them
        stitch_patches(patches[..., None], coords, obj.shape)
    out = stitch_in_frame(patches[..., None], coords, obj.shape)
    assert out.shape == obj.shape and out.dtype == np.complex64
    crop = scanned_region(xy, obj.shape)
    np.testing.assert_allclose(out[crop], obj[crop], rtol=1e-6)
    assert np.all(out != 0)  # the patches cover the whole frame
    top, left, bottom, right = frame_padding(xy, n, obj.shape)
    assert min(top, left, bottom, right) >= 0 and (top > 0) == (margin < n // 2)


def test_reconstruct_stitches_a_scan_that_overhangs_the_truth(sim: object) -> None:
    import dataclasses

    model = build_model(model_config_for(sim, n_filters_scale=1))
    small = sim.obj[10:-10, 10:-10]  # the truth's frame, smaller than the scan's reach
    moved = dataclasses.replace(sim, obj=small, coords=sim.coords - 10.0)
    obj = reconstruct(model, moved)
    assert obj.shape == small.shape and np.isfinite(obj).all()
    crop = scanned_region(moved.coords, obj.shape)
    assert np.all(np.abs(obj[crop]) > 0)


def test_support_window_is_centred_on_the_scan_pixel_and_holds_every_lit_pixel() -> None:
    from ptycho.inference import support_window

    weights = np.zeros((16, 16))
    weights[5:10, 6:9] = 1.0  # lit rows 5..9 (3 below pixel 8, 1 above), cols 6..8
    weights[8, 12] = 1e-10  # below the floor: not kept
    window = support_window(weights)
    assert window == slice(4, 12)  # half-width 4 around pixel 8: window pixel 4 is patch pixel 8
    outside = np.ones((16, 16), bool)
    outside[window, window] = False
    assert weights[outside].max() < 1e-9
    weights[8, 12] = 1e-3  # lit out to the right: 5 pixels from the centre
    assert support_window(weights) == slice(3, 13)
    weights[0, 8] = 1.0  # lit to the patch's edge: nothing to drop
    assert support_window(weights) == slice(0, 16)


def test_reconstruct_on_the_lit_window_equals_stitching_whole_patches() -> None:
    """reconstruct keeps only the window the probe lights; the pixels it drops carry < 1e-9 of
    the |probe|² weight, so aligning and stitching whole patches gives the same object."""
    from ptycho.inference import support_window
    from ptycho.model import model_probe
    from ptycho.patch_phases import align_patch_phases

    sim = simulate(SimConfig(N=64, gridsize=2, n_images=24, nphotons=1e9, probe_defocus=2.0,
                             object_type="phase_blobs", seed=11))
    model = build_model(model_config_for(sim))
    weights = np.abs(model_probe(model)) ** 2
    weights /= weights.max()
    window = support_window(weights)
    assert 0 < window.start and window.stop - window.start < 64  # a real crop for this probe
    assert predict_patches(model, sim.diffraction[:3], window=window).shape == (
        3, window.stop - window.start, window.stop - window.start, 4)
    whole = predict_patches(model, sim.diffraction)
    expected = stitch_in_frame(align_patch_phases(whole, sim.coords, weights), sim.coords,
                               sim.obj.shape, weights)
    got = reconstruct(model, sim, fit_slopes=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
