"""Execution-path choice: which of whole-step XLA / per-layer float32 / bfloat16 a model uses.

``resolve_execution(cfg)`` fills the ``None`` execution options of a ``ModelConfig`` for the
devices visible when the model is built (never at import). On a CPU the choice comes from

1. a calibration cached for this CPU model and TensorFlow version
   (``~/.cache/ptycho-harness/execution-<key>.json``, written by ``ptycho.calibration``:
   ``python -m ptycho.calibration --calibrate``), when one exists; else
2. the recorded evidence below (``CPU_EVIDENCE``).

bfloat16 is never chosen (by either route) on a CPU without native bf16 arithmetic
(``avx512_bf16`` / ``amx_bf16`` in /proc/cpuinfo), nor when ``ONEDNN_MAX_CPU_ISA`` caps
oneDNN below AVX512_CORE_BF16: emulated bf16 is ~8× slower there.
Before the first model is built ``xla_cpu_flags()`` adds ``XLA_CPU_FLAGS`` to ``XLA_FLAGS``
(XLA reads it once, at its first compilation); flags the user set there win.
The entry points (not this module) call ``ptycho.xla_cache.enable()``, which keeps compiled XLA
executables under the same cache root. Set ``PTYCHO_EXECUTION_CACHE`` to another directory
(tests) or to ``off`` to ignore both caches.
This module builds no model and imports no model code (``tests/test_import_rules.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptycho.config import ModelConfig

__all__ = [
    "CPU_EVIDENCE",
    "ExecutionPlan",
    "PATHS",
    "cache_file",
    "cache_root",
    "cpu_info",
    "cpu_label",
    "device_defaults",
    "load_calibration",
    "native_bf16",
    "resolve_execution",
    "usable_cpus",
    "xla_cpu_flags",
    "XLA_CPU_FLAGS",
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

# XLA's classic CPU emitters instead of its fusion emitters (MLIR): 60-150 MB less on every path
# (bench_model, N=64, 2-core Intel Xeon natively and with its ISA capped at AVX2, TF 2.21,
# 2026-12-06). Speed: +2-19 % where only the overlap block is compiled, 2-9 % slower for
# whole-step XLA (docs/findings.md TRAIN-MEMORY-001). Set for every path, so that a calibration,
# which times the paths in one process, times each as it runs.
XLA_CPU_FLAGS = {"xla_cpu_use_fusion_emitters": "false"}


def xla_cpu_flags(environ: dict[str, str] | None = None) -> str:
    """Add every ``XLA_CPU_FLAGS`` entry the user's ``XLA_FLAGS`` does not name to it (in
    `environ`, default ``os.environ``); returns the resulting value. Has no effect after XLA's
    first compilation in this process, which reads the variable once."""
    env = os.environ if environ is None else environ
    flags = env.get("XLA_FLAGS", "")
    named = {token.lstrip("-").split("=", 1)[0] for token in flags.split()}
    added = [f"--{name}={value}" for name, value in XLA_CPU_FLAGS.items() if name not in named]
    if added:
        env["XLA_FLAGS"] = " ".join([flags, *added]).strip()
        log.debug("XLA_FLAGS=%s", env["XLA_FLAGS"])
    return env.get("XLA_FLAGS", "")


@dataclass(frozen=True)
class ExecutionPlan:
    """Resolved execution path of one model.

    device: "CPU" | "GPU" (where the model was built); jit_compile: whole-step XLA;
    mixed_precision: bfloat16 CNN; translation_xla: gather-based translation path;
    source: where the choice came from ("config", "calibration", "evidence", "gpu"), with
            "+distributed" when several CPU replicas ruled out whole-step XLA.
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


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one, else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


def cache_root() -> Path | None:
    """The directory of the machine's caches (``PTYCHO_EXECUTION_CACHE``, default
    ``~/.cache/ptycho-harness``), or None when that variable is ``off``."""
    value = os.environ.get("PTYCHO_EXECUTION_CACHE")
    if value == "off":
        return None
    return Path(value) if value else Path.home() / ".cache" / "ptycho-harness"


def cache_file(cpu_model: str, tf_version: str, cache_dir: Path | None = None) -> Path | None:
    """The calibration file of one CPU model + TensorFlow version (None: caching off)."""
    directory = cache_dir if cache_dir is not None else cache_root()
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
    """Fill the ``None`` execution options of `cfg` for the devices visible now (and set
    ``XLA_CPU_FLAGS``, see ``xla_cpu_flags``).

    Inside the scope of a strategy with several CPU replicas the whole step is never
    XLA-compiled (XLA cannot reach a replica's variable on another CPU device); an explicit
    ``jit_compile=True`` there is a ValueError."""
    xla_cpu_flags()
    import tensorflow as tf

    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    if cfg.jit_compile is None or cfg.mixed_precision is None:
        jit_default, bf16_default, source = device_defaults(device)
    else:
        jit_default, bf16_default, source = False, False, "config"
    jit = jit_default if cfg.jit_compile is None else cfg.jit_compile
    bf16 = bf16_default if cfg.mixed_precision is None else cfg.mixed_precision
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if device == "CPU" and replicas > 1 and jit:
        if cfg.jit_compile:
            raise ValueError(f"jit_compile=True: whole-step XLA cannot train a model mirrored on "
                             f"{replicas} CPU devices (XLA reads a variable of one replica from "
                             f"another's device); use jit_compile=False or None")
        jit, source = False, source + "+distributed"
        log.info("%d CPU replicas: the whole step is not XLA-compiled", replicas)
    if device == "CPU" and bf16 and cfg.mixed_precision is None and not cpu_has_bf16():
        bf16 = False
    translation_xla = cfg.translation_xla
    if jit and not translation_xla:
        log.info("jit_compile=True needs the XLA-compilable translation; using translation_xla=True")
        translation_xla = True
    return ExecutionPlan(device, bool(jit), bool(bf16), translation_xla, source)
