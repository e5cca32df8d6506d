"""Seeds × scan densities for ``bench_quality.py``: PINN vs LSQML per object, and a verdict.

Pure Python (no numpy, TensorFlow or ptycho import), so the aggregation is tested on plain
records. One *run* is what ``bench_quality.run_one`` returns for one (object, dose, scan
density, seed): its ``final`` and ``lsqml`` hold the carrier-independent scores
``amp_ssim`` / ``phase_ssim`` (None where the truth channel is constant: the phase of an
object without phase, the amplitude of a pure phase object; see ``ptycho.metrics``).

``aggregate(runs)`` pairs the runs of one (object, dose, density) by seed and gives, per
channel the object carries (``CHANNELS`` whose scores are not None):

  per_seed   seed, PINN SSIM, LSQML SSIM and their difference PINN − LSQML
  pinn, lsqml, diff  {mean, std, min, max, n} over the seeds (std: sample standard deviation,
             0 for one seed)
  verdict    "pinn_ahead" when mean(PINN − LSQML) >= ``MARGIN`` in every carried channel,
             "lsqml_ahead" when <= −``MARGIN`` in every carried channel, else "tie";
             "no_lsqml" without an LSQML score, "n/a" when no channel is carried
  channel_verdicts  the same rule per channel
  selfsup    when every run holds ``selfsup`` (bench_quality --selfsup-epochs): {channel: stats}
             of "PINN self-supervised on the scan"; selfsup_diff (it − LSQML per seed) and
             selfsup_verdict by the same rule
  refined    when the runs hold ``refined`` (bench_quality --refine-steps): {pinn_start,
             flat_start: {channel: stats}} of the refinement from the PINN's object ("PINN +
             refinement") and from a flat one (the solver alone); refined_diff (PINN +
             refinement − LSQML per seed) and refined_verdict by the same rule

``render_markdown`` writes the one-table summary (object, scan, channel, PINN and LSQML
mean ± std, mean difference, verdict).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CHANNELS = ("amp", "phase")
MARGIN = 0.03
REFINE_STARTS = ("pinn_start", "flat_start")  # bench_quality's refined arms


def _stats(values: Sequence[float]) -> dict[str, Any]:
    """mean, sample std (0 for one value), min, max and n of ``values`` (rounded to 4 digits)."""
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": round(min(values), 4), "max": round(max(values), 4), "n": len(values)}


def channel_verdict(mean_diff: float, margin: float = MARGIN) -> str:
    """"pinn_ahead" (mean PINN − LSQML >= margin), "lsqml_ahead" (<= −margin) or "tie"."""
    if mean_diff >= margin:
        return "pinn_ahead"
    if mean_diff <= -margin:
        return "lsqml_ahead"
    return "tie"


def verdict(mean_diffs: Mapping[str, float], margin: float = MARGIN) -> str:
    """One verdict over the carried channels: the common channel verdict, else "tie";
    "n/a" when ``mean_diffs`` is empty."""
    if not mean_diffs:
        return "n/a"
    verdicts = {channel_verdict(d, margin) for d in mean_diffs.values()}
    return verdicts.pop() if len(verdicts) == 1 else "tie"


def carried_channels(runs: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The channels whose PINN SSIM is not None in every run (the truth channel varies)."""
    runs = list(runs)
    return tuple(c for c in CHANNELS
                 if runs and all(r["final"].get(f"{c}_ssim") is not None for r in runs))


