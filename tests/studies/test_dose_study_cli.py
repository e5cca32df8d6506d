"""The dose-response study through its real CLI in subprocesses (real ptycho, tiny sizes).

Tiny sizes: N=16, gridsize 2, 16 train / 64 test groups, 1 epoch, batch 8 -- a few training
steps per arm; the science is checked by the slow --quick test in test_dose_study_quick.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dose_study.arms import PROBE_DEFOCUS

pytestmark = pytest.mark.integration  # spawns the study command line, trains models

# the four PINN arms only, whether or not the [baseline] extra is installed
NO_BASELINE = ["--baseline", "none"]
TINY = ["--quick", "--patch-size", "16", "--n-images", "16", "--n-test-images", "64",
        "--nepochs", "1", "--batch-size", "8"]
ARM_FILES = ("wts.h5.zip", "history.csv", "metrics.json", "recon.npz", "complete")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "studies" / "dose_response_study.py"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def study_cmd(out: Path, *extra: str, sizes: list[str] = TINY) -> list[str]:
    return [sys.executable, str(SCRIPT), "--output-dir", str(out), *NO_BASELINE, *sizes,
            *extra]


def run_study(out: Path, *extra: str, sizes: list[str] = TINY,
              timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(study_cmd(out, *extra, sizes=sizes), capture_output=True, text=True,
                          timeout=timeout, env=ENV, stdin=subprocess.DEVNULL, umask=0o022)


def trained(stderr: str) -> list[str]:
    return re.findall(r"arm (\w+) \([^)]*\): training", stderr)


def skipped(stderr: str) -> list[str]:
    return re.findall(r"arm (\w+): complete, skipping", stderr)


def looks_complete(out: Path) -> list[str]:
    """Arm directories that hold the complete marker (what a re-run would skip)."""
    return sorted(p.parent.name for p in out.glob("*/complete") if not p.parent.name.startswith("."))


def assert_complete_arm(arm_dir: Path, arm: str) -> None:
    for name in ARM_FILES:
        assert (arm_dir / name).is_file(), f"{arm_dir / name} missing"
    metrics = json.loads((arm_dir / "metrics.json").read_text())
    assert metrics["arm"] == arm
    assert metrics["study_config"]["N"] == 16 and metrics["history"]["epochs"] == 1
    # the simulated data and the model use the study's defocused probe
    assert metrics["sim_config"]["probe_defocus"] == metrics["study_config"]["probe_defocus"] == PROBE_DEFOCUS
    assert metrics["model_config"]["probe_defocus"] == PROBE_DEFOCUS
    assert metrics["model_config"]["activation"] == metrics["study_config"]["activation"] == "leaky_relu"
    for key in ("amp_psnr", "amp_ssim", "amp_frc50", "phase_mae"):
        assert np.isfinite(metrics["metrics"][key]), key
    assert metrics["metrics"]["phase_psnr"] is None  # zero-phase object: not applicable
    refined = metrics["refined"]  # "PINN + refinement", recorded apart from the PINN's scores
    assert "not the PINN's" in refined["description"] and refined["config"]["steps"] >= 1
    assert 0 <= refined["best_step"] <= refined["steps_taken"] <= refined["config"]["steps"]
    assert -1.0 <= refined["metrics"]["amp_ssim"] <= 1.0 and refined["wall_s"] >= 0
    assert set(metrics["wall_time_s"]) >= {"simulate", "train", "evaluate", "total"}
    assert metrics["counts"]["test_mean_total"] == pytest.approx(metrics["nphotons"], rel=0.05)
    lines = (arm_dir / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,") and "loss" in lines[0] and len(lines) == 2
    with np.load(arm_dir / "recon.npz") as npz:
        assert npz["recon"].dtype == np.complex64 and npz["recon"].shape == npz["truth"].shape
        assert npz["diffraction_sample"].shape == (16, 16)
        r0, r1, c0, c1 = npz["crop"]
        assert np.isfinite(npz["recon"][r0:r1, c0:c1]).all()
    assert (arm_dir / "wts.h5.zip").stat().st_size > 1000


@pytest.fixture(scope="module")
def partial_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Two of the four arms, run once for the module (tests copy it before changing it)."""
    out = tmp_path_factory.mktemp("partial") / "study"
    proc = run_study(out, "--arm", "high_nll", "--arm", "low_mae")
    return out, proc


