"""Phase-error probe: where the phase of a phase object is lost between the network and the score.

Trains the quick-size model (N=32, 1024 groups, filters scale 1) on ``--object`` at 1e9 photons
and after every epoch predicts the patches of a held-out scan (another sample, seed + 1000), then
stitches them four ways and prints one JSON line per epoch with the phase SSIM of each:

    none      the patches as predicted (each with the constant phase the network chose)
    greedy    ``patch_phases.align_patch_phases`` (what ``reconstruct`` does)
    oracle    every patch turned by the constant that best matches its true patch: the most any
              per-patch constant alignment could give
    plane     greedy, then scored by ``metrics.evaluate`` (the phase plane removed)

and ``greedy_rms``: the RMS phase error (rad) of the greedy stitch after the global phase.
Used for docs/findings.md RESOLUTION-LOSS-001 section 6.

Usage: ``python scripts/diagnostics/phase_error.py [--object phase_blobs] [--nepochs 6]
[--no-align-phases] [--out rows.jsonl]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--object", default="phase_blobs")
    parser.add_argument("--nepochs", type=int, default=6)
    parser.add_argument("--no-align-phases", action="store_true",
                        help="train without the overlap constraint's group phase alignment")
    parser.add_argument("--out", type=Path, default=None, help="also append the rows here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np

    from ptycho.config import ModelConfig, SimConfig, TrainConfig
    from ptycho.inference import predict_patches
    from ptycho.metrics import align_global, evaluate, scanned_region, ssim
    from ptycho.model import build_model, model_probe
    from ptycho.patch_phases import align_patch_phases
    from ptycho.physics import simulate
    from ptycho.stitching import stitch_in_frame
    from ptycho.train import train

    def sim(seed: int, count: int) -> Any:
        return simulate(SimConfig(N=32, gridsize=2, nphotons=1e9, n_images=count, probe_defocus=2.0,
                                  object_type=args.object, seed=seed))

    data, test = sim(0, 1024), sim(1000, 512)
    crop = scanned_region(test.coords, test.obj.shape)
    truth = test.obj[crop]
    if evaluate(truth, truth)["phase_ssim"] is None:
        parser.error(f"--object {args.object} has no phase to probe (its phase is constant)")
    model = build_model(ModelConfig(N=32, gridsize=2, probe_defocus=2.0, n_filters_scale=1,
                                    intensity_scale=data.intensity_scale,
                                    align_phases=not args.no_align_phases), probe=data.probe)
    weights = np.abs(model_probe(model)) ** 2
    weights /= weights.max()

    def stitched(patches: np.ndarray) -> np.ndarray:
        return stitch_in_frame(patches, test.coords, test.obj.shape, weights)[crop]

    def phase_ssim(obj: np.ndarray) -> float:
        return round(ssim(np.angle(align_global(obj, truth)), np.angle(truth)), 4)

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            patches = predict_patches(model, test.diffraction)
            corr = np.sum(np.conj(patches) * test.object_patches * weights[None, :, :, None],
                          axis=(1, 2))
            oracle = patches * (corr / np.maximum(np.abs(corr), 1e-30))[:, None, None, :]
            greedy = stitched(align_patch_phases(patches, test.coords, weights))
            error = np.angle(align_global(greedy, truth) * np.conj(truth))
            row = {"epoch": epoch + 1, "loss": round(float((logs or {}).get("loss", np.nan)), 3),
                   "none": phase_ssim(stitched(patches)), "greedy": phase_ssim(greedy),
                   "oracle": phase_ssim(stitched(oracle)),
                   "plane": round(evaluate(greedy, truth)["phase_ssim"], 4),
                   "greedy_rms": round(float(np.sqrt(np.mean(error**2))), 4)}
            print(json.dumps(row), flush=True)
            if args.out is not None:
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")

    train(model, data, TrainConfig(nepochs=args.nepochs), callbacks=[Probe()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
