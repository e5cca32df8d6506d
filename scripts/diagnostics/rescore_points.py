"""Re-score every finished point/arm of a study output directory with the current metrics.

Reads each ``<point>/recon.npz`` (recon, truth, crop = (r0, r1, c0, c1)), recomputes
``ptycho.metrics.evaluate(recon, truth, crop)`` and writes it into ``<point>/metrics.json``
(atomically), after checking that the amplitude SSIM/PSNR are unchanged. Then merge with the
study's own command plus ``--merge-only``. Prints JSON: {"rescored": n, "dir": ...}.

Usage: python scripts/diagnostics/rescore_points.py OUTPUT_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ptycho.fsutil import atomic_write_text
from ptycho.metrics import evaluate


def rescore(root: Path) -> int:
    n = 0
    for point in sorted(p for p in root.iterdir() if (p / "recon.npz").is_file()):
        with np.load(point / "recon.npz") as z:
            r0, r1, c0, c1 = (int(v) for v in z["crop"])
            new = evaluate(z["recon"], z["truth"], (slice(r0, r1), slice(c0, c1)))
        record = json.loads((point / "metrics.json").read_text(encoding="utf-8"))
        for key in ("amp_ssim", "amp_psnr"):
            if abs(new[key] - record["metrics"][key]) > 1e-9:
                raise SystemExit(f"{point / 'metrics.json'}: {key} {record['metrics'][key]} != {new[key]}")
        record["metrics"] = new
        atomic_write_text(point / "metrics.json", json.dumps(record, indent=2))
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path)
    args = parser.parse_args()
    if not args.output_dir.is_dir():
        raise SystemExit(f"not a directory: {args.output_dir}")
    print(json.dumps({"rescored": rescore(args.output_dir), "dir": str(args.output_dir)}))


if __name__ == "__main__":
    main()
