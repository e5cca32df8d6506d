"""The ``notify:`` hook: an argv template run (never through a shell) on loop events.

``notify: ["notify-send", "orchestrator {event}", "{focus}: {message}"]`` — each element may
contain ``{event}`` (one of :data:`NOTIFY_EVENTS`), ``{focus}``, ``{message}`` and
``{report_dir}``, substituted in one pass (text inserted for one placeholder is never
re-substituted). The notifier runs with stdin from ``/dev/null`` in its own process group,
bounded by a timeout; a missing, failing or hanging notifier is logged and reported in the
returned :class:`NotifyResult`, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NOTIFY_EVENTS", "NOTIFY_PLACEHOLDERS", "NotifyResult", "notify", "render_notify_argv",
           "unknown_placeholders"]

logger = logging.getLogger(__name__)

NOTIFY_EVENTS = ("done", "blocked", "breaker", "budget", "error", "refused", "peer_dead")
NOTIFY_PLACEHOLDERS = ("event", "focus", "message", "report_dir")
_PLACEHOLDER = re.compile(r"\{(event|focus|message|report_dir)\}")
_ANY_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class NotifyResult:
    """``ok``: exited 0 in time. ``error``: why not (``None`` when ok)."""

    argv: tuple[str, ...]
    rc: int | None
    ok: bool
    error: str | None = None


def unknown_placeholders(template: Sequence[str]) -> list[str]:
    """Names in ``{…}`` that are not :data:`NOTIFY_PLACEHOLDERS` (for config validation)."""
    return [m.group(1) for arg in template for m in _ANY_PLACEHOLDER.finditer(arg)
            if m.group(1) not in NOTIFY_PLACEHOLDERS]


def render_notify_argv(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Substitute the placeholders of every element in one pass."""
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in template]


def notify(template: Sequence[str], event: str, *, focus: str = "", message: str = "", report_dir: str = "",
           timeout_s: float = 30.0, cwd: Path | None = None) -> NotifyResult | None:
    """Run the notifier for ``event``; ``None`` when no notifier is configured (empty template).
    An unknown ``event`` is a programming error and raises ``ValueError``."""
    if event not in NOTIFY_EVENTS:
        raise ValueError(f"unknown notify event {event!r} (expected {', '.join(NOTIFY_EVENTS)})")
    if not template:
        return None
    argv = tuple(render_notify_argv(template, {"event": event, "focus": focus, "message": message,
                                               "report_dir": report_dir}))
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        logger.warning("notifier %s could not run: %s", argv[0], exc)
        return NotifyResult(argv, None, False, f"could not run: {exc}")
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        logger.warning("notifier %s timed out after %gs and was killed", argv[0], timeout_s)
        return NotifyResult(argv, None, False, f"timed out after {timeout_s:g}s")
    if proc.returncode != 0:
        tail = out.decode("utf-8", "replace").strip()[-300:]
        logger.warning("notifier %s exited with rc %d: %s", argv[0], proc.returncode, tail)
        return NotifyResult(argv, proc.returncode, False, f"exited with rc {proc.returncode}: {tail}")
    logger.info("notified %s (%s)", event, argv[0])
    return NotifyResult(argv, 0, True)

