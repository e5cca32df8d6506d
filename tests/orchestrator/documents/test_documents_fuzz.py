"""Truncated / shuffled / mangled documents: every parser either succeeds (and then renders
the input back byte-identically) or raises ParseError — never another exception."""

import random
from pathlib import Path

import pytest

from orchestrator.documents import findings, fix_plan, handoff, ledger, plan, validate
from orchestrator.documents.common import decode
from orchestrator.documents.errors import ParseError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "documents"
CASES = [
    (handoff, "seeds/input.example.md"), (handoff, "input_bold.md"), (handoff, "input_summary_first.md"),
    (ledger, "seeds/galph_memory.example.md"), (ledger, "galph_memory_compact.md"),
    (fix_plan, "fix_plan.md"), (fix_plan, "fix_plan_single_focus.md"), (plan, "implementation.md"),
    (findings, "findings.md"),
]
PLAN = fix_plan.load(FIXTURES / "fix_plan.md")


def _variants(text: str, rng: random.Random) -> list[str]:
    lines = text.splitlines(keepends=True)
    out = [text[:rng.randrange(len(text))] for _ in range(40)]
    for _ in range(20):
        shuffled = lines[:]
        rng.shuffle(shuffled)
        out.append("".join(shuffled))
    for _ in range(30):
        mangled = lines[:]
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(mangled))
            op = rng.randrange(4)
            if op == 0:
                del mangled[k]
            elif op == 1:
                mangled.insert(k, mangled[rng.randrange(len(mangled))])
            elif op == 2:
                mangled[k] = mangled[k][: rng.randrange(len(mangled[k]) + 1)]
            else:
                mangled.insert(k, rng.choice(["```\n", "---\n", "## 2026-01-0\n", "# 2026-01-07T99:99Z: x\n",
                                              "- focus=\n", "| ID |\n", "## [X-1] dup\n", "### Phase\n", "\r\n"]))
        out.append("".join(mangled))
    return out


def _exercise(module, doc) -> None:
    """Touch the derived properties callers rely on; they must not raise either."""
    if module is ledger:
        for e in doc.entries:
            ledger.entry_to_dict(e)
        ledger.entries_in_time_order(doc)
    elif module is handoff:
        _ = (doc.focus_id, doc.focus_title, doc.mapped_tests, doc.summary, doc.command_blocks, doc.exit_criteria)
        validate.validate_handoff(doc, PLAN, "/repo")
    elif module is fix_plan:
        validate.validate_fix_plan(doc)
    elif module is plan:
        plan.first_unfinished_phase(doc)
    else:
        validate.validate_findings(doc)


@pytest.mark.parametrize("module, name", CASES, ids=[n for _, n in CASES])
def test_mangled_documents_parse_or_raise_parse_error(module, name):
    text = (FIXTURES / name).read_text()
    rng = random.Random(name)
    outcomes = {"ok": 0, "error": 0}
    for variant in _variants(text, rng):
        try:
            doc = module.parse(variant, name)
        except ParseError as exc:
            assert exc.path == name and exc.line >= 0
            outcomes["error"] += 1
            continue
        assert module.render(doc) == variant
        _exercise(module, doc)
        outcomes["ok"] += 1
    assert outcomes["ok"] > 0  # the fuzzer also produces documents that still parse


@pytest.mark.parametrize("name", ["seeds/input.example.md", "seeds/galph_memory.example.md"])
def test_truncated_bytes_give_parse_error_or_text(name):
    data = (FIXTURES / name).read_bytes()
    cuts = [i for i in range(len(data)) if data[i] >= 0x80][:40]  # cut inside multi-byte characters
    for cut in cuts:
        try:
            decode(data[:cut], name)
        except ParseError as exc:
            assert exc.line == data.count(b"\n", 0, cut) + 1


_TOKENS = ["# ", "## ", "### ", "2026-01-07T073000Z", "2026-01-06T14:00:00Z", ": ", " — ", "```", "```bash", "~~~",
           "---", "- ", "1. ", "- [ ] ", "- [x] ", "A1: ", "Phase A: ", "[FIX-A-001] ", "FIX-A-001", ".F1",
           "Status: ", "done", "focus=", " state=", " dwell=", "2", " next_action=", "<Action State>", "=[x]",
           "notes=", "| ID | Date |", "|---|---|", "| X-1 | d |", "Focus: ", "Artifacts: ", "Do Now", "Summary:",
           "# Expected: 2 passed", "check: `ls`", "**", "`", "\n", "\n", "\n", " ", "\t", "\r\n", "\\|", "é", "—"]


@pytest.mark.parametrize("module", [handoff, ledger, fix_plan, plan, findings], ids=lambda m: m.__name__.split(".")[-1])
def test_token_soup_parses_or_raises_parse_error(module):
    rng = random.Random(module.__name__)
    for _ in range(300):
        text = "".join(rng.choice(_TOKENS) for _ in range(rng.randint(1, 80)))
        try:
            doc = module.parse(text, "soup.md")
        except ParseError:
            continue
        assert module.render(doc) == text
        _exercise(module, doc)


@pytest.mark.parametrize("module", [handoff, ledger, fix_plan, plan, findings], ids=lambda m: m.__name__.split(".")[-1])
def test_every_loader_rejects_non_utf8_and_empty_files(module, tmp_path):
    bad = tmp_path / "doc.md"
    bad.write_bytes("## ok — fine\n\n".encode() + b"caf\xc3(\n")
    with pytest.raises(ParseError) as err:
        module.load(bad)
    assert (err.value.path, err.value.line) == (str(bad), 3)
    bad.write_bytes(b"")
    with pytest.raises(ParseError, match="empty file"):
        module.load(bad)
