"""benchmarks/bench_quality.py --seeds/--positions: flags, per-seed aggregation and verdicts.

The benchmark scripts are not a package: they are loaded from their files. Pure parts, plus
small real runs of the arms (refinement, self-supervision, pty-chi under the baseline marker)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ptycho.baseline import available as baseline_available

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def seeds_mod(load_file_module: Callable[[Path], ModuleType]) -> ModuleType:
    return load_file_module(BENCHMARKS / "quality_seeds.py")


@pytest.fixture(scope="module")
def bench(load_file_module: Callable[[Path], ModuleType]) -> ModuleType:
    return load_file_module(BENCHMARKS / "bench_quality.py")


@pytest.fixture(scope="module")
def figure(load_file_module: Callable[[Path], ModuleType]) -> ModuleType:
    return load_file_module(BENCHMARKS / "quality_figure.py")


def _run(amp: float | None, phase: float | None, lsqml_amp: float | None,
         lsqml_phase: float | None, available: bool = True) -> dict[str, Any]:
    """A run record shaped like bench_quality.run_one's (only the fields aggregate reads)."""
    lsqml: dict[str, Any] = {"available": available}
    if available:
        lsqml.update(amp_ssim=lsqml_amp, phase_ssim=lsqml_phase)
    return {"final": {"amp_ssim": amp, "phase_ssim": phase, "amp_psnr": 20.0}, "lsqml": lsqml}


# ----------------------------------------------------------------------------- verdicts
@pytest.mark.parametrize(("diff", "expected"), [
    (0.03, "pinn_ahead"), (0.2, "pinn_ahead"), (0.0299, "tie"), (0.0, "tie"),
    (-0.0299, "tie"), (-0.03, "lsqml_ahead"), (-0.5, "lsqml_ahead")])
def test_channel_verdict_uses_the_margin_inclusively(seeds_mod: ModuleType, diff: float,
                                                     expected: str) -> None:
    assert seeds_mod.channel_verdict(diff) == expected


def test_verdict_needs_every_carried_channel(seeds_mod: ModuleType) -> None:
    assert seeds_mod.verdict({"amp": 0.05, "phase": 0.04}) == "pinn_ahead"
    assert seeds_mod.verdict({"amp": -0.05, "phase": -0.031}) == "lsqml_ahead"
    assert seeds_mod.verdict({"amp": 0.05, "phase": 0.01}) == "tie"
    assert seeds_mod.verdict({"amp": 0.05, "phase": -0.05}) == "tie"
    assert seeds_mod.verdict({}) == "n/a"
    assert seeds_mod.verdict({"amp": 0.02}, margin=0.01) == "pinn_ahead"


# ----------------------------------------------------------------------------- aggregation
def test_aggregate_amplitude_object_pairs_seeds_and_leaves_phase_out(seeds_mod: ModuleType) -> None:
    runs = {2: _run(0.80, None, 0.74, None), 0: _run(0.70, None, 0.68, None),
            1: _run(0.75, None, 0.71, None)}
    agg = seeds_mod.aggregate(runs)
    assert agg["seeds"] == [0, 1, 2]
    assert agg["channels"] == ["amp"]
    assert [e["seed"] for e in agg["per_seed"]] == [0, 1, 2]
    assert [e["amp"]["diff"] for e in agg["per_seed"]] == pytest.approx([0.02, 0.04, 0.06])
    assert "phase" not in agg["per_seed"][0]
    assert agg["pinn"]["amp"]["mean"] == pytest.approx(0.75)
    assert agg["pinn"]["amp"]["std"] == pytest.approx(0.05)
    assert agg["lsqml"]["amp"]["mean"] == pytest.approx(0.71)
    assert agg["diff"]["amp"]["mean"] == pytest.approx(0.04)
    assert agg["diff"]["amp"]["std"] == pytest.approx(0.02)
    assert (agg["diff"]["amp"]["min"], agg["diff"]["amp"]["max"]) == pytest.approx((0.02, 0.06))
    assert agg["verdict"] == "pinn_ahead"
    assert agg["channel_verdicts"] == {"amp": "pinn_ahead"}


@pytest.mark.parametrize(("offset", "expected"), [
    (0.05, "pinn_ahead"), (0.01, "tie"), (-0.01, "tie"), (-0.05, "lsqml_ahead")])
