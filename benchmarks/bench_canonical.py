"""Real-data path end to end: prints ONE JSON object on stdout.

1. ``tests/fixtures/canonical/make_canonical.py`` (independent numpy code: its own object and
   probe) writes a canonical training file (2000 positions over the whole 400 px object, Poisson
   noise at 1e9 photons, amplitudes, no photon count) and a separate test file of the same
   object (512 other positions, central sub-scan at the same density, seed 2).
2. ``python -m ptycho train --data train.npz --nepochs 20`` (photon count from the data).
3. ``python -m ptycho infer`` on the test file: amplitude SSIM/PSNR against its objectGuess.

JSON: ``train_s``/``infer_s`` (wall time of each command, process start included),
``train_seconds``/``infer_seconds`` (as reported by the commands), ``amp_ssim``, ``amp_psnr``,
``phase_ssim``, ``final_loss``, ``nphotons_estimated`` and the settings. Usage:
``python benchmarks/bench_canonical.py [--nepochs 20] [--quick] [--workdir DIR] [--extra ...]``;
``--quick`` = 300 train / 128 test positions, 2 epochs (a smoke run). Extra arguments after
``--extra`` go to ``train``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WRITER = ROOT / "tests" / "fixtures" / "canonical" / "make_canonical.py"


def _run(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}")
    return proc, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nepochs", type=int, default=20)
    parser.add_argument("--train-positions", type=int, default=2000)
    parser.add_argument("--test-positions", type=int, default=512)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="extra arguments for `ptycho train`")
    args = parser.parse_args()
    if args.quick:
        args.nepochs, args.train_positions, args.test_positions = 2, 300, 128
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-canonical-"))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    train_npz, test_npz = work / "train.npz", work / "test.npz"
    # the test scan: a central square holding the same density as the training scan
    frac = min(1.0, (args.test_positions / args.train_positions) ** 0.5)
    region = (0.5 - frac / 2, 0.5 + frac / 2)
    _run([py, str(WRITER), "--out", str(train_npz), "--positions", str(args.train_positions),
          "--seed", "1"])
    _run([py, str(WRITER), "--out", str(test_npz), "--positions", str(args.test_positions),
          "--seed", "2", "--region", f"{region[0]:.4f}", f"{region[1]:.4f}"])
    proc, train_s = _run([py, "-m", "ptycho", "train", "--data", str(train_npz), "--output-dir",
                          str(work / "run"), "--nepochs", str(args.nepochs), "--json",
                          *args.extra])
    trained = json.loads(proc.stdout)
    proc, infer_s = _run([py, "-m", "ptycho", "infer", "--model", trained["model"], "--data",
                          str(test_npz), "--output-dir", str(work / "infer"), "--json"])
    inferred = json.loads(proc.stdout)
    metrics = json.loads(Path(inferred["metrics"]).read_text())
    result: dict[str, Any] = {
        "train_s": round(train_s, 1), "infer_s": round(infer_s, 1),
        "train_seconds": trained["train_seconds"], "infer_seconds": inferred["infer_seconds"],
        "amp_ssim": metrics["amp_ssim"], "amp_psnr": metrics["amp_psnr"],
        "phase_ssim": metrics["phase_ssim"], "final_loss": trained["final_loss"],
        "nphotons_estimated": trained["data"]["nphotons"],
        "nphotons_source": trained["data"]["nphotons_source"],
        "train_positions": args.train_positions, "test_positions": args.test_positions,
        "test_region": [round(r, 4) for r in region], "nepochs": args.nepochs,
        "execution_path": trained["path"], "params": trained["params"],
        "extra_train_args": args.extra, "workdir": str(work),
        "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()[0],
    }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
