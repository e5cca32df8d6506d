"""``summary.json`` / ``summary.md`` and the science checks they record (no ptycho import).

Science recorded (``summary["science"]``), each ``None`` when an arm it needs is missing:
  counts_ratio            mean total counts per pattern, high dose / low dose (expected 1e5)
  baseline                each arm's amplitude SSIM vs a constant image equal to the truth mean
  nll_beats_mae_at_low_dose   low_nll amplitude PSNR >= low_mae amplitude PSNR
  high_dose_ssim_ge_0_5       both 1e9 arms reach amplitude SSIM >= 0.5
  targets                 issue 16's full-study targets: both 1e9 arms >= 0.90 and low_nll
                          >= 0.80 in amplitude SSIM (``met`` None while an arm is missing)
  pinn_minus_baseline     per dose, with a baseline-engine arm (e.g. low_lsqml): the engine's
                          amplitude/phase SSIM and PSNR and, per loss, PINN − engine of each
                          (None where an arm is missing; {} without a baseline arm)
  refined                 per PINN arm that recorded it: amplitude SSIM of "PINN +
                          refinement" (``ptycho.refine`` from the arm's object, a solver's
                          result) beside the PINN's own, and the refinement's seconds
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .arms import ARMS, ArmSpec, StudyConfig, format_dose, get_arm
from .figure import FigureReport

SCHEMA_VERSION = 1
COUNTS_RATIO_TOLERANCE = 0.05
HIGH_DOSE_SSIM_TARGET = 0.5
SSIM_TARGETS = {"high_nll": 0.90, "high_mae": 0.90, "low_nll": 0.80}


def _mean(values: list[float]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _amp(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get("metrics", {}).get(key)
    return None if value is None else float(value)


def science_checks(per_arm: dict[str, dict[str, Any]], cfg: StudyConfig,
                   arms: tuple[ArmSpec, ...] = ARMS) -> dict[str, Any]:
    """The physics sanity checks over whatever arms of ``arms`` are complete."""
    by_dose: dict[str, list[float]] = {"high": [], "low": []}
    for arm in ARMS:
        if arm.name in per_arm:
            by_dose[arm.dose].append(per_arm[arm.name]["counts"]["test_mean_total"])
    high, low = _mean(by_dose["high"]), _mean(by_dose["low"])
    expected = cfg.high_nphotons / cfg.low_nphotons
    ratio: dict[str, Any] = {"high_mean_counts": high, "low_mean_counts": low,
                             "expected": expected, "tolerance": COUNTS_RATIO_TOLERANCE,
                             "value": None, "rel_error": None, "ok": None}
    if high is not None and low:
        ratio["value"] = high / low
        ratio["rel_error"] = abs(ratio["value"] / expected - 1.0)
        ratio["ok"] = ratio["rel_error"] <= COUNTS_RATIO_TOLERANCE

    baseline: dict[str, Any] = {}
    for name, m in per_arm.items():
        ssim, base = _amp(m, "amp_ssim"), m["baseline"]["amp_ssim"]
        baseline[name] = {"amp_ssim": ssim, "baseline_amp_ssim": base,
                          "beats_baseline": bool(ssim is not None and ssim > base)}
    all_beat = (all(v["beats_baseline"] for v in baseline.values())
                if all(a.name in baseline for a in arms) else None)

    nll_vs_mae: dict[str, Any] = {}
    for dose in ("low", "high"):
        nll, mae = per_arm.get(f"{dose}_nll"), per_arm.get(f"{dose}_mae")
        entry: dict[str, Any] = {"nll_amp_psnr": None, "mae_amp_psnr": None,
                                 "nll_amp_ssim": None, "mae_amp_ssim": None,
                                 "nll_amp_frc50": None, "mae_amp_frc50": None,
                                 "psnr_delta_db": None, "nll_beats_mae": None}
        if nll and mae:
            entry.update({f"{loss}_{key}": _amp(m, key) for loss, m in (("nll", nll), ("mae", mae))
                          for key in ("amp_psnr", "amp_ssim", "amp_frc50")})
            entry["psnr_delta_db"] = entry["nll_amp_psnr"] - entry["mae_amp_psnr"]
            entry["nll_beats_mae"] = entry["psnr_delta_db"] >= 0.0
        nll_vs_mae[dose] = entry

    high_ssim = {a.name: _amp(per_arm[a.name], "amp_ssim")
                 for a in ARMS if a.dose == "high" and a.name in per_arm}
    high_ok = (all(v is not None and v >= HIGH_DOSE_SSIM_TARGET for v in high_ssim.values())
               if len(high_ssim) == 2 else None)
    return {
        "counts_ratio": ratio,
        "baseline": baseline,
        "all_arms_beat_baseline_ssim": all_beat,
        "nll_vs_mae": nll_vs_mae,
        "nll_beats_mae_at_low_dose": nll_vs_mae["low"]["nll_beats_mae"],
        "high_dose_amp_ssim": high_ssim,
        "high_dose_ssim_target": HIGH_DOSE_SSIM_TARGET,
        "high_dose_ssim_ge_0_5": high_ok,
        "targets": _targets(per_arm),
        "pinn_minus_baseline": pinn_minus_baseline(per_arm, arms),
        "refined": {name: {"amp_ssim": m["refined"]["metrics"].get("amp_ssim"),
                           "pinn_amp_ssim": _amp(m, "amp_ssim"),
                           "wall_s": m["refined"].get("wall_s")}
                    for name, m in per_arm.items() if "refined" in m},
    }


DIFF_METRICS = ("amp_ssim", "amp_psnr", "phase_ssim", "phase_psnr")


def pinn_minus_baseline(per_arm: dict[str, dict[str, Any]],
                        arms: tuple[ArmSpec, ...]) -> dict[str, Any]:
    """Per dose with a baseline-engine arm in ``arms``: its metrics and PINN − engine per loss."""
    out: dict[str, Any] = {}
    for engine_arm in (a for a in arms if a.is_baseline):
        base = per_arm.get(engine_arm.name)
        entry: dict[str, Any] = {"engine": engine_arm.loss, "arm": engine_arm.name,
                                 **{k: _amp(base, k) if base else None for k in DIFF_METRICS}}
        for loss in ("nll", "mae"):
            pinn = per_arm.get(f"{engine_arm.dose}_{loss}")
            entry[loss] = {k: (_amp(pinn, k) - _amp(base, k)
                               if pinn and base and _amp(pinn, k) is not None
                               and _amp(base, k) is not None else None)
                           for k in DIFF_METRICS}
        out[engine_arm.dose] = entry
    return out


def _targets(per_arm: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each targeted arm's amplitude SSIM against its target, and whether all are met."""
    arms = {name: {"target": target,
                   "amp_ssim": _amp(per_arm[name], "amp_ssim") if name in per_arm else None}
            for name, target in SSIM_TARGETS.items()}
    for entry in arms.values():
        entry["met"] = None if entry["amp_ssim"] is None else entry["amp_ssim"] >= entry["target"]
    flags = [e["met"] for e in arms.values()]
    return {"arms": arms, "met": None if None in flags else all(flags)}


