"""The study's default arm runner: each arm in a fresh subprocess, one after another.

``SubprocessArmRunner.run(arm, staging)`` has the ``study.ArmRunner`` signature: the child
(``arm_process``) writes the arm's files into ``staging``; this process adds where the arm ran
(``worker``, ``process``) to metrics.json and returns it; the caller commits. The parent never
imports TensorFlow, so its memory stays small and each arm's memory is returned when its
process ends.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptycho.fsutil import atomic_write_json

from .arm_process import ArmProcessError, launch_arm
from .arms import ArmSpec, StudyConfig
from .recipe import ArmFailure
from .store import read_json

log = logging.getLogger(__name__)


def annotate_metrics(staging: Path, worker: str, process: dict[str, Any]) -> dict[str, Any]:
    """Add ``worker`` (who ran the arm) and ``process`` (pid, peak RSS, ...) to metrics.json."""
    path = staging / "metrics.json"
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        raise ArmFailure(f"{path}: expected a JSON object")
    metrics["worker"] = worker
    metrics["process"] = process
    atomic_write_json(path, metrics)
    return metrics


class SubprocessArmRunner:
    """Runs each arm with ``launch_arm``; child output lines go to ``on_line(arm, line)``."""

    def __init__(self, cfg: StudyConfig, on_line: Callable[[str, str], None] | None = None,
                 threads: int | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.cfg = cfg
        self.on_line = on_line or (lambda arm, line: log.info("[%s] %s", arm, line))
        self.threads = threads
        self.should_stop = should_stop
        self.worker = f"local-subprocess@{socket.gethostname()}"

    def run(self, arm: ArmSpec, staging: Path) -> dict[str, Any]:
        """Train ``arm`` in a child process into ``staging``; its metrics.json object.

        Raises ArmFailure when the arm failed or its process died without a result.
        """
        try:
            res = launch_arm(arm.name, staging, self.cfg.to_dict(), threads=self.threads,
                             on_line=lambda line: self.on_line(arm.name, line),
                             should_stop=self.should_stop)
        except ArmProcessError as exc:
            raise ArmFailure(str(exc)) from exc
        if res.status == "interrupted":
            raise ArmFailure(f"arm {arm.name}: stopped")
        if res.status != "ok":
            raise ArmFailure(res.reason)
        log.info("arm %s: process %d peak RSS %.0f MB", arm.name, res.pid, res.peak_rss_mb)
        return annotate_metrics(staging, self.worker, {
            "pid": res.pid, "peak_rss_mb": round(res.peak_rss_mb, 1),
            "wall_s": round(res.wall_s, 3), "threads": self.threads})
