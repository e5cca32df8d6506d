"""CLI: python -m ptycho simulate → train → infer (grouped and canonical data); errors and exit
codes. `simulate` and the error cases run as real subprocesses; train/infer run through
``ptycho.cli.main`` in this process (same code, no second TensorFlow start-up per step)."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from ptycho.canonical import GroupingOptions
from ptycho.cli import main
from ptycho.io import load_data, load_model

pytestmark = pytest.mark.integration  # spawns the ptycho command line, trains models

ROOT = Path(__file__).resolve().parents[2]
N = 16


def _run(*args: str, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "ptycho", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, umask=0o022)


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    """Run the CLI in-process with --json: (exit code, parsed stdout or {}, stderr)."""
    rc = main([*args, "--json"])
    captured = capsys.readouterr()
    return rc, (json.loads(captured.out) if rc == 0 else {}), captured.err


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_simulate_train_infer_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       caplog: pytest.LogCaptureFixture, umask_022: None) -> None:
    data = tmp_path / "train.npz"
    proc = _run("simulate", "--output", str(data), "--N", str(N), "--gridsize", "2",
                "--n-images", "24", "--nphotons", "1e6", "--seed", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["groups"] == 24
    with np.load(data) as npz:
        assert npz["diffraction"].shape == (24, N, N, 4)

    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="ptycho.train"):
        rc, summary, err = _main(capsys, "train", "--data", str(data), "--output-dir", str(out),
                                 "--nepochs", "1", "--batch-size", "8", "--n-filters-scale", "1")
    assert rc == 0, err[-3000:]
    assert summary["epochs"] == 1 and np.isfinite(summary["final_loss"])
    assert summary["data"]["format"] == "grouped"
    assert "epoch 1/1 loss=" in caplog.text  # per-epoch progress line
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and np.isfinite(float(rows[0]["loss"]))
    assert (out / "wts.h5.zip").is_file()

    with zipfile.ZipFile(out / "wts.h5.zip") as zf:  # the defaults: standardised input, ring balance
        written = json.loads(zf.read("model_config.json"))
    assert (written["input_transform"], written["balance_counts"]) == ("both", 100.0)
    before = tmp_path / "before"  # the model before RESOLUTION-LOSS-001, by flags
    rc, _, err = _main(capsys, "train", "--data", str(data), "--output-dir", str(before), "--nepochs", "1",
                       "--batch-size", "8", "--n-filters-scale", "1", "--input-transform", "linear",
                       "--balance-counts", "0")
    assert rc == 0, err[-3000:]
    with zipfile.ZipFile(before / "wts.h5.zip") as zf:
        written = json.loads(zf.read("model_config.json"))
    assert (written["input_transform"], written["balance_counts"]) == ("linear", 0.0)

    rc, summary, err = _main(capsys, "infer", "--model", str(out / "wts.h5.zip"), "--data",
                             str(data), "--output-dir", str(out))
    assert rc == 0, err[-3000:]
    with np.load(out / "recon.npz") as npz:
        obj = npz["object"]
        truth_shape = np.load(data)["objectGuess"].shape
        assert obj.dtype == np.complex64 and obj.shape == truth_shape
    png = (out / "recon.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"amp_ssim", "amp_psnr", "phase_mae", "crop"} <= set(metrics)
    assert -1.0 <= metrics["amp_ssim"] <= 1.0
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [data, *out.iterdir()]}
    assert set(modes.values()) == {"0o644"}, modes  # what open(path, "w") gives under umask 022


def test_canonical_round_trip_simulate_train_infer(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "sim.npz"
    proc = _run("simulate", "--output", str(data), "--format", "canonical", "--N", str(N),
                "--n-images", "24", "--nphotons", "1e6", "--seed", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["positions"] == 24
    with np.load(data) as npz:
        assert npz["diffraction"].shape == (24, N, N) and "nphotons" not in npz.files
        assert {"xcoords", "ycoords", "probeGuess", "objectGuess", "_metadata"} <= set(npz.files)

    out = tmp_path / "run"
    rc, trained, err = _main(capsys, "train", "--data", str(data), "--output-dir", str(out),
                             "--nepochs", "1", "--batch-size", "8", "--n-filters-scale", "1",
                             "--gridsize", "2", "--n-groups", "20", "--neighbors", "6")
    assert rc == 0, err[-3000:]
    assert trained["data"] == {**trained["data"], "format": "canonical", "groups": 20,
                               "positions": 24, "gridsize": 2, "nphotons": 1e6,
                               "nphotons_source": "metadata"}
    recon_npz = tmp_path / "recon_canonical.npz"
    rc, inferred, err = _main(capsys, "infer", "--model", trained["model"], "--data", str(data),
                              "--output-dir", str(out), "--canonical-out", str(recon_npz))
    assert rc == 0, err[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"amp_ssim", "amp_psnr", "phase_ssim", "amp_frc50"} <= set(metrics)
    assert inferred["amp_ssim"] == metrics["amp_ssim"]
    # the reconstruction as a canonical file: objectGuess = the stitched object
    with np.load(out / "recon.npz") as npz:
        obj = npz["object"]
    again = load_data(recon_npz, GroupingOptions(gridsize=2))
    np.testing.assert_array_equal(again.obj, obj)
    np.testing.assert_array_equal(again.xcoords, load_data(data).xcoords)
    assert again.per_position.shape == (24, N, N)


@pytest.fixture(scope="module")
def canonical_model(canonical_writer: ModuleType, tmp_path_factory: pytest.TempPathFactory,
                    ) -> tuple[Path, ModuleType]:
    """A model trained (1 epoch) on an independently written canonical file, with the
    half-size object support its probe's rings would otherwise rule out (``--pad-object``):
    a model far from the truth, for the tests of refinement and fine-tuning."""
    work = tmp_path_factory.mktemp("canonical")
    canonical_writer.write(work / "train.npz",
                           canonical_writer.make_dataset(48, n=N, size=100, seed=1))
    rc = main(["train", "--data", str(work / "train.npz"), "--output-dir", str(work / "run"),
               "--nepochs", "1", "--batch-size", "8", "--n-filters-scale", "1", "--pad-object"])
    assert rc == 0
    return work / "run" / "wts.h5.zip", canonical_writer


def test_train_predicts_the_whole_patch_when_the_probe_lights_outside_the_half(
        canonical_model: tuple[Path, ModuleType], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """RESOLUTION-SUPPORT-001: the writer's probe puts light outside the central N/2 × N/2,
    so by default the model's object support is the whole patch; --pad-object keeps the half."""
    model, writer = canonical_model
    data = tmp_path / "train.npz"
    writer.write(data, writer.make_dataset(48, n=N, size=100, seed=1))
    args = ("train", "--data", str(data), "--nepochs", "1", "--batch-size", "8",
            "--n-filters-scale", "1")
    rc, summary, err = _main(capsys, *args, "--output-dir", str(tmp_path / "run"))
    assert rc == 0, err[-3000:]
    assert summary["pad_object"] is False
    assert load_model(tmp_path / "run" / "wts.h5.zip")[1].pad_object is False
    assert load_model(model)[1].pad_object is True  # the fixture's --pad-object
    rc = main(["train", "--init-model", str(model), "--data", str(data), "--output-dir",
               str(tmp_path / "ft"), "--no-pad-object"])
    assert rc == 1 and "--pad-object come from the archive" in capsys.readouterr().err


