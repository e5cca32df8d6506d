"""Grouping cost: prints ONE JSON object on stdout.

Times ``ptycho.grouping.group_scan_positions`` (exact k nearest by grid buckets + seeded
draws; numpy only) for 100,000 scan positions, gridsize 2, 7 neighbours, on three scan
patterns: uniform random, a raster with jitter, and a Fermat spiral. Per pattern:
``wall_s`` (best of --repeats, wall clock), ``cpu_s`` (process CPU time of that run; less
sensitive to other load on the machine). Target (issue #17): <= 2 s for 100,000 positions.
Usage: ``python benchmarks/bench_grouping.py [--positions 100000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from ptycho.grouping import group_scan_positions


def _scans(p: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    side = int(np.ceil(np.sqrt(p)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:p] * 8.0
    i = np.arange(p)
    spiral = np.stack([np.sqrt(i) * np.cos(i * 2.39996), np.sqrt(i) * np.sin(i * 2.39996)], 1) * 8
    return {"uniform": rng.uniform(0, 8 * side, (p, 2)),
            "raster_jitter": grid + rng.normal(0, 0.5, grid.shape),
            "fermat_spiral": spiral}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--gridsize", type=int, default=2)
    parser.add_argument("--neighbors", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for name, positions in _scans(args.positions, np.random.default_rng(0)).items():
        best = (float("inf"), 0.0)
        for repeat in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            groups = group_scan_positions(positions, args.gridsize, args.neighbors, seed=repeat)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best = min(best, (wall, cpu))
        assert groups.shape == (args.positions, args.gridsize**2)
        results[name] = {"wall_s": round(best[0], 3), "cpu_s": round(best[1], 3)}
    print(json.dumps({"positions": args.positions, "gridsize": args.gridsize,
                      "neighbors": args.neighbors, "repeats": args.repeats, "scans": results,
                      "max_wall_s": max(r["wall_s"] for r in results.values()),
                      "target_s": 2.0, "cpu_count": os.cpu_count(),
                      "load_avg": round(os.getloadavg()[0], 2)}, sort_keys=True))


if __name__ == "__main__":
    main()
