"""Run the selected arms (skipping complete ones) and merge all complete arms into the summary.

``run_study`` never imports TensorFlow unless an arm actually has to be trained: the
``runner_factory`` is called lazily, so ``--merge-only`` and re-runs with every arm complete
stay fast. Arms are trained by an ``ArmExecutor``: ``SequentialExecutor`` (one after another
through an ``ArmRunner``; the CLI's runner starts a fresh process per arm) or the Dask one in
``cluster``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ptycho.fsutil import atomic_write_json, atomic_write_text

from .arms import ARMS, ArmSpec, StudyConfig, baseline_arms, describe_arm
from .figure import ArmView, load_complete_view, render_figure
from .store import ArmDataError, ArmStore, ensure_writable_dir, utc_now
from .summary import build_summary, config_mismatches, render_markdown

log = logging.getLogger(__name__)

FIGURE_NAME = "dose_comparison.png"
VERSION_PACKAGES = ("numpy", "tensorflow-cpu", "tensorflow", "keras", "matplotlib", "h5py",
                    "ptycho-harness")


class ArmRunner(Protocol):
    """Trains and evaluates one arm, writing ARM_FILES into ``staging``; returns metrics.json."""

    def run(self, arm: ArmSpec, staging: Path) -> dict[str, Any]: ...


class StudyInterrupted(Exception):
    """A signal stopped the study while ``arm`` was being trained (nothing of it committed)."""

    def __init__(self, arm: str | None, reason: str) -> None:
        super().__init__(f"interrupted ({reason}) while running arm {arm}" if arm
                         else f"interrupted ({reason})")
        self.arm = arm


@dataclass
class StudyResult:
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    summary_path: Path | None = None


def package_versions() -> dict[str, str]:
    """Versions of python and the study's packages (without importing them)."""
    out = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def load_view(store: ArmStore, arm: ArmSpec, metrics: dict[str, Any]) -> ArmView:
    """Figure inputs of a complete arm (reconstruction and ground truth) from its recon.npz;
    ArmDataError when unreadable."""
    try:
        return load_complete_view(store.arm_dir(arm.name), arm, metrics)
    except ValueError as exc:
        raise ArmDataError(str(exc)) from exc


def _never() -> bool:
    return False


class ArmExecutor(Protocol):
    """Trains ``arms`` (none complete yet) and commits each through ``store``.

    Records trained/failed arms in ``result``; raises StudyInterrupted on a signal.
    """

    def run(self, store: ArmStore, cfg: StudyConfig, arms: list[ArmSpec], result: StudyResult,
            stop_requested: Callable[[], bool]) -> None: ...


def select_arms(store: ArmStore, cfg: StudyConfig, arms: list[ArmSpec], force: bool,
                result: StudyResult) -> list[ArmSpec]:
    """The arms to train: not complete (or all with ``force``); complete arms recorded with
    other settings or unreadable metrics go to ``result.failed``, the rest to ``skipped``."""
    pending: list[ArmSpec] = []
    for arm in arms:
        if not store.is_complete(arm.name) or force:
            pending.append(arm)
            continue
        try:
            recorded = store.load_metrics(arm.name)
        except ArmDataError as exc:
            result.failed[arm.name] = str(exc)
            log.error("arm %s: %s", arm.name, exc)
            continue
        diff = config_mismatches({arm.name: recorded}, cfg)
        if diff:
            msg = (f"complete arm in {store.arm_dir(arm.name)} was run with different "
                   f"settings {diff[arm.name]}; use --force or another --output-dir")
            result.failed[arm.name] = msg
            log.error("arm %s: %s", arm.name, msg)
            continue
        log.info("arm %s: complete, skipping (use --force to re-run)", arm.name)
        result.skipped.append(arm.name)
    return pending


def log_arm_done(arm: str, metrics: dict[str, Any]) -> None:
    met, wall = metrics["metrics"], metrics["wall_time_s"]
    steps = ", ".join(f"{k} {wall[k]:.1f} s" for k in ("simulate", "train", "reconstruct",
                                                        "evaluate") if wall.get(k))
    log.info("arm %s: done in %.1f s (%s); amp PSNR %.2f dB, SSIM %.3f (constant image SSIM "
             "%.3f)", arm, wall["total"], steps, met["amp_psnr"], met["amp_ssim"],
             metrics["baseline"]["amp_ssim"])


