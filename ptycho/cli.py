"""Command line: ``python -m ptycho {simulate,train,infer,reconstruct}`` on NPZ (or HDF5) data sets.

    simulate --output data.npz [--N 64 --gridsize 2 --nphotons 1e9 --n-images 2000 ...]
             [--format grouped|canonical]
    train    --data train.npz --output-dir DIR [--nepochs 50 --batch-size 16 --loss nll ...]
             → DIR/wts.h5.zip, DIR/history.csv (one progress line per epoch on stderr)
    infer    --model DIR/wts.h5.zip --data test.npz --output-dir DIR [--canonical-out F.npz]
             [--refine-steps K --refine-loss amplitude|poisson --refine-lr LR --refine-holdout F]
             → DIR/recon.npz, DIR/recon.png, DIR/metrics.json; with --refine-steps the
               "PINN + refinement" object (ptycho.refine), the PINN's own scores beside it
    reconstruct --engine lsqml|epie|dm --data test.npz --epochs N --output-dir DIR [--threads 1]
             → the same outputs as infer, by pty-chi (the ``[baseline]`` extra: make baseline)

``--data`` takes this project's grouped files or PtychoPINN's canonical per-position files
(``diffraction``/``diff3d`` (n, H, W) amplitudes, xcoords, ycoords, probeGuess, optional
objectGuess), which are grouped from the scan coordinates: ``--gridsize`` (train; infer uses
the model's), ``--n-groups``, ``--neighbors``, ``--seed``; ``--nphotons`` sets the photon
count (default: from the file's metadata or the data); amplitude or intensity is decided from
the data (integer dtype, count quantisation; amplitudes assumed with a warning when nothing
decides) unless ``--intensity`` or ``--amplitude`` says which.

Exit codes: 0 ok · 1 bad input or a failed step (message names the file/value) · 2 usage.
Every command accepts ``--json`` to print a JSON summary instead of text.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptycho.config import ACTIVATIONS, INPUT_TRANSFORMS, LR_SCHEDULES, TrainConfig
from ptycho.refine import LOSSES, RefineConfig

__all__ = ["main", "build_parser"]

log = logging.getLogger(__name__)


def _flag(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    parser.add_argument(f"--{name}", default=None, action=argparse.BooleanOptionalAction,
                        help=help_text + " (default: fastest for the device)")


def _grouping_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("canonical (per-position) data")
    group.add_argument("--gridsize", type=int, default=None,
                       help="patterns per group side (train default 2; infer: the model's)")
    group.add_argument("--n-groups", type=int, default=None,
                       help="number of groups (default: one per scan position)")
    group.add_argument("--neighbors", type=int, default=None,
                       help="nearest positions a group is drawn from (default: those within the "
                            "probe's illumination radius, at least max(7, gridsize²))")
    group.add_argument("--nphotons", type=float, default=None,
                       help="mean photons per pattern (default: file metadata, else estimated "
                            "from the count quantisation, else 1e9)")
    _units_flags(group)


def _units_flags(group: Any) -> None:
    """--intensity / --amplitude → args.intensity True / False / None (decided from the data)."""
    units = group.add_mutually_exclusive_group()
    units.add_argument("--intensity", dest="intensity", action="store_const", const=True, default=None,
                       help="the file holds intensities (counts), not amplitudes")
    units.add_argument("--amplitude", dest="intensity", action="store_const", const=False,
                       help="the file holds amplitudes (sqrt of intensity); default: decided "
                            "from the data (integer dtype or count quantisation), else amplitudes "
                            "with a warning")


def _load(args: argparse.Namespace, gridsize: int) -> Any:
    """Load --data, grouping a canonical file with the command's grouping flags."""
    from ptycho.io import GroupingOptions, load_data

    options = GroupingOptions(gridsize=gridsize, n_groups=args.n_groups, neighbors=args.neighbors,
                              seed=args.seed, nphotons=args.nphotons, intensity=args.intensity)
    data = load_data(args.data, options)
    if data.source_format != "canonical":
        channels = data.diffraction.shape[-1]
        if args.gridsize is not None and args.gridsize ** 2 != channels:
            raise ValueError(f"{args.data}: grouped file has C={channels} patterns per group; "
                             f"--gridsize {args.gridsize} does not match")
        ignored = [f for f, v in (("--n-groups", args.n_groups), ("--neighbors", args.neighbors),
                                  ("--nphotons", args.nphotons),
                                  ("--intensity/--amplitude", args.intensity is not None)) if v]
        if ignored:
            log.warning("%s is already grouped: %s ignored", args.data, ", ".join(ignored))
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ptycho", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="simulate a data set and write it (NPZ/HDF5)")
    sim.add_argument("--output", required=True, type=Path, help="output .npz/.h5 path")
    sim.add_argument("--config", type=Path, help="SimConfig YAML/JSON (flags override it)")
    sim.add_argument("--N", type=int)
    sim.add_argument("--gridsize", type=int)
    sim.add_argument("--nphotons", type=float)
    sim.add_argument("--n-images", type=int)
    sim.add_argument("--object-type", choices=("lines", "random", "disk"))
    sim.add_argument("--probe-scale", type=float)
    sim.add_argument("--probe-defocus", type=float, help="probe defocus: quadratic phase at the disk edge (rad)")
    sim.add_argument("--object-size", type=int)
    sim.add_argument("--seed", type=int)
    sim.add_argument("--format", choices=("grouped", "canonical"), default="grouped",
                     help="grouped: this project's (B,N,N,C) layout; canonical: PtychoPINN's "
                          "per-position layout (no photon count in the arrays)")

    tr = sub.add_parser("train", help="train a model on a data set")
    tr.add_argument("--data", required=True, type=Path)
    tr.add_argument("--output-dir", required=True, type=Path)
    tr.add_argument("--nepochs", type=int, default=50)
    tr.add_argument("--batch-size", type=int, default=16)
    tr.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate,
                    help=f"Adam learning rate, the peak of the cosine (default "
                         f"{TrainConfig.learning_rate:g})")
    tr.add_argument("--loss", choices=("nll", "mae"), default="nll")
    tr.add_argument("--n-filters-scale", type=int, default=None)
    tr.add_argument("--activation", choices=ACTIVATIONS, default=None,
                    help="CNN hidden-layer activation (default leaky_relu)")
    tr.add_argument("--input-transform", choices=INPUT_TRANSFORMS, default=None,
                    help="what the CNN sees (default both: the amplitudes and their per-pixel "
                         "standardisation; linear: the model before RESOLUTION-LOSS-001)")
    tr.add_argument("--balance-counts", type=float, default=None,
                    help="ring balance of the NLL: pixels above this many mean counts are weighted "
                         "down to it (default 100; 0: the plain NLL)")
    tr.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=TrainConfig.lr_schedule,
                    help="learning rate over the run: constant, or a cosine decay from "
                         "--learning-rate to --lr-final-fraction of it "
                         f"(default {TrainConfig.lr_schedule})")
    tr.add_argument("--lr-final-fraction", type=float, default=TrainConfig.lr_final_fraction,
                    help=f"the cosine's last learning rate, a fraction of --learning-rate "
                         f"(default {TrainConfig.lr_final_fraction:g})")
    tr.add_argument("--clipnorm", type=float, default=1.0,
                    help="clip each step's global gradient norm to this (default 1; 0: off)")
    tr.add_argument("--seed", type=int, default=0, help="model init, shuffling and grouping seed")
    _grouping_flags(tr)
    _flag(tr, "jit-compile", "whole-step XLA compilation")
    _flag(tr, "mixed-precision", "bfloat16 CNN")

    inf = sub.add_parser("infer", help="reconstruct an object with a trained model")
    inf.add_argument("--model", required=True, type=Path, help="wts.h5.zip archive")
    inf.add_argument("--data", required=True, type=Path)
    inf.add_argument("--output-dir", required=True, type=Path)
    inf.add_argument("--batch-size", type=int, default=64)
    inf.add_argument("--seed", type=int, default=0, help="grouping seed (canonical data)")
    inf.add_argument("--canonical-out", type=Path, default=None,
                     help="also write the reconstruction as a canonical NPZ/HDF5 "
                          "(objectGuess = the stitched object)")
    inf.add_argument("--refine-steps", type=int, default=0,
                     help="then refine the stitched object by this many full-batch Adam steps "
                          "against the patterns, known probe and positions (ptycho.refine; "
                          "default 0: the PINN alone). The result is 'PINN + refinement', a "
                          "solver's result; metrics.json keeps the PINN alone's scores beside it")
    inf.add_argument("--refine-loss", choices=LOSSES, default=RefineConfig.loss,
                     help=f"refinement misfit (default {RefineConfig.loss})")
    inf.add_argument("--refine-lr", type=float, default=RefineConfig.learning_rate,
                     help=f"refinement Adam step size (default {RefineConfig.learning_rate:g})")
    inf.add_argument("--refine-holdout", type=float, default=RefineConfig.holdout,
                     help="fraction of the patterns left out of the refinement to stop it where "
                          "they are predicted best (default "
                          f"{RefineConfig.holdout:g}; 0: fit all, keep the last step)")
    _grouping_flags(inf)

    rec = sub.add_parser("reconstruct", help="iterative baseline reconstruction (pty-chi; needs "
                                             "the [baseline] extra: make baseline)")
    rec.add_argument("--engine", choices=("lsqml", "epie", "dm"), default="lsqml")
    rec.add_argument("--data", required=True, type=Path)
    rec.add_argument("--epochs", type=int, default=50)
    rec.add_argument("--output-dir", required=True, type=Path)
    rec.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    rec.add_argument("--seed", type=int, default=0, help="batch-order and grouping seed")
    rec.add_argument("--canonical-out", type=Path, default=None,
                     help="also write the reconstruction as a canonical NPZ/HDF5")
    _grouping_flags(rec)

    for p in (sim, tr, inf, rec):
        p.add_argument("--json", action="store_true", help="print a JSON summary")
    return parser


