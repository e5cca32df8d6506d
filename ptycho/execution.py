"""Execution-path choice: which of whole-step XLA / per-layer float32 / bfloat16 a model uses.

``resolve_execution(cfg)`` fills the ``None`` execution options of a ``ModelConfig`` for the
devices visible when the model is built (never at import). On a CPU the choice comes from

1. a calibration cached for this CPU model and TensorFlow version
   (``~/.cache/ptycho-harness/execution-<key>.json``, written atomically by ``calibrate`` or
   ``python -m ptycho.execution --calibrate``), when one exists; else
2. the recorded evidence below (``CPU_EVIDENCE``).

bfloat16 is never chosen (by either route) on a CPU without native bf16 arithmetic
(``avx512_bf16`` / ``amx_bf16`` in /proc/cpuinfo), nor when ``ONEDNN_MAX_CPU_ISA`` caps
oneDNN below AVX512_CORE_BF16: emulated bf16 is ~8× slower there.
Set ``PTYCHO_EXECUTION_CACHE`` to another directory (tests) or to ``off`` to ignore caches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptycho.config import ModelConfig
from ptycho.fsutil import atomic_write_text

__all__ = [
    "CPU_EVIDENCE",
    "ExecutionPlan",
    "PATHS",
    "calibrate",
    "cache_file",
    "cpu_info",
    "cpu_label",
    "device_defaults",
    "load_calibration",
    "native_bf16",
    "resolve_execution",
]

log = logging.getLogger(__name__)

# name → (jit_compile, mixed_precision)
PATHS: dict[str, tuple[bool, bool]] = {
    "xla": (True, False),
    "non_xla": (False, False),
    "bf16": (False, True),
}

# Recorded train groups/s (N=64, gridsize 2, batch 16, benchmarks/bench_model.py) behind the
# uncalibrated CPU default. 2-core AVX-512-BF16 EPYC, model of 2026-11-30 (leaky ReLU, gradient
# clipping), 1024 groups: bf16 107 > XLA 83 > non-XLA 55 (per CPU-second 158 > 102 > 93).
# Issue 16, real 2-core AVX2 EPYC, previous model: XLA 69 > non-XLA 55, emulated bf16 ~8× slower.
# (The --quick run, 16 steady steps, is no evidence for XLA: its steady epoch was slower than
# its first.) A calibration overrides this per CPU.
CPU_EVIDENCE = {
    "native_bf16": "bf16",
    "no_bf16": "xla",
}


@dataclass(frozen=True)
class ExecutionPlan:
    """Resolved execution path of one model.

    device: "CPU" | "GPU" (where the model was built); jit_compile: whole-step XLA;
    mixed_precision: bfloat16 CNN; translation_xla: gather-based translation path;
    source: where the choice came from ("config", "calibration", "evidence", "gpu").
    """

    device: str
    jit_compile: bool
    mixed_precision: bool
    translation_xla: bool
    source: str = "config"

    @property
    def name(self) -> str:
        """Benchmark name of the path: "xla", "xla_bf16", "bf16" or "non_xla"."""
        if self.jit_compile:
            return "xla_bf16" if self.mixed_precision else "xla"
        return "bf16" if self.mixed_precision else "non_xla"


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; ("unknown", {}) if unreadable."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return "unknown", frozenset()
    model, flags = "unknown", frozenset()
    for line in text.splitlines():
        if line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = frozenset(line.split(":", 1)[1].split())
    return model, flags


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: its kernels then emulate bf16.
_ISA_BELOW_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                             "AVX512_CORE_VNNI"})


def _isa_cap() -> str:
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()


def native_bf16(flags: frozenset[str]) -> bool:
    """Native bfloat16 arithmetic: the CPU flag (AVX512-BF16 or AMX-BF16), unless
    ``ONEDNN_MAX_CPU_ISA`` caps TensorFlow's oneDNN kernels below AVX512_CORE_BF16."""
    return bool(flags & {"avx512_bf16", "amx_bf16"}) and _isa_cap() not in _ISA_BELOW_BF16


def cpu_label(cpu_model: str) -> str:
    """The CPU as the calibration cache keys it: the model name, plus the oneDNN ISA cap if set."""
    cap = _isa_cap()
    return f"{cpu_model} (ONEDNN_MAX_CPU_ISA={cap})" if cap else cpu_model


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """``native_bf16`` of this machine's CPU."""
    return native_bf16(cpu_info(cpuinfo)[1])


def _cache_dir() -> Path | None:
    value = os.environ.get("PTYCHO_EXECUTION_CACHE")
    if value == "off":
        return None
    return Path(value) if value else Path.home() / ".cache" / "ptycho-harness"


def cache_file(cpu_model: str, tf_version: str, cache_dir: Path | None = None) -> Path | None:
    """The calibration file of one CPU model + TensorFlow version (None: caching off)."""
    directory = cache_dir if cache_dir is not None else _cache_dir()
    if directory is None:
        return None
    key = hashlib.sha256(f"{cpu_model}|{tf_version}".encode()).hexdigest()[:16]
    return directory / f"execution-{key}.json"


