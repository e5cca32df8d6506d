"""Which of an agent's changed paths the harness may commit.

Input is plain data: the changed and untracked paths (repo-relative, POSIX, as ``git status``
reports them; git-ignored files are never in that list, which is how "everything not
git-ignored" is the default), a ``size_of(path)`` callable (bytes, ``None`` when the file is
gone, i.e. a deletion), a ``read_text(path)`` callable (``None`` for binary files) and a secret
scanner ``scan(text, path) -> findings`` (the harness injects ``orchestrator.vcs.secret_scan.scan_text``).

Rules, in order: a path under :data:`ALWAYS_EXCLUDED` or matching an ``exclude`` glob, or
matching no ``include`` glob, is refused as ``excluded``; a file larger than
``max_commit_bytes`` as ``oversize``; a text file in which the scanner finds anything as
``secret``. Deletions are staged. The same function reviews commits the agent made itself
(bind the callables to that commit's blobs). A refusal for ``secret`` or ``oversize`` makes the
turn ``needs_review``; ``excluded`` is the user's policy and does not.

Globs: ``*`` and ``?`` never cross ``/``, ``**`` matches any number of directories, a trailing
``/`` means "everything below"; a glob without ``/`` matches the file name at any depth
(``*.log``), one with ``/`` is anchored at the repository root (``src/**/*.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["ALWAYS_EXCLUDED", "CommitPolicy", "CommitSelection", "Refusal", "glob_match", "select_paths"]

ALWAYS_EXCLUDED: tuple[str, ...] = (".orchestrator/**",)
REVIEW_REASONS = ("secret", "oversize")


@lru_cache(maxsize=512)
def _glob_regex(glob: str) -> re.Pattern[str]:
    anchored = "/" in glob.rstrip("/")
    if glob.endswith("/"):
        glob += "**"
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 2)
            if end < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = glob[i + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    body = "".join(out)
    return re.compile(body + r"\Z" if anchored or glob.startswith("**") else r"(?:.*/)?" + body + r"\Z")


def glob_match(path: str, glob: str) -> bool:
    """True if the repo-relative POSIX ``path`` matches ``glob`` (rules in the module docstring)."""
    return _glob_regex(glob.lstrip("/") if glob.startswith("/") else glob).match(path) is not None


@dataclass(frozen=True)
class CommitPolicy:
    """``commit: {include, exclude}`` plus ``max_commit_bytes``. Defaults: include everything,
    exclude nothing beyond :data:`ALWAYS_EXCLUDED`."""

    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()
    max_commit_bytes: int = 5_000_000

    def __post_init__(self) -> None:
        for name in ("include", "exclude"):
            globs = getattr(self, name)
            if not isinstance(globs, tuple) or not all(isinstance(g, str) and g.strip() for g in globs):
                raise ValueError(f"commit.{name} must be a list of non-empty glob strings, got {globs!r}")
        if isinstance(self.max_commit_bytes, bool) or not isinstance(self.max_commit_bytes, int) \
                or self.max_commit_bytes < 1:
            raise ValueError(f"max_commit_bytes must be an int >= 1, got {self.max_commit_bytes!r}")

    def excluded(self, path: str) -> str | None:
        """The glob that excludes ``path`` (``"not included"`` if no include glob matches), or None."""
        for glob in (*ALWAYS_EXCLUDED, *self.exclude):
            if glob_match(path, glob):
                return glob
        if not any(glob_match(path, g) for g in self.include):
            return "not included"
        return None


@dataclass(frozen=True)
class Refusal:
    """A path the policy will not commit. ``reason``: ``excluded`` | ``oversize`` | ``secret``;
    ``detail``: the glob, the size, or the findings (masked by the scanner)."""

    path: str
    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class CommitSelection:
    """``stage``: paths to ``git add`` (in input order); ``refused``: the rest, with reasons."""

    stage: tuple[str, ...]
    refused: tuple[Refusal, ...]

    @property
    def needs_review(self) -> bool:
        """True when a secret or an oversize file was refused (the turn is ``needs_review``)."""
        return any(r.reason in REVIEW_REASONS for r in self.refused)

    def to_dict(self) -> dict[str, Any]:
        return {"staged": list(self.stage), "refused": [r.to_dict() for r in self.refused]}


def select_paths(paths: Sequence[str], policy: CommitPolicy, *, size_of: Callable[[str], int | None],
                 read_text: Callable[[str], str | None],
                 scan: Callable[[str, str], Sequence[object]]) -> CommitSelection:
    """Split ``paths`` into staged and refused (see the module docstring). Duplicates are
    dropped; nothing is read for excluded or oversize files."""
    stage: list[str] = []
    refused: list[Refusal] = []
    for path in dict.fromkeys(paths):
        glob = policy.excluded(path)
        if glob is not None:
            refused.append(Refusal(path, "excluded", glob))
            continue
        size = size_of(path)
        if size is None:  # deleted in the working tree: staging records the deletion
            stage.append(path)
            continue
        if size > policy.max_commit_bytes:
            refused.append(Refusal(path, "oversize", f"{size} bytes > max_commit_bytes {policy.max_commit_bytes}"))
            continue
        text = read_text(path)
        findings = list(scan(text, path)) if text is not None else []
        if findings:
            refused.append(Refusal(path, "secret", "; ".join(str(f) for f in findings[:5])))
            continue
        stage.append(path)
    return CommitSelection(tuple(stage), tuple(refused))
