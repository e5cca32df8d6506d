"""Relative links from the written HTML file to files in the repo."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


@dataclass(frozen=True)
class Linker:
    """Turns repo paths into hrefs relative to the directory the HTML is written to.

    repo_root and page_dir are absolute; links stay valid when both move together.
    """

    repo_root: Path
    page_dir: Path

    def rel(self, path: Path) -> str:
        """Repo-relative POSIX path for display (the absolute path if outside the repo)."""
        try:
            return path.resolve().relative_to(self.repo_root.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

    def href(self, path: Path) -> str:
        """URL-quoted relative href from the page to ``path`` (absolute or repo-relative)."""
        target = path if path.is_absolute() else self.repo_root / path
        rel = os.path.relpath(target.resolve(), self.page_dir.resolve())
        return quote(Path(rel).as_posix(), safe="/._-~")

    def href_for_markdown(self, written: str, base: Path) -> str | None:
        """Href for a relative link written in a markdown file located in ``base``.

        Links that point outside the repo are dropped (None); ``#anchor`` parts are kept.
        """
        target, _, anchor = written.partition("#")
        if not target:
            return None
        resolved = (base / target).resolve()
        try:
            resolved.relative_to(self.repo_root.resolve())
        except ValueError:
            return None
        out = self.href(resolved)
        return f"{out}#{quote(anchor, safe='-_.')}" if anchor else out
