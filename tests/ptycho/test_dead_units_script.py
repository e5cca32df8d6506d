"""scripts/diagnostics/dead_units.py: a real archive and data file in, one JSON object out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ptycho.config import SimConfig  # noqa: E402
from ptycho.io import save_data, save_model  # noqa: E402
from ptycho.model import build_model, model_config_for  # noqa: E402
from ptycho.physics import simulate  # noqa: E402

pytestmark = pytest.mark.integration  # spawns the script, trains a model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "diagnostics" / "dead_units.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_reports_the_units_killed_in_an_archive(tmp_path: Path) -> None:
    sim = simulate(SimConfig(N=16, gridsize=2, n_images=12, nphotons=1e6, seed=4))
    model = build_model(model_config_for(sim, n_filters_scale=1))
    bias = model.get_layer("amp_conv1b").bias
    bias.assign(np.full(bias.shape, -1e3, np.float32))
    save_model(model, tmp_path / "wts.h5.zip", intensity_scale=sim.intensity_scale)
    save_data(tmp_path / "data.npz", sim)
    proc = _run("--model", str(tmp_path / "wts.h5.zip"), "--data", str(tmp_path / "data.npz"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["groups"] == 12 and report["activation"] == "leaky_relu"
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["amp_conv1b"]["dead"] == layers["amp_conv1b"]["channels"]
    assert layers["amp_conv1b"]["positive_frac"] == 0.0
    assert layers["enc_conv0a"]["dead"] < layers["enc_conv0a"]["channels"]


def test_missing_archive_exits_1_naming_it(tmp_path: Path) -> None:
    proc = _run("--model", str(tmp_path / "none.zip"), "--data", str(tmp_path / "d.npz"))
    assert proc.returncode == 1
    assert "none.zip" in proc.stderr and proc.stdout == ""
