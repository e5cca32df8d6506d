"""The one error type of :mod:`orchestrator.turns`."""

from __future__ import annotations

__all__ = ["TurnConfigError"]


class TurnConfigError(ValueError):
    """Invalid configuration or template. The message names the key path
    (``orchestrator.yaml: commands.x.usage: …``) or the file and line (``prompts/w.md.j2:3: …``)."""
