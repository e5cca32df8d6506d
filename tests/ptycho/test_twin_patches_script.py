"""scripts/diagnostics/twin_patches.py: the decomposition into truth and twin, and the script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "diagnostics" / "twin_patches.py"


@pytest.fixture(scope="module")
def twin_patches(load_file_module: Callable[[Path], ModuleType]) -> ModuleType:
    return load_file_module(SCRIPT)


def test_twin_is_the_point_reflection_about_the_scan_pixel(twin_patches: ModuleType) -> None:
    patch = np.zeros((8, 8))
    patch[4 - 1, 4 + 2] = 1.0  # one row up, two columns right of pixel (4, 4)
    twin = twin_patches.twin_of(patch)
    assert twin[4 + 1, 4 - 2] == 1.0 and twin.sum() == 1.0
    np.testing.assert_array_equal(twin_patches.twin_of(twin), patch)


def test_decompose_separates_the_truth_from_its_twin(twin_patches: ModuleType) -> None:
    rng = np.random.default_rng(0)
    truth = 1.0 + 0.3 * rng.standard_normal((16, 16))
    lit = np.hypot(*(np.mgrid[0:16, 0:16] - 8)) < 6
    learned = twin_patches.decompose(0.8 * truth + 0.1, truth, lit)
    assert learned["alpha"] == pytest.approx(0.8) and abs(learned["beta"]) < 1e-9
    assert learned["corr_truth"] == pytest.approx(1.0) and learned["corr_twin"] < 0.5
    blurred = twin_patches.decompose(0.5 * truth + 0.5 * twin_patches.twin_of(truth), truth, lit)
    assert blurred["alpha"] == pytest.approx(0.5) and blurred["beta"] == pytest.approx(0.5)
    flipped = twin_patches.decompose(twin_patches.twin_of(truth), truth, lit)
    assert flipped["corr_twin"] == pytest.approx(1.0) and flipped["alpha"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.integration  # spawns the script on a real archive and data file
def test_script_reports_every_patch_of_a_data_file(tmp_path: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ptycho.config import SimConfig
    from ptycho.io import save_data, save_model
    from ptycho.model import build_model, model_config_for
    from ptycho.physics import simulate

    sim = simulate(SimConfig(N=16, gridsize=2, n_images=6, nphotons=1e6, seed=4))
    model = build_model(model_config_for(sim, n_filters_scale=1))
    save_model(model, tmp_path / "wts.h5.zip", intensity_scale=sim.intensity_scale)
    save_data(tmp_path / "data.npz", sim)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tmp_path / "wts.h5.zip"),
                           "--data", str(tmp_path / "data.npz"), "--max-patches", "16"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["patches"] == 16 and report["lit_pixels"] > 0
    assert set(report["alpha"]) == {"median", "q10", "q90"}
    assert 0.0 <= report["closer_to_truth"] <= 1.0
