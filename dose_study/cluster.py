"""Study arms as Dask tasks: ``--scheduler local`` (embedded LocalCluster) or an address.

Each arm is one task (``arm_process.arm_task``) that trains the arm in a fresh process on its
worker and returns the arm's files; this client writes them into a staging directory of the
study and commits it (``ArmStore``), so workers need no shared filesystem with the study
directory and a worker dying mid-arm leaves nothing in it. Progress lines on the client, one
per state change: queued, running on <worker>, epoch k of n, done in s, failed: reason.

Retries: a worker that dies mid-arm makes the scheduler run the task elsewhere (its
``distributed.scheduler.allowed-failures``; the LocalCluster gets ``--retries``); an arm
process that dies without a result (e.g. killed for memory) is resubmitted by this client up to
``--retries`` times. An arm that fails by itself (non-finite loss) is not retried.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import arm_process
from .arms import ArmSpec, StudyConfig, describe_arm
from .store import ArmStore, arm_files
from .study import StudyInterrupted, StudyResult, log_arm_done
from .subprocess_runner import annotate_metrics

log = logging.getLogger(__name__)

ADDRESS_RE = re.compile(r"^([a-z]+://)?[\w.\-\[\]:]+:\d+$")
CANCEL_WAIT_S = arm_process.TERM_GRACE_S + 10.0


class ShippedByValue:
    """A function that unpickles as itself by value (``cloudpickle``; distributed pickles task
    functions by reference): the task reaches a worker even when its Python lacks ``dose_study``,
    and reports that by name instead of an unpickling error; the arm process it starts imports
    the installed package."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        import cloudpickle

        return cloudpickle.loads, (cloudpickle.dumps(self.fn),)


class SchedulerUnreachable(RuntimeError):
    """The Dask scheduler at the given address did not answer in time."""


@dataclass(frozen=True)
class ClusterOptions:
    """scheduler: "local" or a scheduler address (tcp://host:port); max_parallel: LocalCluster
    worker processes (one arm each at a time); retries: see the module docstring;
    threads_per_arm: TensorFlow threads of each arm process (None: the worker's cores divided
    by the arms it runs at once); connect_timeout_s: how long to wait for the scheduler."""

    scheduler: str
    max_parallel: int = 2
    retries: int = 2
    threads_per_arm: int | None = None
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.scheduler != "local" and not ADDRESS_RE.match(self.scheduler):
            raise ValueError(f"--scheduler must be none, local or a scheduler address such as "
                             f"tcp://host:8786, got {self.scheduler!r}")
        if self.max_parallel < 1:
            raise ValueError(f"--max-parallel must be >= 1, got {self.max_parallel}")
        if self.retries < 0:
            raise ValueError(f"--retries must be >= 0, got {self.retries}")
        if self.threads_per_arm is not None and self.threads_per_arm < 1:
            raise ValueError(f"--threads-per-arm must be >= 1, got {self.threads_per_arm}")


