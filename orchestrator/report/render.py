"""Render :class:`ReportData` to one self-contained HTML document.

Jinja2 templates (autoescape on) are package data under ``templates/``; CSS and the
small filter script are inlined from the same folder. Markdown (``input.md``) goes
through markdown-it-py with raw HTML disabled; external links become plain text and
non-``data:`` images become placeholders, so the page never fetches anything.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

import jinja2
from markdown_it import MarkdownIt
from markdown_it.token import Token

from orchestrator.report.model import ReportData

log = logging.getLogger(__name__)

_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")
HrefFor = Callable[[str], "str | None"]


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """The template environment (cached: building it parses no repo data)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("orchestrator.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = format_duration
    env.filters["utc"] = format_utc
    env.filters["slug"] = slug
    return env


def format_duration(seconds: float | None) -> str:
    """`12.3 s`, `4 min 05 s`, `1 h 02 min`; `—` when unknown."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_utc(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def slug(value: str) -> str:
    """A string safe for an element id."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-") or "x"


def _make_markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    return md


def render_markdown(text: str, href_for: HrefFor | None = None) -> str:
    """Markdown → HTML fragment that references nothing outside the page.

    href_for maps a relative link target (as written) to the href to emit, or None
    to drop the link and keep its text.
    """
    md = _make_markdown()
    env: dict = {}
    tokens = md.parse(text, env)
    for block in tokens:
        if block.children:
            block.children = _neutralise(block.children, href_for)
    return md.renderer.render(tokens, md.options, env)


def _neutralise(children: list[Token], href_for: HrefFor | None) -> list[Token]:
    out: list[Token] = []
    stack: list[Token] = []  # open link tokens, to retag their closers
    for tok in children:
        if tok.type == "link_open":
            href = str(tok.attrGet("href") or "")
            if href.startswith("#"):
                pass
            elif _EXTERNAL.match(href):
                tok.tag = "span"
                tok.attrs = {"class": "ext-link", "title": href}
            else:
                target = href_for(href) if href_for else None
                if target is None:
                    tok.tag = "span"
                    tok.attrs = {"class": "dead-link", "title": href}
                else:
                    tok.attrSet("href", target)
            stack.append(tok)
        elif tok.type == "link_close" and stack:
            tok.tag = stack.pop().tag
        elif tok.type == "image":
            src = str(tok.attrGet("src") or "")
            if not src.startswith("data:image/"):
                alt = "".join(c.content for c in tok.children or []) or "image"
                placeholder = Token("text", "", 0)
                placeholder.content = f"[image: {alt} — {src}]"
                tok = placeholder
        out.append(tok)
    return out


def render_html(data: ReportData) -> str:
    """The whole page as one string (UTF-8 text, no external references)."""
    template = _environment().get_template("report.html.j2")
    return template.render(report=data)
