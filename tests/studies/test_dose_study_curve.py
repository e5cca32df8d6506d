"""The dose-response curve and the baseline arm: the task grid, flags, aggregation (mean ± std,
PINN − baseline), the figures' self-checks, and one tiny real curve run through the CLI."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dose_study.arms import ARMS, QUICK, baseline_arms, curve_arm, get_arm, make_config
from dose_study.curve import (
    curve_grid,
    curve_methods,
    curve_table,
    parse_doses,
    parse_names,
    parse_seeds,
    pinn_minus_baseline,
    verdict,
)
from dose_study.curve_figure import render_curve_figure
from dose_study.figure import ArmView, render_figure
from dose_study.store import ARM_FILES, BASELINE_FILES, ArmStore, arm_files
from dose_study.summary import config_mismatches, science_checks

DOSES = (1e3, 1e4, 1e5, 1e6, 1e7, 1e9)


# ----------------------------------------------------------------------------- grid and flags
def test_grid_has_one_task_per_dose_density_method_seed() -> None:
    points = curve_grid(DOSES, ("dense", "sparse"), curve_methods("lsqml"), (0, 1, 2))
    assert len(points) == 6 * 2 * 3 * 3
    assert len({p.name for p in points}) == len(points)
    assert all(get_arm(p.name) == p for p in points)  # arm processes and Dask tasks parse names
    assert {p.loss for p in points} == {"nll", "mae", "lsqml"}
    assert sum(p.is_baseline for p in points) == 6 * 2 * 3
    assert points[0].name == "c1e3-dense-nll-s0" and points[-1].name == "c1e9-sparse-lsqml-s2"
    assert curve_methods("none") == ("nll", "mae")
    assert len(curve_grid(DOSES, ("dense",), curve_methods("none"), (0,))) == 12


def test_curve_point_runs_with_its_own_seed_and_density() -> None:
    point = curve_arm(2.5e4, "sparse", "mae", 2)
    assert point.name == "c2.5e4-sparse-mae-s2" and get_arm(point.name).nphotons == 2.5e4
    cfg = QUICK.for_arm(point)
    assert (cfg.seed, cfg.test_seed, cfg.positions, cfg.nphotons(point)) == (2, 1002, "sparse", 2.5e4)
    assert cfg.scan_spacing() == QUICK.N / 4 and QUICK.for_arm(ARMS[0]) is QUICK
    with pytest.raises(ValueError, match="unknown scan density 'medium'"):
        curve_arm(1e4, "medium", "nll", 0)


def test_sparse_scan_widens_the_canvas_dense_keeps_the_default() -> None:
    import dataclasses

    from dose_study.recipe import sim_config

    dense = sim_config(QUICK, 1e4, 0, 512)
    sparse = sim_config(dataclasses.replace(QUICK, positions="sparse"), 1e4, 0, 512)
    assert dense.object_size is None  # ptycho's default: one position per (N/8)² px
    side = math.ceil(math.sqrt(512)) * QUICK.N / 4 + 2 * sparse.buffer
    assert sparse.canvas_size == math.ceil(side / 8) * 8 > dense.canvas_size


@pytest.mark.parametrize(("call", "message"), [
    (lambda: parse_doses("1e3,abc"), "--doses: 'abc' is not a number"),
    (lambda: parse_doses("1e3,0"), "finite and > 0, got '0'"),
    (lambda: parse_doses("1e3,inf"), "finite and > 0, got 'inf'"),
    (lambda: parse_doses("1e3,1000"), "'1000' is given twice"),
    (lambda: parse_names("dense,loose", "--positions", ("dense", "sparse")), "unknown 'loose'"),
    (lambda: parse_names("dense,dense", "--positions", ("dense", "sparse")), "given twice"),
    (lambda: parse_seeds("0,-1"), "'-1' is not an integer >= 0"),
])
def test_bad_flag_values_name_the_value(call, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()
    assert parse_doses("1e9, 1e3") == (1e3, 1e9)


@pytest.mark.parametrize(("args", "message"), [
    (["--doses", "1e3,lots"], "--doses: 'lots' is not a number"),
    (["--doses", "1e3", "--positions", "dense,loose"], "--positions: unknown 'loose'"),
    (["--positions", "sparse"], "--positions and --seeds need --doses"),
    (["--doses", "1e3", "--arm", "low_nll"], "cannot be combined with --arm"),
    (["--doses", "1e3", "--seeds", "a"], "--seeds: 'a' is not an integer"),
])
def test_cli_rejects_bad_curve_flags_before_writing(tmp_path: Path, args: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from dose_study.cli import main

    out = tmp_path / "curve"
    with pytest.raises(SystemExit) as exc:
        main(["--output-dir", str(out), *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_baseline_off_says_how_to_turn_it_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dose_study.baseline_runner import baseline_available
    from dose_study.cli import BASELINE_OFF, main

    rc = main(["--output-dir", str(tmp_path / "none"), "--merge-only"])
    err = capsys.readouterr().err
    assert rc == 2
    if baseline_available():
        assert BASELINE_OFF not in err
    else:
        assert BASELINE_OFF in err and "make baseline" in err
        with pytest.raises(SystemExit) as exc:
            main(["--output-dir", str(tmp_path / "x"), "--baseline", "lsqml"])
        assert exc.value.code == 2 and "needs the [baseline] extra" in capsys.readouterr().err
    assert main(["--output-dir", str(tmp_path / "y"), "--merge-only", "--baseline", "none"]) == 2
    assert BASELINE_OFF not in capsys.readouterr().err


# ----------------------------------------------------------------------------- aggregation
def _point_metrics(point, value: float) -> dict:
    return {"arm": point.name, "nphotons": point.nphotons, "positions": point.positions,
            "method": point.loss, "seed": point.seed,
            "metrics": {"amp_ssim": value, "phase_ssim": value / 2, "amp_psnr": 20 * value,
                        "phase_psnr": 10 * value},
            "baseline": {"amp_ssim": 0.4}, "counts": {"test_mean_total": point.nphotons}}


def _fake_run(seeds=(0, 1, 2), doses=(1e3, 1e9)) -> dict[str, dict]:
    """PINN amp SSIM 0.5 + 0.1·log10(dose)/9 + 0.01·seed; LSQML 0.3 + 0.6·log10(dose)/9 + 0.02·seed."""
    per_point = {}
    for p in curve_grid(doses, ("dense", "sparse"), curve_methods("lsqml"), seeds):
        x = math.log10(p.nphotons) / 9
        value = {"nll": 0.5 + 0.1 * x + 0.01 * p.seed, "mae": 0.45 + 0.1 * x + 0.01 * p.seed,
                 "lsqml": 0.3 + 0.6 * x + 0.02 * p.seed}[p.loss]
        per_point[p.name] = _point_metrics(p, value)
    return per_point


def test_table_is_mean_and_sample_std_over_seeds() -> None:
    table = curve_table(_fake_run())
    assert len(table) == 2 * 3 * 2  # densities x methods x doses
    row = next(r for r in table if (r["positions"], r["method"], r["nphotons"]) == ("sparse", "lsqml", 1e3))
    values = [0.3 + 0.6 / 3 + 0.02 * s for s in (0, 1, 2)]
    assert row["n"] == 3 and row["seeds"] == [0, 1, 2]
    assert row["amp_ssim"]["mean"] == pytest.approx(statistics.fmean(values))
    assert row["amp_ssim"]["std"] == pytest.approx(statistics.stdev(values)) == pytest.approx(0.02)
    assert row["amp_psnr"]["mean"] == pytest.approx(20 * statistics.fmean(values))
    assert [r["positions"] for r in table][:6] == ["dense"] * 6  # dense first, then sparse
    assert [r["method"] for r in table][::2] == ["nll", "mae", "lsqml"] * 2
    one = curve_table({k: v for k, v in _fake_run(seeds=(0,)).items()})
    assert all(r["amp_ssim"]["std"] == 0.0 and r["n"] == 1 for r in one)


def test_pinn_minus_baseline_pairs_seeds_and_gives_verdicts() -> None:
    diffs = pinn_minus_baseline(_fake_run(), "lsqml")
    assert len(diffs) == 2 * 2 * 2  # densities x doses x losses
    low = next(e for e in diffs if (e["positions"], e["nphotons"], e["loss"]) == ("dense", 1e3, "nll"))
    # nll − lsqml per seed: (0.5 + 0.1/3 + 0.01 s) − (0.3 + 0.2 + 0.02 s) = 0.1/3 − 0.01 s
    expected = [0.1 / 3 - 0.01 * s for s in (0, 1, 2)]
    assert low["amp_ssim"]["values"] == pytest.approx(expected)
    assert low["amp_ssim"]["std"] == pytest.approx(0.01)
    assert low["verdict_amp_ssim"] == "PINN better"
    high = next(e for e in diffs if (e["positions"], e["nphotons"], e["loss"]) == ("dense", 1e9, "mae"))
    assert high["amp_ssim"]["mean"] < 0 and high["verdict_amp_ssim"] == "baseline better"
    assert verdict({"mean": 0.01, "std": 0.1, "values": [0, 0.02]}) == "no significant difference"
    assert verdict({"mean": 1.0, "std": 0.0, "values": [1.0]}) == "one seed only: no verdict"
    assert pinn_minus_baseline(_fake_run(), None) == []


# ----------------------------------------------------------------------------- figures
def test_curve_figure_is_checked_finite_and_nonconstant(tmp_path: Path) -> None:
    table = curve_table(_fake_run())
    report = render_curve_figure(table, tmp_path / "dose_curve.png", "t")
    assert report.ok and report.png_ok and len(report.panels) == 8  # 2 densities x 4 metrics
    assert all(p["methods"] == ["lsqml", "mae", "nll"] and p["points"] == 6 for p in report.panels)
    assert (tmp_path / "dose_curve.png").read_bytes()[:4] == b"\x89PNG"
    table[0]["amp_ssim"]["mean"] = float("nan")  # dense, nll, 1e3
    bad = render_curve_figure(table, tmp_path / "bad.png", "t")
    assert not bad.ok and [(p["positions"], p["metric"]) for p in bad.panels if not p["ok"]] == [
        ("dense", "amp_ssim")]
    flat = curve_table({k: _point_metrics(get_arm(k), 0.5) for k in _fake_run()})
    report = render_curve_figure(flat, tmp_path / "flat.png", "t")
    assert not report.ok and not any(p["nonconstant"] for p in report.panels)


def _views_with_baseline() -> dict[str, ArmView]:
    rng = np.random.default_rng(2)
    truth = (1.0 + 0.5 * (rng.random((32, 32)) > 0.8)).astype(np.complex64)
    views = {}
    for arm in ARMS + baseline_arms("lsqml"):
        recon = (truth + 0.05 * rng.standard_normal((32, 32))
                 + 0.05j * rng.standard_normal((32, 32))).astype(np.complex64)
        diff = rng.poisson(10.0, size=(16, 16)).astype(np.float32)
        views[arm.name] = ArmView(arm, arm.nphotons, diff, np.abs(recon).astype(np.float32),
                                  psnr=21.0, ssim=0.7, recon=recon, truth=truth)
    return views


def test_study_figure_gets_a_baseline_column(tmp_path: Path) -> None:
    arms = ARMS + baseline_arms("lsqml")
    report = render_figure(_views_with_baseline(), tmp_path / "fig.png", "t", arms)
    assert report.ok and len(report.panels) == 18  # per dose: 5 amplitude + 4 phase panels
    assert [p["column"] for p in report.panels[:5]] == ["diffraction", "truth", "nll", "mae", "lsqml"]
    assert report.panels[4]["title"].startswith("1e9 photons, LSQML (pty-chi) amplitude")
    views = _views_with_baseline()
    del views["low_lsqml"]
    missing = render_figure(views, tmp_path / "fig2.png", "t", arms)
    assert not missing.ok and [p["source"] for p in missing.panels if not p["present"]] == [
        "low_lsqml", "low_lsqml"]


def test_science_section_has_pinn_minus_baseline_per_dose() -> None:
    arms = ARMS + baseline_arms("lsqml")
    per_arm = {}
    for i, arm in enumerate(arms):
        per_arm[arm.name] = {
            "metrics": {"amp_ssim": 0.5 + 0.05 * i, "amp_psnr": 20.0 + i, "phase_ssim": 0.3,
                        "phase_psnr": 15.0, "amp_frc50": 4.0},
            "baseline": {"amp_ssim": 0.4}, "counts": {"test_mean_total": arm.nphotons}}
    sci = science_checks(per_arm, QUICK, arms)
    low = sci["pinn_minus_baseline"]["low"]
    assert low["engine"] == "lsqml" and low["amp_ssim"] == pytest.approx(0.5 + 0.05 * 5)
    assert low["nll"]["amp_ssim"] == pytest.approx((0.5 + 0.05 * 2) - (0.5 + 0.05 * 5))
    assert low["mae"]["amp_psnr"] == pytest.approx(23.0 - 25.0)
    assert sci["all_arms_beat_baseline_ssim"] is True
    del per_arm["high_lsqml"]
    partial = science_checks(per_arm, QUICK, arms)["pinn_minus_baseline"]["high"]
    assert partial["amp_ssim"] is None and partial["nll"]["amp_ssim"] is None
    assert science_checks(per_arm, QUICK)["pinn_minus_baseline"] == {}


def test_summary_markdown_names_the_baseline_difference() -> None:
    from dose_study.summary import _baseline_lines

    assert "make baseline" in _baseline_lines({})[0]
    line = _baseline_lines({"low": {"engine": "lsqml", "arm": "low_lsqml", "amp_ssim": 0.86,
                                    "phase_ssim": 0.6, "amp_psnr": 22.0, "phase_psnr": 15.0,
                                    "nll": {"amp_ssim": -0.02, "phase_ssim": 0.01,
                                            "amp_psnr": -0.5, "phase_psnr": 0.0},
                                    "mae": {"amp_ssim": -0.1, "phase_ssim": None,
                                            "amp_psnr": -2.0, "phase_psnr": None}}})[0]
    assert "PINN − LSQML at low dose" in line and "NLL amp SSIM -0.020" in line


def test_baseline_arms_store_fewer_files_and_compare_only_their_settings(tmp_path: Path) -> None:
    assert arm_files("low_lsqml") == BASELINE_FILES and arm_files("low_nll") == ARM_FILES
    assert arm_files("c1e4-sparse-dm-s1") == BASELINE_FILES
    store = ArmStore(tmp_path)
    with store.staging("low_lsqml") as staging:
        for name in BASELINE_FILES:
            (staging / name).write_text(json.dumps({"arm": "low_lsqml"}))
        store.commit(staging, "low_lsqml")
    assert store.is_complete("low_lsqml")
    cfg = make_config(True)
    base = {"study_config": {**cfg.to_dict(), "nepochs": 99}}  # a training setting: ignored
    assert config_mismatches({"low_lsqml": base}, cfg) == {}
    assert config_mismatches({"low_nll": base}, cfg) == {"low_nll": {"nepochs": {"arm": 99,
                                                                                 "current": cfg.nepochs}}}
    old = {"study_config": {k: v for k, v in cfg.to_dict().items()
                            if k not in ("positions", "baseline_epochs")}}  # recorded before them
    assert config_mismatches({"low_nll": old}, cfg) == {}
    point = curve_arm(1e5, "sparse", "nll", 2)
    rec = {"study_config": cfg.for_arm(point).to_dict()}
    assert config_mismatches({point.name: rec}, cfg) == {}


# ----------------------------------------------------------------------------- a real tiny curve
TINY = ["--quick", "--patch-size", "16", "--n-images", "16", "--n-test-images", "32",
        "--nepochs", "1", "--batch-size", "8"]


@pytest.mark.integration  # spawns the study command line, trains two models
def test_tiny_curve_runs_each_point_and_writes_table_and_figure(tmp_path: Path) -> None:
    """One dose, the sparse density, one seed: the two PINN points (plus a baseline point when
    the extra is installed), then a merge-only re-run that trains nothing."""
    out = tmp_path / "curve"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, "-m", "dose_study", "--output-dir", str(out), *TINY,
           "--doses", "1e4", "--positions", "sparse", "--seeds", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "dose_curve" and summary["points_missing"] == []
    methods = summary["grid"]["methods"]
    assert methods[:2] == ["nll", "mae"] and summary["points_complete"] == len(methods)
    assert {p["seed"] for p in summary["per_point"].values()} == {3}
    assert {p["positions"] for p in summary["per_point"].values()} == {"sparse"}
    assert len(summary["table"]) == len(methods) and all(r["n"] == 1 for r in summary["table"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary["figure_ok"] and (out / "dose_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert len(summary["figure"]["panels"]) == 4  # one density x 4 metrics
    assert f"points {len(methods)}/{len(methods)}" in proc.stdout
    assert "## sparse scan" in (out / "summary.md").read_text()
    again = subprocess.run([*cmd, "--merge-only"], capture_output=True, text=True, timeout=300,
                           env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert "trained 0" in again.stdout
    assert json.loads((out / "summary.json").read_text())["table"] == summary["table"]


# ----------------------------------------------------------------------------- the baseline arm
def _needs_baseline():
    from ptycho.baseline import available

    return pytest.mark.skipif(not available(), reason="needs the [baseline] extra (make baseline)")


@pytest.mark.slow
@pytest.mark.baseline
@_needs_baseline()
# pty-chi 2.2 deprecates the data option ptycho.baseline sets (its warning names ptycho.baseline)
@pytest.mark.filterwarnings("ignore:Passing task data:DeprecationWarning")
@pytest.mark.parametrize("positions", ["dense", "sparse"])
def test_baseline_arm_reconstructs_the_pinn_test_scan(tmp_path: Path, positions: str) -> None:
    """A baseline point at 1e9 photons: the same test scan as the PINN points of its dose,
    density and seed, reconstructed by LSQML well above the constant image; the files a
    baseline arm stores, readable by the study figure."""
    import dataclasses

    from dose_study.baseline_runner import BaselineArmRunner
    from dose_study.figure import load_complete_view
    from dose_study.recipe import simulate

    cfg = dataclasses.replace(make_config(True), n_test_images=256, baseline_epochs=30)
    point = curve_arm(1e9, positions, "lsqml", 0)
    staging = tmp_path / point.name
    staging.mkdir()
    metrics = BaselineArmRunner(cfg).run(point, staging)
    assert sorted(p.name for p in staging.iterdir()) == sorted(BASELINE_FILES)
    assert metrics["engine"] == "lsqml" and metrics["seed"] == 0 and metrics["positions"] == positions
    # measured (load 12): dense 0.998 (128 groups), sparse 0.75 vs the constant image's 0.45
    floor = {"dense": 0.95, "sparse": 0.65}[positions]
    assert metrics["metrics"]["amp_ssim"] > max(floor, metrics["baseline"]["amp_ssim"] + 0.1)
    test = simulate(cfg.for_arm(point), 1e9, cfg.for_arm(point).test_seed, 256, "test")
    view = load_complete_view(staging, point, metrics)
    assert view.truth.shape == view.recon.shape
    r0, r1, c0, c1 = metrics["crop"]
    assert np.array_equal(view.truth, test.obj[r0:r1, c0:c1])  # the PINN points' test object
    assert metrics["engine_info"]["patterns"] == len(np.unique(test.scan_index))


@pytest.mark.baseline
@_needs_baseline()
def test_a_baseline_arm_process_never_imports_tensorflow(tmp_path: Path) -> None:
    """An LSQML arm's process loads torch and pty-chi, not TensorFlow too: each arm runs in a
    fresh process, so an import it does not need costs seconds and memory every time (a
    ``ptycho.inference`` import for one helper cost ~4 s and 450 MB of peak RSS)."""
    code = (
        "import dataclasses, sys, warnings; from pathlib import Path\n"
        "warnings.simplefilter('ignore')\n"
        "from dose_study.arms import curve_arm, make_config\n"
        "from dose_study.baseline_runner import BaselineArmRunner\n"
        "cfg = dataclasses.replace(make_config(True), n_test_images=32, baseline_epochs=2)\n"
        f"metrics = BaselineArmRunner(cfg).run(curve_arm(1e9, 'dense', 'lsqml', 0), Path({str(tmp_path)!r}))\n"
        "print(metrics['engine'], 'tensorflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["lsqml", "False"]
