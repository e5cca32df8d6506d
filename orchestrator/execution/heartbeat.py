"""A heartbeat for long commands: a log line every ``every_s`` seconds while a block runs
(elapsed time, bytes in the command's log, and whatever ``extra`` adds, e.g. spend so far)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["HEARTBEAT_S", "heartbeat"]

logger = logging.getLogger(__name__)

#: Default seconds between two heartbeat lines.
HEARTBEAT_S = 30.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@contextlib.contextmanager
def heartbeat(label: str, log_path: Path, every_s: float = HEARTBEAT_S,
              extra: Callable[[], str] | None = None) -> Iterator[None]:
    """Log ``<label>: running for Ns, log B bytes[, extra]`` at INFO every ``every_s`` seconds
    until the block ends (a daemon thread; never raises into the block)."""
    if every_s <= 0:
        raise ValueError(f"heartbeat every_s must be > 0, got {every_s!r}")
    start = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every_s):
            try:
                more = extra() if extra is not None else ""
            except Exception as exc:  # a heartbeat never breaks the command it watches
                more = f"({exc})"
            logger.info("%s: running for %.0fs, log %d bytes%s", label, time.monotonic() - start,
                        _size(log_path), f", {more}" if more else "")

    thread = threading.Thread(target=beat, name=f"heartbeat {label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=1.0)
