"""The ``orchestrator`` command line: the only package that prints (see :mod:`.main`)."""

from orchestrator.cli.main import main

__all__ = ["main"]
