"""The review page in a real headless Chromium (Debian's ``chromium``; ``make browser-deps``).

Run with ``make test-browser`` (``pytest -m browser``). Set REPORT_SCREENSHOT_DIR to keep the
screenshots. Playwright drives the system browser; it never downloads one.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.report import write_report

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

_SPEC = importlib.util.spec_from_file_location(
    "report_synthetic_repo", Path(__file__).resolve().parents[2] / "fixtures" / "report" / "synthetic_repo.py")
synthetic = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(synthetic)


def _keep(shot: Path) -> None:
    target = os.environ.get("REPORT_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(target) / shot.name)


def _visible(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(
        selector, "els => els.filter(e => e.offsetParent !== null).map(e => e.dataset.focus || '')")


def test_report_page_in_headless_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: run `make browser-deps` (apt-get install chromium)"
    repo = synthetic.make_repo(tmp_path / "repo")
    page_path = write_report(repo, tmp_path / "out" / "report.html",
                             now=datetime(2026, 1, 9, 12, 0, tzinfo=UTC))
    errors: list[str] = []
    remote: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(15_000)
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "assert") else None)
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on("request", lambda r: remote.append(r.url)
                    if not r.url.startswith(("file:", "data:")) else None)
            page.goto(page_path.as_uri(), wait_until="load")

            assert page.locator("#board").is_visible()
            assert page.locator("#timeline").is_visible()
            assert page.locator("#timeline-table tr.entry").count() == 5
            assert page.locator(".plan-item[data-item-id='FOCUS-B-002']").count() == 1
            assert page.locator("article.run-card[data-run-id]").count() == 3
            assert page.locator("#runs .warning-row").count() >= 2  # truncated run.json, no run.json
            assert page.locator("img.study-figure").evaluate("img => img.naturalWidth") > 0

            shot = tmp_path / "report-full.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            _keep(shot)

            # focus filter: only FOCUS-B-002 rows (and its sub-step) and run cards stay visible
            page.select_option("#focus-filter", "FOCUS-B-002")
            assert _visible(page, "#timeline-table tr.entry") == ["FOCUS-B-002", "FOCUS-B-002.F1", "FOCUS-B-002"]
            assert page.locator("#timeline-table tr.entry[hidden]").count() == 2
            assert set(_visible(page, "article.run-card")) == {"FOCUS-B-002"}
            assert page.locator(".plan-item.selected").get_attribute("data-item-id") == "FOCUS-B-002"
            assert page.text_content("#filter-status").startswith("5 of ")  # 3 entries + 2 runs
            page.locator("#timeline").scroll_into_view_if_needed()
            filtered = tmp_path / "report-filtered.png"
            page.screenshot(path=str(filtered))
            _keep(filtered)
            page.select_option("#focus-filter", "FOCUS-B-002.F1")  # a sub-step matches only itself
            assert _visible(page, "#timeline-table tr.entry") == ["FOCUS-B-002.F1"]
            assert _visible(page, "article.run-card") == []
            assert page.locator(".plan-item.selected").get_attribute("data-item-id") == "FOCUS-B-002"

            # newest first reorders rows; clearing the filter shows everything again
            page.check("#timeline-newest-first")
            stamps = page.eval_on_selector_all("#timeline-table tr.entry", "els => els.map(e => e.dataset.ts)")
            assert stamps == sorted(stamps, reverse=True)
            page.select_option("#focus-filter", "")
            assert len(_visible(page, "#timeline-table tr.entry")) == 5
            assert page.locator("article.run-card[hidden]").count() == 0
        finally:
            browser.close()
    assert errors == [], errors
    assert remote == [], f"page tried to fetch {remote}"
