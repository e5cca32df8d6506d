"""The HTML review page (orchestrator.report): structure, warnings, ordering, self-containment.

Every test builds a real synthetic repo (tests/fixtures/report/) in tmp_path, writes the page
with the public API and inspects the HTML with html.parser. No browser here (see
test_report_browser.py).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from orchestrator.fsutil import atomic_write_text
from orchestrator.report import build_report, render_html, write_report
from orchestrator.report.board import attempt_result
from orchestrator.report.render import render_markdown

_SPEC = importlib.util.spec_from_file_location(
    "report_synthetic_repo", Path(__file__).resolve().parents[2] / "fixtures" / "report" / "synthetic_repo.py")
synthetic = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(synthetic)

NOW = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)


class Page(HTMLParser):
    """Start tags with attributes, in document order, plus the text inside each element id."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        out = []
        for t, a in self.tags:
            if tag is not None and t != tag:
                continue
            if all((a.get(k.replace("_", "-")) == v if v is not True else k.replace("_", "-") in a)
                   for k, v in attrs.items()):
                out.append(a)
        return out

    def with_class(self, cls: str, tag: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.tags if (tag is None or t == tag) and cls in a.get("class", "").split()]


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return synthetic.make_repo(tmp_path / "repo")


@pytest.fixture()
def page_path(repo: Path, tmp_path: Path) -> Path:
    return write_report(repo, tmp_path / "out" / "report.html", now=NOW)


@pytest.fixture()
def page(page_path: Path) -> Page:
    return Page(page_path.read_text(encoding="utf-8"))


def test_page_has_board_timeline_runs_studies_and_handoff(page: Page) -> None:
    for section in ("board", "timeline", "runs", "studies", "handoff", "warnings"):
        assert page.find("section", id=section), f"missing section #{section}"
    assert page.find("select", id="focus-filter")
    focuses = [a["value"] for a in page.find("option")]
    assert focuses[0] == "" and {"FOCUS-A-001", "FOCUS-B-002", "PERF-THROUGHPUT-004"} <= set(focuses)
    cards = {a["data-run-id"]: a for a in page.with_class("run-card", "article")}
    assert set(cards) == {"2026-01-07T100000Z", "2026-01-07T120000Z", "2026-01-07T130000Z"}
    assert cards["2026-01-07T100000Z"]["data-outcome"] == "pass"
    assert cards["2026-01-07T120000Z"]["data-outcome"] == "timeout"
    assert cards["2026-01-07T130000Z"]["data-outcome"] == "unreadable"
    assert len(page.find("script")) == 1  # the inline filter script only


def test_board_groups_items_by_status_with_dependencies_and_last_attempt(page_path: Path) -> None:
    html = page_path.read_text(encoding="utf-8")
    page = Page(html)
    by_id = {a["data-item-id"]: a["data-status"] for a in page.with_class("plan-item")}
    assert by_id == {"FOCUS-A-001": "done", "FOCUS-B-002": "in_progress",
                     "STUDY-DOSE-003": "pending", "PERF-THROUGHPUT-004": "blocked"}
    columns = [a["data-status"] for a in page.with_class("column")]
    assert columns[:4] == ["pending", "in_progress", "blocked", "done"]
    # STUDY-DOSE-003 depends on a done item and an unfinished one: only the latter is "unmet"
    unmet = [a["href"] for a in page.with_class("unmet", "a")]
    assert "#item-FOCUS-B-002" in unmet and "#item-FOCUS-A-001" not in unmet
    assert "step 2 timed out after 30 s" in html  # FOCUS-B-002's last attempt text


def test_last_attempt_result_comes_from_its_run_or_its_text(repo: Path) -> None:
    board = build_report(repo, now=NOW).board
    items = {i.item_id: i for col in board.columns for i in col.items}
    # attempts whose timestamp names a report dir take that run's outcome
    assert items["FOCUS-A-001"].last_attempt.result == "pass"
    assert items["FOCUS-B-002"].last_attempt.result == "timeout"
    assert items["FOCUS-B-002"].attempts == 2 and items["FOCUS-B-002"].last_attempt.role == "RALPH"
    # no run for this one: read from the text
    assert items["PERF-THROUGHPUT-004"].last_attempt.result == "blocked"
    assert items["STUDY-DOSE-003"].last_attempt is None
    assert attempt_result("2 passed, 0 failed") == "pass"
    assert attempt_result("exit criteria 0/1 → failed") == "fail"
    assert attempt_result("handoff written for Phase A") == "note"