def load_calibration(cpu_model: str, tf_version: str,
                     cache_dir: Path | None = None) -> dict[str, Any] | None:
    """The cached calibration for this CPU + TF, or None (missing, unreadable, or stale)."""
    path = cache_file(cpu_model, tf_version, cache_dir)
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable execution calibration %s: %s", path, exc)
        return None
    if (not isinstance(data, dict) or data.get("cpu") != cpu_model
            or data.get("tensorflow") != tf_version or data.get("fastest") not in PATHS):
        log.warning("ignoring execution calibration %s: it is for another CPU/TF or malformed",
                    path)
        return None
    return data


def device_defaults(device: str, cpu_model: str | None = None, flags: frozenset[str] | None = None,
                    tf_version: str | None = None,
                    cache_dir: Path | None = None) -> tuple[bool, bool, str]:
    """(jit_compile, mixed_precision, source) fastest on `device` ("CPU" | "GPU").

    GPU: whole-step XLA with bf16 (not measured here). CPU: the cached calibration for this CPU
    model and TF version, else ``CPU_EVIDENCE``; never bf16 without native bf16.
    """
    if device == "GPU":
        return True, True, "gpu"
    if cpu_model is None or flags is None:
        cpu_model, flags = cpu_info()
    cpu_model, native = cpu_label(cpu_model), native_bf16(flags)
    if tf_version is None:
        import tensorflow as tf

        tf_version = tf.__version__
    calibration = load_calibration(cpu_model, tf_version, cache_dir)
    if calibration is not None:
        path, source = calibration["fastest"], "calibration"
    else:
        path, source = CPU_EVIDENCE["native_bf16" if native else "no_bf16"], "evidence"
    jit, bf16 = PATHS[path]
    if bf16 and not native:  # a cache from elsewhere must not force emulated bf16
        jit, bf16, source = PATHS[CPU_EVIDENCE["no_bf16"]][0], False, source + "+no_native_bf16"
    return jit, bf16, source


def resolve_execution(cfg: ModelConfig) -> ExecutionPlan:
    """Fill the ``None`` execution options of `cfg` for the devices visible now."""
    import tensorflow as tf

    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    if cfg.jit_compile is None or cfg.mixed_precision is None:
        jit_default, bf16_default, source = device_defaults(device)
    else:
        jit_default, bf16_default, source = False, False, "config"
    jit = jit_default if cfg.jit_compile is None else cfg.jit_compile
    bf16 = bf16_default if cfg.mixed_precision is None else cfg.mixed_precision
    if device == "CPU" and bf16 and cfg.mixed_precision is None and not cpu_has_bf16():
        bf16 = False
    translation_xla = cfg.translation_xla
    if jit and not translation_xla:
        log.info("jit_compile=True needs the XLA-compilable translation; using translation_xla=True")
        translation_xla = True
    return ExecutionPlan(device, bool(jit), bool(bf16), translation_xla, source)


def calibrate(paths: Sequence[str] | None = None, steps: int = 12,
              timer: Callable[[], float] = time.perf_counter,
              cache_dir: Path | None = None, n: int = 64) -> dict[str, Any]:
    """Time a few training steps of each path (N=`n`, gridsize 2, batch 16), record the fastest
    in the cache for this CPU model + TF version (atomic write) and return the record.

    Paths default to xla and non_xla, plus bf16 only on a CPU with native bf16. Takes about
    a minute on 2 cores; run it explicitly (``python -m ptycho.execution --calibrate``).
    """
    import numpy as np
    import tensorflow as tf

    from ptycho.model import build_model

    cpu_model, flags = cpu_info()
    cpu_model, native = cpu_label(cpu_model), native_bf16(flags)
    paths = list(paths or (["xla", "non_xla"] + (["bf16"] if native else [])))
    rng = np.random.default_rng(0)
    batch, c = 16, 4
    x = {"diffraction": rng.uniform(0, 2, (batch * 4, n, n, c)).astype(np.float32),
         "offsets": rng.uniform(-6, 6, (batch * 4, 1, 2, c)).astype(np.float32)}
    y = rng.poisson(50.0, (batch * 4, n, n, c)).astype(np.float32)
    rates: dict[str, float] = {}
    for path in paths:
        jit, bf16 = PATHS[path]
        model = build_model(ModelConfig(N=n, gridsize=2, jit_compile=jit, mixed_precision=bf16))
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # trace / compile
        start = timer()
        for _ in range(max(1, steps // 4)):
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        rates[path] = batch * 4 * max(1, steps // 4) / (timer() - start)
        del model
        tf.keras.backend.clear_session()
    record = {"cpu": cpu_model, "tensorflow": tf.__version__, "native_bf16": native, "N": n,
              "train_groups_per_s": {k: round(v, 1) for k, v in rates.items()},
              "fastest": max(rates, key=rates.__getitem__),
              "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = cache_file(cpu_model, tf.__version__, cache_dir)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
        log.info("execution calibration written to %s: %s", path, record)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ptycho.execution [--calibrate]``: print the resolved default path (JSON)."""
    import argparse

    parser = argparse.ArgumentParser(description="show or calibrate the default execution path")
    parser.add_argument("--calibrate", action="store_true", help="time the paths and cache the fastest")
    args = parser.parse_args(argv)
    record = calibrate() if args.calibrate else None
    plan = resolve_execution(ModelConfig())
    print(json.dumps({"default_path": plan.name, "device": plan.device, "source": plan.source,
                      "calibration": record}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
