"""Time-to-quality benchmark, per object: prints ONE JSON object on stdout.

For each object (``--object NAME``, a comma list, or ``all`` = the study's "lines" plus every
bench object of ``ptycho.bench_objects``) and each dose of ``--doses``, trains the study's
recipe (``dose_study.recipe.run_recipe``: N=64, gridsize 2, batch 16, the study's probe;
Poisson NLL by default) on that object and, after every epoch, reconstructs the held-out test
scan (another sample of the same object family, another scan) and scores it:

    carrier          the channel that carries the object ("amp" or "phase"), scored for
                     ssim_by_epoch / time_to_ssim
    ssim_by_epoch, psnr_by_epoch  carrier SSIM / PSNR (dB) of the stitched test object
    wall_by_epoch    training wall seconds up to the end of that epoch (evaluation excluded)
    time_to_ssim     {"0.7", "0.8", "0.9"}: first wall time at which the carrier SSIM reached
                     the threshold, null where it never did
    final            amp/phase MAE, PSNR, SSIM, FRC50 after the last epoch (null = not
                     applicable: a constant truth channel, see ptycho.metrics)
    constant         the same for a constant image (the truth's mean amplitude, zero phase)
    lsqml            pty-chi LSQML (known probe, ``--lsqml-epochs``, one thread) on the same
                     test scan when ``ptycho.baseline.available()``, else {"available": false}:
                     the final scores, and per epoch the carrier SSIM and wall seconds
                     (ssim_by_epoch, wall_by_epoch, time_to_ssim, best_ssim, best_epoch);
                     ``--lsqml-only`` runs just that (no training)
    refined          ``--refine-steps`` of ``ptycho.refine`` (known probe and positions) on the
                     test scan: ``pinn_start`` from the PINN's object ("PINN + refinement", a
                     solver's result, never the PINN's) and ``flat_start`` from a flat object
                     (the solver alone, the control); per step the carrier SSIM and wall
                     seconds, time_to_ssim {"0.9", "0.95"}, final scores
    selfsup          "PINN self-supervised on the scan": after the arms above, the trained PINN
                     goes on training on the test scan's own patterns (its physics loss, no
                     ground truth) for ``--selfsup-epochs``; per epoch the carrier SSIM and
                     training seconds, time_to_ssim {"0.9", "0.95"}, final scores. The
                     network's own object, but not inference on an unseen scan
    params, path, cpu, train_groups_per_s (median epoch), best_ssim, best_epoch

With one object and one dose the old flat layout is printed (the keys above at the top level);
otherwise ``{"objects": {name: {dose: {...}}}, ...}``. ``--figure PNG`` draws the truth and
the PINN, PINN self-supervised, PINN + refinement and LSQML reconstructions of the carrier
channel, one row per object (``quality_figure``).

``--seeds 0,1,2`` (simulation and training seed; test scan seed + 1000) and ``--positions
dense,sparse`` (the dose study's scan densities, ``dose_study.arms.SCAN_DENSITIES``) other than
the defaults (seed 0, dense) run every object × dose × density × seed and print
``{"kind": "bench_quality_verdicts", "verdicts": {name: {dose: {positions: ...}}}, "runs":
{name: {dose: {positions: {seed: {...}}}}}, ...}``: per (object, dose, density) the per-seed
PINN and LSQML SSIM of each channel the object carries, their mean ± std, the per-seed
differences and a verdict (``quality_seeds.aggregate``). ``--out`` / ``--markdown`` write the
JSON and the verdict table, rewritten after every run; ``--resume`` keeps the runs already in
``--out`` (an interrupted run goes on where it stopped; ``argv_history`` lists every command).

Usage: ``python benchmarks/bench_quality.py [--quick] [--object all] [--doses 1e9,1e4]
[--seeds 0,1,2] [--positions dense,sparse] [--nepochs K] [--n-images B] [--loss nll|mae]
[--learning-rate LR] [--lr-schedule constant|cosine] [--figure out.png] [--out out.json] [--markdown out.md]``.
Timings depend on other load on the machine (``load_avg`` records it).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

THRESHOLDS = ("0.7", "0.8", "0.9")
REFINE_THRESHOLDS = ("0.9", "0.95")  # of the refinement and the self-supervised PINN
SELFSUP_EPOCHS, SELFSUP_LR = 4, 5e-4
# LSQML's phase SSIM on the phase blobs (quick, 1e9, seeds 0/1) was 0.754/0.802 after 50 epochs,
# 0.933/0.962 after 300 and 0.994/0.998 after 1000; the amplitude objects were within 0.005 of
# their best after 50 (docs/findings.md BASELINE-EPOCHS-001)
LSQML_EPOCHS = 1000
STUDY_OBJECT = "lines"
# --quick trains at these sizes unless the flags say otherwise: every quick verdict in
# docs/findings.md since RESOLUTION-LOSS-001 was measured at them. The study's own quick preset
# trains half the groups at batch 8 for 8 epochs to fit `make run` on an AVX2 CPU
# (QUICK-AVX2-001), which took the mixed blobs' phase from 0.55-0.66 to 0.26-0.40 (PATCH-RAMP-001)
QUICK_SIZES = {"n_images": 1024, "batch_size": 16, "nepochs": 14}


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, or platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_to(ssims: list[float | None], walls: list[float], threshold: float) -> float | None:
    """First wall time whose SSIM is >= threshold (None if never)."""
    for ssim, wall in zip(ssims, walls, strict=True):
        if ssim is not None and ssim >= threshold:
            return round(wall, 2)
    return None


def best_of(ssims: list[float | None]) -> dict[str, Any]:
    """{"best_ssim", "best_epoch"} (1-based) of a per-epoch SSIM list; None for both when no
    epoch was scored."""
    valid = [i for i, v in enumerate(ssims) if v is not None]
    best = max(valid, key=ssims.__getitem__) if valid else None
    return {"best_ssim": None if best is None else ssims[best],
            "best_epoch": None if best is None else best + 1}


def carrier_of(name: str) -> str:
    """"amp" or "phase": the channel that carries object `name`."""
    from ptycho.bench_objects import CARRIER

    return CARRIER.get(name, "amp")


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def lsqml_scores(test: Any, crop: tuple[slice, slice], epochs: int, carrier: str,
                 images: dict[str, Any] | None = None) -> dict[str, Any]:
    """pty-chi LSQML (known probe, one thread) on the test scan's patterns, scored like the
    PINN over the same region after every epoch: the final scores, ssim_by_epoch /
    wall_by_epoch of the ``carrier`` channel ("amp" | "phase"), time_to_ssim, best_ssim and
    best_epoch; {"available": False, "note"} without the baseline extra.
    images: when given, gets "LSQML": the object over ``crop``."""
    from ptycho import baseline

    if not baseline.available():
        return {"available": False, "note": baseline.install_hint()}

    from ptycho.canonical_write import per_position_scan
    from ptycho.metrics import evaluate

    scores: list[dict[str, float | None]] = []

    def on_epoch(_epoch: int, obj: Any) -> None:
        scores.append(evaluate(obj, test.obj, crop))

    patterns, positions = per_position_scan(test)  # network units: sqrt(counts) / scale
    result = baseline.reconstruct_iterative(patterns * test.intensity_scale, positions, test.probe,
                                            engine="lsqml", epochs=epochs,
                                            object_shape=test.obj.shape, threads=1,
                                            on_epoch=on_epoch)
    if images is not None:
        images["LSQML"] = result.obj[crop]
    ssims = [_round(s[f"{carrier}_ssim"]) for s in scores]
    walls = [round(e.wall_s, 2) for e in result.epochs]
    return {"available": True, "epochs": epochs, "wall_s": round(result.wall_s, 2),
            "ssim_by_epoch": ssims, "wall_by_epoch": walls,
            "time_to_ssim": {t: time_to(ssims, walls, float(t))
                             for t in (*THRESHOLDS, *REFINE_THRESHOLDS[1:])},
            **best_of(ssims), **{k: _round(v) for k, v in scores[-1].items()}}


def refine_scores(start: Any, test: Any, crop: tuple[slice, slice], carrier: str,
                  args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """``ptycho.refine`` from ``start`` on the test scan (known probe and positions), the
    carrier SSIM after every step: ssim_by_step, wall_by_step (optimisation only), time_to_ssim
    ({"0.9", "0.95"}), final (every score of the object kept), loss_first/last; and that
    object (H, W) complex64."""
    from ptycho.metrics import evaluate
    from ptycho.refine import refine_data

    config = refine_config(args)
    ssims: list[float | None] = []
    walls: list[float] = []

    def on_step(step: int, wall: float, obj: Any) -> None:
        ssims.append(_round(evaluate(obj, test.obj, crop)[f"{carrier}_ssim"]))
        walls.append(round(wall, 3))

    result = refine_data(start, test, config, on_step=on_step)
    return {**config.to_dict(), "ssim_by_step": ssims, "wall_by_step": walls,
            "time_to_ssim": {t: time_to(ssims, walls, float(t)) for t in REFINE_THRESHOLDS},
            "best_step": result.best_step, "steps_taken": len(result.losses) - 1,
            "trace_s": round(result.trace_s, 3), "loss_first": result.losses[0],
            "loss_last": result.losses[-1],
            "final": {k: _round(v) for k, v in evaluate(result.obj, test.obj, crop).items()}}, \
        result.obj


def refine_config(args: argparse.Namespace) -> Any:
    """The ``ptycho.refine.RefineConfig`` of --refine-steps/--refine-lr/--refine-loss."""
    from ptycho.refine import RefineConfig

    return RefineConfig(steps=args.refine_steps, learning_rate=args.refine_lr, loss=args.refine_loss,
                        holdout=args.refine_holdout)


def refined_arms(recon: Any, test: Any, crop: tuple[slice, slice], carrier: str,
                 args: argparse.Namespace, images: dict[str, Any] | None = None) -> dict[str, Any]:
    """"PINN + refinement" (``refine_scores`` from the PINN's stitched test object) and its
    control, the same refinement from a flat object (the solver alone); {"steps": 0} when
    --refine-steps is 0. images: when given, gets "PINN + refinement" over ``crop``."""
    if not args.refine_steps:
        return {"steps": 0}
    from ptycho.refine import flat_start

    pinn_start, refined = refine_scores(recon, test, crop, carrier, args)
    if images is not None:
        images["PINN + refinement"] = refined[crop]
    return {"pinn_start": pinn_start,
            "flat_start": refine_scores(flat_start(recon.shape), test, crop, carrier, args)[0]}


def selfsup_arm(res: Any, carrier: str, args: argparse.Namespace,
                images: dict[str, Any] | None = None) -> dict[str, Any]:
    """"PINN self-supervised on the scan" (``dose_study.recipe.self_supervise``): the trained
    model goes on training, without ground truth, on the test scan's own patterns for
    --selfsup-epochs epochs; per epoch the carrier SSIM and training seconds, time_to_ssim
    {"0.9", "0.95"}, final scores. {"epochs": 0} when --selfsup-epochs is 0. It trains
    ``res.model`` in place, so it runs after every arm that reads the model. images: when
    given, gets "PINN self-supervised" over the crop."""
    if not args.selfsup_epochs:
        return {"epochs": 0}
    from dose_study.recipe import self_supervise

    epochs, recon = self_supervise(res, args.selfsup_epochs, args.selfsup_lr)
    ssims = [_round(e.scores[f"{carrier}_ssim"]) for e in epochs]
    walls = [round(w, 2) for w in itertools.accumulate(e.train_s for e in epochs)]
    if images is not None:
        images["PINN self-supervised"] = recon[res.crop]
    return {"epochs": args.selfsup_epochs, "learning_rate": args.selfsup_lr,
            "ssim_by_epoch": ssims, "wall_by_epoch": walls,
            "time_to_ssim": {t: time_to(ssims, walls, float(t)) for t in REFINE_THRESHOLDS},
            "final": {k: _round(v) for k, v in epochs[-1].scores.items()}}


def lsqml_only(args: argparse.Namespace, name: str, nphotons: float) -> dict[str, Any]:
    """LSQML alone on the test scan ``run_one`` would score (same object, dose and seeds)."""
    from dose_study.recipe import simulate
    from ptycho.metrics import scanned_region

    study = study_config(args, name)
    test = simulate(study, nphotons, study.test_seed, study.n_test_images, "test")
    crop = scanned_region(test.coords, test.obj.shape)
    return {"object": name, "carrier": carrier_of(name), "nphotons": nphotons,
            "n_test_images": study.n_test_images, "N": study.N,
            "lsqml": lsqml_scores(test, crop, args.lsqml_epochs, carrier_of(name))}


def study_config(args: argparse.Namespace, name: str, seed: int = 0,
                 positions: str = "dense") -> Any:
    """The study's ``StudyConfig`` (--quick or full sizes; with --quick the training sizes of
    ``QUICK_SIZES``; --n-images, --nepochs, --batch-size, --filters-scale override) for object
    ``name``,
    simulation/training seed ``seed`` (test scan: seed + TEST_SEED_OFFSET) and scan density
    ``positions`` (a key of ``dose_study.arms.SCAN_DENSITIES``)."""
    from dose_study.arms import make_config

    sizes = {"n_images": args.n_images, "nepochs": args.nepochs, "batch_size": args.batch_size}
    if args.quick:
        sizes = {key: QUICK_SIZES[key] if value is None else value for key, value in sizes.items()}
    return dataclasses.replace(make_config(args.quick, seed=seed, positions=positions,
                                           learning_rate=args.learning_rate,
                                           lr_schedule=args.lr_schedule,
                                           n_filters_scale=args.filters_scale, **sizes),
                               object_type=name)


def network_only_scores(res: Any) -> dict[str, float | None]:
    """The final scores without the per-pattern slope fit (``reconstruct(fit_slopes=False)``):
    the network's patches, phase-aligned only."""
    from ptycho.inference import reconstruct
    from ptycho.metrics import evaluate

    obj = reconstruct(res.model, res.test, fit_slopes=False)
    return {k: _round(v) for k, v in evaluate(obj, res.test.obj, res.crop).items()}


