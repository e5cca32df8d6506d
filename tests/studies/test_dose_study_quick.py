"""Slow: the real ``--quick`` study end to end and the science it records (DESIGN §3, §7).

Asserted: four complete arms, high/low mean-counts ratio within 5 % of 1e5, every arm beats
the constant-image baseline and reaches amplitude SSIM >= 0.70 (issue 16), figure_ok. Reported (printed, not asserted):
whether NLL beat MAE at 1e4 photons and whether the 1e9 arms reach SSIM >= 0.5, with the
per-arm wall times -- ``pytest -m slow -s tests/studies`` shows them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

QUICK_SSIM_TARGET = 0.70
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "studies" / "dose_response_study.py"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_study_records_the_science(tmp_path: Path) -> None:
    out = tmp_path / "study_quick"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--baseline", "none", "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=1700, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["quick"] is True and summary["arms_missing"] == []
    for arm in summary["arms_expected"]:
        assert (out / arm / "wts.h5.zip").is_file() and (out / arm / "complete").is_file()
    sci = summary["science"]

    ratio = sci["counts_ratio"]
    assert ratio["value"] == pytest.approx(1e5, rel=0.05), ratio
    for arm, entry in sci["baseline"].items():
        assert entry["beats_baseline"], f"{arm} does not beat the constant baseline: {entry}"
        assert entry["amp_ssim"] >= QUICK_SSIM_TARGET, f"{arm}: amp SSIM below 0.70: {entry}"
    assert sci["all_arms_beat_baseline_ssim"] is True
    assert summary["figure_ok"] is True, summary["figure"]["panels"]
    assert isinstance(sci["nll_beats_mae_at_low_dose"], bool)

    low = sci["nll_vs_mae"]["low"]
    print(f"\nquick study: wall {summary['wall_times_s']}")
    print(f"counts ratio {ratio['value']:.5g} (expected {ratio['expected']:.0e})")
    for arm, entry in sci["baseline"].items():
        print(f"{arm}: amp SSIM {entry['amp_ssim']:.3f} vs constant baseline "
              f"{entry['baseline_amp_ssim']:.3f}")
    print(f"NLL beats MAE at 1e4 photons: {sci['nll_beats_mae_at_low_dose']} "
          f"(amp PSNR {low['nll_amp_psnr']:.2f} vs {low['mae_amp_psnr']:.2f} dB)")
    print(f"1e9 amplitude SSIM >= 0.5: {sci['high_dose_ssim_ge_0_5']} {sci['high_dose_amp_ssim']}")
