"""pty-chi LSQML and the data's scale: the figures behind ``ptycho.baseline``'s canonical data
scale; prints ONE JSON object. Needs the ``[baseline]`` extra.

Usage: ``python scripts/diagnostics/ptychi_scale.py [--epochs 20] [--perturbations 6]``

The scan is the noise-free one of ``tests/ptycho/test_baseline.py`` (lines object, 169
positions, N = 32, the canonical writer's probe). JSON:

* ``units``: amplitude SSIM after 5 and ``--epochs`` LSQML epochs for the amplitudes times
  each of ``--amplitude-factors`` (mean intensity per detector pixel given), once through
  ``reconstruct_iterative`` (canonical scale) and once with the file's units handed to
  pty-chi unchanged (``canonical_intensity_scale`` replaced by 1, the old behaviour);
* ``rounding``: the same scores for amplitudes × (1 + k·2⁻²²), k = 0..``--perturbations``
  (canonical scale): the spread that rounding alone gives.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "canonical"
N = 32


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FIXTURES / f"{name}.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def noise_free_scan() -> dict[str, np.ndarray]:
    """diffraction (P, N, N) float32 amplitudes, positions (P, 2) (x, y), probe (N, N), obj:
    the scan of tests/ptycho/test_baseline.py (tests/fixtures/canonical/noise_free_scan.py)."""
    scan = _load("noise_free_scan").make_scan(_load("make_canonical"), _load("make_ptychopinn_like"), N)
    return {"diffraction": scan["diffraction"],
            "positions": np.stack([scan["xcoords"], scan["ycoords"]], axis=1),
            "probe": scan["probeGuess"], "obj": scan["objectGuess"]}


def ssims(scan: dict[str, np.ndarray], diffraction: np.ndarray, epochs: int) -> dict[str, float]:
    """Amplitude SSIM over the scanned region after 5 and `epochs` LSQML epochs."""
    from ptycho.baseline import reconstruct_iterative
    from ptycho.metrics import evaluate, scanned_region

    crop = scanned_region(scan["positions"], scan["obj"].shape)
    curve: list[float] = []
    reconstruct_iterative(diffraction, scan["positions"], scan["probe"], epochs=epochs,
                          object_shape=scan["obj"].shape,
                          on_epoch=lambda e, o: curve.append(evaluate(o, scan["obj"], crop)["amp_ssim"]) or {})
    return {f"ssim_{e}": round(float(curve[e - 1]), 4) for e in sorted({min(5, epochs), epochs})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--perturbations", type=int, default=6)
    parser.add_argument("--amplitude-factors", default="1e-3,1e-2,0.1,1,10,1e6",
                        help="comma list of factors on the amplitudes")
    args = parser.parse_args(argv)
    from ptycho import baseline

    if not baseline.available():
        print(f"error: {baseline.install_hint()}", file=sys.stderr)
        return 1
    scan = noise_free_scan()
    canonical = baseline.canonical_intensity_scale
    units: list[dict[str, Any]] = []
    for factor in (float(f) for f in args.amplitude_factors.split(",")):
        diffraction = scan["diffraction"] * np.float32(factor)
        row: dict[str, Any] = {"amplitude_factor": factor,
                               "mean_intensity_per_pixel": float(np.mean(np.square(diffraction, dtype=np.float64)))}
        try:
            row["canonical"] = ssims(scan, diffraction, args.epochs)
            baseline.canonical_intensity_scale = lambda intensities: 1.0  # the file's units
            row["file_units"] = ssims(scan, diffraction, args.epochs)
        finally:
            baseline.canonical_intensity_scale = canonical
        units.append(row)
    rounding = [{"k": k, **ssims(scan, scan["diffraction"] * np.float32(1 + k * 2.0 ** -22), args.epochs)}
                for k in range(args.perturbations + 1)]
    print(json.dumps({"epochs": args.epochs, "units": units, "rounding": rounding}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