class DaskSession:
    """A connected Client (and the LocalCluster it owns); a context manager that closes both."""

    def __init__(self, opts: ClusterOptions) -> None:
        import dask
        from distributed import Client, LocalCluster

        self.opts = opts
        self.cluster = None
        if opts.scheduler == "local":
            from ptycho.execution import usable_cpus

            self.threads = opts.threads_per_arm or max(1, usable_cpus() // opts.max_parallel)
            with dask.config.set({"distributed.scheduler.allowed-failures": opts.retries}):
                self.cluster = LocalCluster(n_workers=opts.max_parallel, threads_per_worker=1,
                                            processes=True, dashboard_address=":0",
                                            memory_limit=0, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        else:
            self.threads = opts.threads_per_arm
            try:
                self.client = Client(opts.scheduler, timeout=f"{opts.connect_timeout_s}s")
            except (OSError, TimeoutError) as exc:
                raise SchedulerUnreachable(
                    f"cannot reach the Dask scheduler at {opts.scheduler} within "
                    f"{opts.connect_timeout_s:g} s: {exc}") from exc

    def describe(self) -> dict[str, Any]:
        """For summary.json's run record: scheduler address, workers, dashboard."""
        info = self.client.scheduler_info()
        return {"scheduler": self.opts.scheduler, "address": info.get("address"),
                "workers": len(info.get("workers", {})), "dashboard": self.dashboard_link()}

    def dashboard_link(self) -> str | None:
        services = self.client.scheduler_info().get("services", {})
        return self.client.dashboard_link if "dashboard" in services else None

    def __enter__(self) -> DaskSession:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.client.close(timeout=10)
        finally:
            if self.cluster is not None:
                self.cluster.close(timeout=20)


class DaskArmExecutor:
    """``study.ArmExecutor`` submitting each arm as one task to a DaskSession's client."""

    def __init__(self, session: DaskSession) -> None:
        import cloudpickle

        cloudpickle.register_pickle_by_value(arm_process)
        self.task = ShippedByValue(arm_process.arm_task)
        self.session = session
        self.client = session.client
        self.retries = session.opts.retries
        self._runs: dict[str, int] = {}
        self._lock = threading.Lock()

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1]
        arm, kind = msg.get("arm"), msg.get("kind")
        if kind == "running":
            with self._lock:
                self._runs[arm] = self._runs.get(arm, 0) + 1
                n = self._runs[arm]
            again = f" (attempt {n})" if n > 1 else ""
            log.info("arm %s: running on %s%s, %s TF threads", arm, msg.get("worker"), again,
                     msg.get("threads"))
        elif kind == "epoch":
            log.info("arm %s: epoch %s of %s on %s", arm, msg.get("epoch"), msg.get("nepochs"),
                     msg.get("worker"))

    def run(self, store: ArmStore, cfg: StudyConfig, arms: list[ArmSpec], result: StudyResult,
            stop_requested: Any) -> None:
        from distributed import Event, as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        run_id = uuid.uuid4().hex[:12]
        topic = f"dose-study-progress-{run_id}"
        cancel = Event(f"dose-study-cancel-{run_id}", client=self.client)
        self.client.subscribe_topic(topic, self._on_event)
        link = self.session.dashboard_link()
        if link:
            log.info("Dask dashboard: %s", link)
        by_name = {a.name: a for a in arms}
        attempts = dict.fromkeys(by_name, 0)
        futures: dict[Any, str] = {}
        started = {}

        def submit(name: str) -> Any:
            attempts[name] += 1
            spec = {"arm": name, "config": cfg.to_dict(), "files": list(arm_files(name)),
                    "topic": topic, "cancel_event": cancel.name,
                    "threads": self.session.threads}
            fut = self.client.submit(self.task, spec, pure=False,
                                     key=f"dose-arm-{name}-{run_id}-{attempts[name]}")
            futures[fut] = name
            started.setdefault(name, time.perf_counter())
            return fut

        for arm in arms:
            submit(arm.name)
            log.info("arm %s (%s): queued [%s]", arm.name, arm.label, describe_arm(cfg, arm))
        pending = as_completed(list(futures))
        try:
            for fut in pending:
                name = futures.pop(fut)
                try:
                    out = fut.result()
                except (KilledWorker, FutureCancelledError) as exc:
                    self._fail(result, name, f"{type(exc).__name__}: {exc}")
                    continue
                except Exception as exc:  # the arm process died without a result
                    reason = f"{type(exc).__name__}: {exc}"
                    if attempts[name] <= self.retries and not stop_requested():
                        log.warning("arm %s: failed: %s; retry %d of %d", name, reason,
                                    attempts[name], self.retries)
                        pending.add(submit(name))
                        continue
                    self._fail(result, name, reason)
                    continue
                self._finish(store, result, by_name[name], out, attempts[name],
                             time.perf_counter() - started[name])
                if stop_requested():
                    raise StudyInterrupted(", ".join(sorted(futures.values())) or None,
                                           "stop requested")
        except BaseException as exc:
            running = ", ".join(sorted(set(futures.values()))) or None
            self._cancel(cancel, list(futures))
            if isinstance(exc, StudyInterrupted):
                raise
            raise StudyInterrupted(running, type(exc).__name__) from exc
        finally:
            self.client.unsubscribe_topic(topic)

    def _fail(self, result: StudyResult, name: str, reason: str) -> None:
        result.failed[name] = reason
        log.error("arm %s: failed: %s", name, reason)

    def _finish(self, store: ArmStore, result: StudyResult, arm: ArmSpec, out: dict[str, Any],
                attempts: int, wall: float) -> None:
        if out.get("status") != "ok":
            self._fail(result, arm.name, str(out.get("reason")))
            return
        with store.staging(arm.name) as staging:
            for fname, data in out["files"].items():
                (staging / fname).write_bytes(data)
            metrics = annotate_metrics(staging, out["worker"],
                                       {**out["process"], "attempts": attempts})
            store.commit(staging, arm.name)
        result.trained.append(arm.name)
        log.info("arm %s: committed from %s after %.1f s, attempt %d (arm process peak RSS "
                 "%.0f MB)", arm.name, out["worker"], wall, attempts,
                 out["process"]["peak_rss_mb"])
        log_arm_done(arm.name, metrics)

    def _cancel(self, cancel: Any, futures: list[Any]) -> None:
        """Stop every submitted arm: running ones end their processes, queued ones return."""
        from distributed import wait

        log.warning("cancelling %d submitted arm(s)", len(futures))
        try:
            cancel.set()
            wait(futures, timeout=CANCEL_WAIT_S)
        except BaseException as exc:  # a second Ctrl-C or a lost scheduler: cancel anyway
            log.warning("while waiting for arms to stop: %s", type(exc).__name__)
        try:
            self.client.cancel(futures, force=True)
        except Exception as exc:
            log.warning("cancel failed: %s", exc)