def config_mismatches(per_arm: dict[str, dict[str, Any]], cfg: StudyConfig) -> dict[str, dict]:
    """Per arm, the settings whose recorded value differs from the ones the arm would run with
    now (``cfg.for_arm``: a curve point's own seed and scan density); {} when consistent.
    Only the settings that matter for the arm are compared (``training_signature``), and a
    setting an older arm did not record counts as its default."""
    defaults = {f.name: f.default for f in dataclasses.fields(StudyConfig)}
    out: dict[str, dict] = {}
    for name, m in per_arm.items():
        try:
            arm = get_arm(name)
        except ValueError:
            arm = None
        want = (cfg.for_arm(arm) if arm is not None else cfg).training_signature(arm)
        got = m.get("study_config", {})
        diff = {k: {"arm": got.get(k, defaults.get(k)), "current": v} for k, v in want.items()
                if got.get(k, defaults.get(k)) != v}
        if diff:
            out[name] = diff
    return out


def build_summary(cfg: StudyConfig, per_arm: dict[str, dict[str, Any]], figure: FigureReport,
                  versions: dict[str, str], run_info: dict[str, Any],
                  arms: tuple[ArmSpec, ...] = ARMS) -> dict[str, Any]:
    """The summary.json object of the study of ``arms``."""
    wall = {name: m.get("wall_time_s", {}).get("total") for name, m in per_arm.items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "config": cfg.to_dict(),
        "arms_expected": [a.name for a in arms],
        "arms_complete": [a.name for a in arms if a.name in per_arm],
        "arms_missing": [a.name for a in arms if a.name not in per_arm],
        "per_arm": per_arm,
        "wall_times_s": {"per_arm": wall,
                         "arms_total": sum(v for v in wall.values() if v is not None),
                         **run_info.get("wall_times_s", {})},
        "config_mismatches": config_mismatches(per_arm, cfg),
        "versions": versions,
        "figure": {"path": figure.path, "png_ok": figure.png_ok, "panels": figure.panels},
        "figure_ok": figure.ok,
        "science": science_checks(per_arm, cfg, arms),
        "run": {k: v for k, v in run_info.items() if k != "wall_times_s"},
    }


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def render_markdown(summary: dict[str, Any]) -> str:
    """Human summary: config line, per-arm table, science checks, figure check."""
    cfg = summary["config"]
    sci = summary["science"]
    lines = [
        "# Dose-response study",
        "",
        f"Config: N={cfg['N']}, gridsize={cfg['gridsize']}, {cfg['n_images']} train groups "
        f"(seed {cfg['seed']}), {cfg['n_test_images']} test groups (seed {cfg['test_seed']}), "
        f"{cfg['nepochs']} epochs, batch {cfg['batch_size']}, lr {cfg['learning_rate']:g}, "
        f"filters scale {cfg['n_filters_scale']}, probe defocus {cfg['probe_defocus']:g} rad"
        f"{' (--quick)' if cfg['quick'] else ''}.",
        "",
        "| Arm | Photons | Loss | amp PSNR (dB) | amp SSIM | baseline SSIM | amp FRC50 "
        "| phase PSNR (dB) | final loss | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in (get_arm(name) for name in summary["arms_expected"]):
        m = summary["per_arm"].get(arm.name)
        if m is None:
            lines.append(f"| {arm.name} | {format_dose(arm.nphotons)} | {arm.loss.upper()} "
                         "| missing | | | | | | |")
            continue
        met = m["metrics"]
        lines.append(
            f"| {arm.name} | {format_dose(m['nphotons'])} | {arm.loss.upper()} "
            f"| {_fmt(met.get('amp_psnr'), '.2f')} | {_fmt(met.get('amp_ssim'))} "
            f"| {_fmt(m['baseline']['amp_ssim'])} | {_fmt(met.get('amp_frc50'), '.4g')} "
            f"| {_fmt(met.get('phase_psnr'), '.2f')} "
            f"| {_fmt(m['history'].get('loss_last'), '.4g')} "
            f"| {_fmt(m['wall_time_s'].get('total'), '.1f')} |")
    ratio = sci["counts_ratio"]
    low, high = sci["nll_vs_mae"]["low"], sci["nll_vs_mae"]["high"]
    lines += [
        "",
        "## Science checks",
        "",
        f"- High/low dose mean counts ratio: {_fmt(ratio['value'], '.4g')} "
        f"(expected {ratio['expected']:.4g}, within {ratio['tolerance']:.0%}: "
        f"{_fmt(ratio['ok'])})",
        f"- Every arm beats the constant-image baseline in SSIM: "
        f"{_fmt(sci['all_arms_beat_baseline_ssim'])}",
        f"- NLL beats MAE at low dose (amp PSNR {_fmt(low['nll_amp_psnr'], '.2f')} vs "
        f"{_fmt(low['mae_amp_psnr'], '.2f')} dB): {_fmt(sci['nll_beats_mae_at_low_dose'])}; "
        f"SSIM {_fmt(low['nll_amp_ssim'])} vs {_fmt(low['mae_amp_ssim'])}, FRC50 "
        f"{_fmt(low['nll_amp_frc50'], '.3g')} vs {_fmt(low['mae_amp_frc50'], '.3g')}",
        f"- NLL − MAE amplitude PSNR by dose: 1e9 {_fmt(high['psnr_delta_db'], '+.2f')} dB, "
        f"1e4 {_fmt(low['psnr_delta_db'], '+.2f')} dB (the Poisson NLL should gain as the dose "
        "falls)",
        f"- High-dose amplitude SSIM >= {sci['high_dose_ssim_target']}: "
        f"{_fmt(sci['high_dose_ssim_ge_0_5'])}",
        "- Targets (amplitude SSIM): " + ", ".join(
            f"{name} {_fmt(e['amp_ssim'])} >= {e['target']:.2f}: {_fmt(e['met'])}"
            for name, e in sci.get("targets", {}).get("arms", {}).items()),
        *_baseline_lines(sci.get("pinn_minus_baseline", {})),
        *_refined_lines(sci.get("refined", {})),
        "",
        "## Figure",
        "",
        f"`dose_comparison.png` self-check: figure_ok = {_fmt(summary['figure_ok'])}",
        "",
        "| Panel | source | min | max | mean | std | finite | non-constant |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in summary["figure"]["panels"]:
        lines.append(f"| {p['row']}/{p['column']} | {p['source']} | {_fmt(p.get('min'), '.4g')} "
                     f"| {_fmt(p.get('max'), '.4g')} | {_fmt(p.get('mean'), '.4g')} "
                     f"| {_fmt(p.get('std'), '.4g')} | {_fmt(p['finite'])} "
                     f"| {_fmt(p['nonconstant'])} |")
    if summary["arms_missing"]:
        lines += ["", f"Missing arms: {', '.join(summary['arms_missing'])}."]
    if summary["config_mismatches"]:
        lines += ["", "WARNING: arms were run with different settings: "
                  f"{summary['config_mismatches']}"]
    wall = summary["wall_times_s"]
    lines += ["", f"Wall time: arms total {wall['arms_total']:.1f} s."]
    return "\n".join(lines) + "\n"


def _baseline_lines(diffs: dict[str, Any]) -> list[str]:
    """Science-section lines: PINN − baseline engine per dose (none without a baseline arm)."""
    if not diffs:
        return ["- PINN − baseline engine: no baseline arm (`--baseline none`, or the "
                "`[baseline]` extra is not installed: `make baseline`)"]
    lines = []
    for dose, e in diffs.items():
        lines.append(
            f"- PINN − {e['engine'].upper()} at {dose} dose ({e['arm']}: amp SSIM "
            f"{_fmt(e['amp_ssim'])}, phase SSIM {_fmt(e['phase_ssim'])}, amp PSNR "
            f"{_fmt(e['amp_psnr'], '.2f')} dB): " + "; ".join(
                f"{loss.upper()} amp SSIM {_fmt(e[loss]['amp_ssim'], '+.3f')}, phase SSIM "
                f"{_fmt(e[loss]['phase_ssim'], '+.3f')}, amp PSNR "
                f"{_fmt(e[loss]['amp_psnr'], '+.2f')} dB" for loss in ("nll", "mae")))
    return lines


def _refined_lines(refined: dict[str, Any]) -> list[str]:
    """Science-section line: "PINN + refinement" per arm beside the PINN alone (none when no
    arm recorded it)."""
    if not refined:
        return []
    return ["- PINN + refinement (ptycho.refine from each arm's object; a solver's result, not "
            "the PINN's), amp SSIM: " + ", ".join(
                f"{name} {_fmt(e['amp_ssim'])} (PINN alone {_fmt(e['pinn_amp_ssim'])}, "
                f"{_fmt(e['wall_s'], '.1f')} s)" for name, e in refined.items())]
