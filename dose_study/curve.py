"""The dose-response curve: doses × scan densities × methods × seeds, one arm per point.

``dose-study --doses 1e3,1e4,1e5,1e6,1e7,1e9 --positions dense,sparse --seeds 0,1,2`` builds
the grid (``curve_grid``): every (dose, density, method, seed) is one arm
(``arms.curve_arm``, e.g. ``c1e4-sparse-nll-s2``) run by the study's executors -- one after
another (``--scheduler none``) or as one Dask task each (``--scheduler local|ADDRESS``) --
and committed under ``--output-dir/<point>/`` like the four arms (complete points are skipped
on a re-run). Methods: the PINN with each loss ("nll", "mae") and, unless ``--baseline none``,
a baseline engine (e.g. "lsqml") reconstructing the same test scan.

The merge writes, atomically:
  summary.json   ``kind: "dose_curve"``, the grid, every point's metrics, ``table`` (per
                 density, method and dose: n, seeds and {mean, std, values} of amplitude and
                 phase SSIM and PSNR; std is the sample standard deviation, 0 for one seed) and
                 ``pinn_minus_baseline`` (per density, dose and loss: the per-seed differences
                 PINN − baseline with mean ± std and a verdict), the figure self-check
  summary.md     the same as tables, verdicts in words
  dose_curve.png ``curve_figure.render_curve_figure``

Verdict of a difference over seeds: "PINN better" when its mean exceeds twice its standard
error, "baseline better" when it is below minus that, else "no significant difference"
("one seed only" without a spread).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptycho.fsutil import atomic_write_json, atomic_write_text

from .arms import (
    BASELINE_ENGINES,
    PINN_LOSSES,
    SCAN_DENSITIES,
    ArmSpec,
    StudyConfig,
    curve_arm,
    describe_sizes,
    dose_token,
    get_arm,
)
from .store import ArmDataError, ArmStore, ensure_writable_dir, utc_now
from .study import ArmExecutor, StudyResult, package_versions, run_arms
from .summary import config_mismatches

log = logging.getLogger(__name__)

CURVE_FIGURE = "dose_curve.png"
CURVE_METRICS = ("amp_ssim", "phase_ssim", "amp_psnr", "phase_psnr")
SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------- flags and grid
def parse_doses(text: str) -> tuple[float, ...]:
    """``1e3,1e4,...`` → photons per pattern, ascending; ValueError naming the bad item."""
    doses: list[float] = []
    for item in (t.strip() for t in text.split(",")):
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"--doses: {item!r} is not a number (e.g. --doses 1e3,1e4,1e9)") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"--doses: photons per pattern must be finite and > 0, got {item!r}")
        if value in doses:
            raise ValueError(f"--doses: {item!r} is given twice")
        doses.append(value)
    return tuple(sorted(doses))


def parse_names(text: str, flag: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list of names out of ``known`` (order kept, no repeats)."""
    names = [t.strip() for t in text.split(",")]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ValueError(f"{flag}: unknown {', '.join(map(repr, bad)) or 'empty value'}; "
                         f"choose from {', '.join(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{flag}: a name is given twice in {text!r}")
    return tuple(names)


def parse_seeds(text: str) -> tuple[int, ...]:
    seeds: list[int] = []
    for item in (t.strip() for t in text.split(",")):
        if not item.isdigit():
            raise ValueError(f"--seeds: {item!r} is not an integer >= 0 (e.g. --seeds 0,1,2)")
        if int(item) in seeds:
            raise ValueError(f"--seeds: {item!r} is given twice")
        seeds.append(int(item))
    return tuple(seeds)


def curve_methods(baseline: str) -> tuple[str, ...]:
    """The PINN losses, plus the baseline engine unless ``baseline`` is "none"."""
    return PINN_LOSSES + ((baseline,) if baseline in BASELINE_ENGINES else ())


def curve_grid(doses: tuple[float, ...], positions: tuple[str, ...], methods: tuple[str, ...],
               seeds: tuple[int, ...]) -> list[ArmSpec]:
    """Every point, grouped so that the slowest (PINN, dense, high dose) are not all last:
    seed-major, then density, dose and method."""
    return [curve_arm(dose, pos, method, seed) for seed in seeds for pos in positions
            for dose in doses for method in methods]


# ----------------------------------------------------------------------------- aggregation
def _stats(values: list[float | None]) -> dict[str, Any] | None:
    """Mean, sample std and the values; None when any value is not applicable (a metric of a
    constant truth channel, e.g. the phase of an object without phase)."""
    if any(v is None for v in values):
        return None
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def _value(v: float | None) -> float | None:
    return None if v is None else float(v)


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(a) - float(b)


def verdict(diff: dict[str, Any]) -> str:
    """PINN − baseline over seeds in words (see the module docstring)."""
    n = len(diff["values"])
    if n < 2:
        return "one seed only: no verdict"
    sem = diff["std"] / math.sqrt(n)
    if diff["mean"] > 2 * sem:
        return "PINN better"
    if diff["mean"] < -2 * sem:
        return "baseline better"
    return "no significant difference"