def aggregate(runs: Mapping[int, Mapping[str, Any]], margin: float = MARGIN) -> dict[str, Any]:
    """Per-seed scores, their statistics and the verdict of ``runs`` ({seed: run record}).

    Raises ValueError when ``runs`` is empty or a run lacks ``final``."""
    if not runs:
        raise ValueError("aggregate: no runs")
    missing = [s for s, r in runs.items() if "final" not in r]
    if missing:
        raise ValueError(f"aggregate: runs of seeds {missing} have no 'final' scores")
    seeds = sorted(runs)
    channels = carried_channels(runs.values())
    has_lsqml = all(runs[s].get("lsqml", {}).get("available") for s in seeds)
    per_seed = []
    for seed in seeds:
        run = runs[seed]
        entry: dict[str, Any] = {"seed": seed}
        for c in channels:
            pinn = run["final"][f"{c}_ssim"]
            lsqml = run["lsqml"].get(f"{c}_ssim") if has_lsqml else None
            entry[c] = {"pinn": pinn, "lsqml": lsqml,
                        "diff": None if lsqml is None else round(pinn - lsqml, 4)}
        per_seed.append(entry)
    out: dict[str, Any] = {"seeds": seeds, "channels": list(channels), "margin": margin,
                           "per_seed": per_seed, "pinn": {}, "lsqml": {}, "diff": {}}
    for c in channels:
        out["pinn"][c] = _stats([e[c]["pinn"] for e in per_seed])
        lsqml = [e[c]["lsqml"] for e in per_seed]
        if all(v is not None for v in lsqml):
            out["lsqml"][c] = _stats(lsqml)
            out["diff"][c] = _stats([e[c]["diff"] for e in per_seed])
    if channels and len(out["diff"]) < len(channels):
        out["verdict"], out["channel_verdicts"] = "no_lsqml", {}
        return out
    means = {c: out["diff"][c]["mean"] for c in channels}
    out["channel_verdicts"] = {c: channel_verdict(d, margin) for c, d in means.items()}
    out["verdict"] = verdict(means, margin)
    refined = {start: [_arm_final(runs[s], "refined", start) for s in seeds]
               for start in REFINE_STARTS}
    if channels and None not in refined["pinn_start"]:
        out["refined"] = {start: {c: _stats([r[f"{c}_ssim"] for r in finals]) for c in channels}
                          for start, finals in refined.items() if None not in finals}
        out["refined_diff"], out["refined_verdict"] = _versus_lsqml(
            refined["pinn_start"], per_seed, channels, margin)
    selfsup = [_arm_final(runs[s], "selfsup") for s in seeds]
    if channels and None not in selfsup:
        out["selfsup"] = {c: _stats([r[f"{c}_ssim"] for r in selfsup]) for c in channels}
        out["selfsup_diff"], out["selfsup_verdict"] = _versus_lsqml(selfsup, per_seed, channels,
                                                                    margin)
    return out


def _arm_final(run: Mapping[str, Any], *path: str) -> Mapping[str, Any] | None:
    """The final scores of the run's arm at ``path`` (e.g. "refined", "pinn_start"; None when
    the run has none)."""
    arm: Any = run
    for key in path:
        arm = arm.get(key, {})
    return arm.get("final")


def _versus_lsqml(finals: Sequence[Mapping[str, Any]], per_seed: Sequence[Mapping[str, Any]],
                  channels: Sequence[str], margin: float) -> tuple[dict[str, Any], str]:
    """(arm − LSQML per channel {stats}, verdict) of an arm's per-seed final scores."""
    diff = {c: _stats([round(r[f"{c}_ssim"] - e[c]["lsqml"], 4)
                       for r, e in zip(finals, per_seed, strict=True)]) for c in channels}
    return diff, verdict({c: d["mean"] for c, d in diff.items()}, margin)


def _pm(stats: Mapping[str, Any] | None, spec: str = ".3f") -> str:
    if not stats:
        return "n/a"
    return f"{format(stats['mean'], spec)} ± {format(stats['std'], spec.lstrip('+'))}"


def render_markdown(results: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """One table: a row per object × dose × scan density × carried channel; "PINN
    self-supervised on the scan", "PINN + refinement" and the refinement from a flat start (the
    solver alone) in their own columns (n/a without).

    ``results``: {object: {dose: {positions: aggregate(...)}}}; ``header``: lines above it."""
    lines = [*header, "",
             "| object | photons | scan | channel | seeds | PINN SSIM | LSQML SSIM | PINN − LSQML "
             "| verdict | PINN self-supervised on the scan | (self-supervised) − LSQML | verdict "
             "| PINN + refinement | flat + refinement | (PINN + refinement) − LSQML | verdict |",
             "| --- " * 16 + "|"]
    for name, per_dose in results.items():
        for dose, per_pos in per_dose.items():
            for pos, agg in per_pos.items():
                refined = agg.get("refined", {})
                for c in agg["channels"] or ["—"]:
                    lines.append(
                        f"| {name} | {dose} | {pos} | {c} | {','.join(map(str, agg['seeds']))} "
                        f"| {_pm(agg['pinn'].get(c))} | {_pm(agg['lsqml'].get(c))} "
                        f"| {_pm(agg['diff'].get(c), '+.3f')} | **{agg['verdict']}**"
                        + (f" ({c}: {agg['channel_verdicts'][c]})"
                           if len(agg["channels"]) > 1 else "")
                        + f" | {_pm(agg.get('selfsup', {}).get(c))} "
                        f"| {_pm(agg.get('selfsup_diff', {}).get(c), '+.3f')} "
                        f"| {agg.get('selfsup_verdict', 'n/a')} "
                        f"| {_pm(refined.get('pinn_start', {}).get(c))} "
                        f"| {_pm(refined.get('flat_start', {}).get(c))} "
                        f"| {_pm(agg.get('refined_diff', {}).get(c), '+.3f')} "
                        f"| {agg.get('refined_verdict', 'n/a')} |")
    return "\n".join(lines) + "\n"
