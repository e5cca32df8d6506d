"""Time-to-quality benchmark: prints ONE JSON object on stdout.

Trains the study's high-dose arm (1e9 photons, Poisson NLL by default; N=64, gridsize 2,
batch 16, the study's probe) and, after every epoch, reconstructs the held-out test region
(another simulation seed) and scores its amplitude against the ground truth:

    ssim_by_epoch, psnr_by_epoch  amplitude SSIM / PSNR (dB) of the stitched test object
    wall_by_epoch                 training wall seconds up to the end of that epoch
                                  (evaluation time excluded)
    time_to_ssim                  {"0.7", "0.8", "0.9"}: first wall time at which the SSIM
                                  reached the threshold, null where it never did
    baseline_ssim                 SSIM of a constant image (the truth's mean amplitude)
    params, path, cpu, train_groups_per_s (median epoch), best_ssim, best_epoch

Usage: ``python benchmarks/bench_quality.py [--quick] [--nepochs K] [--n-images B]
[--loss nll|mae] [--nphotons X]``. ``--quick`` runs a small N=32 version for a smoke check.
Timings depend on other load on the machine (``load_avg`` records it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

THRESHOLDS = ("0.7", "0.8", "0.9")


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, or platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_to(ssims: list[float], walls: list[float], threshold: float) -> float | None:
    """First wall time whose SSIM is >= threshold (None if never)."""
    for ssim, wall in zip(ssims, walls, strict=True):
        if ssim >= threshold:
            return round(wall, 2)
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dose_study.arms import make_config
    from dose_study.recipe import EpochScore, run_recipe

    study = make_config(args.quick, n_images=args.n_images, nepochs=args.nepochs)
    n_images, n_test, nepochs = study.n_images, study.n_test_images, study.nepochs
    ssims: list[float] = []
    psnrs: list[float] = []
    walls: list[float] = []
    epoch_s: list[float] = []

    def on_epoch(score: EpochScore) -> None:
        epoch_s.append(score.train_s)
        trained = sum(epoch_s)
        ssims.append(round(score.scores["amp_ssim"], 4))
        psnrs.append(round(score.scores["amp_psnr"], 3))
        walls.append(round(trained, 2))
        print(f"epoch {score.epoch}: amp SSIM {score.scores['amp_ssim']:.4f} PSNR "
              f"{score.scores['amp_psnr']:.2f} dB, {trained:.1f} s", file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    res = run_recipe(study, args.nphotons, args.loss, on_epoch=on_epoch)
    model, baseline = res.model, res.constant_scores["amp_ssim"]
    groups = (n_images // study.batch_size) * study.batch_size
    best = max(range(len(ssims)), key=ssims.__getitem__)
    return {
        "config": {"N": study.N, "gridsize": study.gridsize, "batch_size": study.batch_size,
                   "n_images": n_images, "n_test_images": n_test, "nepochs": nepochs,
                   "loss": args.loss, "nphotons": args.nphotons,
                   "learning_rate": study.learning_rate, "quick": args.quick},
        "ssim_by_epoch": ssims,
        "psnr_by_epoch": psnrs,
        "wall_by_epoch": walls,
        "time_to_ssim": {t: time_to(ssims, walls, float(t)) for t in THRESHOLDS},
        "best_ssim": ssims[best],
        "best_epoch": best + 1,
        "baseline_ssim": round(baseline, 4),
        "params": int(model.count_params()),
        "path": model.execution.name,
        "device": model.execution.device,
        "cpu": cpu_name(),
        "train_groups_per_s": round(groups / statistics.median(epoch_s), 1),
        "load_avg": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the study's --quick sizes (N=32)")
    parser.add_argument("--nepochs", type=int, default=None)
    parser.add_argument("--n-images", type=int, default=None)
    parser.add_argument("--loss", choices=("nll", "mae"), default="nll")
    parser.add_argument("--nphotons", type=float, default=1e9)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
