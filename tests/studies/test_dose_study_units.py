"""Fast unit tests of the study's ptycho-independent parts: config, store, figure, summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dose_study.arms import ARMS, QUICK, describe_arm, get_arm, make_config
from dose_study.figure import ArmView, panel_stats, render_figure
from dose_study.store import ARM_FILES, ArmStore, OutputDirError, ensure_writable_dir
from dose_study.study import StudyInterrupted, StudyResult, run_arms
from dose_study.summary import build_summary, render_markdown, science_checks


# ----------------------------------------------------------------------------- config
def test_make_config_quick_defaults_and_overrides() -> None:
    cfg = make_config(True, nepochs=2, n_images=None)
    assert cfg.quick and cfg.nepochs == 2 and cfg.n_images == QUICK.n_images
    assert cfg.test_seed != cfg.seed
    assert make_config(False).N == 64 and make_config(False).n_images == 2000


@pytest.mark.parametrize(("field", "value", "flag"), [
    ("nepochs", 0, "--nepochs"), ("batch_size", -1, "--batch-size"),
    ("N", 20, "--patch-size"), ("n_images", 0, "--n-images"), ("seed", -3, "--seed"),
    ("probe_defocus", float("nan"), "--probe-defocus"), ("activation", "tanh", "--activation"),
])
def test_make_config_rejects_bad_values_naming_the_flag(field: str, value: int, flag: str) -> None:
    with pytest.raises(ValueError, match=f"{flag}.*{value}"):
        make_config(False, **{field: value})


def test_get_arm_unknown_lists_known_arms() -> None:
    assert get_arm("low_nll").nphotons == 1e4
    with pytest.raises(ValueError, match="high_nll, high_mae, low_nll, low_mae"):
        get_arm("medium_nll")


# ----------------------------------------------------------------------------- store
def _fill(staging: Path, tag: str = "x", arm: str = "high_nll") -> None:
    for name in ARM_FILES:
        (staging / name).write_text(json.dumps({"arm": arm, "tag": tag}))


def test_commit_publishes_atomically_and_replaces(tmp_path: Path) -> None:
    store = ArmStore(tmp_path)
    assert not store.is_complete("high_nll")
    with store.staging("high_nll") as staging:
        _fill(staging, "first")
        assert not store.is_complete("high_nll")
        store.commit(staging, "high_nll")
    assert store.is_complete("high_nll")
    assert store.load_metrics("high_nll")["tag"] == "first"
    with store.staging("high_nll") as staging:
        _fill(staging, "second")
        store.commit(staging, "high_nll")
    assert store.load_metrics("high_nll")["tag"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["high_nll"]  # no staging/trash left


def test_failed_arm_leaves_nothing_complete(tmp_path: Path) -> None:
    store = ArmStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.staging("low_mae") as staging:
            (staging / "history.csv").write_text("epoch,loss\n0,1.0\n")
            raise RuntimeError("training blew up")
    assert list(tmp_path.iterdir()) == []
    with store.staging("low_mae") as staging:
        (staging / "metrics.json").write_text("{}")
        with pytest.raises(ValueError, match="missing"):
            store.commit(staging, "low_mae")
    assert not store.is_complete("low_mae") and not (tmp_path / "low_mae").exists()


def test_stop_request_turns_a_converted_signal_exception_into_an_interrupt(tmp_path: Path) -> None:
    """A signal handler's exception can come back as another type (TensorFlow turned it into a
    TypeError): after a stop request the arm counts as interrupted, not failed, and no later
    arm starts."""
    stop = {"requested": False}
    ran: list[str] = []

    class SignalledRunner:
        def run(self, arm: object, staging: Path) -> dict:
            ran.append(arm.name)
            _fill(staging, arm=arm.name)
            stop["requested"] = True  # the handler ran, then library code converted its exception
            raise TypeError("Cannot find maximum value of <dtype: 'int32'>.")

    store = ArmStore(tmp_path)
    result = StudyResult()
    with pytest.raises(StudyInterrupted, match=r"stop requested; TypeError\) while running arm high_nll"):
        run_arms(store, QUICK, list(ARMS), False, lambda cfg: SignalledRunner(), result,
                 stop_requested=lambda: stop["requested"])
    assert ran == ["high_nll"] and result.failed == {} and result.trained == []
    assert not any(store.is_complete(a.name) for a in ARMS)
    assert [p.name for p in tmp_path.iterdir()] == []  # the staging directory is gone


def test_dir_without_marker_is_not_complete(tmp_path: Path) -> None:
    arm = tmp_path / "low_nll"
    arm.mkdir()
    _fill(arm)
    assert not ArmStore(tmp_path).is_complete("low_nll")


def test_clean_stale_removes_dead_owners_only(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".staging-low_nll-{dead_pid}-deadbeef"
    live = tmp_path / f".staging-low_mae-{os.getppid()}-cafecafe"
    for d in (stale, live):
        d.mkdir()
        (d / "history.csv").write_text("partial")
    removed = ArmStore(tmp_path).clean_stale()
    assert removed == [stale]
    assert live.exists() and not stale.exists()


def test_clean_stale_restores_arm_lost_mid_commit(tmp_path: Path) -> None:
    """A commit interrupted between its two renames leaves the old arm in a trash dir."""
    store = ArmStore(tmp_path)
    with store.staging("high_mae") as staging:
        _fill(staging, "old", arm="high_mae")
        store.commit(staging, "high_mae")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    os.rename(tmp_path / "high_mae", tmp_path / f".trash-high_mae-{int(dead.stdout)}-0badf00d")
    assert not store.is_complete("high_mae")
    assert store.clean_stale() == []
    assert store.is_complete("high_mae") and store.load_metrics("high_mae")["tag"] == "old"


def test_unwritable_output_dir_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(OutputDirError, match="a_file/sub.*not writable"):
        ensure_writable_dir(blocker / "sub")
    assert ensure_writable_dir(tmp_path / "new" / "dir").is_dir()


# ----------------------------------------------------------------------------- figure
def _views(bad_arm: str | None = None, missing: str | None = None) -> dict[str, ArmView]:
    rng = np.random.default_rng(0)
    views = {}
    for arm in ARMS:
        if arm.name == missing:
            continue
        amp = (1.0 + 0.3 * rng.standard_normal((40, 40))).astype(np.float32)
        if arm.name == bad_arm:
            amp[3, 4] = np.nan
        diff = rng.poisson(arm.nphotons / 256, size=(16, 16)).astype(np.float32)
        views[arm.name] = ArmView(arm, arm.nphotons, diff, amp, psnr=20.0, ssim=0.6)
    return views


def test_panel_stats_flags_constant_and_nonfinite() -> None:
    assert panel_stats(np.ones((8, 8)))["nonconstant"] is False
    assert panel_stats(np.ones((8, 8)))["ok"] is False
    nan = np.arange(64.0).reshape(8, 8)
    nan[0, 0] = np.nan
    assert panel_stats(nan)["finite"] is False
    good = panel_stats(np.arange(64.0).reshape(8, 8))
    assert good["ok"] and good["min"] == 0.0 and good["max"] == 63.0
    assert panel_stats(None) == {"present": False, "finite": False, "nonconstant": False,
                                 "ok": False}


def test_render_figure_ok_and_titles(tmp_path: Path) -> None:
    report = render_figure(_views(), tmp_path / "fig.png", "test")
    assert report.ok and report.png_ok and len(report.panels) == 6
    assert [(p["row"], p["column"]) for p in report.panels] == [
        ("high", "diffraction"), ("high", "nll"), ("high", "mae"),
        ("low", "diffraction"), ("low", "nll"), ("low", "mae")]
    assert "1e4 photons, MAE amplitude | PSNR 20.00 dB, SSIM 0.600" == report.panels[5]["title"]
    assert "log10" in report.panels[0]["title"]


def test_render_figure_flags_nan_and_missing_panels(tmp_path: Path) -> None:
    report = render_figure(_views(bad_arm="low_nll"), tmp_path / "fig.png", "test")
    assert not report.ok
    assert [p["source"] for p in report.panels if not p["ok"]] == ["low_nll"]
    report = render_figure(_views(missing="high_mae"), tmp_path / "fig2.png", "test")
    assert not report.ok and report.png_ok
    assert [p["present"] for p in report.panels] == [True, True, False, True, True, True]


def _complete_views(missing: str | None = None) -> dict[str, ArmView]:
    rng = np.random.default_rng(1)
    truth = (1.0 + 0.5 * (rng.random((40, 40)) > 0.8)).astype(np.complex64)  # zero phase
    views = {}
    for arm in ARMS:
        if arm.name == missing:
            continue
        recon = (truth + 0.05 * rng.standard_normal((40, 40))) * np.exp(0.3j)  # global phase
        diff = rng.poisson(arm.nphotons / 256, size=(16, 16)).astype(np.float32)
        views[arm.name] = ArmView(arm, arm.nphotons, diff, np.abs(recon).astype(np.float32),
                                  psnr=20.0, ssim=0.6, recon=recon, truth=truth)
    return views


def test_full_figure_has_truth_column_phase_rows_and_shared_row_limits(tmp_path: Path) -> None:
    report = render_figure(_complete_views(), tmp_path / "fig.png", "test")
    assert report.ok and len(report.panels) == 14
    cells = [(p["row"], p["quantity"], p["column"]) for p in report.panels]
    assert cells[:7] == [("high", "amplitude", "diffraction"), ("high", "amplitude", "truth"),
                         ("high", "amplitude", "nll"), ("high", "amplitude", "mae"),
                         ("high", "phase", "truth"), ("high", "phase", "nll"),
                         ("high", "phase", "mae")]
    truth_phase = report.panels[4]
    assert truth_phase["ok"] and truth_phase["nonconstant"] is False  # zero phase is fine
    # reconstructions are shown after the global phase alignment: phase near 0, not 0.3 rad
    assert abs(report.panels[5]["mean"]) < 0.05
    missing = render_figure(_complete_views(missing="low_mae"), tmp_path / "fig2.png", "test")
    assert not missing.ok and missing.png_ok
    assert [p["source"] for p in missing.panels if not p["present"]] == ["low_mae", "low_mae"]


def test_figure_cli_draws_the_full_figure_from_a_study_directory(tmp_path: Path) -> None:
    from dose_study.figure import main as figure_main

    for name, view in _complete_views().items():
        arm_dir = tmp_path / name
        arm_dir.mkdir()
        truth = np.pad(view.truth, 4)
        np.savez(arm_dir / "recon.npz", recon=np.pad(view.recon, 4), truth=truth,
                 diffraction_sample=view.diffraction, crop=np.array([4, 44, 4, 44]))
        (arm_dir / "metrics.json").write_text(json.dumps(
            {"nphotons": view.nphotons, "metrics": {"amp_psnr": 20.0, "amp_ssim": 0.6}}))
    assert figure_main([str(tmp_path), str(tmp_path / "fig.png")]) == 0
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "low_mae" / "recon.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="low_mae/recon.npz: unreadable"):
        figure_main([str(tmp_path)])


# ----------------------------------------------------------------------------- summary
def _metrics(arm_name: str, psnr: float, ssim: float, counts: float) -> dict:
    arm = get_arm(arm_name)
    return {"arm": arm_name, "nphotons": arm.nphotons, "loss": arm.loss,
            "study_config": QUICK.to_dict(),
            "metrics": {"amp_psnr": psnr, "amp_ssim": ssim, "amp_frc50": 0.2, "phase_psnr": 30.0},
            "baseline": {"amp_ssim": 0.05},
            "counts": {"test_mean_total": counts},
            "history": {"loss_last": 0.1}, "wall_time_s": {"total": 10.0}}


def test_science_checks_record_what_happened() -> None:
    per_arm = {"high_nll": _metrics("high_nll", 25.0, 0.8, 1.01e9),
               "high_mae": _metrics("high_mae", 24.0, 0.45, 0.99e9),
               "low_nll": _metrics("low_nll", 18.0, 0.3, 1.0e4),
               "low_mae": _metrics("low_mae", 19.5, 0.04, 1.0e4)}
    sci = science_checks(per_arm, QUICK)
    assert sci["counts_ratio"]["value"] == pytest.approx(1e5)
    assert sci["counts_ratio"]["ok"] is True
    assert sci["nll_beats_mae_at_low_dose"] is False
    assert sci["nll_vs_mae"]["low"]["psnr_delta_db"] == pytest.approx(-1.5)
    assert sci["high_dose_ssim_ge_0_5"] is False  # high_mae at 0.45
    assert sci["targets"]["met"] is False and sci["targets"]["arms"]["high_mae"]["met"] is False
    assert sci["baseline"]["low_mae"]["beats_baseline"] is False
    assert sci["all_arms_beat_baseline_ssim"] is False
    partial = science_checks({"low_nll": per_arm["low_nll"]}, QUICK)
    assert partial["counts_ratio"]["value"] is None
    assert partial["nll_beats_mae_at_low_dose"] is None


def test_summary_and_markdown(tmp_path: Path) -> None:
    per_arm = {n: _metrics(n, 20.0, 0.6, 1e9 if n.startswith("high") else 1e4)
               for n in ("high_nll", "high_mae", "low_nll")}
    report = render_figure(_views(missing="low_mae"), tmp_path / "fig.png", "t")
    summary = build_summary(QUICK, per_arm, report, {"python": "3"}, {"wall_times_s": {}})
    json.dumps(summary)  # serialisable
    assert summary["arms_missing"] == ["low_mae"] and summary["figure_ok"] is False
    assert summary["wall_times_s"]["arms_total"] == 30.0
    text = render_markdown(summary)
    assert "| low_mae | 1e4 | MAE | missing" in text
    assert "| high_nll | 1e9 | NLL | 20.00 | 0.600 | 0.050 |" in text
    assert "Missing arms: low_mae." in text
    assert "PINN + refinement" not in text  # no arm recorded one


def test_pinn_plus_refinement_is_reported_beside_the_pinn_alone(tmp_path: Path) -> None:
    per_arm = {n: _metrics(n, 20.0, 0.6, 1e9 if n.startswith("high") else 1e4)
               for n in ("high_nll", "low_nll")}
    per_arm["high_nll"]["refined"] = {"metrics": {"amp_ssim": 0.95}, "wall_s": 2.04}
    sci = science_checks(per_arm, QUICK)
    assert sci["refined"] == {"high_nll": {"amp_ssim": 0.95, "pinn_amp_ssim": 0.6, "wall_s": 2.04}}
    assert sci["targets"]["arms"]["high_nll"]["amp_ssim"] == 0.6  # targets stay the PINN's
    report = render_figure(_views(missing="low_mae"), tmp_path / "fig.png", "t")
    text = render_markdown(build_summary(QUICK, per_arm, report, {}, {"wall_times_s": {}}))
    assert ("- PINN + refinement (ptycho.refine from each arm's object; a solver's result, not "
            "the PINN's), amp SSIM: high_nll 0.950 (PINN alone 0.600, 2.0 s)") in text


def test_a_baseline_arm_is_described_by_its_engine_not_by_the_pinn_training() -> None:
    pinn, lsqml = describe_arm(QUICK, get_arm("high_nll")), describe_arm(QUICK, get_arm("high_lsqml"))
    assert f"lr {QUICK.learning_rate:g}" in pinn and f"{QUICK.nepochs} epochs" in pinn
    assert lsqml == f"N={QUICK.N}, {QUICK.n_test_images} test groups, {QUICK.baseline_epochs} LSQML epochs"
