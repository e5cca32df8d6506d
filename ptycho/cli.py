"""Command line: ``python -m ptycho {simulate,train,infer}`` on NPZ (or HDF5) data sets.

    simulate --output data.npz [--N 64 --gridsize 2 --nphotons 1e9 --n-images 2000 ...]
    train    --data train.npz --output-dir DIR [--nepochs 50 --batch-size 16 --loss nll ...]
             → DIR/wts.h5.zip, DIR/history.csv (one progress line per epoch on stderr)
    infer    --model DIR/wts.h5.zip --data test.npz --output-dir DIR
             → DIR/recon.npz, DIR/recon.png, DIR/metrics.json

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

__all__ = ["main", "build_parser"]

log = logging.getLogger(__name__)


def _flag(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    parser.add_argument(f"--{name}", default=None, action=argparse.BooleanOptionalAction,
                        help=help_text + " (default: fastest for the device)")


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
    sim.add_argument("--probe-defocus", type=float, help="pupil-edge defocus phase (rad)")
    sim.add_argument("--object-size", type=int)
    sim.add_argument("--seed", type=int)

    tr = sub.add_parser("train", help="train a model on a data set")
    tr.add_argument("--data", required=True, type=Path)
    tr.add_argument("--output-dir", required=True, type=Path)
    tr.add_argument("--nepochs", type=int, default=50)
    tr.add_argument("--batch-size", type=int, default=16)
    tr.add_argument("--learning-rate", type=float, default=1e-3)
    tr.add_argument("--loss", choices=("nll", "mae"), default="nll")
    tr.add_argument("--n-filters-scale", type=int, default=None)
    tr.add_argument("--seed", type=int, default=0)
    _flag(tr, "jit-compile", "whole-step XLA compilation")
    _flag(tr, "mixed-precision", "bfloat16 CNN")

    inf = sub.add_parser("infer", help="reconstruct an object with a trained model")
    inf.add_argument("--model", required=True, type=Path, help="wts.h5.zip archive")
    inf.add_argument("--data", required=True, type=Path)
    inf.add_argument("--output-dir", required=True, type=Path)
    inf.add_argument("--batch-size", type=int, default=64)

    for p in (sim, tr, inf):
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
    save_data(args.output, data)
    return {"output": str(args.output), "groups": data.n_groups, "config": cfg.to_dict(),
            "intensity_scale": data.intensity_scale}


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from ptycho.config import TrainConfig
    from ptycho.io import load_data, save_model
    from ptycho.model import build_model, model_config_for
    from ptycho.train import train

    data = load_data(args.data)
    overrides: dict[str, Any] = {"loss": args.loss, "jit_compile": args.jit_compile,
                                 "mixed_precision": args.mixed_precision}
    if args.n_filters_scale is not None:
        overrides["n_filters_scale"] = args.n_filters_scale
    cfg = model_config_for(data, **overrides)
    train_cfg = TrainConfig(nepochs=args.nepochs, batch_size=args.batch_size,
                            learning_rate=args.learning_rate, seed=args.seed)
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
            "params": int(model.count_params()), "path": model.execution.name}


def _infer(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from ptycho.fsutil import atomic_path, atomic_write_text
    from ptycho.inference import reconstruct, scanned_region
    from ptycho.io import load_data, load_model
    from ptycho.metrics import evaluate
    from ptycho.plots import save_comparison_png, save_object_png

    model, cfg, meta = load_model(args.model)
    data = load_data(args.data)
    start = time.perf_counter()
    obj = reconstruct(model, data, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    rows, cols = scanned_region(data.coords, obj.shape)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "recon.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, object=obj, crop=np.array([rows.start, rows.stop, cols.start, cols.stop]))
    summary: dict[str, Any] = {"recon": str(out / "recon.npz"), "png": str(out / "recon.png"),
                               "infer_seconds": round(seconds, 3), "shape": list(obj.shape)}
    metrics: dict[str, Any] = {"model": str(args.model), "data": str(args.data),
                               "crop": [rows.start, rows.stop, cols.start, cols.stop],
                               "groups": int(data.n_groups), "infer_seconds": round(seconds, 3)}
    if data.obj is not None:
        scores = evaluate(obj, data.obj, (rows, cols))
        metrics.update(scores)
        save_comparison_png(obj[rows, cols], data.obj[rows, cols], out / "recon.png", scores,
                            title="reconstruction vs ground truth")
        summary.update({k: scores[k] for k in ("amp_psnr", "amp_ssim")})
    else:
        metrics["note"] = "no objectGuess in the data: no ground-truth metrics"
        save_object_png(obj[rows, cols], out / "recon.png", title="reconstruction")
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
    handlers = {"simulate": _simulate, "train": _train, "infer": _infer}
    try:
        summary = handlers[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        for key, value in summary.items():
            if key != "config":
                print(f"{key}: {value}")
    return 0