def _simulate(args: argparse.Namespace) -> dict[str, Any]:
    from ptycho.config import SimConfig
    from ptycho.io import save_data
    from ptycho.physics import simulate

    values: dict[str, Any] = {}
    if args.config is not None:
        text = args.config.read_text(encoding="utf-8")
        base = SimConfig.from_json(text) if args.config.suffix == ".json" else SimConfig.from_yaml(text)
        values = base.to_dict()
    for key in ("N", "gridsize", "nphotons", "n_images", "object_type", "probe_scale",
                "probe_defocus", "object_size", "seed"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    cfg = SimConfig.from_dict(values)
    data = simulate(cfg)
    summary: dict[str, Any] = {"output": str(args.output), "format": args.format,
                               "config": cfg.to_dict(), "intensity_scale": data.intensity_scale}
    if args.format == "canonical":
        from ptycho.canonical_write import from_simulation, save_canonical

        arrays = from_simulation(data)
        save_canonical(args.output, arrays)
        summary["positions"] = int(len(arrays["xcoords"]))
    else:
        save_data(args.output, data)
        summary["groups"] = data.n_groups
    return summary


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from ptycho.io import save_model
    from ptycho.model import build_model, model_config_for
    from ptycho.train import train

    data = _load(args, args.gridsize if args.gridsize is not None else 2)
    overrides: dict[str, Any] = {"loss": args.loss, "jit_compile": args.jit_compile,
                                 "mixed_precision": args.mixed_precision}
    for name in ("n_filters_scale", "activation", "input_transform", "balance_counts"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    cfg = model_config_for(data, **overrides)
    train_cfg = TrainConfig(nepochs=args.nepochs, batch_size=args.batch_size,
                            learning_rate=args.learning_rate, seed=args.seed,
                            clipnorm=args.clipnorm or None, lr_schedule=args.lr_schedule,
                            lr_final_fraction=args.lr_final_fraction)
    model = build_model(cfg, probe=data.probe, seed=args.seed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    history_csv = args.output_dir / "history.csv"
    start = time.perf_counter()
    history = train(model, data, train_cfg, history_csv=history_csv)
    seconds = time.perf_counter() - start
    archive = save_model(model, args.output_dir / "wts.h5.zip", cfg, data.intensity_scale)
    (args.output_dir / "train_config.json").write_text(train_cfg.to_json(), encoding="utf-8")
    losses = history.history.get("loss", [])
    return {"model": str(archive), "history": str(history_csv), "epochs": len(losses),
            "final_loss": losses[-1] if losses else None, "train_seconds": round(seconds, 2),
            "params": int(model.count_params()), "path": model.execution.name,
            "data": _data_summary(data)}


def _data_summary(data: Any) -> dict[str, Any]:
    return {"format": data.source_format, "groups": int(data.n_groups),
            "positions": int(len(data.xcoords)), "gridsize": int(round(data.diffraction.shape[-1] ** 0.5)),
            "nphotons": float(data.nphotons), "nphotons_source": data.nphotons_source,
            "intensity_scale": float(data.intensity_scale), "units": getattr(data, "units", None)}


def _frame_shift(data: Any, n: int) -> tuple[Any, Any]:
    """(data, shift): without objectGuess the scan is moved so that every patch lies on the
    canvas (shift (2,) float64 (x, y), zeros otherwise)."""
    import dataclasses

    import numpy as np

    shift = np.zeros(2)
    if data.obj is None:
        xy = np.moveaxis(np.asarray(data.coords, np.float64)[:, 0], 2, 1).reshape(-1, 2)
        shift = np.maximum(0.0, np.ceil(n // 2 + 1 - xy.min(axis=0)))
        if shift.any():
            log.info("no objectGuess: scan shifted by (%g, %g) px onto the canvas", *shift)
            data = dataclasses.replace(
                data, coords=(data.coords + shift.reshape(1, 1, 2, 1)).astype(np.float32),
                xcoords=data.xcoords + shift[0], ycoords=data.ycoords + shift[1])
    return data, shift


def _infer(args: argparse.Namespace) -> dict[str, Any]:
    from ptycho.inference import reconstruct
    from ptycho.io import load_model

    refine = RefineConfig(steps=args.refine_steps, learning_rate=args.refine_lr,
                          loss=args.refine_loss, holdout=args.refine_holdout)
    model, cfg, meta = load_model(args.model)
    if args.gridsize is not None and args.gridsize != cfg.gridsize:
        raise ValueError(f"--gridsize {args.gridsize} differs from the model's gridsize "
                         f"{cfg.gridsize} ({args.model})")
    data, shift = _frame_shift(_load(args, cfg.gridsize), cfg.N)
    start = time.perf_counter()
    obj = reconstruct(model, data, batch_size=args.batch_size)
    extra: dict[str, Any] = {"model": str(args.model),
                             "infer_seconds": round(time.perf_counter() - start, 3)}
    if not refine.steps:
        return _write_outputs(args, data, obj, shift, extra, "ptycho-harness infer")
    from ptycho.refine import refine_data

    result = refine_data(obj, data, refine)
    extra.update({"arm": "pinn+refinement", "pinn_alone": _pinn_alone_scores(data, obj),
                  "refine": {**refine.to_dict(), "seconds": round(result.wall_s, 3),
                             "best_step": result.best_step, "steps_taken": len(result.losses) - 1,
                             "trace_seconds": round(result.trace_s, 3), "scale": result.scale,
                             "loss_first": result.losses[0], "loss_last": result.losses[-1]}})
    return _write_outputs(args, data, result.obj, shift, extra,
                          "ptycho-harness infer + refinement", start_object=obj)


def _pinn_alone_scores(data: Any, obj: Any) -> dict[str, Any] | None:
    """Ground-truth scores of the PINN's own object (None without objectGuess)."""
    from ptycho.metrics import evaluate, scanned_region

    if data.obj is None:
        return None
    return evaluate(obj, data.obj, scanned_region(data.coords, obj.shape))


def _reconstruct(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from ptycho import baseline
    from ptycho.canonical_write import per_position_scan

    if not baseline.available():
        raise ValueError(f"reconstruct: {baseline.install_hint()}")
    data = _load(args, args.gridsize if args.gridsize is not None else 1)
    data, shift = _frame_shift(data, data.probe.shape[0])
    patterns, positions = per_position_scan(data)
    counts_amplitude = patterns * np.float32(data.intensity_scale)  # sqrt of (estimated) counts
    shape = None if data.obj is None else tuple(data.obj.shape)
    result = baseline.reconstruct_iterative(
        counts_amplitude, positions, data.probe, engine=args.engine, epochs=args.epochs,
        object_shape=shape, threads=args.threads, seed=args.seed)
    return _write_outputs(args, data, result.obj, shift, {
        "engine": args.engine, "epochs": args.epochs, "threads": args.threads,
        "reconstruct_seconds": round(result.wall_s, 3), "probe_scale": result.probe_scale,
        "final_loss": result.epochs[-1].loss}, f"pty-chi {args.engine} (ptycho-harness reconstruct)")


def _write_outputs(args: argparse.Namespace, data: Any, obj: Any, shift: Any,
                   extra: dict[str, Any], generator: str, start_object: Any = None) -> dict[str, Any]:
    """recon.npz, recon.png, metrics.json (+ --canonical-out) of a reconstruction, the same for
    ``infer`` and ``reconstruct``. obj (H, W) complex64 in the data's frame; extra: fields of
    metrics.json and the summary (timings, model or engine); start_object: the PINN's own
    object when obj is its refinement (kept in recon.npz as ``pinn_object``)."""
    import numpy as np

    from ptycho.canonical_write import canonical_arrays, per_position_patterns, save_canonical
    from ptycho.fsutil import atomic_path, atomic_write_text
    from ptycho.metrics import evaluate, scanned_region
    from ptycho.plots import save_comparison_png, save_object_png

    rows, cols = scanned_region(data.coords, obj.shape)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "recon.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, object=obj, crop=np.array([rows.start, rows.stop, cols.start, cols.stop]),
                 frame_shift=shift, **({} if start_object is None else {"pinn_object": start_object}))
    summary: dict[str, Any] = {"recon": str(out / "recon.npz"), "png": str(out / "recon.png"),
                               "shape": list(obj.shape), "data": _data_summary(data), **extra}
    metrics: dict[str, Any] = {"data": str(args.data),
                               "crop": [rows.start, rows.stop, cols.start, cols.stop],
                               "groups": int(data.n_groups), "frame_shift": shift.tolist(), **extra}
    if data.obj is not None:
        scores = evaluate(obj, data.obj, (rows, cols))
        metrics.update(scores)
        save_comparison_png(obj[rows, cols], data.obj[rows, cols], out / "recon.png", scores,
                            title=f"{generator.split(' (')[0]} vs ground truth")
        summary.update({k: scores[k] for k in ("amp_psnr", "amp_ssim", "phase_ssim")})
    else:
        metrics["note"] = "no objectGuess in the data: no ground-truth metrics"
        summary["note"] = metrics["note"]
        save_object_png(obj[rows, cols], out / "recon.png", title="reconstruction")
    if args.canonical_out is not None:
        used, patterns = per_position_patterns(data)
        arrays = canonical_arrays(
            patterns, data.xcoords[used], data.ycoords[used], data.probe, obj,
            {"generator": generator, "objectGuess": "reconstruction", "source": str(args.data),
             "frame_shift": shift.tolist(), **{k: v for k, v in extra.items() if k in ("model", "engine", "arm")},
             "amplitude_units": "network units (mean sum of squares per pattern (N/2)^2)"})
        save_canonical(args.canonical_out, arrays)
        summary["canonical_out"] = str(args.canonical_out)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    summary["metrics"] = str(out / "metrics.json")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handlers = {"simulate": _simulate, "train": _train, "infer": _infer, "reconstruct": _reconstruct}
    try:
        summary = handlers[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        for key, value in summary.items():
            if key != "config":
                print(f"{key}: {value}")
    return 0
