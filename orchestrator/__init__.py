"""Supervisor/worker agent harness. Never imports :mod:`ptycho`; it only runs commands."""

__all__ = ["__version__"]
__version__ = "0.1.0"
