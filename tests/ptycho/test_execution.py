"""Execution-path choice: per device, from a per-CPU calibration cache or recorded evidence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ptycho.config import ModelConfig
from ptycho.execution import (
    ExecutionPlan,
    cache_file,
    cpu_info,
    device_defaults,
    load_calibration,
    resolve_execution,
)

AVX2 = frozenset({"avx2", "fma"})
BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})


def _write(directory: Path, cpu: str, tf: str, fastest: str) -> Path:
    path = cache_file(cpu, tf, directory)
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cpu": cpu, "tensorflow": tf, "fastest": fastest}))
    return path


def test_gpu_gets_whole_step_xla_with_bf16() -> None:
    assert device_defaults("GPU") == (True, True, "gpu")


def test_cpu_without_a_calibration_follows_the_recorded_evidence(tmp_path: Path) -> None:
    assert device_defaults("CPU", "cpu A", AVX2, "2.x", tmp_path) == (True, False, "evidence")
    assert device_defaults("CPU", "cpu B", BF16, "2.x", tmp_path) == (False, True, "evidence")


def test_cached_calibration_wins_per_cpu_model_and_tf_version(tmp_path: Path) -> None:
    _write(tmp_path, "cpu A", "2.x", "non_xla")
    assert device_defaults("CPU", "cpu A", AVX2, "2.x", tmp_path) == (False, False, "calibration")
    # another TF version or CPU model does not reuse it
    assert device_defaults("CPU", "cpu A", AVX2, "2.y", tmp_path)[2] == "evidence"
    assert device_defaults("CPU", "cpu C", AVX2, "2.x", tmp_path)[2] == "evidence"


def test_bf16_is_never_chosen_without_native_bf16(tmp_path: Path) -> None:
    _write(tmp_path, "cpu A", "2.x", "bf16")  # e.g. a cache copied from another machine
    jit, bf16, source = device_defaults("CPU", "cpu A", AVX2, "2.x", tmp_path)
    assert bf16 is False and source.endswith("no_native_bf16")


def test_a_onednn_isa_cap_below_bf16_counts_as_no_native_bf16(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "cpu B", "2.x", "bf16")  # calibrated without the cap
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    # the capped CPU has its own calibration key, and the evidence rule says XLA
    assert device_defaults("CPU", "cpu B", BF16, "2.x", tmp_path) == (True, False, "evidence")
    _write(tmp_path, "cpu B (ONEDNN_MAX_CPU_ISA=AVX2)", "2.x", "non_xla")
    assert device_defaults("CPU", "cpu B", BF16, "2.x", tmp_path) == (False, False, "calibration")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # a cap that keeps bf16
    assert device_defaults("CPU", "cpu B", BF16, "2.x", tmp_path) == (False, True, "evidence")
    _write(tmp_path, "cpu B (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16)", "2.x", "xla")
    assert device_defaults("CPU", "cpu B", BF16, "2.x", tmp_path) == (True, False, "calibration")


def test_a_malformed_or_foreign_cache_is_ignored(tmp_path: Path) -> None:
    path = _write(tmp_path, "cpu A", "2.x", "xla")
    path.write_text("{not json")
    assert load_calibration("cpu A", "2.x", tmp_path) is None
    path.write_text(json.dumps({"cpu": "cpu Z", "tensorflow": "2.x", "fastest": "xla"}))
    assert load_calibration("cpu A", "2.x", tmp_path) is None


def test_cpu_info_reads_model_and_flags(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512_bf16\n")
    model, flags = cpu_info(info)
    assert model == "Test CPU 9000" and "avx512_bf16" in flags
    assert cpu_info(tmp_path / "missing") == ("unknown", frozenset())


def test_explicit_options_win_and_jit_forces_the_xla_translation(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PTYCHO_EXECUTION_CACHE", str(tmp_path))
    plan = resolve_execution(ModelConfig(jit_compile=True, mixed_precision=False,
                                         translation_xla=False))
    assert plan == ExecutionPlan(plan.device, True, False, True, "config")
    explicit = resolve_execution(ModelConfig(jit_compile=False, mixed_precision=False,
                                             translation_xla=False))
    assert explicit.name == "non_xla" and explicit.translation_xla is False


def test_xla_cpu_flags_adds_the_memory_flags_and_keeps_what_the_user_set() -> None:
    from ptycho.execution import XLA_CPU_FLAGS, xla_cpu_flags

    env: dict[str, str] = {}
    value = xla_cpu_flags(env)
    assert value == env["XLA_FLAGS"] == " ".join(f"--{k}={v}" for k, v in XLA_CPU_FLAGS.items())
    assert xla_cpu_flags(env) == value  # idempotent: nothing added twice
    user = {"XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_cpu_use_fusion_emitters=true"}
    assert xla_cpu_flags(user) == "--xla_dump_to=/tmp/x --xla_cpu_use_fusion_emitters=true"
    other = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    assert xla_cpu_flags(other).split() == ["--xla_dump_to=/tmp/x", "--xla_cpu_use_fusion_emitters=false"]


def test_resolving_an_execution_path_sets_the_xla_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLA_FLAGS", "")  # restored after the test
    resolve_execution(ModelConfig(jit_compile=False, mixed_precision=False))
    assert os.environ["XLA_FLAGS"].split() == ["--xla_cpu_use_fusion_emitters=false"]
