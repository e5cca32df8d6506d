"""Dead CNN units of a trained model on a data set; prints ONE JSON object.

Usage: ``python scripts/diagnostics/dead_units.py --model RUN/wts.h5.zip --data FILE [--max-groups 256]``
FILE is anything ``ptycho.io.load_data`` reads (grouped NPZ/HDF5 or a canonical per-position
file, grouped with the model's gridsize). JSON: ``{"model", "data", "groups", "activation",
"layers": [{"name", "channels", "dead", "positive_frac"}, ...]}``. A layer whose units are
mostly dead starves what follows it of signal: docs/findings.md, LOW-DOSE-NLL-PHASE-001.
Exit 1 with a message naming the file on a missing or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="wts.h5.zip archive")
    parser.add_argument("--data", required=True, type=Path, help="data file (load_data)")
    parser.add_argument("--max-groups", type=int, default=256, help="groups evaluated (default 256)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ptycho.canonical import GroupingOptions
    from ptycho.diagnostics import dead_units
    from ptycho.io import load_data, load_model

    try:
        model, cfg, _ = load_model(args.model)
        data = load_data(args.data, GroupingOptions(gridsize=cfg.gridsize))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    diffraction = data.diffraction[: args.max_groups]
    layers = dead_units(model, diffraction)
    print(json.dumps({"model": str(args.model), "data": str(args.data), "groups": len(diffraction),
                      "activation": cfg.activation, "layers": [u.to_dict() for u in layers]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