def test_infer_without_object_guess_writes_object_and_figure_only(
        canonical_model: tuple[Path, ModuleType], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    model, writer = canonical_model
    arrays = writer.make_dataset(30, n=N, size=100, seed=7, with_object=False)
    arrays["xcoords"] -= 40.0  # a scan in its own frame: positions may be near or below 0
    writer.write(tmp_path / "exp.npz", arrays)
    capsys.readouterr()
    rc = main(["infer", "--model", str(model), "--data", str(tmp_path / "exp.npz"),
               "--output-dir", str(tmp_path / "out")])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert "no objectGuess in the data: no ground-truth metrics" in stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert not any(key.startswith(("amp_", "phase_")) for key in metrics)
    assert metrics["frame_shift"][0] > 0 and metrics["frame_shift"][1] == 0
    assert (tmp_path / "out" / "recon.png").read_bytes().startswith(b"\x89PNG")
    with np.load(tmp_path / "out" / "recon.npz") as npz:
        obj = npz["object"]
    # the model predicts the central N/2 support of each patch: the stitched object covers the scan
    assert np.isfinite(obj).all() and np.count_nonzero(obj) > 0.2 * obj.size


def test_infer_on_positions_the_model_never_saw(canonical_model: tuple[Path, ModuleType],
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    model, writer = canonical_model
    test = writer.make_dataset(20, n=N, size=100, seed=9, region=(0.0, 0.35))  # a corner
    writer.write(tmp_path / "test.npz", test)
    rc, summary, err = _main(capsys, "infer", "--model", str(model), "--data",
                             str(tmp_path / "test.npz"), "--output-dir", str(tmp_path / "out"))
    assert rc == 0, err[-3000:]
    assert -1.0 <= summary["amp_ssim"] <= 1.0
    with np.load(tmp_path / "out" / "recon.npz") as npz:
        obj = npz["object"]
    assert obj.shape == test["objectGuess"].shape
    rows, cols = np.rint(test["ycoords"]).astype(int), np.rint(test["xcoords"]).astype(int)
    assert np.all(obj[rows, cols] != 0)  # stitched over the new scan…
    far = max(rows.max(), cols.max()) + N
    assert not np.any(obj[far:, :]) and not np.any(obj[:, far:])  # …and nowhere else


def test_infer_refine_steps_report_pinn_plus_refinement_beside_the_pinn_alone(
        canonical_model: tuple[Path, ModuleType], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    model, writer = canonical_model
    writer.write(tmp_path / "test.npz", writer.make_dataset(150, n=N, size=100, seed=11,
                                                               region=(0.1, 0.9)))  # overlapping
    args = ("infer", "--model", str(model), "--data", str(tmp_path / "test.npz"))
    rc, alone, err = _main(capsys, *args, "--output-dir", str(tmp_path / "alone"))
    assert rc == 0, err[-3000:]
    rc, refined, err = _main(capsys, *args, "--output-dir", str(tmp_path / "refined"),
                             "--refine-steps", "25", "--refine-lr", "0.03")
    assert rc == 0, err[-3000:]
    assert "arm" not in alone and refined["arm"] == "pinn+refinement"
    assert refined["pinn_alone"]["amp_ssim"] == pytest.approx(alone["amp_ssim"], abs=1e-6)
    assert refined["amp_ssim"] > alone["amp_ssim"] + 0.05  # a 1-epoch model leaves much to fit
    assert refined["refine"]["steps"] == 25 and refined["refine"]["learning_rate"] == 0.03
    assert refined["refine"]["loss_last"] < refined["refine"]["loss_first"]
    metrics = json.loads((tmp_path / "refined" / "metrics.json").read_text())
    assert metrics["arm"] == "pinn+refinement" and metrics["pinn_alone"] == refined["pinn_alone"]
    with np.load(tmp_path / "refined" / "recon.npz") as npz, \
            np.load(tmp_path / "alone" / "recon.npz") as plain:
        np.testing.assert_array_equal(npz["pinn_object"], plain["object"])
        assert "pinn_object" not in plain
    rc = main([*args, "--output-dir", str(tmp_path / "bad"), "--refine-steps", "2",
               "--refine-lr", "-1"])
    assert rc == 1 and "learning_rate must be finite and > 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_train_init_model_fine_tunes_on_the_scan_and_infer_says_it_was_trained_on_it(
        canonical_model: tuple[Path, ModuleType], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    model, writer = canonical_model
    scan = tmp_path / "scan.npz"
    writer.write(scan, writer.make_dataset(150, n=N, size=100, seed=11, region=(0.1, 0.9)))

    def infer(archive: Path, data: Path, out: str) -> dict:
        # the network's own patches: what fine-tuning changes (the slope fit is tested apart)
        rc, summary, err = _main(capsys, "infer", "--model", str(archive), "--data", str(data),
                                 "--output-dir", str(tmp_path / out), "--no-fit-slopes")
        assert rc == 0, err[-3000:]
        assert summary["slope_fit"] is None
        return summary

    before = infer(model, scan, "before")
    assert before["trained_on_this_scan"] is False
    tuned = tmp_path / "tuned"
    rc, summary, err = _main(capsys, "train", "--init-model", str(model), "--data", str(scan),
                             "--output-dir", str(tuned), "--nepochs", "3", "--batch-size", "8",
                             "--learning-rate", "1e-3")
    assert rc == 0, err[-3000:]
    assert summary["init_model"] == str(model) and summary["epochs"] == 3
    after = infer(tuned / "wts.h5.zip", scan, "after")
    assert after["trained_on_this_scan"] is True
    assert json.loads((tmp_path / "after" / "metrics.json").read_text())["trained_on_this_scan"]
    assert after["amp_ssim"] > before["amp_ssim"] + 0.02  # a 1-epoch model leaves much to learn
    losses = [float(row["loss"]) for row in csv.DictReader((tuned / "history.csv").open())]
    assert losses[-1] < losses[0]
    still = tmp_path / "still"  # a step size of ~0 keeps the archive's weights: nothing restarts
    rc, _, err = _main(capsys, "train", "--init-model", str(model), "--data", str(scan),
                       "--output-dir", str(still), "--nepochs", "1", "--learning-rate", "1e-12")
    assert rc == 0, err[-3000:]
    infer(still / "wts.h5.zip", scan, "still")
    with np.load(tmp_path / "before" / "recon.npz") as a, np.load(tmp_path / "still" / "recon.npz") as b:
        np.testing.assert_allclose(b["object"], a["object"], atol=1e-4)
    # the lineage: the tuned archive also counts the file its starting model was trained on
    with zipfile.ZipFile(tuned / "wts.h5.zip") as zf:
        training = json.loads(zf.read("meta.json"))["training"]
    assert training["data"] == str(scan) and training["init_model"]["archive"] == str(model)
    original = Path(training["init_model"]["training"]["data"])
    assert original.name == "train.npz"
    assert infer(tuned / "wts.h5.zip", original, "on_train")["trained_on_this_scan"] is True

    def refused(*args: str) -> str:
        rc = main(["train", "--init-model", str(model), "--output-dir", str(tmp_path / "bad"),
                   "--nepochs", "1", *args])
        assert rc == 1 and not (tmp_path / "bad").exists()
        return capsys.readouterr().err

    err = refused("--data", str(scan), "--loss", "mae", "--n-filters-scale", "2")
    assert "--loss, --n-filters-scale come from the archive" in err
    err = refused("--data", str(scan), "--gridsize", "3")
    assert "--gridsize 3 differs from the gridsize 2 of --init-model" in err
    other = writer.make_dataset(40, n=N, size=100, seed=12)
    other["probeGuess"] = other["probeGuess"] * np.exp(0.5j * np.arange(N) / N)[None, :]
    writer.write(tmp_path / "other_probe.npz", other)
    err = refused("--data", str(tmp_path / "other_probe.npz"))
    assert "other_probe.npz: its probe differs from the one" in err and str(model) in err
    writer.write(tmp_path / "big.npz", writer.make_dataset(40, n=2 * N, size=100, seed=12))
    err = refused("--data", str(tmp_path / "big.npz"))
    assert f"patterns {2 * N}×{2 * N} in groups of 4 do not fit" in err


def test_cli_errors_have_exit_codes_and_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.npz"
    proc = _run("train", "--data", str(missing), "--output-dir", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert "nope.npz" in proc.stderr
    proc = _run("simulate", "--output", str(tmp_path / "x.npz"), "--N", "20")
    assert proc.returncode == 1 and "N must be a multiple of 8" in proc.stderr
    proc = _run("infer", "--model", str(tmp_path / "m.zip"))
    assert proc.returncode == 2  # usage: --data/--output-dir missing
    assert not (tmp_path / "o").exists()


def test_amplitude_and_intensity_flags_are_exclusive_and_reach_the_loader(tmp_path: Path) -> None:
    from ptycho.cli import build_parser

    parser = build_parser()
    base = ["train", "--data", "x.npz", "--output-dir", "o"]
    assert parser.parse_args(base).intensity is None  # decided from the data
    assert parser.parse_args([*base, "--intensity"]).intensity is True
    assert parser.parse_args([*base, "--amplitude"]).intensity is False
    for command in (["infer", "--model", "m.zip"], ["reconstruct"]):
        args = parser.parse_args([*command, "--data", "x.npz", "--output-dir", "o", "--amplitude"])
        assert args.intensity is False
    proc = _run(*base, "--amplitude", "--intensity")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def test_ptychopinn_simulator_files_train_and_infer_without_a_flag(
        ptychopinn_writer: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Files with the conventions of PtychoPINN's own simulator (sqrt-of-counts amplitudes with
    a bright centre; scan centres 5 px from the edge of a 48 px object, so N=16 patches overhang
    it) train and infer through the CLI with no flag; metrics over the scanned region."""
    train = tmp_path / "pp_train.npz"
    test = tmp_path / "pp_test.npz"
    ptychopinn_writer.write(train, ptychopinn_writer.make_dataset(48, n=N, size=48, buffer=5.0, seed=1))
    ptychopinn_writer.write(test, ptychopinn_writer.make_dataset(24, n=N, size=48, buffer=5.0, seed=2))
    out = tmp_path / "run"
    rc, trained, err = _main(capsys, "train", "--data", str(train), "--output-dir", str(out),
                             "--nepochs", "1", "--batch-size", "8", "--n-filters-scale", "1")
    assert rc == 0, err[-3000:]
    assert trained["data"]["units"].startswith("amplitude (the squared values")
    assert trained["data"]["nphotons_source"] == "count quantisation"
    rc, inferred, err = _main(capsys, "infer", "--model", trained["model"], "--data", str(test),
                              "--output-dir", str(out / "infer"))
    assert rc == 0, err[-3000:]
    metrics = json.loads((out / "infer" / "metrics.json").read_text())
    rows0, rows1, cols0, cols1 = metrics["crop"]
    with np.load(test) as npz:
        xs, ys = npz["xcoords"], npz["ycoords"]
    assert (rows0, cols0) == (int(np.ceil(ys.min())), int(np.ceil(xs.min())))
    assert (rows1, cols1) == (int(np.floor(ys.max())) + 1, int(np.floor(xs.max())) + 1)
    assert -1.0 <= metrics["amp_ssim"] <= 1.0 and inferred["amp_ssim"] == metrics["amp_ssim"]
    with np.load(out / "infer" / "recon.npz") as npz:
        assert npz["object"].shape == (48, 48)