def test_aggregate_verdict_follows_the_numbers(seeds_mod: ModuleType, offset: float,
                                               expected: str) -> None:
    lsqml = [0.6, 0.5, 0.7]
    runs = {s: _run(None, v + offset, None, v) for s, v in enumerate(lsqml)}
    agg = seeds_mod.aggregate(runs)
    assert agg["channels"] == ["phase"]  # a pure phase object: constant amplitude, n/a
    assert agg["diff"]["phase"]["mean"] == pytest.approx(offset)
    assert agg["verdict"] == expected


def test_aggregate_two_channels_disagreeing_is_a_tie(seeds_mod: ModuleType) -> None:
    runs = {0: _run(0.9, 0.4, 0.8, 0.6), 1: _run(0.85, 0.5, 0.8, 0.6)}
    agg = seeds_mod.aggregate(runs)
    assert agg["channels"] == ["amp", "phase"]
    assert agg["channel_verdicts"] == {"amp": "pinn_ahead", "phase": "lsqml_ahead"}
    assert agg["verdict"] == "tie"


def test_aggregate_one_seed_has_zero_spread(seeds_mod: ModuleType) -> None:
    agg = seeds_mod.aggregate({3: _run(0.5, None, 0.6, None)})
    assert agg["pinn"]["amp"]["std"] == 0.0 and agg["pinn"]["amp"]["n"] == 1
    assert agg["verdict"] == "lsqml_ahead"


def test_aggregate_without_lsqml(seeds_mod: ModuleType) -> None:
    agg = seeds_mod.aggregate({0: _run(0.5, None, None, None, available=False)})
    assert agg["verdict"] == "no_lsqml"
    assert agg["pinn"]["amp"]["mean"] == pytest.approx(0.5)
    assert agg["lsqml"] == {} and agg["per_seed"][0]["amp"]["lsqml"] is None


def test_aggregate_rejects_empty_or_incomplete_runs(seeds_mod: ModuleType) -> None:
    with pytest.raises(ValueError, match="no runs"):
        seeds_mod.aggregate({})
    with pytest.raises(ValueError, match=r"seeds \[1\]"):
        seeds_mod.aggregate({0: _run(0.5, None, 0.5, None), 1: {"lsqml": {}}})


def test_render_markdown_one_row_per_carried_channel(seeds_mod: ModuleType) -> None:
    amp = seeds_mod.aggregate({0: _run(0.8, None, 0.7, None), 1: _run(0.7, None, 0.7, None)})
    mixed = seeds_mod.aggregate({0: _run(0.9, 0.4, 0.8, 0.6)})
    text = seeds_mod.render_markdown({"siemens": {"1e4": {"sparse": amp}},
                                      "mixed_blobs": {"1e4": {"dense": mixed}}}, ["# title"])
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 4  # header + siemens amp + mixed amp and phase
    assert rows[1].split(" | ")[:5] == ["| siemens", "1e4", "sparse", "amp", "0,1"]
    assert "0.750 ± 0.071" in rows[1] and "+0.050 ± 0.071" in rows[1]
    assert "**pinn_ahead**" in rows[1]  # the mean, not its spread, meets the margin
    assert "**tie** (amp: pinn_ahead)" in rows[2] and "(phase: lsqml_ahead)" in rows[3]
    assert text.startswith("# title\n")


def _refined(run: dict[str, Any], pinn_start: float, flat_start: float | None) -> dict[str, Any]:
    """The run with bench_quality's refined arms (amplitude SSIMs; phase constant)."""
    arms = {"pinn_start": {"final": {"amp_ssim": pinn_start, "phase_ssim": None}}}
    if flat_start is not None:
        arms["flat_start"] = {"final": {"amp_ssim": flat_start, "phase_ssim": None}}
    return {**run, "refined": arms}


def test_aggregate_compares_pinn_plus_refinement_with_lsqml_apart_from_the_pinn(
        seeds_mod: ModuleType) -> None:
    runs = {0: _refined(_run(0.70, None, 0.80, None), 0.86, 0.81),
            1: _refined(_run(0.72, None, 0.82, None), 0.84, 0.79)}
    agg = seeds_mod.aggregate(runs)
    assert agg["verdict"] == "lsqml_ahead"  # the PINN alone keeps its own verdict
    assert agg["refined"]["pinn_start"]["amp"]["mean"] == pytest.approx(0.85)
    assert agg["refined"]["flat_start"]["amp"]["mean"] == pytest.approx(0.80)
    assert [d for d in (agg["refined_diff"]["amp"]["min"], agg["refined_diff"]["amp"]["max"])] \
        == pytest.approx([0.02, 0.06])
    assert agg["refined_verdict"] == "pinn_ahead"
    text = seeds_mod.render_markdown({"lines": {"1e4": {"dense": agg}}})
    row = [line for line in text.splitlines() if line.startswith("| lines")][0]
    assert row.endswith("| 0.850 ± 0.014 | 0.800 ± 0.014 | +0.040 ± 0.028 | pinn_ahead |")