def test_timeline_is_in_time_order_although_the_file_is_not(page: Page) -> None:
    rows = page.with_class("entry", "tr")
    stamps = [r["data-ts"] for r in rows]
    assert len(stamps) == 5
    assert stamps == sorted(stamps)
    file_order = [int(r["data-file-index"]) for r in rows]
    assert file_order != sorted(file_order), "fixture must be out of order in the file"
    assert [r["data-focus"] for r in rows] == ["PERF-THROUGHPUT-004", "FOCUS-A-001", "FOCUS-B-002",
                                               "FOCUS-B-002.F1", "FOCUS-B-002"]


def test_large_shuffled_ledger_renders_sorted(tmp_path: Path) -> None:
    repo = synthetic.make_large_repo(tmp_path / "big", entries=60, runs=3, git=False)
    page = Page(write_report(repo, tmp_path / "big.html", now=NOW).read_text(encoding="utf-8"))
    rows = page.with_class("entry", "tr")
    assert len(rows) == 60
    assert [r["data-ts"] for r in rows] == sorted(r["data-ts"] for r in rows)
    assert len(page.with_class("run-card")) == 3


def test_recorded_vs_computed_dwell_and_check_flags(repo: Path) -> None:
    data = build_report(repo, now=NOW)
    entries = {(e.focus, e.timestamp_text): e for e in data.timeline.entries}
    perf = entries[("PERF-THROUGHPUT-004", "2026-01-06T09:00:00Z")]
    assert (perf.recorded_dwell, perf.computed_dwell) == (3, 0)
    assert {f.kind for f in perf.flags} == {"dwell_mismatch", "missing_artifacts"}
    sub = entries[("FOCUS-B-002.F1", "2026-01-07T123000Z")]  # a sub-step counts for its item
    assert (sub.recorded_dwell, sub.computed_dwell, sub.flags) == (1, 1, ())
    assert (sub.state, sub.action_state) == ("in_progress", "in_progress")
    retry = entries[("FOCUS-B-002", "2026-01-07T13:00:00Z")]
    assert (retry.recorded_dwell, retry.computed_dwell, retry.flags) == (2, 2, ())
    first = entries[("FOCUS-A-001", "2026-01-07T073000Z")]
    assert first.flags == ()  # its artifacts dir exists and dwell matches
    assert data.timeline.checks_available  # the fixture is a git repo


def _harness_commit(repo: Path, subject: str, stamp: str) -> None:
    """An empty SUPERVISOR commit with the ``Ledger-Entry: <ts> (line N)`` trailer the supervisor writes."""
    lines = (repo / "galph_memory.md").read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith(f"# {stamp}:"))
    env = {**os.environ, **synthetic._GIT_ENV, "HOME": str(repo)}
    message = f"{subject}\n\nLedger-Entry: {stamp} (line {line})"
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message],
                   cwd=repo, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)


def test_dwell_of_harness_entries_is_recomputed_from_git_history(repo: Path) -> None:
    # two supervisor cycles on FOCUS-B-002 without a RALPH commit that made progress
    _harness_commit(repo, "SUPERVISOR: FOCUS-B-002 — Phase A handoff", "2026-01-07T11:00:00Z")
    _harness_commit(repo, "SUPERVISOR: FOCUS-B-002 — retry after timeout", "2026-01-07T13:00:00Z")
    data = build_report(repo, now=NOW)
    entries = {e.timestamp_text: e for e in data.timeline.entries}
    first, retry = entries["2026-01-07T11:00:00Z"], entries["2026-01-07T13:00:00Z"]
    assert (first.computed_dwell, first.dwell_source, first.flags) == (0, "git", ())
    assert (retry.recorded_dwell, retry.computed_dwell, retry.dwell_source) == (2, 1, "git")
    assert [f.kind for f in retry.flags] == ["dwell_mismatch"]
    assert entries["2026-01-06T09:00:00Z"].dwell_source == "ledger"  # no harness commit records it
    html = render_html(data)
    assert "from git history before the entry was committed" in html


