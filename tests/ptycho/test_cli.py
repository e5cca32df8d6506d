"""CLI: python -m ptycho simulate → train → infer in real subprocesses; errors and exit codes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "ptycho", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, umask=0o022)


def test_simulate_train_infer_pipeline(tmp_path: Path) -> None:
    data = tmp_path / "train.npz"
    proc = _run("simulate", "--output", str(data), "--N", "16", "--gridsize", "2",
                "--n-images", "24", "--nphotons", "1e6", "--seed", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["groups"] == 24
    with np.load(data) as npz:
        assert npz["diffraction"].shape == (24, 16, 16, 4)

    out = tmp_path / "run"
    proc = _run("train", "--data", str(data), "--output-dir", str(out), "--nepochs", "1",
                "--batch-size", "8", "--n-filters-scale", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["epochs"] == 1 and np.isfinite(summary["final_loss"])
    assert "epoch 1/1 loss=" in proc.stderr  # per-epoch progress line
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and np.isfinite(float(rows[0]["loss"]))
    assert (out / "wts.h5.zip").is_file()

    proc = _run("infer", "--model", str(out / "wts.h5.zip"), "--data", str(data),
                "--output-dir", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
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
