"""Patch-ramp probe: how much of a held-out object's phase error is each patch's linear phase.

Trains the quick-size model (N=32, ``--gridsize`` 2, filters scale 1, 1e9 photons;
``--n-images`` groups for ``--nepochs``) on ``--object``, predicts the patches of a held-out scan (another
sample, seed 1000) and prints one JSON object:

    aligned          phase / amplitude SSIM of the patches aligned as ``reconstruct`` aligns them
    oracle_constant  every patch turned by the constant that best matches its true patch
    oracle_ramp      every patch given the constant and linear phase that best match it
    truth_with_ramps the true patches given the network's ramp errors (and random constants),
                     aligned as ``reconstruct`` does: what those ramps alone cost
    ramp_error       per-patch slope (rad/px) of the phase the network misses, fitted with
                     |probe|² weights where |probe|² > 5 % of its peak: its RMS, and its
                     regression on the true patch's own phase slope and log-amplitude slope
                     (``on_phase_slope``, ``on_log_amp_slope``, ``explained`` fraction)

Used for docs/findings.md PATCH-RAMP-001. Usage: ``python scripts/diagnostics/patch_ramps.py
[--object mixed_blobs] [--nepochs 10] [--balance-counts 100] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

LIT = 0.05  # ramps are fitted where |probe|² exceeds this fraction of its peak


def plane_slopes(phase: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares slopes (x, y) of phase (B, N, N, C) over the lit pixels:
    (B, C, 2) rad per pixel."""
    n = phase.shape[1]
    u = np.arange(n, dtype=np.float64) - n // 2
    lit = weights > LIT * weights.max()
    design = np.stack([np.ones(lit.sum()), np.broadcast_to(u[None, :], (n, n))[lit],
                       np.broadcast_to(u[:, None], (n, n))[lit]], 1) * np.sqrt(weights[lit])[:, None]
    values = np.moveaxis(phase[:, lit, :], 1, 2) * np.sqrt(weights[lit])  # (B, C, pixels)
    coef = np.linalg.lstsq(design, values.reshape(-1, lit.sum()).T, rcond=None)[0]  # (3, B·C)
    return coef[1:].T.reshape(phase.shape[0], phase.shape[3], 2)


def ramp(slopes: np.ndarray, n: int) -> np.ndarray:
    """exp(i s·(u − N//2)) for slopes (B, C, 2): (B, N, N, C) complex128."""
    u = np.arange(n, dtype=np.float64) - n // 2
    return np.exp(1j * (slopes[:, None, None, :, 0] * u[None, None, :, None]
                        + slopes[:, None, None, :, 1] * u[None, :, None, None]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--object", default="mixed_blobs")
    parser.add_argument("--nepochs", type=int, default=10)
    parser.add_argument("--n-images", type=int, default=1024)
    parser.add_argument("--balance-counts", type=float, default=None,
                        help="the NLL's ring balance (ModelConfig default when omitted; 0 = plain)")
    parser.add_argument("--seed", type=int, default=0, help="training sample and network seed")
    parser.add_argument("--gridsize", type=int, default=2, help="patterns per group: gridsize²")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from ptycho.config import ModelConfig, SimConfig, TrainConfig
    from ptycho.inference import predict_patches
    from ptycho.metrics import evaluate, scanned_region
    from ptycho.model import build_model, model_probe
    from ptycho.patch_phases import align_patch_phases
    from ptycho.physics import simulate
    from ptycho.stitching import stitch_in_frame
    from ptycho.train import train

    def sim(seed: int, count: int) -> object:
        return simulate(SimConfig(N=32, gridsize=args.gridsize, nphotons=1e9, n_images=count, probe_defocus=2.0,
                                  object_type=args.object, seed=seed,
                                  neighbor_count=max(7, args.gridsize ** 2 + 3)))

    data, test = sim(args.seed, args.n_images), sim(1000, 512)
    crop = scanned_region(test.coords, test.obj.shape)
    if evaluate(test.obj, test.obj, crop)["phase_ssim"] is None:
        parser.error(f"--object {args.object} has no phase to probe (its phase is constant)")
    extra = {} if args.balance_counts is None else {"balance_counts": args.balance_counts}
    model = build_model(ModelConfig(N=32, gridsize=args.gridsize, probe_defocus=2.0, n_filters_scale=1,
                                    intensity_scale=data.intensity_scale, **extra),
                        probe=data.probe, seed=args.seed)
    train(model, data, TrainConfig(nepochs=args.nepochs, seed=args.seed))
    weights = np.abs(model_probe(model)) ** 2
    weights /= weights.max()
    patches = predict_patches(model, test.diffraction).astype(np.complex128)
    truth = test.object_patches.astype(np.complex128)
    n = patches.shape[1]

    def scores(p: np.ndarray) -> dict[str, float]:
        e = evaluate(stitch_in_frame(p.astype(np.complex64), test.coords, test.obj.shape, weights),
                     test.obj, crop)
        return {k: round(e[k], 4) for k in ("phase_ssim", "amp_ssim") if e[k] is not None}

    corr = np.sum(np.conj(patches) * truth * weights[None, :, :, None], axis=(1, 2))
    oracle = patches * (corr / np.abs(corr))[:, None, None, :]
    missed = plane_slopes(np.angle(truth * np.conj(oracle)), weights)  # (B, C, 2)
    phase_slope = plane_slopes(np.angle(truth * np.conj(truth[:, n // 2: n // 2 + 1, n // 2: n // 2 + 1])),
                               weights)
    log_amp_slope = plane_slopes(np.log(np.maximum(np.abs(truth), 1e-6)), weights)
    design = np.stack([phase_slope.ravel(), log_amp_slope.ravel()], 1)
    coef = np.linalg.lstsq(design, missed.ravel(), rcond=None)[0]
    left = missed.ravel() - design @ coef
    turns = np.exp(1j * np.random.default_rng(0).uniform(-np.pi, np.pi, corr.shape))
    with_ramps = truth * np.conj(ramp(missed, n)) * turns[:, None, None, :]
    row = {"object": args.object, "nepochs": args.nepochs, "n_images": args.n_images,
           "gridsize": args.gridsize,
           "balance_counts": model.ptycho_config.balance_counts, "seed": args.seed,
           "aligned": scores(align_patch_phases(patches, test.coords, weights)),
           "oracle_constant": scores(oracle),
           "oracle_ramp": scores(oracle * ramp(missed, n)),
           "truth_with_ramps": scores(align_patch_phases(with_ramps, test.coords, weights)),
           "ramp_error": {"rms": round(float(np.sqrt(np.mean(missed ** 2))), 5),
                          "on_phase_slope": round(float(coef[0]), 3),
                          "on_log_amp_slope": round(float(coef[1]), 3),
                          "explained": round(1 - float(np.mean(left ** 2) / np.mean(missed ** 2)), 3),
                          "true_phase_slope_rms": round(float(np.sqrt(np.mean(phase_slope ** 2))), 5)}}
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