def test_unknown_commit_is_flagged(repo: Path) -> None:
    ledger = repo / "galph_memory.md"
    ledger.write_text(ledger.read_text(encoding="utf-8").replace(
        "dwell=2 ralph_last_commit=none", "dwell=2 ralph_last_commit=deadbee"), encoding="utf-8")
    data = build_report(repo, now=NOW)
    flagged = [e for e in data.timeline.entries if any(f.kind == "unknown_commit" for f in e.flags)]
    assert [e.ralph_last_commit for e in flagged] == ["deadbee"]


def _warnings(page: Page) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in page.with_class("warning-row"):
        out.setdefault(a["data-source"], []).append(a.get("class", ""))
    return out


def test_malformed_inputs_show_warning_rows(page_path: Path) -> None:
    html = page_path.read_text(encoding="utf-8")
    sources = _warnings(Page(html))
    run_b = "plans/active/FOCUS-B-002/reports"
    assert f"{run_b}/2026-01-07T130000Z/run.json" in sources  # truncated JSON
    assert f"{run_b}/2026-01-07T140000Z" in sources  # logs but no run.json
    assert "galph_memory.md" in sources  # the entry with 2026-02-30
    assert "galph_memory.md:21</code>" in html and "day is out of range" in html
    assert "malformed run.json" in html and "line 6" in html
    study = "plans/active/STUDY-DOSE-003/reports/2026-01-08T000000Z/study_outputs/summary.json"
    assert study in sources  # figure_ok: false is surfaced
    # the good run.json validates against the writer's schema: no warning for it
    assert "plans/active/FOCUS-A-001/reports/2026-01-07T100000Z/run.json" not in sources


def test_broken_or_missing_documents_never_crash(tmp_path: Path) -> None:
    repo = synthetic.make_repo(tmp_path / "repo", git=False)
    (repo / "docs" / "fix_plan.md").write_bytes(b"## [X-1] t\n- Status: \xff\n")
    (repo / "input.md").unlink()
    (repo / "galph_memory.md").write_text("```\nnever closed\n", encoding="utf-8")
    summary = repo / synthetic.STUDY_DIR / "summary.json"
    summary.write_text('{"per_arm": {"high_nll": ', encoding="utf-8")
    run = repo / synthetic.GOOD_RUN
    run.write_text(json.dumps({"run_id": "r", "steps": "not a list", "status": 3}), encoding="utf-8")
    html = write_report(repo, tmp_path / "page.html", now=NOW).read_text(encoding="utf-8")
    sources = _warnings(Page(html))
    for expected in ("docs/fix_plan.md", "input.md", "galph_memory.md",
                     str(synthetic.STUDY_DIR / "summary.json"), str(synthetic.GOOD_RUN)):
        assert expected in sources, f"no warning row for {expected}: {sorted(sources)}"
    assert "&#39;steps&#39; should be a list" in html or "'steps' should be a list" in html


def test_empty_directory_renders_with_warnings(tmp_path: Path) -> None:
    html = write_report(tmp_path, tmp_path / "out.html", now=NOW).read_text(encoding="utf-8")
    page = Page(html)
    assert page.find("section", id="board") and page.find("section", id="timeline")
    assert {"docs/fix_plan.md", "galph_memory.md", "input.md"} <= set(_warnings(page))
    assert "no runs recorded yet" in html


def test_page_references_nothing_external(page_path: Path) -> None:
    html = page_path.read_text(encoding="utf-8")
    page = Page(html)
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "data", "poster", "srcset"):
            value = attrs.get(name, "")
            assert not re.match(r"\s*(https?:)?//", value, re.I), f"<{tag} {name}={value!r}>"
        assert not (tag == "script" and "src" in attrs)
        assert not (tag == "link" and attrs.get("rel") == "stylesheet")
    assert "@import" not in html and "url(http" not in html
    csp = page.find("meta", http_equiv="Content-Security-Policy")
    assert csp and "default-src 'none'" in csp[0]["content"]
    # the external link and image of input.md stay visible as plain text
    assert "https://example.org/ptychopinn" in html and "[image: remote diagram" in html
    assert "<script>alert(1)</script>" not in html  # raw HTML in markdown is escaped


