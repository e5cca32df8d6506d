"""Exceptions raised by the document parsers and their mutation helpers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class DocumentError(Exception):
    """Base class of every error raised by :mod:`orchestrator.documents`."""


class ParseError(DocumentError, ValueError):
    """Malformed document: ``str(err)`` reads ``path:line: message``.

    ``line`` is 1-based; 0 means the problem concerns the file as a whole.
    """

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        self.path = str(path)
        self.line = int(line)
        self.message = message
        super().__init__(f"{self.path}:{self.line}: {message}")

    def __reduce__(self):  # keep pickling/copying working with our 3-arg signature
        return (type(self), (self.path, self.line, self.message))


class UnknownIdError(DocumentError, KeyError):
    """An item/finding/plan ID that the document does not contain; lists the known IDs."""

    def __init__(self, path: Path | str, kind: str, wanted: str, known: Iterable[str]) -> None:
        self.path = str(path)
        self.kind = kind
        self.wanted = wanted
        self.known = tuple(known)
        shown = ", ".join(self.known) if self.known else "none"
        self.message = f"{self.path}: unknown {kind} {wanted!r}; known: {shown}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return self.message

    def __reduce__(self):
        return (type(self), (self.path, self.kind, self.wanted, self.known))


class ReadOnlyDialectError(DocumentError):
    """A mutation was requested on a real-world dialect that the harness only reads."""
