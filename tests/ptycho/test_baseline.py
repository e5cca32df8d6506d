"""The iterative baseline (pty-chi, the ``[baseline]`` extra): a noise-free scan reconstructs
with LSQML, the position and probe-normalisation conventions, and ``python -m ptycho
reconstruct``. Skipped without pty-chi (``make test-baseline`` fails instead: it imports it
first); the pure-numpy conventions and the 'extra missing' message are tested always."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from ptycho.baseline import available, normalise_probe, ptychi_positions
from ptycho.metrics import evaluate, scanned_region

ROOT = Path(__file__).resolve().parents[2]
N = 32

needs_ptychi = pytest.mark.skipif(not available(), reason="pty-chi not installed (make baseline)")


@pytest.fixture(scope="module")
def scan(canonical_writer: ModuleType) -> dict[str, np.ndarray]:
    """200 positions, N=32, 80 px object, 1e12 photons (noise-free in practice)."""
    return canonical_writer.make_dataset(200, n=N, size=80, nphotons=1e12, seed=3)


def _positions(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([arrays["xcoords"], arrays["ycoords"]], axis=1)


def _subpixel_shift(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(dy, dx) of image relative to reference: cross-correlation peak, parabolic refinement."""
    a, b = image - image.mean(), reference - reference.mean()
    corr = np.fft.fftshift(np.real(np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b)))))
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape))
    shift = []
    for axis in (0, 1):
        lo, hi = peak.copy(), peak.copy()
        lo[axis] -= 1
        hi[axis] += 1
        c0, cm, cp = corr[tuple(peak)], corr[tuple(lo)], corr[tuple(hi)]
        shift.append(peak[axis] - corr.shape[axis] // 2 + 0.5 * (cm - cp) / (cm - 2 * c0 + cp))
    return np.array(shift)


def test_position_and_probe_conventions_without_ptychi() -> None:
    xy = np.array([[10.0, 20.0], [12.5, 3.0]])
    ys, xs = ptychi_positions(xy, 64, (5, 7))  # pty-chi centre (N-1)/2 = 31.5, ours N//2 = 32
    np.testing.assert_allclose(ys, [24.5, 7.5])
    np.testing.assert_allclose(xs, [16.5, 19.0])
    ys, xs = ptychi_positions(xy, 15, (0, 0))  # odd N: both conventions use pixel 7
    np.testing.assert_allclose(np.stack([xs, ys], 1), xy)
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        ptychi_positions(xy.T[:, :1], 64, (0, 0))
    probe = np.ones((4, 4), np.complex64) * 3
    intensities = np.full((5, 4, 4), 2.0)
    scaled, s = normalise_probe(probe, intensities)
    assert np.sum(np.abs(scaled) ** 2) * 16 == pytest.approx(32.0)  # mean total counts
    assert s == pytest.approx(np.sqrt(32.0 / (9 * 16 * 16)))
    with pytest.raises(ValueError, match="all zero"):
        normalise_probe(probe * 0, intensities)


def test_reconstruct_without_the_extra_says_how_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ptychi'] = None\n"
            "from ptycho.cli import main\n"
            f"sys.exit(main(['reconstruct', '--data', {str(tmp_path / 'x.npz')!r}, "
            f"'--output-dir', {str(tmp_path / 'out')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "make baseline" in proc.stderr and "pip install -e .[baseline]" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def lsqml(scan: dict[str, np.ndarray]) -> object:
    from ptycho.baseline import reconstruct_iterative

    obj = scan["objectGuess"]
    crop = scanned_region(_positions(scan), obj.shape)
    return reconstruct_iterative(
        scan["diffraction"], _positions(scan), scan["probeGuess"], engine="lsqml", epochs=20,
        object_shape=obj.shape, threads=1,
        on_epoch=lambda epoch, o: {"amp_ssim": evaluate(o, obj, crop)["amp_ssim"]})


@pytest.mark.baseline
@needs_ptychi
def test_noise_free_scan_reconstructs_with_lsqml(scan: dict, lsqml: object) -> None:
    obj = scan["objectGuess"]
    assert lsqml.obj.shape == obj.shape and lsqml.obj.dtype == np.complex64
    scores = evaluate(lsqml.obj, obj, scanned_region(_positions(scan), obj.shape))
    assert scores["amp_ssim"] >= 0.99, scores
    assert scores["phase_ssim"] >= 0.9, scores  # the writer's weak phase (0.3 rad) too
    ssims = [info.scores["amp_ssim"] for info in lsqml.epochs]
    assert len(ssims) == 20 and ssims[-1] > ssims[0]
    walls = [info.wall_s for info in lsqml.epochs]
    assert walls == sorted(walls) and lsqml.wall_s >= walls[-1]


@pytest.mark.baseline
@needs_ptychi
def test_positions_convention_puts_the_object_where_the_truth_is(scan: dict, lsqml: object) -> None:
    from ptycho.baseline import reconstruct_iterative

    obj = scan["objectGuess"]
    rows, cols = scanned_region(_positions(scan), obj.shape)
    shift = _subpixel_shift(np.abs(lsqml.obj[rows, cols]), np.abs(obj[rows, cols]))
    assert np.all(np.abs(shift) < 0.15), shift  # half a pixel off would be the centre pixel wrong
    swapped = reconstruct_iterative(scan["diffraction"], _positions(scan)[:, ::-1],
                                    scan["probeGuess"], epochs=5, object_shape=obj.shape)
    assert evaluate(swapped.obj, obj, (rows, cols))["amp_ssim"] < 0.5  # x/y order matters


@pytest.mark.baseline
@needs_ptychi
def test_probe_scale_and_data_units_do_not_change_the_object(scan: dict) -> None:
    from ptycho.baseline import reconstruct_iterative

    obj = scan["objectGuess"]
    args = (_positions(scan), scan["probeGuess"])
    base = reconstruct_iterative(scan["diffraction"], *args, epochs=3, object_shape=obj.shape)
    bright = reconstruct_iterative(scan["diffraction"], _positions(scan), scan["probeGuess"] * 7,
                                   epochs=3, object_shape=obj.shape)
    assert bright.probe_scale == pytest.approx(base.probe_scale / 7, rel=1e-5)
    np.testing.assert_allclose(bright.obj, base.obj, rtol=1e-3, atol=1e-3)
    # intensities given as intensities reconstruct the same object as their amplitudes
    as_intensity = reconstruct_iterative(scan["diffraction"] ** 2, *args, epochs=3,
                                         object_shape=obj.shape, intensity=True)
    np.testing.assert_allclose(as_intensity.obj, base.obj, rtol=1e-3, atol=1e-3)
    # normalised probe: a unit-modulus object predicts the counts, so the object is ~unit scale
    amplitude = np.abs(base.obj[scanned_region(_positions(scan), obj.shape)])
    assert 0.5 < np.median(amplitude) / np.median(np.abs(obj)) < 2.0


@pytest.mark.baseline
@needs_ptychi
@pytest.mark.parametrize("engine", ["lsqml", "epie", "dm"])
def test_reconstruct_cli_writes_what_infer_writes(engine: str, canonical_writer: ModuleType,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ptycho.cli import main
    from ptycho.io import load_data

    canonical_writer.write(tmp_path / "scan.npz",
                           canonical_writer.make_dataset(120, n=16, size=64, nphotons=1e9, seed=5))
    out = tmp_path / "out"
    rc = main(["reconstruct", "--engine", engine, "--data", str(tmp_path / "scan.npz"), "--epochs",
               "3", "--output-dir", str(out), "--canonical-out", str(tmp_path / "recon.npz"),
               "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    summary = json.loads(captured.out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"amp_ssim", "amp_psnr", "phase_ssim", "amp_frc50", "crop"} <= set(metrics)
    assert metrics["engine"] == engine and metrics["epochs"] == 3 and metrics["threads"] == 1
    assert summary["amp_ssim"] == metrics["amp_ssim"] and metrics["reconstruct_seconds"] > 0
    assert (out / "recon.png").read_bytes().startswith(b"\x89PNG")
    with np.load(out / "recon.npz") as npz:
        obj = npz["object"]
    assert obj.shape == (64, 64) and np.isfinite(obj).all()
    again = load_data(tmp_path / "recon.npz", None)
    np.testing.assert_array_equal(again.obj, obj)
    if engine == "lsqml":
        assert metrics["amp_ssim"] > 0.8, metrics