def test_tiny_arms_write_outputs_and_panel_checks(partial_study) -> None:
    out, proc = partial_study
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert trained(proc.stderr) == ["high_nll", "low_mae"]
    # the arm process's per-epoch line reaches the console prefixed by the arm
    assert re.search(r"^\[low_mae\] .*epoch 1/1 .*loss=", proc.stderr, re.M), "no epoch line"
    assert re.search(r"arm high_nll: done in \d+\.\d s", proc.stderr), "no per-arm wall time"
    for arm in ("high_nll", "low_mae"):
        assert_complete_arm(out / arm, arm)
    assert looks_complete(out) == ["high_nll", "low_mae"]
    assert not list(out.glob(".staging-*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arms_missing"] == ["high_mae", "low_nll"]
    assert summary["figure_ok"] is False  # two panels have no arm yet
    assert summary["run"]["scheduler"]["scheduler"] == "none"
    for arm in ("high_nll", "low_mae"):  # each arm ran in its own process, memory recorded
        assert summary["per_arm"][arm]["worker"].startswith("local-subprocess@")
        assert summary["per_arm"][arm]["process"]["peak_rss_mb"] > 100
    assert (summary["per_arm"]["high_nll"]["process"]["pid"]
            != summary["per_arm"]["low_mae"]["process"]["pid"])
    # per dose an amplitude row (diffraction, truth, NLL, MAE) and a phase row (truth, NLL, MAE)
    panels = {(p["row"], p["column"], p["quantity"]): p for p in summary["figure"]["panels"]}
    assert len(panels) == 14
    present = [("high", "diffraction", "amplitude"), ("low", "diffraction", "amplitude")]
    present += [(row, col, q) for row, col in [("high", "truth"), ("low", "truth"), ("high", "nll"), ("low", "mae")]
                for q in ("amplitude", "phase")]
    for key in present:
        p = panels[key]
        assert p["ok"] and p["finite"], (key, p)
        if key != (key[0], "truth", "phase"):  # the lines object's phase is zero: a constant truth is right
            assert p["nonconstant"] and p["min"] < p["max"] and p["std"] > 0, (key, p)
    for q in ("amplitude", "phase"):
        assert not panels[("high", "mae", q)]["present"] and not panels[("low", "nll", q)]["present"]
    assert (out / "dose_comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "| high_nll | 1e9 | NLL |" in (out / "summary.md").read_text()
    files = [p for p in out.rglob("*") if p.is_file()]
    modes = {str(p.relative_to(out)): oct(p.stat().st_mode & 0o777) for p in files}
    assert len(files) >= 13 and set(modes.values()) == {"0o644"}, modes  # umask 022


def arm_children(pid: int) -> list[int]:
    """Pids of the arm processes (``dose_study.arm_process``) whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"dose_study.arm_process" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"study exited early with {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the study")
        time.sleep(0.05)


def test_interrupted_rerun_finishes_only_missing_arms(partial_study, tmp_path: Path) -> None:
    """--arm x2, then a full run stopped by SIGTERM mid-arm, then a full run: each run trains
    only what is missing; an interrupted arm leaves nothing behind; --merge-only trains nothing."""
    src, first = partial_study
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "study"
    shutil.copytree(src, out)
    before = {a: (out / a / "metrics.json").stat().st_mtime_ns for a in ("high_nll", "low_mae")}

    log_path = tmp_path / "stderr.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(study_cmd(out), stdout=subprocess.DEVNULL, stderr=log, env=ENV,
                                stdin=subprocess.DEVNULL)
        _wait_for(lambda: any(out.glob(".staging-low_nll-*")), proc)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    stderr = log_path.read_text()
    assert rc == 143, stderr[-3000:]
    assert "interrupted (Terminated) while running arm low_nll" in stderr
    # complete arms are skipped before any arm is trained
    assert trained(stderr) == ["high_mae", "low_nll"]
    assert skipped(stderr) == ["high_nll", "low_mae"]
    assert looks_complete(out) == ["high_mae", "high_nll", "low_mae"]
    assert not (out / "low_nll").exists() and not list(out.glob(".staging-*"))

    proc = run_study(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert trained(proc.stderr) == ["low_nll"]
    assert skipped(proc.stderr) == ["high_nll", "high_mae", "low_mae"]
    assert before == {a: (out / a / "metrics.json").stat().st_mtime_ns for a in before}
    assert looks_complete(out) == ["high_mae", "high_nll", "low_mae", "low_nll"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arms_missing"] == [] and summary["figure_ok"] is True
    assert all(p["ok"] and p["finite"] for p in summary["figure"]["panels"])
    assert all(p["nonconstant"] for p in summary["figure"]["panels"] if p["column"] != "truth")
    sci = summary["science"]
    assert sci["counts_ratio"]["value"] == pytest.approx(1e5, rel=0.05)
    assert isinstance(sci["nll_beats_mae_at_low_dose"], bool)
    assert set(sci["baseline"]) == {"high_nll", "high_mae", "low_nll", "low_mae"}
    assert summary["run"]["trained"] == ["low_nll"]
    assert summary["versions"]["numpy"] == np.__version__

    merged = run_study(out, "--merge-only", sizes=[])  # settings come from the arms
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert trained(merged.stderr) == []
    again = json.loads((out / "summary.json").read_text())
    assert again["run"]["mode"] == "merge-only" and again["figure_ok"] is True
    assert again["config"] == summary["config"] and again["science"] == summary["science"]


def test_sigkill_mid_arm_leaves_nothing_complete(tmp_path: Path) -> None:
    out = tmp_path / "study"
    proc = subprocess.Popen(study_cmd(out, "--arm", "low_nll"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV, stdin=subprocess.DEVNULL)
    _wait_for(lambda: any(out.glob(".staging-low_nll-*")) and arm_children(proc.pid), proc)
    children = arm_children(proc.pid)
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in children):  # the arm process ends too
        assert time.monotonic() < deadline, f"arm process {children} outlived the study"
        time.sleep(0.1)
    leftovers = list(out.glob(".staging-low_nll-*"))
    assert leftovers and looks_complete(out) == [] and not (out / "low_nll").exists()

    merged = run_study(out, "--merge-only")
    assert merged.returncode == 1
    assert "missing arms: high_nll, high_mae, low_nll, low_mae" in merged.stderr
    assert not any(p.exists() for p in leftovers), "stale staging dir not cleaned"
    assert json.loads((out / "summary.json").read_text())["figure_ok"] is False


# ----------------------------------------------------------------------------- entry points
@pytest.mark.parametrize("entry", ["console script", "python -m", "old script path"])
def test_every_entry_point_runs_outside_the_checkout(tmp_path: Path, entry: str) -> None:
    """The installed package answers by name from another directory with no PYTHONPATH; the old
    path that handoffs name still works. A merge-only run of an empty directory: exit 1, named."""
    argv = {"console script": [str(Path(sys.executable).with_name("dose-study"))],
            "python -m": [sys.executable, "-m", "dose_study"],
            "old script path": [sys.executable, str(SCRIPT)]}[entry]
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    proc = subprocess.run([*argv, "--help"], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: dose-study") and "--scheduler" in proc.stdout
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([*argv, "--output-dir", "empty", "--merge-only"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 1 and "missing arms: high_nll, high_mae, low_nll, low_mae" in proc.stderr


# ----------------------------------------------------------------------------- bad input
def test_unwritable_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    proc = run_study(blocker / "study")
    assert proc.returncode == 2
    assert "plain_file/study' is not writable" in proc.stderr
    proc = run_study(blocker)
    assert proc.returncode == 2 and "not writable" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain_file"]


@pytest.mark.parametrize(("args", "message"), [
    (["--arm", "bogus"], "unknown --arm 'bogus'; choose from high_nll, high_mae, low_nll, low_mae"),
    (["--nepochs", "0"], "--nepochs must be an integer >= 1, got 0"),
    (["--batch-size", "-4"], "--batch-size must be an integer >= 1, got -4"),
    (["--patch-size", "20"], "--patch-size (N) must be a multiple of 8 and >= 16, got 20"),
    (["--probe-defocus", "inf"], "--probe-defocus must be finite, got inf"),
    (["--activation", "tanh"], "argument --activation: invalid choice: 'tanh'"),
    (["--merge-only", "--force"], "cannot be combined"),
    (["--merge-only"], "--merge-only: no study directory"),
])
def test_bad_arguments_fail_before_writing(tmp_path: Path, args: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """In-process ``main`` (argument checks run before anything is imported or written)."""
    from dose_study.cli import main

    out = tmp_path / "study"
    try:
        rc = main(["--output-dir", str(out), *args])
    except SystemExit as exc:  # argparse's parser.error
        rc = exc.code
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_corrupt_or_mismatched_arm_is_named(partial_study, tmp_path: Path) -> None:
    src, first = partial_study
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "study"
    shutil.copytree(src, out)
    proc = run_study(out, "--arm", "high_nll", sizes=[*TINY, "--nepochs", "2"])
    assert proc.returncode == 1
    assert re.search(r"error: arm high_nll failed: complete arm .* different settings", proc.stderr)
    assert "'nepochs': {'arm': 1, 'current': 2}" in proc.stderr
    assert trained(proc.stderr) == []

    (out / "low_mae" / "metrics.json").write_text('{"arm": "low_mae",\n  broken')
    proc = run_study(out, "--merge-only")
    assert proc.returncode == 1
    assert re.search(r"arm low_mae failed: unreadable outputs: .*low_mae/metrics.json:2: "
                     r"malformed JSON", proc.stderr)
    summary = json.loads((out / "summary.json").read_text())
    assert "low_mae" in summary["arms_missing"] and "low_mae" in summary["run"]["failed"]
