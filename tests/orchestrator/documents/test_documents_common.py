"""Shared helpers: line splitting, timestamps, fences, strict UTF-8, atomic writes."""

from datetime import UTC, datetime

import pytest

from orchestrator.documents import common
from orchestrator.documents.errors import ParseError
from orchestrator.fsutil import atomic_write_text


@pytest.mark.parametrize("text", ["", "a", "a\n", "a\n\nb", "a\r\nb\r\n", "x\u2028y\n", "\n\n"])
def test_split_lines_is_lossless_and_splits_only_on_newline(text):
    lines = common.split_lines(text)
    assert "".join(lines) == text
    assert all(line.count("\n") <= 1 for line in lines)
    assert len(lines) == text.count("\n") + (0 if text.endswith("\n") or not text else 1)


@pytest.mark.parametrize("text, expected", [
    ("2026-01-06T14:00:00Z", datetime(2026, 1, 6, 14, 0, 0, tzinfo=UTC)),
    ("2026-01-07T073000Z", datetime(2026, 1, 7, 7, 30, 0, tzinfo=UTC)),
    ("2026-01-22T02:40Z", datetime(2026, 1, 22, 2, 40, tzinfo=UTC)),
    ("2026-01-22T0240Z", datetime(2026, 1, 22, 2, 40, tzinfo=UTC)),
    ("2026-01-22T02:40:05.25Z", datetime(2026, 1, 22, 2, 40, 5, 250000, tzinfo=UTC)),
    ("2026-01-22T04:40:00+02:00", datetime(2026, 1, 22, 2, 40, tzinfo=UTC)),
])
def test_parse_timestamp_forms(text, expected):
    assert common.parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["2026-13-01T00:00:00Z", "2026-01-07T7:30Z", "2026-01-07T073000", "yesterday",
                                  "2026-01-07T0730001Z", "2026-02-30T00:00Z"])
def test_parse_timestamp_rejects_bad_values(text):
    with pytest.raises(ValueError, match="bad timestamp"):
        common.parse_timestamp(text)


def test_format_timestamp_styles_round_trip():
    dt = datetime(2026, 1, 7, 7, 30, 5, tzinfo=UTC)
    assert common.format_timestamp(dt) == "2026-01-07T07:30:05Z"
    assert common.format_timestamp(dt, "compact") == "2026-01-07T073005Z"
    for style in ("extended", "compact"):
        assert common.parse_timestamp(common.format_timestamp(dt, style)) == dt
    with pytest.raises(ValueError, match="timezone-aware"):
        common.format_timestamp(datetime(2026, 1, 7))


def test_scan_fences_tracks_blocks_and_inline_spans():
    # ```` closes a ``` fence; ~~~ inside a backtick fence is content; ```x``` is an inline span.
    lines = common.split_lines("a\n```bash\nx\n````\n```\n~~~\n```\n```inline``` text\n")
    flags, fences = common.scan_fences(lines, "f.md")
    assert [(f.start, f.end, f.lang) for f in fences] == [(1, 3, "bash"), (4, 6, "")]
    assert flags == [False, True, True, True, True, True, True, False]


def test_unterminated_fence_names_the_opening_line():
    with pytest.raises(ParseError) as err:
        common.scan_fences(common.split_lines("ok\n\n  ```python\ncode\n"), "doc.md")
    assert (err.value.path, err.value.line) == ("doc.md", 3)
    assert str(err.value).startswith("doc.md:3: unterminated code fence")


def test_decode_reports_line_of_first_bad_byte():
    with pytest.raises(ParseError) as err:
        common.decode(b"one\ntwo\nthr\xffee\n", "bad.md")
    assert err.value.line == 3 and "0xff" in err.value.message


def test_code_block_splits_script_from_expected_lines():
    lines = common.split_lines("```bash\npytest -q\n\n# Expected: 2 passed, 1 skipped\n#expected: all good\n```\n")
    _, fences = common.scan_fences(lines, "x")
    block = common.code_block(lines, fences[0])
    assert block.is_command and block.has_command
    assert block.script == "pytest -q"
    first, second = block.expected
    assert (first.count, first.outcome, dict(first.counts), first.line) == (2, "passed", {"passed": 2, "skipped": 1}, 4)
    assert (second.raw, second.count, second.outcome) == ("all good", None, None)


def test_write_atomic_replaces_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "doc.md"
    target.write_text("old\n")
    atomic_write_text(target, "new\r\nline\n")
    assert target.read_bytes() == b"new\r\nline\n"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.md"]


def test_strip_md_and_base_id():
    assert common.strip_md(" **`done`** ") == "done"
    assert common.base_id("STUDY-X-001.F1") == "STUDY-X-001"
    assert common.leading_int("2 (second loop)") == 2 and common.leading_int("none") is None
