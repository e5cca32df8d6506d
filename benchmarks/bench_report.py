"""Render time of the HTML review page for a 1,000-entry ledger and 100 runs.

Builds a synthetic repo (tests/fixtures/report/synthetic_repo.py) in a temp dir, then times
``write_report`` end to end (collect + render + atomic write) several times and prints one
JSON object; ``report_s`` is the median. Target (issue 9): < 2 s.

``--harness-history`` also gives every ledger entry its ``SUPERVISOR:`` commit (with the
``Ledger-Entry`` trailer) and a ``RALPH:`` commit, so ``ledger --check`` recomputes every dwell
from git history (orchestrator.vcs.history) — the realistic, expensive path.

    .venv/bin/python benchmarks/bench_report.py [--entries 1000] [--runs 100] [--repeat 5] [--harness-history]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _synthetic():
    spec = importlib.util.spec_from_file_location(
        "report_synthetic_repo", ROOT / "tests" / "fixtures" / "report" / "synthetic_repo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--harness-history", action="store_true",
                        help="one SUPERVISOR + one RALPH commit per ledger entry (git-derived dwell)")
    args = parser.parse_args(argv)
    from orchestrator.report import build_report, render_html, write_report

    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        t0 = time.perf_counter()
        repo = _synthetic().make_large_repo(Path(tmp) / "repo", args.entries, args.runs,
                                            harness_history=args.harness_history)
        setup_s = time.perf_counter() - t0
        out = Path(tmp) / "report.html"
        totals, builds, renders = [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            write_report(repo, out)
            totals.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            data = build_report(repo, out.parent)
            builds.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            html = render_html(data)
            renders.append(time.perf_counter() - t0)
        result = {
            "benchmark": "report_html",
            "ledger_entries": len(data.timeline.entries),
            "runs": len(data.runs),
            "harness_history": args.harness_history,
            "dwell_from_git": sum(e.dwell_source == "git" for e in data.timeline.entries),
            "report_s": round(statistics.median(totals), 4),
            "report_s_min": round(min(totals), 4),
            "report_s_first": round(totals[0], 4),
            "collect_s": round(statistics.median(builds), 4),
            "render_s": round(statistics.median(renders), 4),
            "html_bytes": len(html.encode("utf-8")),
            "warnings": len(data.all_notices),
            "setup_s": round(setup_s, 3),
            "repeat": args.repeat,
            "target_s": 2.0,
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
