"""Where a model misfits the data: the Poisson deviance / 2 per detector ring after training.

Trains the default model (or with ``--model KEY=VALUE`` overrides, e.g. ``input_transform=linear``)
on ``--n-images`` groups of ``--object`` at ``--nphotons`` for ``--nepochs`` epochs, predicts the
first 128 training groups and prints ONE JSON object: the mean deviance / 2 per pixel (½ is the
noise level), its mean per ring of radius r px from the zero frequency, and the ratio of predicted
to measured total counts per pattern (mean, std). Used for docs/findings.md RESOLUTION-LOSS-001.

Usage: ``python scripts/diagnostics/ring_deviance.py [--object pinn_lines] [--nepochs 2]
[--model input_transform=linear balance_counts=0]``
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

RINGS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 31)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--object", default="pinn_lines")
    parser.add_argument("--N", type=int, default=64)
    parser.add_argument("--nphotons", type=float, default=1e9)
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--nepochs", type=int, default=2)
    parser.add_argument("--model", nargs="*", default=[], help="ModelConfig overrides KEY=VALUE")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np

    from ptycho.config import ModelConfig, SimConfig, TrainConfig
    from ptycho.losses import poisson_deviance
    from ptycho.model import build_model
    from ptycho.physics import simulate
    from ptycho.train import train

    overrides: dict[str, Any] = {}
    for item in args.model:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        overrides[key] = float(value) if key == "balance_counts" else value
    data = simulate(SimConfig(N=args.N, gridsize=2, nphotons=args.nphotons, n_images=args.n_images,
                              probe_defocus=2.0, object_type=args.object, seed=0))
    model = build_model(ModelConfig(N=args.N, gridsize=2, probe_defocus=2.0,
                                    intensity_scale=data.intensity_scale, **overrides), probe=data.probe)
    train(model, data, TrainConfig(nepochs=args.nepochs, batch_size=16, learning_rate=1e-3,
                                   lr_schedule="constant"))  # the set-up of section 5
    first = slice(0, min(128, data.n_groups))
    predicted = model.predict({"diffraction": data.diffraction[first], "offsets": data.offsets[first]},
                              verbose=0)["sqrt_counts"]
    counts = data.counts[first]
    deviance = poisson_deviance(counts, predicted).numpy().astype(np.float64)
    lam = np.square(predicted.astype(np.float64))
    yy, xx = np.indices((args.N, args.N))
    radius = np.hypot(yy - args.N // 2, xx - args.N // 2).astype(int)
    per_pixel = deviance.mean(axis=(0, 3))
    totals = lam.sum(axis=(1, 2)) / counts.astype(np.float64).sum(axis=(1, 2))
    print(json.dumps({"object": args.object, "nphotons": args.nphotons, "nepochs": args.nepochs,
                      "model": overrides, "mean_deviance": float(deviance.mean()),
                      "ring_deviance": {r: float(per_pixel[radius == r].mean()) for r in RINGS
                                        if r < args.N // 2},
                      "total_ratio_mean": float(totals.mean()), "total_ratio_std": float(totals.std())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