def run_one(args: argparse.Namespace, name: str, nphotons: float, seed: int = 0,
            positions: str = "dense") -> tuple[dict[str, Any], Any]:
    from dose_study.recipe import EpochScore, run_recipe

    study = study_config(args, name, seed, positions)
    carrier = carrier_of(name)
    ssims: list[float | None] = []
    psnrs: list[float | None] = []
    walls: list[float] = []
    epoch_s: list[float] = []

    def on_epoch(score: EpochScore) -> None:
        epoch_s.append(score.train_s)
        ssims.append(_round(score.scores[f"{carrier}_ssim"]))
        psnrs.append(_round(score.scores[f"{carrier}_psnr"], 3))
        walls.append(round(sum(epoch_s), 2))
        print(f"{name} {nphotons:.0e} {positions} s{seed} epoch {score.epoch}: {carrier} SSIM "
              f"{ssims[-1]} PSNR {psnrs[-1]} dB, {walls[-1]:.1f} s", file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    res = run_recipe(study, nphotons, args.loss, on_epoch=on_epoch)
    images = {"truth": res.test.obj[res.crop], "PINN": res.recon[res.crop]}
    groups = (study.n_images // study.batch_size) * study.batch_size
    out = {
        "object": name, "carrier": carrier,
        "config": {"N": study.N, "gridsize": study.gridsize, "batch_size": study.batch_size,
                   "n_images": study.n_images, "n_test_images": study.n_test_images,
                   "nepochs": study.nepochs, "loss": args.loss, "nphotons": nphotons,
                   "learning_rate": study.learning_rate, "lr_schedule": study.lr_schedule,
                   "n_filters_scale": study.n_filters_scale, "quick": args.quick,
                   "seed": study.seed, "test_seed": study.test_seed, "positions": positions,
                   "scan_spacing_px": study.scan_spacing()},
        "ssim_by_epoch": ssims, "psnr_by_epoch": psnrs, "wall_by_epoch": walls,
        "time_to_ssim": {t: time_to(ssims, walls, float(t)) for t in THRESHOLDS},
        **best_of(ssims),
        "baseline_ssim": _round(res.constant_scores[f"{carrier}_ssim"]),
        "final": {k: _round(v) for k, v in res.scores.items()},
        "slope_fit": res.slopes,
        "network_only": network_only_scores(res),
        "constant": {k: _round(v) for k, v in res.constant_scores.items()},
        "lsqml": lsqml_scores(res.test, res.crop, args.lsqml_epochs, carrier, images),
        "refined": refined_arms(res.recon, res.test, res.crop, carrier, args, images),
        "selfsup": selfsup_arm(res, carrier, args, images),  # trains res.model: after the others
        "params": int(res.model.count_params()),
        "path": res.model.execution.name, "device": res.model.execution.device,
        "cpu": cpu_name(),
        "train_groups_per_s": round(groups / statistics.median(epoch_s), 1),
        "load_avg": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
    return out, images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags; ``--seeds`` / ``--positions`` become tuples (ints, SCAN_DENSITIES keys),
    ``--object`` a list of names and ``doses`` a list of floats. Exits (status 2) naming the
    bad value."""
    from dose_study.arms import SCAN_DENSITIES
    from dose_study.curve import parse_names, parse_seeds
    from ptycho.bench_objects import BENCH_OBJECTS
    from ptycho.config import LR_SCHEDULES
    from ptycho.refine import LOSSES, RefineConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the study's --quick model (N=32), trained at QUICK_SIZES")
    parser.add_argument("--object", default=STUDY_OBJECT,
                        help="object type, comma list, or 'all' (lines + every bench object)")
    parser.add_argument("--doses", default="1e9", help="comma list of photons per pattern")
    parser.add_argument("--nphotons", type=float, default=None, help="one dose (overrides --doses)")
    parser.add_argument("--seeds", default="0",
                        help="comma list of simulation/training seeds (test scan: seed + 1000)")
    parser.add_argument("--positions", default="dense",
                        help=f"comma list of scan densities: {', '.join(SCAN_DENSITIES)}")
    parser.add_argument("--nepochs", type=int, default=None)
    parser.add_argument("--n-images", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="training groups per step (default: the study preset's)")
    parser.add_argument("--filters-scale", type=int, default=None,
                        help="CNN width multiplier (default: the study preset's)")
    parser.add_argument("--loss", choices=("nll", "mae"), default="nll")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="peak learning rate (default: the study preset's)")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None,
                        help="learning rate over the run (default: the study preset's)")
    parser.add_argument("--lsqml-epochs", type=int, default=LSQML_EPOCHS,
                        help=f"LSQML epochs (default {LSQML_EPOCHS}: enough to converge on every "
                             "bench object, docs/findings.md BASELINE-EPOCHS-001)")
    parser.add_argument("--refine-steps", type=int, default=RefineConfig.steps,
                        help="ptycho.refine steps on the test scan from the PINN's object "
                             "('PINN + refinement') and from a flat one (the solver alone); "
                             f"0: neither (default {RefineConfig.steps})")
    parser.add_argument("--refine-lr", type=float, default=RefineConfig.learning_rate,
                        help="refinement step size")
    parser.add_argument("--refine-loss", choices=LOSSES, default=RefineConfig.loss,
                        help=f"refinement misfit (default {RefineConfig.loss})")
    parser.add_argument("--refine-holdout", type=float, default=RefineConfig.holdout,
                        help="fraction of the patterns held out to stop the refinement "
                             f"(default {RefineConfig.holdout:g})")
    parser.add_argument("--selfsup-epochs", type=int, default=SELFSUP_EPOCHS,
                        help="then train the PINN on the test scan's own patterns, no ground "
                             "truth ('PINN self-supervised on the scan'), this many epochs; 0: "
                             f"not (default {SELFSUP_EPOCHS})")
    parser.add_argument("--selfsup-lr", type=float, default=SELFSUP_LR,
                        help=f"its peak learning rate, cosine decay (default {SELFSUP_LR:g})")
    parser.add_argument("--figure", type=Path, default=None, help="PNG of the reconstructions")
    parser.add_argument("--lsqml-only", action="store_true",
                        help="only pty-chi LSQML on each test scan (no PINN training)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the JSON here (atomically; with several seeds or "
                             "densities rewritten after every run)")
    parser.add_argument("--resume", action="store_true",
                        help="with several seeds or densities: keep the runs already in --out "
                             "and run only the missing ones")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="with several seeds or densities: the verdict table (markdown)")
    args = parser.parse_args(argv)
    known = (STUDY_OBJECT, *BENCH_OBJECTS)
    try:
        args.object = list(known) if args.object == "all" else list(
            parse_names(args.object, "--object", known))
        args.doses = [args.nphotons] if args.nphotons is not None else [
            _dose(d) for d in args.doses.split(",")]
        args.seeds = parse_seeds(args.seeds)
        args.positions = parse_names(args.positions, "--positions", tuple(SCAN_DENSITIES))
        refine_config(args)
        if args.selfsup_epochs < 0:
            raise ValueError(f"--selfsup-epochs must be >= 0, got {args.selfsup_epochs}")
        if not 0 < args.selfsup_lr < float("inf"):
            raise ValueError(f"--selfsup-lr must be finite and > 0, got {args.selfsup_lr:g}")
    except ValueError as exc:
        parser.error(str(exc))
    args.verdicts = args.seeds != (0,) or args.positions != ("dense",)
    if args.verdicts and (args.lsqml_only or args.figure is not None):
        parser.error("--lsqml-only and --figure take the default --seeds 0 --positions dense")
    if args.resume and (not args.verdicts or args.out is None):
        parser.error("--resume needs --out and several --seeds or --positions")
    if args.markdown is not None and not args.verdicts:
        parser.error("--markdown needs several --seeds or --positions (the verdict table)")
    return args


def _dose(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--doses: {text!r} is not a number (e.g. --doses 1e9,1e4)") from None


def dose_label(nphotons: float) -> str:
    """``1e4`` for 1e4 (the key of a dose in the JSON)."""
    return f"{nphotons:.0e}".replace("e+0", "e")


def run_verdicts(args: argparse.Namespace) -> dict[str, Any]:
    """Every object × dose × scan density × seed: ``run_one`` (PINN and LSQML), aggregated per
    (object, dose, density) by ``quality_seeds.aggregate``; --out / --markdown are rewritten
    after every run (the incomplete group aggregates the seeds done so far)."""
    import quality_seeds

    from ptycho.fsutil import atomic_write_json, atomic_write_text

    runs: dict[str, dict[str, dict[str, dict[int, Any]]]] = {}
    argv_history: list[list[str]] = []
    if args.resume and args.out.exists():
        runs, argv_history = resumed_runs(args.out)
    summary: dict[str, Any] = {}
    load = [round(v, 2) for v in os.getloadavg()]
    for name in args.object:
        for dose in args.doses:
            for positions in args.positions:
                for seed in args.seeds:
                    if seed in runs.get(name, {}).get(dose_label(dose), {}).get(positions, {}):
                        continue
                    out, _ = run_one(args, name, dose, seed, positions)
                    group = runs.setdefault(name, {}).setdefault(dose_label(dose), {})
                    group.setdefault(positions, {})[seed] = out
                    verdicts = {n: {d: {p: quality_seeds.aggregate(by_seed)
                                        for p, by_seed in per_pos.items()}
                                    for d, per_pos in per_dose.items()}
                                for n, per_dose in runs.items()}
                    summary = {"kind": "bench_quality_verdicts", "margin": quality_seeds.MARGIN,
                               "verdicts": verdicts, "runs": runs, "cpu": cpu_name(),
                               "argv": sys.argv[1:],
                               "argv_history": [*argv_history, sys.argv[1:]],
                               "load_avg": {"start": load,
                                            "now": [round(v, 2) for v in os.getloadavg()]}}
                    if args.out is not None:
                        atomic_write_json(args.out, summary)
                    if args.markdown is not None:
                        atomic_write_text(args.markdown, quality_seeds.render_markdown(
                            verdicts, markdown_header(summary)))
    return summary


def resumed_runs(path: Path) -> tuple[dict[str, Any], list[list[str]]]:
    """The runs ({object: {dose: {positions: {seed: run}}}}, seeds as ints) and the earlier
    command lines of a verdicts JSON written by ``run_verdicts``; ValueError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        runs = {n: {d: {p: {int(s): r for s, r in by_seed.items()} for p, by_seed in pp.items()}
                    for d, pp in pd.items()} for n, pd in data["runs"].items()}
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"--resume: {path} is not a bench_quality verdicts JSON: {exc}") from exc
    return runs, data.get("argv_history", [data.get("argv", [])])


def markdown_header(summary: dict[str, Any]) -> list[str]:
    """The lines above the verdict table: command, CPU, load, what the columns mean."""
    return ["# bench_quality: PINN vs LSQML over seeds", "",
            "; ".join(f"`python benchmarks/bench_quality.py {' '.join(a)}`"
                      for a in summary["argv_history"]) + " on "
            f"{summary['cpu']}; load average (1/5/15 min) {summary['load_avg']['start']} at the "
            f"start, {summary['load_avg']['now']} at the last run.", "",
            "Carrier SSIM of the held-out test scan, mean ± sample std over the seeds; "
            "PINN − LSQML: the per-seed differences. Verdict: pinn_ahead / lsqml_ahead when the "
            f"mean difference is >= {summary['margin']} / <= −{summary['margin']} in every "
            "channel the object carries, else tie (channels of a constant truth are left out)."]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.verdicts:
        summary = run_verdicts(args)
        print(json.dumps(summary))
        return 0
    import quality_figure

    names, doses = args.object, args.doses
    results: dict[str, dict[str, Any]] = {}
    panels: dict[str, dict[str, Any]] = {}
    for name in names:
        for dose in doses:
            label = dose_label(dose)
            if args.lsqml_only:
                results.setdefault(name, {})[label] = lsqml_only(args, name, dose)
                continue
            out, images = run_one(args, name, dose)
            results.setdefault(name, {})[label] = out
            panels.setdefault(name, {})[label] = quality_figure.figure_panel(out, images)
    if args.figure is not None and not args.lsqml_only:
        quality_figure.draw_figure(panels, args.figure, f"bench_quality {' '.join(sys.argv[1:])} — {cpu_name()}")
    if len(names) == 1 and len(doses) == 1:
        result = next(iter(next(iter(results.values())).values()))
    else:
        result = {"objects": results, "cpu": cpu_name(), "argv": sys.argv[1:]}
    if args.out is not None:
        from ptycho.fsutil import atomic_write_json

        atomic_write_json(args.out, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