def test_aggregate_leaves_refinement_out_unless_every_seed_has_it(seeds_mod: ModuleType) -> None:
    plain = {0: _run(0.7, None, 0.7, None), 1: _refined(_run(0.7, None, 0.7, None), 0.9, None)}
    agg = seeds_mod.aggregate(plain)
    assert "refined" not in agg and "refined_verdict" not in agg
    row = seeds_mod.render_markdown({"x": {"1e9": {"dense": agg}}}).splitlines()[-1]
    assert row.endswith("| n/a | n/a | n/a | n/a |")
    no_flat = seeds_mod.aggregate({0: _refined(_run(0.7, None, 0.7, None), 0.9, None)})
    assert set(no_flat["refined"]) == {"pinn_start"} and no_flat["refined_verdict"] == "pinn_ahead"


def test_refined_arms_score_every_step_from_both_starts(bench: ModuleType, figure: ModuleType,
                                                        tmp_path: Path) -> None:
    # a real refinement on a small simulated scan (no training): the PINN start is stood in
    # for by a blurred truth, the flat start is the solver alone
    import numpy as np

    from ptycho.config import SimConfig
    from ptycho.metrics import scanned_region
    from ptycho.physics import simulate

    test = simulate(SimConfig(N=16, gridsize=1, n_images=120, nphotons=1e8, probe_defocus=2.0,
                              seed=3))
    crop = scanned_region(test.coords, test.obj.shape)
    start = (0.7 * test.obj + 0.3 * np.roll(test.obj, 1, axis=0)).astype(np.complex64)
    args = bench.parse_args(["--refine-steps", "6", "--refine-holdout", "0"])
    images = {"truth": test.obj[crop], "PINN": start[crop]}
    arms = bench.refined_arms(start, test, crop, "amp", args, images)
    assert images["PINN + refinement"].shape == images["PINN"].shape
    for name in ("pinn_start", "flat_start"):
        arm = arms[name]
        assert arm["steps"] == 6 and arm["steps_taken"] == arm["best_step"] == 6
        assert len(arm["ssim_by_step"]) == len(arm["wall_by_step"]) == 6
        assert arm["wall_by_step"] == sorted(arm["wall_by_step"])
        assert arm["loss_last"] < arm["loss_first"]
        assert arm["final"]["amp_ssim"] == arm["ssim_by_step"][-1]
        assert set(arm["time_to_ssim"]) == {"0.9", "0.95"}
    assert arms["pinn_start"]["final"]["amp_ssim"] > arms["flat_start"]["final"]["amp_ssim"]
    assert bench.refined_arms(start, test, crop, "amp",
                              bench.parse_args(["--refine-steps", "0"])) == {"steps": 0}
    # the figure: per dose the PINN, PINN + refinement (and LSQML where it ran)
    out = {"carrier": "amp", "final": {"amp_ssim": 0.5}, "lsqml": {"available": False},
           "refined": arms}
    panel = figure.figure_panel(out, images)
    assert [m for m, _, _ in panel["methods"]] == ["PINN", "PINN + refinement"]
    assert panel["methods"][1][2] == arms["pinn_start"]["final"]["amp_ssim"]
    figure.draw_figure({"lines": {"1e9": panel, "1e4": panel}}, tmp_path / "fig.png", "t")
    assert (tmp_path / "fig.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.baseline
@pytest.mark.integration
@pytest.mark.skipif(not baseline_available(), reason="pty-chi not installed (make baseline)")
def test_lsqml_is_scored_after_every_epoch_like_the_pinn(bench: ModuleType) -> None:
    # pty-chi on a small simulated scan: the carrier SSIM of each epoch, the final scores those
    # of the last epoch, and the first epoch to pass a threshold
    from ptycho.config import SimConfig
    from ptycho.metrics import scanned_region
    from ptycho.physics import simulate

    test = simulate(SimConfig(N=16, gridsize=1, n_images=120, nphotons=1e8, probe_defocus=2.0,
                              seed=3))
    crop = scanned_region(test.coords, test.obj.shape)
    images: dict[str, Any] = {}
    out = bench.lsqml_scores(test, crop, 6, "amp", images)
    assert out["available"] and out["epochs"] == 6
    assert len(out["ssim_by_epoch"]) == len(out["wall_by_epoch"]) == 6
    assert out["wall_by_epoch"] == sorted(out["wall_by_epoch"])
    assert out["amp_ssim"] == out["ssim_by_epoch"][-1] and out["amp_frc50"] is not None
    assert out["best_ssim"] == max(out["ssim_by_epoch"])
    assert out["ssim_by_epoch"][out["best_epoch"] - 1] == out["best_ssim"]
    assert out["ssim_by_epoch"][-1] > out["ssim_by_epoch"][0]
    for t, wall in out["time_to_ssim"].items():
        first = next((i for i, v in enumerate(out["ssim_by_epoch"]) if v >= float(t)), None)
        assert wall == (None if first is None else out["wall_by_epoch"][first])
    assert images["LSQML"].shape == test.obj[crop].shape


def test_aggregate_gives_the_self_supervised_pinn_its_own_verdict(seeds_mod: ModuleType) -> None:
    def selfsup(run: dict[str, Any], amp: float) -> dict[str, Any]:
        return {**run, "selfsup": {"final": {"amp_ssim": amp, "phase_ssim": None}}}

    runs = {0: selfsup(_refined(_run(0.70, None, 0.80, None), 0.86, None), 0.79),
            1: selfsup(_refined(_run(0.72, None, 0.82, None), 0.84, None), 0.83)}
    agg = seeds_mod.aggregate(runs)
    assert agg["verdict"] == "lsqml_ahead" and agg["refined_verdict"] == "pinn_ahead"
    assert agg["selfsup"]["amp"]["mean"] == pytest.approx(0.81)
    assert [agg["selfsup_diff"]["amp"][k] for k in ("min", "max")] == pytest.approx([-0.01, 0.01])
    assert agg["selfsup_verdict"] == "tie"
    row = seeds_mod.render_markdown({"x": {"1e9": {"dense": agg}}}).splitlines()[-1]
    assert "| **lsqml_ahead** | 0.810 ± 0.028 | +0.000 ± 0.014 | tie | 0.850 ± 0.014 |" in row
    one_seed_only = seeds_mod.aggregate({0: runs[0], 1: _run(0.72, None, 0.82, None)})
    assert "selfsup" not in one_seed_only and "selfsup_verdict" not in one_seed_only


def test_selfsup_arm_trains_the_pinn_on_the_test_scan_itself(bench: ModuleType) -> None:
    # a real recipe at N=16 (one epoch on 32 groups), then 3 self-supervised epochs on its
    # 128-group test scan: the network's own object of that scan improves, no truth used
    import dataclasses

    from dose_study.arms import make_config
    from dose_study.recipe import run_recipe

    cfg = dataclasses.replace(make_config(True, n_images=32, nepochs=1), N=16, n_test_images=128)
    res = run_recipe(cfg, 1e9, "nll", on_epoch=lambda _: None)
    # the recipe decides the object support as train does: this N=16 disk drops 1.9e6 photons
    assert res.model_cfg.pad_object is False  # outside the half at 1e9 (RESOLUTION-SUPPORT-001)
    # the final object is the one the last epoch reconstructed and scored, with its slope fit
    assert res.scores["amp_ssim"] == res.epochs[-1].scores["amp_ssim"] and res.slopes is not None
    from ptycho.inference import reconstruct
    from ptycho.metrics import evaluate

    def network_alone() -> float:  # the network's own patches, without the slope fit
        obj = reconstruct(res.model, res.test, fit_slopes=False)
        return evaluate(obj, res.test.obj, res.crop)["amp_ssim"]

    before = network_alone()
    images: dict[str, Any] = {}
    arm = bench.selfsup_arm(res, "amp", bench.parse_args(["--selfsup-epochs", "3",
                                                         "--selfsup-lr", "1e-3"]), images)
    assert arm["epochs"] == 3 and len(arm["ssim_by_epoch"]) == len(arm["wall_by_epoch"]) == 3
    assert arm["wall_by_epoch"] == sorted(arm["wall_by_epoch"])
    assert arm["final"]["amp_ssim"] == arm["ssim_by_epoch"][-1]
    assert network_alone() > before + 0.1  # the network itself learned the scan
    assert arm["final"]["amp_ssim"] > res.scores["amp_ssim"]
    assert images["PINN self-supervised"].shape == res.recon[res.crop].shape
    assert bench.selfsup_arm(res, "amp", bench.parse_args(["--selfsup-epochs", "0"])) == {"epochs": 0}


# ----------------------------------------------------------------------------- flags
def test_defaults_keep_the_single_seed_dense_layout(bench: ModuleType) -> None:
    args = bench.parse_args([])
    assert args.seeds == (0,) and args.positions == ("dense",)
    assert args.verdicts is False
    assert args.object == ["lines"] and args.doses == [1e9]


def test_seeds_and_positions_switch_to_verdicts(bench: ModuleType) -> None:
    args = bench.parse_args(["--object", "all", "--doses", "1e4", "--seeds", "0,1,2",
                             "--positions", "dense,sparse"])
    assert args.seeds == (0, 1, 2) and args.positions == ("dense", "sparse")
    assert args.verdicts is True
    assert args.object[0] == "lines" and "phase_blobs" in args.object and len(args.object) == 7
    assert bench.parse_args(["--positions", "sparse"]).verdicts is True
    assert bench.parse_args(["--seeds", "1"]).verdicts is True


def test_size_flags_override_the_study_preset(bench: ModuleType) -> None:
    """--quick is the study's quick model trained at the bench's own QUICK_SIZES (those of every
    quick verdict); the size flags override both presets."""
    from dose_study.arms import FULL, QUICK

    quick = bench.study_config(bench.parse_args(["--quick"]), "lines")
    assert (quick.N, quick.n_filters_scale) == (QUICK.N, QUICK.n_filters_scale)
    assert (quick.n_images, quick.batch_size, quick.nepochs) == (1024, 16, 14)
    assert bench.study_config(bench.parse_args(["--quick", "--batch-size", "8"]), "lines").batch_size == 8
    cfg = bench.study_config(bench.parse_args(["--batch-size", "8", "--nepochs", "3"]), "thin_lines", seed=2)
    assert (cfg.batch_size, cfg.nepochs, cfg.N, cfg.seed, cfg.object_type) == (8, 3, FULL.N, 2, "thin_lines")
    with pytest.raises(ValueError, match="--batch-size"):
        bench.study_config(bench.parse_args(["--batch-size", "0"]), "lines")


def test_dose_order_is_kept(bench: ModuleType) -> None:
    assert bench.parse_args(["--doses", "1e4,1e9"]).doses == [1e4, 1e9]
    assert bench.parse_args(["--doses", "1e4", "--nphotons", "5e5"]).doses == [5e5]
    assert bench.dose_label(1e4) == "1e4"


@pytest.mark.parametrize(("argv", "message"), [
    (["--seeds", "0,x"], "--seeds: 'x'"),
    (["--seeds", "1,1"], "given twice"),
    (["--positions", "dense,medium"], "--positions: unknown 'medium'"),
    (["--object", "lines,blob"], "--object: unknown 'blob'"),
    (["--doses", "1e4,lots"], "--doses: 'lots'"),
    (["--seeds", "0,1", "--lsqml-only"], "--lsqml-only"),
    (["--positions", "sparse", "--figure", "x.png"], "--figure"),
    (["--markdown", "x.md"], "--markdown needs"),
    (["--refine-steps", "-2"], "steps must be an integer >= 0, got -2"),
    (["--refine-lr", "0"], "learning_rate must be finite and > 0, got 0.0"),
    (["--selfsup-epochs", "-1"], "--selfsup-epochs must be >= 0, got -1"),
    (["--selfsup-lr", "nan"], "--selfsup-lr must be finite and > 0, got nan"),
])
def test_bad_flags_exit_naming_the_value(bench: ModuleType, capsys: pytest.CaptureFixture[str],
                                         argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- --resume
def test_resumed_runs_read_back_seeds_as_ints(bench: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "verdicts.json"
    run = _run(0.5, None, 0.6, None)
    path.write_text(json.dumps({"runs": {"lines": {"1e4": {"dense": {"0": run, "2": run}}}},
                                "argv": ["--seeds", "0,2"]}), encoding="utf-8")
    runs, history = bench.resumed_runs(path)
    assert sorted(runs["lines"]["1e4"]["dense"]) == [0, 2]
    assert runs["lines"]["1e4"]["dense"][2] == run
    assert history == [["--seeds", "0,2"]]  # a file without argv_history: its argv
    path.write_text(json.dumps({"runs": {}, "argv_history": [["a"], ["b"]]}), encoding="utf-8")
    assert bench.resumed_runs(path)[1] == [["a"], ["b"]]


def test_resumed_runs_name_a_bad_file(bench: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"objects": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="other.json is not a bench_quality verdicts JSON"):
        bench.resumed_runs(path)


def test_resume_needs_out_and_the_verdict_mode(bench: ModuleType,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--seeds", "0,1", "--resume"], ["--resume", "--out", "x.json"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert "--resume needs --out" in capsys.readouterr().err
    assert bench.parse_args(["--seeds", "0,1", "--resume", "--out", "x.json"]).resume is True
