"""Synthetic dose-response study: Poisson NLL vs amplitude MAE at 1e9 and 1e4 photons.

Four arms -- high_nll, high_mae (1e9 photons), low_nll, low_mae (1e4 photons) -- each simulate
"lines" objects, train a ptycho model with that loss and reconstruct a test set simulated
from another seed (seed + 1000). Outputs under --output-dir:

  <arm>/wts.h5.zip history.csv metrics.json recon.npz complete   (one directory per arm)
  summary.json summary.md dose_comparison.png                    (study level)

Each arm trains in a fresh Python process (TensorFlow's memory is returned when it ends, so the
study peaks no higher than one arm); its output lines are shown prefixed by ``[arm]``.
``--scheduler local`` runs the arms in parallel on an embedded Dask LocalCluster
(``--max-parallel`` workers), ``--scheduler tcp://host:port`` on an existing Dask cluster
(docs/dask.md); the default ``none`` runs them one after another and needs no Dask.
Each arm is written into a staging directory and renamed into place, so an arm is complete
exactly when <arm>/ exists with its ``complete`` marker; an interrupted run leaves nothing that
looks complete, and re-running trains only the missing arms (``--force`` retrains).
dose_comparison.png has 2 rows (1e9, 1e4 photons) x 3 columns (sample diffraction in log
scale, NLL and MAE reconstruction amplitude) titled with dose, loss, PSNR and SSIM; every
panel is checked for finite, non-constant data (``figure_ok`` and per-panel stats in
summary.json), together with the science checks (high/low mean-counts ratio ~1e5, SSIM vs a
constant-image baseline, NLL vs MAE PSNR at 1e4 photons, SSIM >= 0.5 at 1e9 photons).

Sizes: the full set (``arms.FULL``) or ``--quick`` (``arms.QUICK``: all four arms in <= 5 min
on 2 CPU cores, the target); ``--help`` prints both, and each flag overrides either set.

Exit codes: 0 ok; 1 an arm failed, an arm's outputs are unreadable, the figure self-check
failed or (--merge-only) arms are missing -- the failing arms are named on stderr;
2 bad arguments or unwritable output dir; 130/143 interrupted by SIGINT/SIGTERM (the arm
processes are stopped, submitted Dask arms cancelled). An unreachable --scheduler: exit 1.

Run it as ``dose-study`` (console script), ``python -m dose_study`` or, for handoffs that name
the old path, ``python scripts/studies/dose_response_study.py`` (a thin wrapper of this module).

Examples:
  dose-study --quick --output-dir out/study_quick
  dose-study --output-dir out/study --nepochs 5 --batch-size 8
  dose-study --output-dir out/study --arm low_nll      # one arm (fan-out)
  dose-study --output-dir out/study --merge-only       # rebuild summary/figure
  dose-study --quick --output-dir out/q --scheduler local --max-parallel 2
  dose-study --output-dir out/study --scheduler tcp://head-node:8786
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from ptycho import xla_cache
from ptycho.config import ACTIVATIONS, LR_SCHEDULES

from . import curve
from .arms import ARM_NAMES, BASELINE_ENGINES, FULL, QUICK, SCAN_DENSITIES, describe_sizes, get_arm, make_config
from .cluster import SchedulerUnreachable  # imports no Dask
from .store import ArmStore, OutputDirError
from .study import SequentialExecutor, StudyInterrupted, run_study, study_arms

log = logging.getLogger("dose_study")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SIZING_FLAGS = ("N", "n_images", "n_test_images", "nepochs", "batch_size", "learning_rate",
                "lr_schedule", "n_filters_scale", "probe_defocus", "activation", "seed", "baseline_epochs")
BASELINE_OFF = ("baseline arm off: the [baseline] extra (pty-chi) is not installed; turn it on "
                "with `make baseline` or `pip install -e '.[baseline]'` (then --baseline "
                "lsqml|epie|dm; --baseline none silences this line)")


class Terminated(BaseException):
    """Raised from the SIGTERM handler so staging directories get cleaned up."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dose-study",
        description="Dose-response study: NLL vs MAE loss at 1e9 and 1e4 photons (4 arms).",
        epilog=(f"full sizes: {describe_sizes(FULL)}; --quick sizes: {describe_sizes(QUICK)} "
                "(4 arms <= 5 min on 2 CPU cores: target). Re-running skips complete arms. "
                "Exit codes: 0 ok, 1 arm/figure failure (arm named), 2 bad arguments or "
                "unwritable output dir, 130/143 interrupted."),
    )
    p.add_argument("--output-dir", required=True, type=Path, help="study directory (created)")
    p.add_argument("--nepochs", type=int, help=f"training epochs per arm (full {FULL.nepochs}, quick {QUICK.nepochs})")
    p.add_argument("--batch-size", type=int, help="batch size in groups (default 16)")
    p.add_argument("--n-images", type=int,
                   help=f"training groups per dose (full {FULL.n_images}, quick {QUICK.n_images})")
    p.add_argument("--n-test-images", type=int,
                   help=f"test groups per dose (full {FULL.n_test_images}, quick {QUICK.n_test_images})")
    p.add_argument("--patch-size", dest="N", type=int,
                   help=f"patch side N, multiple of 8 and >= 16 (full {FULL.N}, quick {QUICK.N})")
    p.add_argument("--learning-rate", type=float, help=f"Adam learning rate (full {FULL.learning_rate:g}, "
                   f"quick {QUICK.learning_rate:g})")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help=f"learning rate over the run: constant, or a cosine decay to 5%% of it "
                   f"(default {FULL.lr_schedule})")
    p.add_argument("--filters-scale", dest="n_filters_scale", type=int,
                   help=f"CNN width multiplier, ModelConfig.n_filters_scale (full {FULL.n_filters_scale}, "
                   f"quick {QUICK.n_filters_scale})")
    p.add_argument("--probe-defocus", type=float,
                   help=f"probe defocus, phase at the probe disk edge in rad (default {FULL.probe_defocus:g}; "
                   "0: focused, real probe with an exact twin-image ambiguity)")
    p.add_argument("--activation", choices=ACTIVATIONS,
                   help=f"CNN hidden-layer activation (default {FULL.activation}; relu: the model "
                   "before LOW-DOSE-NLL-PHASE-001, whose units can die)")
    p.add_argument("--seed", type=int, help="simulation/training seed (default 0); the test "
                   "set uses seed + 1000")
    p.add_argument("--quick", action="store_true",
                   help=f"small sizes: {describe_sizes(QUICK)}")
    p.add_argument("--arm", action="append", metavar="NAME",
                   help=f"run only this arm (repeatable); one of {', '.join(ARM_NAMES)} or a "
                   "baseline arm high_<engine> / low_<engine>")
    p.add_argument("--baseline", choices=(*BASELINE_ENGINES, "none"),
                   help="conventional iterative reconstruction (pty-chi) of each dose's test "
                   "scan beside the PINN arms: lsqml (default when the [baseline] extra is "
                   "installed), epie, dm, or none")
    p.add_argument("--baseline-epochs", type=int,
                   help=f"iterations of the baseline engine (default {FULL.baseline_epochs})")
    p.add_argument("--doses", metavar="LIST",
                   help="run the dose-response curve instead of the four arms: photons per "
                   "pattern, comma separated (e.g. 1e3,1e4,1e5,1e6,1e7,1e9); every (dose, "
                   "scan density, method, seed) is one task -> dose_curve.png, summary.json")
    p.add_argument("--positions", metavar="LIST",
                   help=f"--doses: scan densities, comma separated from "
                   f"{', '.join(SCAN_DENSITIES)} (default dense,sparse; mean position "
                   "spacing N/8 and N/4 px, probe diameter N/3 px)")
    p.add_argument("--seeds", metavar="LIST",
                   help="--doses: seeds, comma separated (default: --seed)")
    p.add_argument("--merge-only", action="store_true",
                   help="train nothing; rebuild summary.json/summary.md/figure from complete arms")
    p.add_argument("--force", action="store_true", help="re-run arms that are already complete")
    p.add_argument("--scheduler", default="none", metavar="none|local|ADDRESS",
                   help="none (default): arms one after another, each in a fresh process; "
                   "local: an embedded Dask LocalCluster with --max-parallel workers; "
                   "tcp://host:port: an existing Dask scheduler (docs/dask.md)")
    p.add_argument("--max-parallel", type=int, metavar="N",
                   help="--scheduler local: worker processes, i.e. arms at once (default: "
                   "CPU cores, at most the number of arms); TF threads per arm = cores / N")
    p.add_argument("--retries", type=int, default=2,
                   help="Dask: re-runs of an arm whose worker or process died (default 2)")
    p.add_argument("--threads-per-arm", type=int, metavar="N",
                   help="TensorFlow threads of each arm process (default: all cores for none; "
                   "the worker's cores / its threads for Dask)")
    return p


