"""Calibration: timing the execution paths on this CPU and caching the fastest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptycho.calibration import calibrate, main
from ptycho.execution import device_defaults

pytestmark = pytest.mark.integration  # trains models


def test_calibration_times_the_paths_and_its_cache_then_decides(tmp_path: Path) -> None:
    record = calibrate(paths=["non_xla", "xla"], steps=4, cache_dir=tmp_path, n=16)
    assert set(record["train_groups_per_s"]) == {"non_xla", "xla"}
    assert record["fastest"] in ("non_xla", "xla") and record["N"] == 16
    jit, bf16, source = device_defaults("CPU", record["cpu"], frozenset(), record["tensorflow"],
                                        tmp_path)
    assert source == "calibration" and bf16 is False
    assert jit is (record["fastest"] == "xla")


def test_an_unknown_path_is_refused_before_any_model_is_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown execution path\(s\) \['xla_fp8'\]"):
        calibrate(paths=["xla_fp8"], cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_prints_the_resolved_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PTYCHO_EXECUTION_CACHE", str(tmp_path))
    assert main([]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["default_path"] in ("xla", "xla_bf16", "bf16", "non_xla")
    assert shown["source"] in ("evidence", "evidence+no_native_bf16", "gpu")
    assert shown["calibration"] is None
