"""PINN against the iterative solvers on one scan, one thread count: prints ONE JSON object.

1. ``tests/fixtures/canonical/make_canonical.py`` (independent numpy writer: phase-carrying
   lines, its own probe) writes a training file and a test file of the same object (a central
   sub-scan at the same density, other positions and noise), at ``--nphotons``.
2. The PINN (this repo's model, NLL loss) trains on the training file for ``--nepochs``; after
   every epoch the model reconstructs the test file and is scored (amplitude and phase SSIM,
   ``ptycho.metrics.evaluate`` over the scanned region): wall time of training so far (scoring
   excluded) against SSIM. PINN inference on the test file is timed on its own.
3. pty-chi (``ptycho.baseline``, known probe) reconstructs the test file with each engine,
   scored after every epoch (scoring excluded from the wall time).

Torch and TensorFlow both get ``--threads`` threads. JSON: ``pinn.train_curve`` and
``iterative.<engine>.curve`` lists of {epoch, wall_s, amp_ssim, phase_ssim}, ``pinn.infer_s``,
settings, CPU count and load. ``--figure PATH`` also draws amplitude SSIM against wall time.
Needs the ``[baseline]`` extra. Usage::

    python benchmarks/bench_vs_iterative.py [--quick] [--figure out.png] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WRITER = ROOT / "tests" / "fixtures" / "canonical" / "make_canonical.py"


def _scores(obj: Any, truth: Any, crop: Any) -> dict[str, float]:
    from ptycho.metrics import evaluate

    scores = evaluate(obj, truth, crop)
    return {"amp_ssim": round(scores["amp_ssim"], 4), "phase_ssim": round(scores["phase_ssim"], 4)}


def _pinn(args: argparse.Namespace, train_path: Path, test_path: Path) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from ptycho.config import TrainConfig
    from ptycho.inference import reconstruct, scanned_region
    from ptycho.io import GroupingOptions, load_data
    from ptycho.model import build_model, model_config_for
    from ptycho.train import train

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    data = load_data(train_path, GroupingOptions(gridsize=2, seed=0))
    test = load_data(test_path, GroupingOptions(gridsize=2, seed=0))
    crop = scanned_region(test.coords, test.obj.shape)
    model = build_model(model_config_for(data), probe=data.probe, seed=0)
    curve: list[dict[str, Any]] = []

    class Score(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.start = time.perf_counter()
            self.scoring = 0.0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            wall = time.perf_counter() - self.start - self.scoring
            tick = time.perf_counter()
            obj = reconstruct(model, test)
            curve.append({"epoch": epoch + 1, "wall_s": round(wall, 2), **_scores(obj, test.obj, crop)})
            self.scoring += time.perf_counter() - tick
            print(json.dumps({"pinn": curve[-1]}), file=sys.stderr, flush=True)

    train(model, data, TrainConfig(nepochs=args.nepochs, batch_size=16, seed=0), callbacks=(Score(),))
    start = time.perf_counter()
    obj = reconstruct(model, test)
    infer_s = time.perf_counter() - start
    return {"train_curve": curve, "infer_s": round(infer_s, 2), "final": _scores(obj, test.obj, crop),
            "train_groups": int(data.n_groups), "test_groups": int(test.n_groups),
            "path": model.execution.name}


def _iterative(args: argparse.Namespace, test_path: Path) -> dict[str, Any]:
    import numpy as np

    from ptycho.baseline import reconstruct_iterative
    from ptycho.io import GroupingOptions, load_data
    from ptycho.metrics import scanned_region

    test = load_data(test_path, GroupingOptions(gridsize=1))
    positions = np.stack([test.xcoords, test.ycoords], axis=1)
    crop = scanned_region(positions, test.obj.shape)
    out: dict[str, Any] = {}
    for engine, epochs in (("lsqml", args.lsqml_epochs), ("epie", args.epie_epochs), ("dm", args.dm_epochs)):
        if epochs <= 0:
            continue
        result = reconstruct_iterative(
            test.per_position * np.float32(test.intensity_scale), positions, test.probe,
            engine=engine, epochs=epochs, object_shape=test.obj.shape, threads=args.threads,
            on_epoch=lambda epoch, obj: _scores(obj, test.obj, crop))
        curve = [{"epoch": e.epoch, "wall_s": round(e.wall_s, 2), **e.scores} for e in result.epochs]
        out[engine] = {"curve": curve, "wall_s": round(result.wall_s, 2), "final": curve[-1]}
        print(json.dumps({engine: curve[-1]}), file=sys.stderr, flush=True)
    return out


def _figure(result: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    for col, key in enumerate(("amp_ssim", "phase_ssim")):
        ax = fig.add_subplot(1, 2, col + 1)
        curve = result["pinn"]["train_curve"]
        ax.plot([c["wall_s"] for c in curve], [c[key] for c in curve], "o-", label="PINN training")
        for engine, res in result["iterative"].items():
            ax.plot([c["wall_s"] for c in res["curve"]], [c[key] for c in res["curve"]], ".-",
                    label=f"pty-chi {engine}")
        ax.set_xscale("log")
        ax.set_xlabel(f"wall time (s), {result['threads']} thread(s)")
        ax.set_ylabel(key.replace("_", " ").replace("amp", "amplitude"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"test scan {result['test_positions']} positions at {result['nphotons']:.0e} photons; "
                 f"PINN inference {result['pinn']['infer_s']} s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--N", type=int, default=32)
    parser.add_argument("--size", type=int, default=200, help="object side (px)")
    parser.add_argument("--train-positions", type=int, default=1000)
    parser.add_argument("--test-positions", type=int, default=256)
    parser.add_argument("--nphotons", type=float, default=1e9)
    parser.add_argument("--nepochs", type=int, default=8, help="PINN epochs")
    parser.add_argument("--lsqml-epochs", type=int, default=40)
    parser.add_argument("--epie-epochs", type=int, default=20)
    parser.add_argument("--dm-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="300/64 positions, 2 PINN epochs, 3 per engine")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.train_positions, args.test_positions, args.nepochs = 300, 64, 2
        args.lsqml_epochs = args.epie_epochs = args.dm_epochs = 3
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import importlib.util
    import tempfile

    spec = importlib.util.spec_from_file_location("make_canonical", WRITER)
    assert spec is not None and spec.loader is not None, WRITER
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)  # the independent writer, loaded by path (no sys.path edit)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-vs-iterative-"))
    frac = min(1.0, (args.test_positions / args.train_positions) ** 0.5)
    region = (0.5 - frac / 2, 0.5 + frac / 2)
    train_path, test_path = work / "train.npz", work / "test.npz"
    writer.write(train_path, writer.make_dataset(args.train_positions, n=args.N, size=args.size,
                                                 nphotons=args.nphotons, seed=1))
    writer.write(test_path, writer.make_dataset(args.test_positions, n=args.N, size=args.size,
                                                nphotons=args.nphotons, seed=2, region=region))
    start = time.perf_counter()
    result: dict[str, Any] = {
        "N": args.N, "size": args.size, "train_positions": args.train_positions,
        "test_positions": args.test_positions, "nphotons": args.nphotons, "threads": args.threads,
        "iterative": _iterative(args, test_path), "pinn": _pinn(args, train_path, test_path),
    }
    result.update({"total_s": round(time.perf_counter() - start, 1), "cpu_count": os.cpu_count(),
                   "cpu": platform.processor() or platform.machine(),
                   "load_avg": [round(v, 2) for v in os.getloadavg()], "workdir": str(work)})
    if args.figure is not None:
        _figure(result, args.figure)
        result["figure"] = str(args.figure)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
