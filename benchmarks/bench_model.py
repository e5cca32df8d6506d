"""Model throughput benchmark: prints ONE JSON object on stdout.

For N=64, gridsize 2, batch 16 (the DESIGN §7 configuration) and each execution path

    xla      whole-step jit_compile, float32 CNN
    non_xla  no jit, float32 CNN (overlap block still XLA-compiled per layer)
    bf16     no jit, mixed_bfloat16 CNN

a fresh subprocess (so peak RSS is per path) simulates a data set, trains with
``ptycho.train.train`` and times inference with ``ptycho.inference.predict_patches``:

    train_groups_per_s   groups / median steady-state epoch wall time (3 epochs after the first)
    infer_groups_per_s   groups / wall time of predicting object patches (after warm-up), each
                         kept on the probe's lit window as ``reconstruct`` keeps them
    first_epoch_overhead_s  first epoch time − fastest steady epoch (tracing, XLA compilation)
    peak_rss_mb          peak resident memory of the path's process
    peak_rss_mb_by_stage the same peak as it stood after each stage of the main path (imports,
                         data, model, training, inference, reconstruct): which stage sets it
    default_path         what build_model picks on this device (ModelConfig() defaults)

Wall-clock figures depend on other load on the machine; ``*_cpu`` fields give the same rates
per CPU-second × cores (less sensitive to contention) and ``load_avg`` records the 1-minute
load average around the run. Usage: ``python benchmarks/bench_model.py [--quick] [--paths
xla,non_xla,bf16]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ptycho import xla_cache
from ptycho.execution import PATHS, cpu_info, cpu_label  # PATHS: name → (jit_compile, mixed_precision)

ROOT = Path(__file__).resolve().parents[1]


def _worker(path: str, n_images: int, epochs: int, infer_repeats: int) -> dict[str, Any]:
    """Measure one path in this process (called in a subprocess)."""
    import logging

    import numpy as np

    logging.disable(logging.WARNING)
    stages: dict[str, float] = {}

    def stage(name: str) -> None:
        stages[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)

    import tensorflow  # noqa: F401  (its share of the peak is the first stage)

    stage("imports")
    from ptycho.config import ModelConfig, SimConfig, TrainConfig
    from ptycho.execution import resolve_execution
    from ptycho.inference import predict_patches, reconstruct, support_window
    from ptycho.io import PtychoData
    from ptycho.model import build_model, model_config_for, model_probe
    from ptycho.physics import simulate
    from ptycho.train import train

    sim = simulate(SimConfig(N=64, gridsize=2, n_images=n_images, nphotons=1e9, seed=0))
    data = PtychoData(  # what a training run holds (no ground-truth patches)
        diffraction=sim.diffraction, offsets=sim.offsets, coords=sim.coords,
        scan_index=sim.scan_index, xcoords=sim.xcoords, ycoords=sim.ycoords, probe=sim.probe,
        intensity_scale=sim.intensity_scale, nphotons=sim.nphotons, counts=sim.counts,
        obj=sim.obj, config=sim.config)
    del sim
    stage("data")
    jit, bf16 = PATHS[path]
    model = build_model(model_config_for(data, jit_compile=jit, mixed_precision=bf16))
    stage("model")
    batch = 16
    groups = (n_images // batch) * batch
    cpu0 = time.process_time()
    history = train(model, data, TrainConfig(nepochs=1 + epochs, batch_size=batch, seed=0))
    train_cpu = time.process_time() - cpu0
    seconds = [float(s) for s in history.history["epoch_time_s"]]
    steady = statistics.median(seconds[1:])
    fastest = min(seconds[1:])  # least disturbed by other load: overhead is an upper bound
    steady_cpu = train_cpu * steady / sum(seconds)  # CPU share of the steady epochs (approx.)
    stage("training")

    window = support_window(np.abs(model_probe(model)) ** 2)
    predict_patches(model, data.diffraction[:64], batch_size=batch)  # warm-up / trace
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(infer_repeats):
        predict_patches(model, data.diffraction, batch_size=batch, window=window)
    infer_s = (time.perf_counter() - t0) / infer_repeats
    infer_cpu = (time.process_time() - c0) / infer_repeats
    stage("inference")
    t0 = time.perf_counter()
    reconstruct(model, data, batch_size=batch)
    recon_s = time.perf_counter() - t0
    stage("reconstruct")
    cores = os.cpu_count() or 1
    return {
        "path": path,
        "train_groups_per_s": groups / steady,
        "train_groups_per_s_cpu": groups / steady_cpu * cores,
        "infer_groups_per_s": n_images / infer_s,
        "infer_groups_per_s_cpu": n_images / infer_cpu * cores,
        "reconstruct_groups_per_s": n_images / recon_s,
        "first_epoch_s": seconds[0],
        "first_epoch_overhead_s": seconds[0] - fastest,
        "train_groups_per_s_best_epoch": groups / fastest,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_rss_mb_by_stage": stages,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "param_count": int(model.count_params()),
        "device": model.execution.device,
        "default_path": resolve_execution(ModelConfig()).name,
        "default_source": resolve_execution(ModelConfig()).source,
    }


def _run_path(path: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", path,
           "--n-images", str(args.n_images), "--epochs", str(args.epochs),
           "--infer-repeats", str(args.infer_repeats)]
    # every path compiles cold: first_epoch_overhead_s is the overhead of a fresh machine
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT),
           "TF_XLA_FLAGS": xla_cache.cold(os.environ.get("TF_XLA_FLAGS", ""))}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        return {"path": path, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 groups, 1 steady epoch")
    parser.add_argument("--paths", default="xla,non_xla,bf16")
    parser.add_argument("--n-images", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="steady epochs after the first")
    parser.add_argument("--infer-repeats", type=int, default=None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.n_images = args.n_images or (256 if args.quick else 1024)
    args.epochs = args.epochs or (1 if args.quick else 3)
    args.infer_repeats = args.infer_repeats or (1 if args.quick else 3)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.n_images, args.epochs, args.infer_repeats)))
        return 0
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown path(s) {unknown}; choose from {sorted(PATHS)}")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    results = {p: _run_path(p, args) for p in paths}
    ok = {p: r for p, r in results.items() if "error" not in r}
    any_result = next(iter(ok.values()), {})
    default = any_result.get("default_path")
    main_path = default if default in ok else next(iter(ok), None)

    def per_path(key: str) -> dict[str, float | None]:
        return {p: (round(r[key], 2) if key in r else None) for p, r in results.items()}

    report = {
        "config": {"N": 64, "gridsize": 2, "batch_size": 16, "n_images": args.n_images,
                   "steady_epochs": args.epochs, "quick": args.quick},
        "train_groups_per_s": per_path("train_groups_per_s"),
        "infer_groups_per_s": per_path("infer_groups_per_s"),
        "train_groups_per_s_cpu": per_path("train_groups_per_s_cpu"),
        "infer_groups_per_s_cpu": per_path("infer_groups_per_s_cpu"),
        "train_groups_per_s_best_epoch": per_path("train_groups_per_s_best_epoch"),
        "reconstruct_groups_per_s": per_path("reconstruct_groups_per_s"),
        "first_epoch_overhead_s": round(ok[main_path]["first_epoch_overhead_s"], 2) if main_path else None,
        "first_epoch_overhead_s_by_path": per_path("first_epoch_overhead_s"),
        "peak_rss_mb": round(ok[main_path]["peak_rss_mb"], 1) if main_path else None,
        "peak_rss_mb_by_path": per_path("peak_rss_mb"),
        "peak_rss_mb_by_stage": ok[main_path]["peak_rss_mb_by_stage"] if main_path else None,
        "xla_flags": any_result.get("xla_flags"),
        "cpu": cpu_label(cpu_info()[0]),
        "default_path": default,
        "default_source": any_result.get("default_source"),
        "fastest_measured_path": (max(ok, key=lambda p: ok[p]["train_groups_per_s_cpu"])
                                  if ok else None),
        "param_count": any_result.get("param_count"),
        "device": any_result.get("device"),
        "load_avg": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "wall_s": round(time.perf_counter() - start, 1),
        "errors": {p: r["error"] for p, r in results.items() if "error" in r},
    }
    print(json.dumps(report))
    return 0 if not report["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
