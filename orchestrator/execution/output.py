"""A command's output on its way to the log: appended as it arrives, split into lines for the
echo and for watchers (the pytest summary), truncated past a size limit with the tail kept."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OutputStream", "echo_function"]

logger = logging.getLogger("orchestrator.execution.runner")
output_logger = logging.getLogger("orchestrator.execution.runner.output")

_MAX_LINE = 64 * 1024
_TAIL = 64 * 1024


@dataclass
class OutputStream:
    """Appends raw output to ``log`` (flushed per chunk) and hands every line to the
    ``watchers`` (always) and to ``echo`` (until the log is truncated at ``limit`` bytes)."""

    log: Any
    echo: Callable[[str], None] | None
    limit: int | None = None
    watchers: tuple[Callable[[str], None], ...] = field(default_factory=tuple)
    pending: bytes = b""
    written: int = 0
    truncated: bool = False
    omitted: int = 0
    tail: bytes = b""

    def feed(self, chunk: bytes) -> None:
        if self.truncated:
            self.omitted += len(chunk)
            self.tail = (self.tail + chunk)[-_TAIL:]
        elif self.limit is not None and self.written + len(chunk) > self.limit:
            self.truncated = True
            head = max(0, self.limit - self.written)
            self.log.write(chunk[:head])
            self.log.flush()
            self.omitted, self.tail = len(chunk) - head, chunk[head:][-_TAIL:]
            logger.warning("output over %d bytes: log truncated, echo stopped", self.limit)
        else:
            self.log.write(chunk)
            self.log.flush()
            self.written += len(chunk)
        self.pending += chunk
        *complete, self.pending = self.pending.split(b"\n")
        if len(self.pending) > _MAX_LINE:
            complete.append(self.pending)
            self.pending = b""
        for raw in complete:
            self._line(raw.decode("utf-8", errors="replace").rstrip("\r"))

    def close(self) -> None:
        if self.truncated:  # keep the end of the output: that is where summaries are
            kept = len(self.tail)
            self.log.write(f"\n# [runner] log truncated at {self.limit} bytes; "
                           f"{self.omitted - kept} bytes omitted, last {kept} follow\n".encode())
            self.log.write(self.tail + (b"" if self.tail.endswith(b"\n") else b"\n"))
        if self.pending:
            if not self.truncated:
                self.log.write(b"\n")
            self._line(self.pending.decode("utf-8", errors="replace").rstrip("\r"))
            self.pending = b""
        self.log.flush()

    def _line(self, line: str) -> None:
        for watch in self.watchers:  # still watched after truncation: summaries come last
            watch(line)
        if self.echo is not None and not self.truncated:
            self.echo(line)


def echo_function(echo: bool | Callable[[str], None]) -> Callable[[str], None] | None:
    """``True``: each line at INFO on ``orchestrator.execution.runner.output``; a callable: itself;
    ``False``: no echo."""
    if callable(echo):
        return echo
    if echo:
        return lambda line: output_logger.info("%s", line)
    return None
