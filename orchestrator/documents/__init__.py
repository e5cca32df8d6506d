"""Parsers and renderers for the harness's markdown documents (lossless round trip).

Modules: :mod:`.handoff` for ``input.md`` (written by :mod:`.handoff_draft`, checked by
:mod:`.handoff_check`), :mod:`.ledger` for
``galph_memory.md``, :mod:`.fix_plan`, :mod:`.plan` (``implementation.md``), :mod:`.findings`,
and :mod:`.validate`. Each parser offers ``parse(text, path)``, ``render(doc)`` and
``load(path)``; ``render(parse(text)) == text`` for every document that parses.
"""

from . import findings, fix_plan, handoff, ledger, plan, validate
from .errors import DocumentError, ParseError, ReadOnlyDialectError, UnknownIdError

__all__ = ["DocumentError", "ParseError", "ReadOnlyDialectError", "UnknownIdError", "findings", "fix_plan",
           "handoff", "ledger", "plan", "validate"]