@dataclass
class SequentialExecutor:
    """Arms one after another through an ArmRunner (made lazily, once)."""

    runner_factory: Callable[[StudyConfig], ArmRunner]

    def run(self, store: ArmStore, cfg: StudyConfig, arms: list[ArmSpec], result: StudyResult,
            stop_requested: Callable[[], bool] = _never) -> None:
        """``stop_requested`` reports a signal seen by the caller: the exception a signal
        handler raises can be turned into another one by library code that catches everything
        (TensorFlow turned it into a TypeError), so an arm failing after a stop request counts
        as interrupted."""
        runner: ArmRunner | None = None
        for arm in arms:
            if stop_requested():
                raise StudyInterrupted(arm.name, "stop requested")
            log.info("arm %s (%s): %s [%s]", arm.name, arm.label,
                     "reconstructing" if arm.is_baseline else "training", describe_arm(cfg, arm))
            start = time.perf_counter()
            try:
                if runner is None:
                    runner = self.runner_factory(cfg)
                with store.staging(arm.name) as staging:
                    metrics = runner.run(arm, staging)
                    store.commit(staging, arm.name)
            except Exception as exc:  # one failing arm must not stop the others
                if stop_requested():
                    raise StudyInterrupted(arm.name,
                                           f"stop requested; {type(exc).__name__}") from exc
                result.failed[arm.name] = f"{type(exc).__name__}: {exc}"
                log.error("arm %s FAILED after %.1f s: %s", arm.name,
                          time.perf_counter() - start, exc)
                continue
            except BaseException as exc:  # KeyboardInterrupt / SIGTERM: staging removed
                raise StudyInterrupted(arm.name, type(exc).__name__) from exc
            result.trained.append(arm.name)
            log_arm_done(arm.name, metrics)


def run_arms(store: ArmStore, cfg: StudyConfig, arms: list[ArmSpec], force: bool,
             runner_factory: Callable[[StudyConfig], ArmRunner] | None, result: StudyResult,
             stop_requested: Callable[[], bool] = _never,
             executor: ArmExecutor | None = None) -> None:
    """Train every selected arm that is not complete (or all with ``force``) with
    ``executor`` (default: one after another through ``runner_factory``)."""
    pending = select_arms(store, cfg, arms, force, result)
    if stop_requested() and pending:
        raise StudyInterrupted(pending[0].name, "stop requested")
    if not pending:
        return
    if executor is None:
        if runner_factory is None:
            raise ValueError("runner_factory or executor is required to train arms")
        executor = SequentialExecutor(runner_factory)
    executor.run(store, cfg, pending, result, stop_requested)


def study_arms(engine: str | None) -> tuple[ArmSpec, ...]:
    """The arms of a complete study: the four PINN arms, and a baseline arm per dose for
    ``engine`` (None: no baseline)."""
    return ARMS + (baseline_arms(engine) if engine else ())


def merge(store: ArmStore, cfg: StudyConfig, result: StudyResult,
          run_info: dict[str, Any], engine: str | None = None) -> dict[str, Any]:
    """Rebuild figure, summary.json and summary.md from every complete arm of
    ``study_arms(engine)``."""
    per_arm: dict[str, dict[str, Any]] = {}
    views: dict[str, ArmView] = {}
    expected = study_arms(engine)
    for arm in expected:
        if not store.is_complete(arm.name):
            continue
        try:
            metrics = store.load_metrics(arm.name)
            views[arm.name] = load_view(store, arm, metrics)
        except (ArmDataError, KeyError, TypeError, ValueError) as exc:
            result.failed.setdefault(arm.name, f"unreadable outputs: {exc}")
            log.error("arm %s: unreadable outputs: %s", arm.name, exc)
            continue
        per_arm[arm.name] = metrics
    suptitle = (f"Dose-response study: reconstructions (amplitude, phase) on the test set "
                f"(N={cfg.N}, gridsize={cfg.gridsize}, {cfg.nepochs} epochs"
                f"{', --quick' if cfg.quick else ''})")
    figure = render_figure(views, store.root / FIGURE_NAME, suptitle, expected)
    summary = build_summary(cfg, per_arm, figure, package_versions(), run_info, expected)
    atomic_write_json(store.root / "summary.json", summary)
    atomic_write_text(store.root / "summary.md", render_markdown(summary))
    return summary


def run_study(output_dir: Path, cfg: StudyConfig, arms: list[ArmSpec], *, force: bool = False,
              merge_only: bool = False,
              runner_factory: Callable[[StudyConfig], ArmRunner] | None = None,
              stop_requested: Callable[[], bool] = _never,
              executor: ArmExecutor | None = None,
              run_extra: dict[str, Any] | None = None,
              engine: str | None = None) -> StudyResult:
    """Run (unless ``merge_only``) the selected arms, then merge all complete arms.

    Raises OutputDirError for an unwritable ``output_dir`` and StudyInterrupted on a signal
    (or once ``stop_requested()`` is true, see ``run_arms``); per-arm failures are collected
    in ``StudyResult.failed`` (arm -> reason).
    """
    started = time.perf_counter()
    store = ArmStore(ensure_writable_dir(output_dir))
    store.clean_stale()
    result = StudyResult()
    if not merge_only:
        if runner_factory is None and executor is None:
            raise ValueError("runner_factory or executor is required unless merge_only")
        run_arms(store, cfg, arms, force, runner_factory, result, stop_requested, executor)
    run_info = {
        "finished_utc": utc_now(),
        "mode": "merge-only" if merge_only else "run",
        "arms_selected": [a.name for a in arms],
        "trained": result.trained, "skipped": result.skipped, "failed": result.failed,
        "wall_times_s": {"this_invocation": round(time.perf_counter() - started, 3)},
        **(run_extra or {}),
    }
    result.summary = merge(store, cfg, result, run_info, engine)
    result.summary_path = store.root / "summary.json"
    return result
