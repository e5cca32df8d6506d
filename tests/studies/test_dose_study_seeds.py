"""Merging study runs of several seeds: mean ± std per arm and the NLL-vs-MAE verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dose_study.arms import ARM_NAMES, QUICK
from dose_study.seeds import SeedMergeError, merge, render_markdown

SEEDS_CMD = [sys.executable, "-m", "dose_study.seeds"]


def _run(seed: int, low_nll_psnr: float, low_mae_psnr: float) -> dict:
    cfg = {**QUICK.to_dict(), "seed": seed, "test_seed": seed + 1000}
    per_arm = {}
    for arm in ARM_NAMES:
        psnr = {"low_nll": low_nll_psnr, "low_mae": low_mae_psnr}.get(arm, 25.0 + seed)
        per_arm[arm] = {"metrics": {"amp_psnr": psnr, "amp_ssim": 0.8 + 0.01 * seed,
                                    "amp_frc50": 10.0}}
    return {"config": cfg, "per_arm": per_arm}


def test_merge_reports_mean_std_and_a_verdict_from_the_spread() -> None:
    runs = [_run(0, 21.0, 20.0), _run(1, 21.2, 20.1), _run(2, 20.9, 19.9)]
    merged = merge(runs, ["a", "b", "c"])
    ssim = merged["per_arm"]["high_nll"]["amp_ssim"]
    assert ssim["mean"] == pytest.approx(0.81) and ssim["std"] == pytest.approx(0.01)
    low = merged["nll_vs_mae"]["low"]
    assert low["amp_psnr_nll_minus_mae"]["mean"] == pytest.approx(1.0333, abs=1e-3)
    assert low["verdict_psnr"].startswith("NLL better") and merged["nll_beats_mae_at_low_dose"]
    # equal SSIMs: no difference
    assert low["verdict_ssim"].startswith("no significant difference")
    text = render_markdown(merged)
    assert "| low_nll | 21.03 ± 0.15 |" in text and "In amplitude PSNR yes" in text
    assert "+1.03 ± 0.06 dB" in text


def test_a_noisy_difference_gets_no_verdict() -> None:
    merged = merge([_run(0, 21.0, 20.0), _run(1, 19.0, 20.0), _run(2, 20.1, 20.0)], ["a", "b", "c"])
    assert merged["nll_vs_mae"]["low"]["verdict_psnr"].startswith("no significant difference")
    assert merged["nll_beats_mae_at_low_dose"] is False


def test_runs_that_differ_in_settings_or_share_a_seed_are_refused() -> None:
    other = _run(1, 20.0, 20.0)
    other["config"]["nepochs"] = 99
    with pytest.raises(SeedMergeError, match="b: settings differ.*nepochs=99"):
        merge([_run(0, 20.0, 20.0), other], ["a", "b"])
    with pytest.raises(SeedMergeError, match="share a seed"):
        merge([_run(0, 20.0, 20.0), _run(0, 20.0, 20.0)], ["a", "b"])


@pytest.mark.integration  # spawns the seeds command line
def test_cli_writes_both_files_and_fails_cleanly_on_an_incomplete_run(tmp_path: Path) -> None:
    dirs = []
    for seed in (0, 1, 2):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(_run(seed, 21.0 + 0.1 * seed, 20.0)))
        dirs.append(str(d))
    out = tmp_path / "merged"
    proc = subprocess.run([*SEEDS_CMD, "--output", str(out), *dirs],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "seeds_summary.json").read_text())["seeds"] == [0, 1, 2]
    assert "Does Poisson NLL beat MAE" in (out / "seeds_summary.md").read_text()
    broken = tmp_path / "s1" / "summary.json"
    data = json.loads(broken.read_text())
    del data["per_arm"]["low_mae"]
    broken.write_text(json.dumps(data))
    proc = subprocess.run([*SEEDS_CMD, "--output", str(tmp_path / "m2"), *dirs],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "s1/summary.json: arms not complete: low_mae" in proc.stderr
    assert not (tmp_path / "m2").exists()
