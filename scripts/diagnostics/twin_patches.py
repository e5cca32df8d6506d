"""Twin patches: is each predicted patch the true object patch, its twin, or a blur of both?

For a model archive and a data file with its ground truth (``objectGuess``), predicts the
object patch of every scan position (``inference.predict_patches``), cuts the true patch out of
the ground truth at the same position, and fits the predicted amplitude on the probe's lit
disk (|probe|² ≥ ``--lit`` of its peak) by least squares as

    |predicted| ≈ α·|true| + β·|twin| + γ,     twin = the true patch point-reflected about
                                                the scan position (pixel N//2)

For a real, centro-symmetric probe a pattern cannot tell the patch from its twin
(docs/findings.md PROBE-TWIN-001): a network that learned the orientation gives β ≈ 0, one that
blurs the two gives α ≈ β. Prints one JSON object: the patch count, the medians and 10/90 %
quantiles of α, β and of the correlations of the prediction with the truth and with the twin,
and the fraction of patches closer to the truth than to the twin.

Usage: ``python scripts/diagnostics/twin_patches.py --model wts.h5.zip --data test.npz
[--max-patches 1000] [--lit 0.1]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np


def twin_of(patch: np.ndarray) -> np.ndarray:
    """(…, N, N) array point-reflected about pixel (N//2, N//2) (amplitudes: no conjugate)."""
    return np.roll(patch[..., ::-1, ::-1], 1, axis=(-2, -1))


def decompose(predicted: np.ndarray, truth: np.ndarray, lit: np.ndarray) -> dict[str, float]:
    """Least-squares α, β of ``predicted ≈ α·truth + β·twin_of(truth) + γ`` on the `lit` pixels,
    and the correlations of `predicted` with the truth and with its twin there.

    predicted, truth: (N, N) float amplitudes; lit: (N, N) bool
    """
    twin = twin_of(truth)
    design = np.stack([truth[lit], twin[lit], np.ones(int(lit.sum()))], axis=1)
    (alpha, beta, _), *_ = np.linalg.lstsq(design, predicted[lit], rcond=None)

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a[lit] - a[lit].mean(), b[lit] - b[lit].mean()
        norm = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
        return float(np.sum(a * b) / norm) if norm > 0 else 0.0

    return {"alpha": float(alpha), "beta": float(beta), "corr_truth": corr(predicted, truth),
            "corr_twin": corr(predicted, twin)}


def true_patches(obj: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """(P, N, N) float |obj| cut out with pixel N//2 at each (x, y) of the (P, 2) `positions`
    (``physics.extract_patches``, Fourier sub-pixel shift); obj (H, W) complex, edge-padded by
    N so that patches overhanging it are cut too."""
    from ptycho.physics import extract_patches

    padded = np.pad(np.asarray(obj, np.complex64), n, mode="edge")
    return np.abs(extract_patches(padded, np.asarray(positions, np.float64) + n, n, "fourier"))


def summarise(rows: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"patches": len(rows)}
    for key in ("alpha", "beta", "corr_truth", "corr_twin"):
        values = np.array([r[key] for r in rows])
        out[key] = {"median": round(float(np.median(values)), 4),
                    "q10": round(float(np.quantile(values, 0.1)), 4),
                    "q90": round(float(np.quantile(values, 0.9)), 4)}
    out["closer_to_truth"] = round(float(np.mean([r["corr_truth"] > r["corr_twin"] for r in rows])), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--max-patches", type=int, default=1000)
    parser.add_argument("--lit", type=float, default=0.1, help="|probe|² floor of the fit, × peak")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from ptycho.inference import predict_patches
    from ptycho.io import GroupingOptions, load_data, load_model
    from ptycho.model import model_probe

    model, cfg, _ = load_model(args.model)
    data = load_data(args.data, GroupingOptions(gridsize=cfg.gridsize))
    if data.obj is None:
        raise SystemExit(f"{args.data}: no objectGuess, nothing to compare the patches with")
    groups = max(1, args.max_patches // cfg.C)
    predicted = predict_patches(model, data.diffraction[:groups])  # (G, N, N, C)
    coords = np.asarray(data.coords[:groups], np.float64)  # (G, 1, 2, C)
    positions = np.moveaxis(coords[:, 0], 2, 1).reshape(-1, 2)  # (G·C, 2) (x, y)
    predicted = np.abs(np.moveaxis(predicted, 3, 1).reshape(-1, cfg.N, cfg.N))
    weights = np.abs(model_probe(model)) ** 2
    lit = weights >= args.lit * weights.max()
    truth = true_patches(data.obj, positions, cfg.N)
    rows = [decompose(p, t, lit) for p, t in zip(predicted, truth, strict=True)]
    print(json.dumps({"model": str(args.model), "data": str(args.data), "lit_pixels": int(lit.sum()),
                      **summarise(rows)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