def test_figure_is_embedded_as_base64_png(page: Page, repo: Path) -> None:
    imgs = page.find("img")
    assert len(imgs) == 1
    src = imgs[0]["src"]
    assert src.startswith("data:image/png;base64,")
    png = (repo / synthetic.STUDY_DIR / "dose_comparison.png").read_bytes()
    assert base64.b64decode(src.split(",", 1)[1]) == png


def test_study_table_lists_arms_and_missing_arm(repo: Path) -> None:
    data = build_report(repo, now=NOW)
    (study,) = data.studies
    arms = [name for name, _ in study.rows]
    assert arms == ["high_nll", "high_mae", "low_nll", "low_mae (missing)"]
    assert "amp_psnr" in study.metric_columns and "amp_ssim" in study.metric_columns
    psnr = study.metric_columns.index("amp_psnr")
    assert study.rows[0][1][psnr] == "24.71"
    assert ("figure_ok", "no") in study.facts


def test_step_log_links_are_relative_and_resolve(page_path: Path) -> None:
    page = Page(page_path.read_text(encoding="utf-8"))
    logs = [a["href"] for a in page.find("a") if a.get("href", "").endswith(".log")]
    assert logs, "no step log links"
    resolved = [(page_path.parent / unquote(h)).resolve() for h in logs]
    assert all(not h.startswith("/") for h in logs)
    existing = [p for p in resolved if p.is_file()]
    assert {p.name for p in existing} >= {"step-01.log", "step-02.log"}
    # check logs recorded in run.json but absent on disk are shown, marked as missing
    missing = {unquote(a["href"]).rsplit("/reports/", 1)[1] for a in page.with_class("missing", "a")}
    assert missing == {p.as_posix().rsplit("/reports/", 1)[1] for p in resolved if not p.is_file()}
    assert missing == {"2026-01-07T100000Z/logs/check-01.log", "2026-01-07T120000Z/logs/check-01.log"}


def test_render_markdown_neutralises_links_and_images() -> None:
    html = render_markdown(
        "[out](https://x.org/a) [rel](docs/a.md#s) [up](../../etc/passwd) ![i](http://x.org/i.png) "
        "<img src=x onerror=alert(1)>", lambda href: "REL/" + href if not href.startswith("..") else None)
    assert 'href="REL/docs/a.md#s"' in html
    assert "https://x.org/a" in html and 'href="https://' not in html
    assert "<img" not in html and "[image: i — http://x.org/i.png]" in html
    assert 'class="dead-link"' in html


def test_write_is_atomic_and_keeps_the_old_page_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    target.write_text("old page", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "new page \ud800")  # lone surrogate: cannot be encoded
    assert target.read_text(encoding="utf-8") == "old page"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temp file left
    atomic_write_text(target, "new page")
    assert target.read_text(encoding="utf-8") == "new page"


def test_render_is_deterministic_for_fixed_clock(repo: Path) -> None:
    assert render_html(build_report(repo, now=NOW)) == render_html(build_report(repo, now=NOW))


def test_one_bad_fix_plan_item_is_a_warning_and_the_rest_still_shows(repo: Path) -> None:
    plan = repo / "docs" / "fix_plan.md"
    original = plan.read_text(encoding="utf-8")
    plan.write_text(original + "\n## [FOCUS-A-001] duplicate of the first item\n"
                    "- Status: pending\n", encoding="utf-8")
    board = build_report(repo, now=NOW).board
    ids = [i.item_id for col in board.columns for i in col.items]
    assert {"FOCUS-B-002", "STUDY-DOSE-003", "PERF-THROUGHPUT-004"} <= set(ids)
    (notice,) = board.notices
    assert notice.source == "docs/fix_plan.md" and "duplicate focus ID 'FOCUS-A-001'" in notice.message
    assert notice.line == len(original.splitlines()) + 2  # the duplicate's heading


