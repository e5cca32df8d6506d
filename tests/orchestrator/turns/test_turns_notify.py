"""orchestrator.turns.notify with real notifier processes."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest

from orchestrator.turns.notify import notify, render_notify_argv, unknown_placeholders

NOTIFIER = """
import sys
from pathlib import Path
Path(sys.argv[1]).write_text("\\n".join(sys.argv[2:]) + "\\n", encoding="utf-8")
"""


def test_a_real_notifier_gets_the_substituted_argv(tmp_path: Path) -> None:
    script = tmp_path / "notifier.py"
    script.write_text(NOTIFIER, encoding="utf-8")
    out = tmp_path / "notified.txt"
    template = [sys.executable, str(script), str(out), "{event}", "focus={focus}", "{message}", "{report_dir}",
                "$HOME; rm -rf /"]
    result = notify(template, "done", focus="FEAT-1", message="done: {event} stays literal; 'quotes' too",
                    report_dir="plans/active/FEAT-1/reports/x")
    assert result is not None and result.ok and result.rc == 0 and result.error is None
    assert out.read_text(encoding="utf-8").splitlines() == [
        "done", "focus=FEAT-1", "done: {event} stays literal; 'quotes' too", "plans/active/FEAT-1/reports/x",
        "$HOME; rm -rf /"]


def test_failing_missing_and_hanging_notifiers_are_logged_not_raised(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="orchestrator.turns.notify")
    failing = notify([sys.executable, "-c", "import sys; print('smtp down'); sys.exit(3)"], "error", message="m")
    assert failing is not None and not failing.ok and failing.rc == 3 and "smtp down" in (failing.error or "")
    missing = notify([str(tmp_path / "no-such-notifier"), "{event}"], "blocked")
    assert missing is not None and not missing.ok and missing.rc is None and "could not run" in (missing.error or "")
    t0 = time.monotonic()
    hanging = notify([sys.executable, "-c", "import time; time.sleep(60)"], "budget", timeout_s=0.5)
    assert hanging is not None and not hanging.ok and "timed out after 0.5s" in (hanging.error or "")
    assert time.monotonic() - t0 < 10
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3


def test_no_template_unknown_event_and_placeholder_helpers() -> None:
    assert notify([], "done") is None
    with pytest.raises(ValueError, match="unknown notify event 'finished'"):
        notify(["true"], "finished")
    assert render_notify_argv(["{event}:{focus}", "{other}"], {"event": "breaker", "focus": "F", "message": "",
                                                             "report_dir": ""}) == ["breaker:F", "{other}"]
    assert unknown_placeholders(["{event}", "{fokus} {message}", "{x}{report_dir}"]) == ["fokus", "x"]