def curve_table(per_point: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (positions, method, nphotons) with n, seeds and stats of CURVE_METRICS."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for name, m in per_point.items():
        arm = get_arm(name)
        groups.setdefault((arm.positions, arm.loss, arm.nphotons), []).append(m)
    order = {p: i for i, p in enumerate(SCAN_DENSITIES)}
    methods = {m: i for i, m in enumerate(PINN_LOSSES + BASELINE_ENGINES)}
    rows = []
    for (pos, method, dose), ms in sorted(groups.items(), key=lambda kv: (
            order.get(kv[0][0], 99), methods.get(kv[0][1], 99), kv[0][2])):
        ms = sorted(ms, key=lambda m: m["seed"])
        row: dict[str, Any] = {"positions": pos, "method": method, "nphotons": dose,
                               "n": len(ms), "seeds": [m["seed"] for m in ms]}
        for key in CURVE_METRICS:
            row[key] = _stats([_value(m["metrics"].get(key)) for m in ms])
        rows.append(row)
    return rows


def pinn_minus_baseline(per_point: dict[str, dict[str, Any]], engine: str | None) -> list[dict]:
    """Per (positions, dose, PINN loss): PINN − ``engine`` per seed (paired by seed)."""
    if engine is None:
        return []
    by_key: dict[tuple[str, float, str, int], dict[str, Any]] = {}
    for name, m in per_point.items():
        arm = get_arm(name)
        by_key[(arm.positions, arm.nphotons, arm.loss, m["seed"])] = m
    out = []
    combos = sorted({(p, d) for p, d, meth, _ in by_key if meth == engine},
                    key=lambda pd: (list(SCAN_DENSITIES).index(pd[0]), pd[1]))
    for pos, dose in combos:
        for loss in PINN_LOSSES:
            seeds = sorted(s for p, d, meth, s in by_key
                           if (p, d, meth) == (pos, dose, loss) and (pos, dose, engine, s) in by_key)
            if not seeds:
                continue
            entry: dict[str, Any] = {"positions": pos, "nphotons": dose, "loss": loss,
                                     "engine": engine, "seeds": seeds}
            for key in CURVE_METRICS:
                entry[key] = _stats([_difference(by_key[(pos, dose, loss, s)]["metrics"].get(key),
                                                 by_key[(pos, dose, engine, s)]["metrics"].get(key))
                                     for s in seeds])
            for key in ("amp_ssim", "phase_ssim", "amp_psnr"):
                entry[f"verdict_{key}"] = "not applicable" if entry[key] is None else verdict(entry[key])
            out.append(entry)
    return out


def point_record(m: dict[str, Any]) -> dict[str, Any]:
    """The compact per-point record kept in summary.json."""
    return {"nphotons": m["nphotons"], "positions": m["positions"], "method": m["method"],
            "seed": m["seed"], "metrics": m["metrics"],
            "constant_image_amp_ssim": m["baseline"]["amp_ssim"],
            "test_mean_counts": m["counts"]["test_mean_total"],
            "wall_time_s": m.get("wall_time_s", {}), "worker": m.get("worker")}


# ----------------------------------------------------------------------------- run and merge
def run_curve(output_dir: Path, cfg: StudyConfig, points: list[ArmSpec], *, engine: str | None,
              force: bool = False, merge_only: bool = False,
              executor: ArmExecutor | None = None,
              stop_requested: Callable[[], bool] = lambda: False,
              run_extra: dict[str, Any] | None = None) -> StudyResult:
    """Run the points that are not complete (unless ``merge_only``), then merge all of them."""
    started = time.perf_counter()
    store = ArmStore(ensure_writable_dir(output_dir))
    store.clean_stale()
    result = StudyResult()
    if not merge_only:
        if executor is None:
            raise ValueError("an executor is required unless merge_only")
        run_arms(store, cfg, points, force, None, result, stop_requested, executor)
    run_info = {"finished_utc": utc_now(), "mode": "merge-only" if merge_only else "run",
                "trained": result.trained, "skipped": result.skipped, "failed": result.failed,
                "wall_s": round(time.perf_counter() - started, 3), **(run_extra or {})}
    result.summary = merge_curve(store, cfg, points, engine, result, run_info)
    result.summary_path = store.root / "summary.json"
    return result


def merge_curve(store: ArmStore, cfg: StudyConfig, points: list[ArmSpec], engine: str | None,
                result: StudyResult, run_info: dict[str, Any]) -> dict[str, Any]:
    """summary.json, summary.md and dose_curve.png from the complete points of ``points``."""
    from .curve_figure import render_curve_figure

    per_point: dict[str, dict[str, Any]] = {}
    for arm in points:
        if not store.is_complete(arm.name):
            continue
        try:
            per_point[arm.name] = store.load_metrics(arm.name)
        except ArmDataError as exc:
            result.failed.setdefault(arm.name, f"unreadable outputs: {exc}")
            log.error("point %s: unreadable outputs: %s", arm.name, exc)
    table = curve_table(per_point)
    diffs = pinn_minus_baseline(per_point, engine)
    figure = render_curve_figure(table, store.root / CURVE_FIGURE,
                                 f"Dose-response curve ({describe_sizes(cfg)}; "
                                 "mean ± std over seeds)")
    summary = {
        "schema_version": SCHEMA_VERSION, "kind": "dose_curve", "config": cfg.to_dict(),
        "grid": {"doses": sorted({a.nphotons for a in points}),
                 "positions": list(dict.fromkeys(a.positions for a in points)),
                 "methods": list(dict.fromkeys(a.loss for a in points)),
                 "seeds": sorted({a.seed for a in points if a.seed is not None}),
                 "baseline_engine": engine,
                 "scan_spacing_px": {p: cfg.N / SCAN_DENSITIES[p] for p in SCAN_DENSITIES}},
        "points_expected": len(points),
        "points_complete": len(per_point),
        "points_missing": [a.name for a in points if a.name not in per_point],
        "table": table, "pinn_minus_baseline": diffs,
        "per_point": {name: point_record(m) for name, m in per_point.items()},
        "config_mismatches": config_mismatches(per_point, cfg),
        "figure": {"path": figure.path, "png_ok": figure.png_ok, "panels": figure.panels},
        "figure_ok": figure.ok, "versions": package_versions(), "run": run_info,
    }
    atomic_write_json(store.root / "summary.json", summary)
    atomic_write_text(store.root / "summary.md", render_curve_markdown(summary))
    return summary


def _pm(stats: dict[str, Any] | None, spec: str) -> str:
    if stats is None:
        return "n/a"
    return f"{format(stats['mean'], spec)} ± {format(stats['std'], spec.replace('+', ''))}"


def render_curve_markdown(summary: dict[str, Any]) -> str:
    """Tables per density and the PINN − baseline verdicts."""
    grid, cfg = summary["grid"], summary["config"]
    lines = ["# Dose-response curve", "",
             f"Doses {', '.join(dose_token(d) for d in grid['doses'])} photons per pattern; scan "
             f"densities {', '.join(grid['positions'])} (mean position spacing "
             + ", ".join(f"{p} {s:g} px" for p, s in grid["scan_spacing_px"].items()
                         if p in grid["positions"])
             + f", probe diameter {cfg['N'] / 3:.1f} px); methods {', '.join(grid['methods'])}; "
             f"seeds {', '.join(map(str, grid['seeds']))}. N={cfg['N']}, {cfg['n_images']} train / "
             f"{cfg['n_test_images']} test groups, {cfg['nepochs']} epochs, baseline "
             f"{cfg['baseline_epochs']} iterations. Mean ± sample std over seeds.", "",
             f"Points complete: {summary['points_complete']} of {summary['points_expected']}.", ""]
    for pos in grid["positions"]:
        lines += [f"## {pos} scan", "",
                  "| photons | method | n | amp SSIM | phase SSIM | amp PSNR (dB) | phase PSNR (dB) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in (r for r in summary["table"] if r["positions"] == pos):
            lines.append(f"| {dose_token(row['nphotons'])} | {row['method']} | {row['n']} | "
                         f"{_pm(row['amp_ssim'], '.3f')} | {_pm(row['phase_ssim'], '.3f')} | "
                         f"{_pm(row['amp_psnr'], '.2f')} | {_pm(row['phase_psnr'], '.2f')} |")
        lines.append("")
    diffs = summary["pinn_minus_baseline"]
    lines += ["## Science: PINN − baseline", ""]
    if not diffs:
        lines += ["No baseline engine in this run (`--baseline none`, or the `[baseline]` extra "
                  "is not installed: `make baseline`).", ""]
    else:
        lines += ["| scan | photons | loss | Δ amp SSIM | Δ phase SSIM | Δ amp PSNR (dB) | verdict "
                  "(amp SSIM) |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for e in diffs:
            lines.append(f"| {e['positions']} | {dose_token(e['nphotons'])} | {e['loss']} | "
                         f"{_pm(e['amp_ssim'], '+.3f')} | {_pm(e['phase_ssim'], '+.3f')} | "
                         f"{_pm(e['amp_psnr'], '+.2f')} | {e['verdict_amp_ssim']} |")
        wins = [f"{e['positions']} {dose_token(e['nphotons'])} {e['loss']}" for e in diffs
                if e["verdict_amp_ssim"] == "PINN better"]
        lines += ["", "PINN beats the baseline in amplitude SSIM (mean − 2·SE > 0) at: "
                  + (", ".join(wins) if wins else "no point") + "."]
    lines += ["", f"`{CURVE_FIGURE}` self-check: figure_ok = {summary['figure_ok']}."]
    if summary["points_missing"]:
        lines += ["", f"Missing points: {', '.join(summary['points_missing'])}."]
    return "\n".join(lines) + "\n"
