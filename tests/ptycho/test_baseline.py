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

from ptycho.baseline import (
    CANONICAL_MEAN_INTENSITY,
    available,
    canonical_intensity_scale,
    normalise_probe,
    ptychi_positions,
)
from ptycho.metrics import evaluate, scanned_region

pytestmark = pytest.mark.integration  # iterative reconstructions (pty-chi), spawns the ptycho command line

ROOT = Path(__file__).resolve().parents[2]
N = 32

needs_ptychi = pytest.mark.skipif(not available(), reason="pty-chi not installed (make baseline)")


@pytest.fixture(scope="module")
def scan(canonical_writer: ModuleType, ptychopinn_writer: ModuleType,
         noise_free_scan_writer: ModuleType) -> dict[str, np.ndarray]:
    """Noise-free scan, exactly this repo's model (tests/fixtures/canonical/noise_free_scan.py):
    PtychoPINN-style lines with a phase of up to ±0.25 rad, 169 positions, N = 32."""
    return noise_free_scan_writer.make_scan(canonical_writer, ptychopinn_writer, N)


def _positions(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([arrays["xcoords"], arrays["ycoords"]], axis=1)


def test_position_and_probe_conventions_without_ptychi() -> None:
    xy = np.array([[10.0, 20.0], [12.5, 3.0]])
    ys, xs, origin = ptychi_positions(xy, 64, (5, 7))  # pty-chi centre (N-1)/2 = 31.5, ours 32
    np.testing.assert_array_equal(ys, [20.0, 3.0])
    np.testing.assert_array_equal(xs, [10.0, 12.5])
    assert origin == (4.5, 6.5)
    assert ptychi_positions(xy, 15, (0, 0))[2] == (0.0, 0.0)  # odd N: both use pixel 7
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        ptychi_positions(xy.T[:, :1], 64, (0, 0))
    probe = np.ones((4, 4), np.complex64) * 3
    intensities = np.full((5, 4, 4), 2.0)
    scaled, s = normalise_probe(probe, intensities)
    assert np.sum(np.abs(scaled) ** 2) * 16 == pytest.approx(32.0)  # mean total counts
    assert s == pytest.approx(np.sqrt(32.0 / (9 * 16 * 16)))
    with pytest.raises(ValueError, match="all zero"):
        normalise_probe(probe * 0, intensities)
    intensities = np.random.default_rng(1).random((3, 8, 8)) * 1e-3
    scale = canonical_intensity_scale(intensities)
    assert np.log(scale) / np.log(4) == round(np.log(scale) / np.log(4))  # a power of four
    assert CANONICAL_MEAN_INTENSITY / 2 <= np.mean(intensities * scale) <= 2 * CANONICAL_MEAN_INTENSITY
    brighter = intensities * 4 ** 3  # amplitudes × 8: the same canonical data, bit for bit
    assert canonical_intensity_scale(brighter) == scale / 4 ** 3
    np.testing.assert_array_equal(brighter * canonical_intensity_scale(brighter), intensities * scale)
    for bad in (intensities * 0, intensities * np.nan):
        with pytest.raises(ValueError, match="mean intensity"):
            canonical_intensity_scale(bad)


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
    assert scores["phase_ssim"] >= 0.8, scores
    ssims = [info.scores["amp_ssim"] for info in lsqml.epochs]
    assert len(ssims) == 20 and ssims[-1] > ssims[0]
    walls = [info.wall_s for info in lsqml.epochs]
    assert walls == sorted(walls) and lsqml.wall_s >= walls[-1]


@pytest.mark.baseline
@needs_ptychi
@pytest.mark.parametrize("engine", ["lsqml", "epie"])
def test_positions_convention_makes_the_truth_a_fixed_point(scan: dict, engine: str) -> None:
    """Started at the truth (scaled to the normalised probe), the engines stay there: pty-chi's
    model reproduces the data exactly. Positions off by a pixel, x/y swapped, or the pty-chi
    default of half a pixel between the two centre conventions (which makes it shift the probe
    by half a pixel) all move the object away."""
    from ptycho.baseline import reconstruct_iterative

    obj, probe = scan["objectGuess"], scan["probeGuess"]
    k = np.mean(np.sum(np.abs(probe * scan["patches"]) ** 2, axis=(1, 2))) / np.sum(np.abs(probe) ** 2)
    crop = scanned_region(_positions(scan), obj.shape)

    def ssim_after(positions: np.ndarray) -> float:
        result = reconstruct_iterative(scan["diffraction"], positions, probe, engine=engine,
                                       epochs=3, object_shape=obj.shape,
                                       initial_object=obj / np.sqrt(k))
        return evaluate(result.obj, obj, crop)["amp_ssim"]

    assert ssim_after(_positions(scan)) > 0.9999
    for wrong in (_positions(scan) + 1.0, _positions(scan)[:, ::-1], _positions(scan) - 0.5):
        assert ssim_after(wrong) < 0.99


@pytest.mark.baseline
@needs_ptychi
def test_probe_scale_and_data_units_do_not_change_the_object(scan: dict) -> None:
    """pty-chi gets the data at a canonical scale (its LSQML has absolute constants: with the
    file's units the amplitude SSIM after 20 epochs was 0.21 for these data × 1e-3). Units that
    differ by a power of two give the same object bit for bit; other units (here five decades
    dimmer, probe × 7) change pty-chi's input by rounding only, and rounding-level differences
    give different objects after a few epochs (SSIM 0.916–0.948 at 5 epochs for amplitudes ×
    (1 + k·2⁻²²), k = 0–6), so those are compared after 20 epochs, where that spread was 0.001."""
    from ptycho.baseline import reconstruct_iterative

    obj = scan["objectGuess"]
    crop = scanned_region(_positions(scan), obj.shape)

    def run(diffraction: np.ndarray, probe: np.ndarray, **kwargs: object) -> tuple[object, float]:
        result = reconstruct_iterative(diffraction, _positions(scan), probe, epochs=20,
                                       object_shape=obj.shape, **kwargs)
        return result, evaluate(result.obj, obj, crop)["amp_ssim"]

    base, ssim = run(scan["diffraction"], scan["probeGuess"])
    assert ssim > 0.99
    # normalised probe: a unit-modulus object predicts the counts, so the object is ~unit scale
    assert 0.7 < np.median(np.abs(base.obj[crop])) / np.median(np.abs(obj[crop])) < 1.4

    exact, _ = run(scan["diffraction"] * 4, scan["probeGuess"] * 8)  # powers of two: exact
    np.testing.assert_array_equal(exact.obj, base.obj)
    assert exact.data_scale == base.data_scale / 16 and exact.probe_scale == base.probe_scale / 2
    assert exact.epochs[-1].loss == pytest.approx(16 * base.epochs[-1].loss, rel=1e-6)  # caller's units

    squared, _ = run(np.square(scan["diffraction"]), scan["probeGuess"], intensity=True)
    np.testing.assert_array_equal(squared.obj, base.obj)

    dim, dim_ssim = run(scan["diffraction"] * np.float32(3e-3), scan["probeGuess"] * 7)
    assert dim.probe_scale == pytest.approx(base.probe_scale * 3e-3 / 7, rel=1e-5)
    assert dim_ssim == pytest.approx(ssim, abs=0.003)
    ratio = np.median(np.abs(dim.obj[crop])) / np.median(np.abs(base.obj[crop]))
    assert ratio == pytest.approx(1.0, abs=0.003)  # the object comes out in the same units


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
    if engine == "lsqml":  # what the CLI wrote is what the API gives on the loaded data
        from ptycho.baseline import reconstruct_iterative

        data = load_data(tmp_path / "scan.npz", None)
        direct = reconstruct_iterative(data.per_position * np.float32(data.intensity_scale),
                                       np.stack([data.xcoords, data.ycoords], 1), data.probe,
                                       epochs=3, object_shape=data.obj.shape)
        np.testing.assert_array_equal(direct.obj, obj)