@pytest.mark.integration  # spawns the orchestrator command line
def test_command_line_writes_the_page_and_reports_usage_errors(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli" / "report.html"
    ok = subprocess.run([sys.executable, "-m", "orchestrator", "report", "--repo-root", str(repo), "--html", str(out)],
                        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(out.resolve())
    assert Page(out.read_text(encoding="utf-8")).find("section", id="timeline")
    bad = subprocess.run([sys.executable, "-m", "orchestrator.report", "--repo-root", str(tmp_path / "nope"),
                          "--html", str(out)], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "is not a directory" in bad.stderr


def test_handoff_header_facts_and_unparseable_handoff(repo: Path) -> None:
    handoff = build_report(repo, now=NOW).handoff
    assert dict(handoff.header)["Focus"] == "FOCUS-B-002 — Lazy model construction"
    assert handoff.notices == () and '<h3>Phase A: lazy construction</h3>' in handoff.html
    (repo / "input.md").write_text("Mode: Implementation\nFocus: FOCUS-B-002\n\n## Do Now\n```bash\nls\n",
                                   encoding="utf-8")
    broken = build_report(repo, now=NOW).handoff
    (notice,) = broken.notices
    assert (notice.source, notice.line) == ("input.md", 5) and "unterminated code fence" in notice.message
    assert dict(broken.header) == {"Mode": "Implementation", "Focus": "FOCUS-B-002"}
    assert "<h2>Do Now</h2>" in broken.html  # still shown


def test_handoff_and_plan_validation_issues_are_warning_rows(repo: Path) -> None:
    text = (repo / "input.md").read_text(encoding="utf-8")
    text = text.replace("Focus: FOCUS-B-002", "Focus: FOCUS-Z-999").replace(
        "pytest tests/ptycho/test_model.py -q -k import", "cd /home/someone/elsewhere && pytest -q")
    (repo / "input.md").write_text(text, encoding="utf-8")
    data = build_report(repo, now=NOW)
    messages = [n.message for n in data.handoff.notices]
    assert any("unknown focus ID 'FOCUS-Z-999'" in m for m in messages), messages
    assert any("/home/someone/elsewhere" in m for m in messages), messages
    assert data.board.notices == ()  # every working plan exists in the fixture
    (repo / "plans/active/PERF-THROUGHPUT-004/implementation.md").unlink()
    (notice,) = build_report(repo, now=NOW).board.notices
    assert notice.message.startswith("warning: working plan") and notice.line == 37


def test_benchmark_repo_with_harness_history_takes_every_dwell_from_git(tmp_path: Path) -> None:
    repo = synthetic.make_large_repo(tmp_path / "hh", entries=12, runs=1, harness_history=True)
    timeline = build_report(repo, now=NOW).timeline
    assert len(timeline.entries) == 12
    assert {e.dwell_source for e in timeline.entries} == {"git"}
    # one cycle per entry, no RALPH progress: dwell counts the streak on each focus (5 entries each)
    assert [e.computed_dwell for e in timeline.entries] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]


def test_supervisor_attempts_are_never_matched_to_a_run(repo: Path) -> None:
    plan = repo / "docs" / "fix_plan.md"
    plan.write_text(plan.read_text(encoding="utf-8").replace(
        "  - 2026-01-07T120000Z RALPH 9a8b7c6: step 2 timed out after 30 s; exit criteria 0/1 → failed\n",
        "  - 2026-01-07T120000Z RALPH 9a8b7c6: step 2 timed out after 30 s; exit criteria 0/1 → failed\n"
        "  - 2026-01-07T120000Z SUPERVISOR 9a8b7c6: escalated to blocked after 3 cycles "
        "(plans/active/FOCUS-B-002/reports/2026-01-07T120000Z/blocked_x.md)\n"), encoding="utf-8")
    items = {i.item_id: i for col in build_report(repo, now=NOW).board.columns for i in col.items}
    last = items["FOCUS-B-002"].last_attempt
    assert (last.role, last.result, last.run_id) == ("SUPERVISOR", "blocked", "")
