"""Merge study runs made with different seeds: mean ± std per arm and the NLL-vs-MAE verdict.

Each input is a study output directory (``dose_response_study.py --seed S --output-dir D``)
holding a ``summary.json`` with the four arms complete. The merge writes, atomically,

  <output>/seeds_summary.json   per arm: n, seeds, and {mean, std, values} of amplitude PSNR,
                                SSIM and FRC50 (std: sample standard deviation, ddof=1);
                                per dose: the NLL − MAE differences per seed with their mean
                                ± std, and a verdict
  <output>/seeds_summary.md     the same as tables, with the verdict in words

The verdict at one dose: "NLL better" when the mean NLL − MAE amplitude PSNR difference is
positive and larger than twice its standard error over seeds, "MAE better" when it is
negative by as much, else "no significant difference" (and SSIM is reported the same way).
Runs whose study settings differ (other than the seed) are refused, naming the setting.

Usage: ``python -m dose_study.seeds --output DIR RUN_DIR [RUN_DIR ...]``
(exit 0 on success, 1 on bad or inconsistent inputs).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from ptycho.fsutil import atomic_write_text

from .arms import ARM_NAMES

METRICS = ("amp_psnr", "amp_ssim", "amp_frc50")
IGNORED_SETTINGS = ("seed", "test_seed", "quick")


class SeedMergeError(ValueError):
    """An input run is missing, incomplete, or inconsistent with the others."""


def load_run(directory: Path) -> dict[str, Any]:
    """The summary.json of one complete study run."""
    path = Path(directory) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SeedMergeError(f"{path}: unreadable summary: {exc}") from exc
    missing = [a for a in ARM_NAMES if a not in summary.get("per_arm", {})]
    if missing:
        raise SeedMergeError(f"{path}: arms not complete: {', '.join(missing)}")
    return summary


def _stats(values: list[float]) -> dict[str, Any]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": mean, "std": std, "values": values}


def _verdict(diff: dict[str, Any], name: str) -> str:
    mean, std, n = diff["mean"], diff["std"], len(diff["values"])
    if std is None:
        return "one seed only: no verdict"
    sem = std / math.sqrt(n)
    if mean > 2 * sem:
        return f"NLL better ({name})"
    if mean < -2 * sem:
        return f"MAE better ({name})"
    return f"no significant difference ({name})"


def merge(runs: list[dict[str, Any]], sources: list[str]) -> dict[str, Any]:
    """The merged record of complete runs (see module docstring)."""
    if len(runs) < 2:
        raise SeedMergeError("need at least two runs (seeds) to merge")
    reference = {k: v for k, v in runs[0]["config"].items() if k not in IGNORED_SETTINGS}
    seeds = []
    for run, source in zip(runs, sources, strict=True):
        cfg = run["config"]
        diff = sorted(k for k in reference if cfg.get(k) != reference[k])
        if diff:
            raise SeedMergeError(f"{source}: settings differ from {sources[0]}: "
                                 + ", ".join(f"{k}={cfg.get(k)!r} vs {reference[k]!r}" for k in diff))
        seeds.append(cfg["seed"])
    if len(set(seeds)) != len(seeds):
        raise SeedMergeError(f"runs share a seed: {seeds}")
    per_arm = {}
    for arm in ARM_NAMES:
        per_arm[arm] = {"n": len(runs), "seeds": seeds}
        for key in METRICS:
            per_arm[arm][key] = _stats([float(r["per_arm"][arm]["metrics"][key]) for r in runs])
    comparison = {}
    for dose in ("low", "high"):
        entry: dict[str, Any] = {}
        for key in ("amp_psnr", "amp_ssim"):
            entry[f"{key}_nll_minus_mae"] = _stats(
                [float(r["per_arm"][f"{dose}_nll"]["metrics"][key])
                 - float(r["per_arm"][f"{dose}_mae"]["metrics"][key]) for r in runs])
        entry["verdict_psnr"] = _verdict(entry["amp_psnr_nll_minus_mae"], "amplitude PSNR")
        entry["verdict_ssim"] = _verdict(entry["amp_ssim_nll_minus_mae"], "amplitude SSIM")
        comparison[dose] = entry
    return {"schema_version": 1, "sources": sources, "seeds": seeds, "config": reference,
            "per_arm": per_arm, "nll_vs_mae": comparison,
            "nll_beats_mae_at_low_dose": comparison["low"]["verdict_psnr"].startswith("NLL better")}


def _pm(stats: dict[str, Any], spec: str) -> str:
    std = stats["std"]
    return format(stats["mean"], spec) + ("" if std is None else
                                          " ± " + format(std, spec.replace("+", "")))


def render_markdown(merged: dict[str, Any]) -> str:
    cfg = merged["config"]
    lines = ["# Dose-response study over seeds", "",
             f"Seeds {', '.join(map(str, merged['seeds']))}; N={cfg.get('N')}, gridsize "
             f"{cfg.get('gridsize')}, {cfg.get('n_images')} train groups, {cfg.get('nepochs')} "
             f"epochs. Mean ± sample std over seeds.", "",
             "| arm | amp PSNR (dB) | amp SSIM | amp FRC50 |", "| --- | --- | --- | --- |"]
    for arm, m in merged["per_arm"].items():
        lines.append(f"| {arm} | {_pm(m['amp_psnr'], '.2f')} | {_pm(m['amp_ssim'], '.3f')} | "
                     f"{_pm(m['amp_frc50'], '.2f')} |")
    lines += ["", "| dose | NLL − MAE amp PSNR (dB) | NLL − MAE amp SSIM | verdict |",
              "| --- | --- | --- | --- |"]
    for dose, e in merged["nll_vs_mae"].items():
        lines.append(f"| {dose} | {_pm(e['amp_psnr_nll_minus_mae'], '+.2f')} | "
                     f"{_pm(e['amp_ssim_nll_minus_mae'], '+.3f')} | {e['verdict_psnr']}; "
                     f"{e['verdict_ssim']} |")
    low = merged["nll_vs_mae"]["low"]
    lines += ["", "Does Poisson NLL beat MAE at the low dose? In amplitude PSNR "
              + ("yes" if merged["nll_beats_mae_at_low_dose"] else "no")
              + f" ({low['verdict_psnr']}: {_pm(low['amp_psnr_nll_minus_mae'], '+.2f')} dB); "
              f"in amplitude SSIM: {low['verdict_ssim']} "
              f"({_pm(low['amp_ssim_nll_minus_mae'], '+.3f')}). A difference counts when it "
              f"exceeds twice its standard error over {len(merged['seeds'])} seeds.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="merge dose-study runs of several seeds")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        merged = merge([load_run(d) for d in args.runs], [str(d) for d in args.runs])
    except SeedMergeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output / "seeds_summary.json", json.dumps(merged, indent=2) + "\n")
    atomic_write_text(args.output / "seeds_summary.md", render_markdown(merged))
    print(render_markdown(merged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
