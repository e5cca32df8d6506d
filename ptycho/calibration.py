"""Calibration of the execution path: time a few training steps of each path on this CPU and
cache the fastest, so that ``ptycho.execution.resolve_execution`` picks it from then on.

``python -m ptycho.calibration`` prints the path a model built now would use (JSON);
``--calibrate`` first measures the paths (about a minute on 2 cores) and writes the cache
(``ptycho.execution.cache_file``, atomically). It sits above ``model.py`` (it builds models);
``execution.py`` below it builds none, so ``model.py`` imports ``execution.py`` without a cycle.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ptycho.config import ModelConfig
from ptycho.execution import PATHS, cache_file, cpu_info, cpu_label, native_bf16, resolve_execution
from ptycho.fsutil import atomic_write_text

__all__ = ["calibrate", "main"]

log = logging.getLogger(__name__)


def calibrate(paths: Sequence[str] | None = None, steps: int = 12,
              timer: Callable[[], float] = time.perf_counter,
              cache_dir: Path | None = None, n: int = 64) -> dict[str, Any]:
    """Time a few training steps of each path (N=`n`, gridsize 2, batch 16), record the fastest
    in the cache for this CPU model + TF version (atomic write) and return the record.

    Paths (names of ``ptycho.execution.PATHS``) default to xla and non_xla, plus bf16 only on a
    CPU with native bf16. The synthetic batch is diffraction ``(64, n, n, 4) float32``, offsets
    ``(64, 1, 2, 4) float32`` and Poisson counts ``(64, n, n, 4) float32``.
    """
    import numpy as np
    import tensorflow as tf

    from ptycho.model import build_model

    cpu_model, flags = cpu_info()
    cpu_model, native = cpu_label(cpu_model), native_bf16(flags)
    paths = list(paths or (["xla", "non_xla"] + (["bf16"] if native else [])))
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise ValueError(f"unknown execution path(s) {unknown}; choose from {sorted(PATHS)}")
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
    """``python -m ptycho.calibration [--calibrate]``: print the resolved default path (JSON)."""
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
