"""Command line: ``python -m ptycho {simulate,train,infer,reconstruct}`` on NPZ (or HDF5) data sets.

    simulate --output data.npz [--N 64 --gridsize 2 --nphotons 1e9 --n-images 2000 ...]
             [--format grouped|canonical]
    train    --data train.npz --output-dir DIR [--nepochs 50 --batch-size 16 --loss nll ...]
             [--init-model OLD/wts.h5.zip: fine-tune that model instead of a new one]
             → DIR/wts.h5.zip (with what it was trained on), DIR/history.csv (one progress
               line per epoch on stderr)
    infer    --model DIR/wts.h5.zip --data test.npz --output-dir DIR [--canonical-out F.npz]
             [--refine-steps K --refine-loss amplitude|poisson --refine-lr LR --refine-holdout F]
             → DIR/recon.npz, DIR/recon.png, DIR/metrics.json (trained_on_this_scan: whether
               the model saw this very file in training); with --refine-steps the
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
from typing import Any

from ptycho import xla_cache
from ptycho.cli_args import MODEL_FLAGS, build_parser
from ptycho.config import TrainConfig
from ptycho.refine import RefineConfig

__all__ = ["main", "build_parser"]

log = logging.getLogger(__name__)


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


def _load_for_archive(args: argparse.Namespace, cfg: Any, archive: str) -> Any:
    """``_load`` with a saved model's gridsize (``cfg``, from ``archive``, e.g. "--model
    PATH"); a --gridsize other than it is refused, naming both."""
    if args.gridsize is not None and args.gridsize != cfg.gridsize:
        raise ValueError(f"--gridsize {args.gridsize} differs from the gridsize {cfg.gridsize} "
                         f"of {archive}")
    return _load(args, cfg.gridsize)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from ptycho.finetune import check_fine_tune, training_record
    from ptycho.io import load_model, save_model
    from ptycho.model import build_model, model_config_for
    from ptycho.train import train

    overrides = {name: getattr(args, name) for name in MODEL_FLAGS
                 if getattr(args, name) is not None}
    train_cfg = TrainConfig(nepochs=args.nepochs, batch_size=args.batch_size,
                            learning_rate=args.learning_rate, seed=args.seed,
                            clipnorm=args.clipnorm or None, lr_schedule=args.lr_schedule,
                            lr_final_fraction=args.lr_final_fraction)
    init_meta = None
    if args.init_model is None:
        data = _load(args, args.gridsize if args.gridsize is not None else 2)
        cfg = model_config_for(data, **overrides)
        model = build_model(cfg, probe=data.probe, seed=args.seed)
    else:
        if overrides:
            flags = ", ".join("--" + name.replace("_", "-") for name in overrides)
            raise ValueError(f"--init-model {args.init_model}: {flags} come from the archive; "
                             "leave them out, or train a new model")
        model, cfg, init_meta = load_model(args.init_model)
        data = _load_for_archive(args, cfg, f"--init-model {args.init_model}")
        check_fine_tune(model, data, args.data, args.init_model)
        log.info("fine-tuning %s on %s", args.init_model, args.data)
    record = training_record(args.data, args.init_model, init_meta)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    history_csv = args.output_dir / "history.csv"
    start = time.perf_counter()
    history = train(model, data, train_cfg, history_csv=history_csv)
    seconds = time.perf_counter() - start
    archive = save_model(model, args.output_dir / "wts.h5.zip", cfg, data.intensity_scale,
                         training=record)
    (args.output_dir / "train_config.json").write_text(train_cfg.to_json(), encoding="utf-8")
    losses = history.history.get("loss", [])
    return {"model": str(archive),
            "init_model": None if args.init_model is None else str(args.init_model),
            "history": str(history_csv), "epochs": len(losses),
            "final_loss": losses[-1] if losses else None, "train_seconds": round(seconds, 2),
            "params": int(model.count_params()), "path": model.execution.name,
            "pad_object": cfg.pad_object,
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

    from ptycho.stitching import flat_positions

    shift = np.zeros(2)
    if data.obj is None:
        xy = flat_positions(data.coords)
        shift = np.maximum(0.0, np.ceil(n // 2 + 1 - xy.min(axis=0)))
        if shift.any():
            log.info("no objectGuess: scan shifted by (%g, %g) px onto the canvas", *shift)
            data = dataclasses.replace(
                data, coords=(data.coords + shift.reshape(1, 1, 2, 1)).astype(np.float32),
                xcoords=data.xcoords + shift[0], ycoords=data.ycoords + shift[1])
    return data, shift


def _infer(args: argparse.Namespace) -> dict[str, Any]:
    from ptycho.finetune import trained_on
    from ptycho.inference import reconstruct
    from ptycho.io import load_model

    refine = RefineConfig(steps=args.refine_steps, learning_rate=args.refine_lr,
                          loss=args.refine_loss, holdout=args.refine_holdout)
    model, cfg, meta = load_model(args.model)
    data, shift = _frame_shift(_load_for_archive(args, cfg, f"--model {args.model}"), cfg.N)
    start = time.perf_counter()
    slopes: list[dict[str, Any]] = []
    obj = reconstruct(model, data, batch_size=args.batch_size, fit_slopes=args.fit_slopes,
                      on_slopes=lambda choice: slopes.append(choice.to_dict()))
    extra: dict[str, Any] = {"model": str(args.model),
                             "infer_seconds": round(time.perf_counter() - start, 3),
                             "slope_fit": slopes[-1] if slopes else None,
                             "trained_on_this_scan": trained_on(meta, args.data)}
    if extra["trained_on_this_scan"]:
        log.info("%s was trained on %s itself (self-supervised, no ground truth): this is not "
                 "inference on an unseen scan", args.model, args.data)
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
    xla_cache.enable()  # PTYCHO_XLA_CACHE=on; before TensorFlow reads TF_XLA_FLAGS
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