def recorded_config(output_dir: Path) -> dict | None:
    """The study settings recorded by the first complete arm in ``output_dir`` (if any)."""
    store = ArmStore(output_dir)
    for name in ARM_NAMES:
        if store.is_complete(name):
            try:
                return store.load_metrics(name).get("study_config")
            except ValueError:
                return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # inherited by the arm processes
    xla_cache.enable()  # with PTYCHO_XLA_CACHE=on the arms share one cache of XLA executables
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    engine = resolve_baseline(parser, args.baseline)
    known = [a.name for a in study_arms(engine)]
    unknown = [a for a in (args.arm or []) if a not in known]
    if unknown:
        parser.error(f"unknown --arm {', '.join(map(repr, unknown))}; "
                     f"choose from {', '.join(known)}")
    if args.doses is None and (args.positions or args.seeds):
        parser.error("--positions and --seeds need --doses (the dose-response curve)")
    if args.doses is not None and args.arm:
        parser.error("--doses runs the dose-response curve; it cannot be combined with --arm")
    if args.merge_only and (args.arm or args.force):
        parser.error("--merge-only trains nothing; it cannot be combined with --arm or --force")
    overrides = {k: getattr(args, k) for k in SIZING_FLAGS}
    quick = args.quick
    if args.merge_only and not any(v is not None for v in overrides.values()) and not quick:
        recorded = recorded_config(args.output_dir)  # merge with the settings the arms used
        if recorded:
            quick = bool(recorded.get("quick", False))
            overrides = {k: recorded.get(k) for k in SIZING_FLAGS}
    try:
        cfg = make_config(quick, **overrides)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        arms = (curve.curve_grid(curve.parse_doses(args.doses),
                                 curve.parse_names(args.positions or "dense,sparse", "--positions",
                                                   tuple(SCAN_DENSITIES)),
                                 curve.curve_methods(engine or "none"),
                                 curve.parse_seeds(args.seeds or str(cfg.seed)))
                if args.doses is not None else
                [get_arm(n) for n in dict.fromkeys(args.arm or known)])
    except ValueError as exc:
        parser.error(str(exc))
    if args.scheduler == "none" and args.max_parallel is not None:
        parser.error("--max-parallel needs --scheduler local")
    if args.threads_per_arm is not None and args.threads_per_arm < 1:
        parser.error(f"--threads-per-arm must be >= 1, got {args.threads_per_arm}")
    cluster_opts = None
    if args.scheduler != "none" and not args.merge_only:
        try:
            cluster_opts = cluster_options(args, len(arms))
        except ValueError as exc:
            parser.error(str(exc))
        except ImportError as exc:
            parser.error(f"--scheduler {args.scheduler} needs Dask distributed ({exc}); "
                         "install it with: pip install -e '.[cluster]'")
    if args.merge_only and not args.output_dir.is_dir():
        print(f"error: --merge-only: no study directory {str(args.output_dir)!r}", file=sys.stderr)
        return EXIT_USAGE

    terminated = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        terminated.set()  # the raised exception may be swallowed or converted on its way up
        raise Terminated()

    signal.signal(signal.SIGTERM, on_sigterm)
    start = time.perf_counter()
    what = (f"{len(arms)} curve points" if args.doses is not None
            else "arms: " + ", ".join(a.name for a in arms))
    log.info("dose-response study -> %s (%s; %s)", args.output_dir, describe_sizes(cfg),
             what if not args.merge_only else "merge only")
    try:
        with contextlib.ExitStack() as stack:
            executor, run_extra = make_executor(args, cluster_opts, terminated.is_set, stack)
            if args.doses is not None:
                result = curve.run_curve(args.output_dir, cfg, arms, engine=engine,
                                         force=args.force, merge_only=args.merge_only,
                                         executor=executor, stop_requested=terminated.is_set,
                                         run_extra=run_extra)
                return report_curve(result, args.merge_only, time.perf_counter() - start)
            result = run_study(args.output_dir, cfg, arms, force=args.force,
                               merge_only=args.merge_only, executor=executor,
                               stop_requested=terminated.is_set, run_extra=run_extra,
                               engine=engine)
    except SchedulerUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OutputDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StudyInterrupted as exc:
        print(f"error: {exc}; no partial outputs were committed, re-run to finish",
              file=sys.stderr)
        return 143 if terminated.is_set() else 130
    except (Terminated, KeyboardInterrupt) as exc:
        print(f"error: interrupted ({type(exc).__name__})", file=sys.stderr)
        return 143 if terminated.is_set() else 130
    except Exception as exc:  # merge/figure failures: arms already committed stay complete
        if terminated.is_set():
            print(f"error: interrupted (Terminated, seen as {type(exc).__name__})",
                  file=sys.stderr)
            return 143
        log.exception("study failed")
        print(f"error: study failed while merging: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    summary = result.summary
    problems = [f"arm {name} failed: {reason}" for name, reason in result.failed.items()]
    if args.merge_only and summary["arms_missing"]:
        problems.append(f"study incomplete, missing arms: {', '.join(summary['arms_missing'])}")
    if not summary["arms_missing"] and not summary["figure_ok"]:
        bad = [f"{p['row']}/{p['column']} ({p['source']})" for p in summary["figure"]["panels"]
               if not p["ok"]]
        problems.append(f"figure self-check failed for panels: {', '.join(bad) or 'PNG'}")
    sci = summary["science"]
    print(f"summary: {result.summary_path}  figure_ok={summary['figure_ok']}  "
          f"trained={result.trained or '-'} skipped={result.skipped or '-'}  "
          f"nll_beats_mae_at_low_dose={sci['nll_beats_mae_at_low_dose']}  "
          f"wall {time.perf_counter() - start:.1f} s  peak RSS: this process "
          f"{peak_rss_mb():.0f} MB, arms {arm_peaks(summary) or '-'}")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return EXIT_FAILED if problems else EXIT_OK


def resolve_baseline(parser: argparse.ArgumentParser, choice: str | None) -> str | None:
    """The baseline engine to run (None: off). Default: lsqml when the [baseline] extra is
    installed, else off with a printed line saying how to turn it on; an engine asked for
    without the extra is a usage error."""
    from .baseline_runner import baseline_available

    if choice == "none":
        return None
    if baseline_available():
        return choice or "lsqml"
    if choice is not None:
        parser.error(f"--baseline {choice} needs the [baseline] extra (pty-chi): "
                     "`make baseline` or `pip install -e '.[baseline]'`")
    print(BASELINE_OFF, file=sys.stderr)
    log.info(BASELINE_OFF)
    return None


def report_curve(result, merge_only: bool, wall: float) -> int:
    """Print the curve's summary line and failures; the exit code."""
    summary = result.summary
    problems = [f"point {name} failed: {reason}" for name, reason in result.failed.items()]
    if merge_only and summary["points_missing"]:
        problems.append(f"curve incomplete, {len(summary['points_missing'])} points missing")
    if not summary["points_missing"] and not summary["figure_ok"]:
        bad = [f"{p['positions']}/{p['metric']}" for p in summary["figure"]["panels"] if not p["ok"]]
        problems.append(f"dose curve self-check failed for panels: {', '.join(bad) or 'PNG'}")
    wins = [f"{e['positions']} {e['nphotons']:g} {e['loss']}" for e in summary["pinn_minus_baseline"]
            if e["verdict_amp_ssim"] == "PINN better"]
    print(f"summary: {result.summary_path}  points {summary['points_complete']}/"
          f"{summary['points_expected']}  figure_ok={summary['figure_ok']}  trained "
          f"{len(result.trained)} skipped {len(result.skipped)}  PINN beats baseline (amp SSIM) "
          f"at: {', '.join(wins) or '-'}  wall {wall:.1f} s")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return EXIT_FAILED if problems else EXIT_OK


def cluster_options(args: argparse.Namespace, n_arms: int):
    """ClusterOptions from the flags (imports Dask: ImportError when it is missing)."""
    import distributed  # noqa: F401 -- fail early with the install hint

    from ptycho.execution import usable_cpus

    from . import cluster

    return cluster.ClusterOptions(
        scheduler=args.scheduler, retries=args.retries, threads_per_arm=args.threads_per_arm,
        max_parallel=(args.max_parallel if args.max_parallel is not None
                      else max(1, min(n_arms, usable_cpus()))))


def make_executor(args: argparse.Namespace, cluster_opts, stop_requested,
                  stack: contextlib.ExitStack):
    """(ArmExecutor or None for merge-only, extra run info for summary.json)."""
    sequential = {"scheduler": {"scheduler": "none", "address": None, "workers": None,
                                "dashboard": None}}
    if args.merge_only:
        return None, sequential
    if cluster_opts is None:
        from .subprocess_runner import SubprocessArmRunner

        def factory(cfg):
            return SubprocessArmRunner(cfg, on_line=print_child_line, threads=args.threads_per_arm)

        return SequentialExecutor(factory), sequential
    from .cluster import DaskArmExecutor, DaskSession

    logging.getLogger("distributed").setLevel(logging.WARNING)  # the embedded scheduler's chatter
    log.info("connecting to Dask (%s) ...", cluster_opts.scheduler)
    session = stack.enter_context(DaskSession(cluster_opts))
    info = session.describe()
    log.info("Dask scheduler %s with %d worker(s)%s", info["address"], info["workers"],
             f"; dashboard {info['dashboard']}" if info["dashboard"] else "")
    return DaskArmExecutor(session), {"scheduler": info}


def print_child_line(arm: str, line: str) -> None:
    """An arm process's output line on this console, prefixed by the arm."""
    print(f"[{arm}] {line}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def arm_peaks(summary: dict) -> str:
    return ", ".join(f"{name} {m['process']['peak_rss_mb']:.0f} MB"
                     for name, m in summary["per_arm"].items()
                     if isinstance(m.get("process"), dict) and m["process"].get("peak_rss_mb"))


if __name__ == "__main__":
    sys.exit(main())
