"""ptycho.xla_cache: the persistent cache of XLA's CPU executables.

Pure parts (directory key, pruning, the flags it sets) run in this process; that a second
process loads the first one's executables instead of compiling runs two real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ptycho import xla_cache

ROOT = Path(__file__).resolve().parents[2]


def test_the_directory_changes_with_the_cpu_flags_model_and_tensorflow(tmp_path: Path) -> None:
    avx2 = frozenset({"sse2", "avx2"})
    avx512 = avx2 | {"avx512f"}
    base = xla_cache.cache_directory(tmp_path, "AMD EPYC", avx2, "2.21.0")
    assert base.parent == tmp_path and base.name.startswith("xla-")
    assert base == xla_cache.cache_directory(tmp_path, "AMD EPYC", frozenset(["avx2", "sse2"]),
                                             "2.21.0")
    others = {xla_cache.cache_directory(tmp_path, "AMD EPYC", avx512, "2.21.0"),
              xla_cache.cache_directory(tmp_path, "Intel Xeon", avx2, "2.21.0"),
              xla_cache.cache_directory(tmp_path, "AMD EPYC", avx2, "2.22.0")}
    assert base not in others and len(others) == 3


def test_prune_drops_the_oldest_entries_beyond_the_budget_and_stale_temporaries(
        tmp_path: Path) -> None:
    now = 1_000_000.0
    files = {"a.pb": (100, now - 50), "b.pb": (100, now - 40), "c.pb": (100, now - 30),
             "fresh.pb.tmp": (10, now - 10), "old.pb.tmp": (10, now - 2 * xla_cache.STALE_TMP_S)}
    for name, (size, mtime) in files.items():
        path = tmp_path / name
        path.write_bytes(b"x" * size)
        os.utime(path, (mtime, mtime))
    deleted = xla_cache.prune(tmp_path, max_bytes=220, now=now)
    assert sorted(p.name for p in deleted) == ["a.pb", "old.pb.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.pb", "c.pb", "fresh.pb.tmp"]
    assert xla_cache.prune(tmp_path, max_bytes=220, now=now) == []


def test_enable_sets_the_flags_once_and_leaves_a_users_directory_alone(tmp_path: Path) -> None:
    env = {"TF_XLA_FLAGS": "--tf_xla_auto_jit=0"}
    assert xla_cache.enable(env, root=tmp_path) is None  # off unless opted in
    assert env == {"TF_XLA_FLAGS": "--tf_xla_auto_jit=0"}
    env[xla_cache.OPT_IN] = "on"
    directory = xla_cache.enable(env, root=tmp_path)
    assert directory is not None and directory.is_dir() and directory.parent == tmp_path
    assert env["TF_XLA_FLAGS"].split() == [
        "--tf_xla_auto_jit=0", f"--{xla_cache.CACHE_FLAG}={directory}",
        f"--{xla_cache.DEVICE_FLAG}=CPU"]
    assert xla_cache.enable(env, root=tmp_path) is None  # already set: nothing added twice
    user = {"TF_XLA_FLAGS": f"--{xla_cache.CACHE_FLAG}=/somewhere", xla_cache.OPT_IN: "on"}
    assert xla_cache.enable(user, root=tmp_path) is None
    assert user["TF_XLA_FLAGS"] == f"--{xla_cache.CACHE_FLAG}=/somewhere"
    cold = {"TF_XLA_FLAGS": xla_cache.cold(env["TF_XLA_FLAGS"]), xla_cache.OPT_IN: "on"}
    assert cold["TF_XLA_FLAGS"].split() == ["--tf_xla_auto_jit=0", f"--{xla_cache.CACHE_FLAG}="]
    assert xla_cache.enable(cold, root=tmp_path) is None


def test_enable_is_off_with_the_cache_variable_off_or_an_unusable_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PTYCHO_EXECUTION_CACHE", "off")
    env = {xla_cache.OPT_IN: "on"}
    assert xla_cache.enable(env) is None and "TF_XLA_FLAGS" not in env
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert xla_cache.enable(env, root=blocker) is None and "TF_XLA_FLAGS" not in env
    typo = {xla_cache.OPT_IN: "yes"}
    assert xla_cache.enable(typo, root=tmp_path) is None and "TF_XLA_FLAGS" not in typo
    assert "PTYCHO_XLA_CACHE='yes' is neither on nor off" in caplog.text
    assert "XLA executable cache off" in caplog.text and str(blocker) in caplog.text


TRAIN_ONCE = r"""
from ptycho import xla_cache
xla_cache.enable()  # as the entry points do, before simulate sets up TensorFlow's devices
from ptycho.config import SimConfig, TrainConfig
from ptycho.model import build_model, model_config_for
from ptycho.physics import simulate
from ptycho.train import train
data = simulate(SimConfig(N=16, gridsize=2, n_images=16, nphotons=1e6, seed=4))
model = build_model(model_config_for(data, n_filters_scale=1, jit_compile=True))
train(model, data, TrainConfig(nepochs=1, batch_size=8))
print("path", model.execution.name)
"""


def test_a_second_process_loads_the_executables_the_first_compiled(tmp_path: Path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PTYCHO_EXECUTION_CACHE": str(tmp_path),
           xla_cache.OPT_IN: "on"}
    env.pop("TF_XLA_FLAGS", None)

    def entries() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("xla-*/*.pb")}

    for run in range(2):
        proc = subprocess.run([sys.executable, "-c", TRAIN_ONCE], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=280)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "path xla" in proc.stdout
        if run == 0:
            first = entries()
            assert first, f"no executable cached under {tmp_path}"
    assert entries() == first  # loaded, not compiled and written again
