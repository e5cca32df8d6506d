"""Orchestrator benchmarks; prints one JSON object.

Each measurement is a zero-argument function returning a dict that is merged into the output;
add new ones (e.g. ``cycle_overhead_s``) to :func:`measurements`. Targets (DESIGN §7) are
reported, never asserted: ``ledger_parse_s_10mb`` < 1 s.

Usage: ``python benchmarks/bench_orchestrator.py [--only NAME ...]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):  # allow `python benchmarks/bench_orchestrator.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.documents import ledger  # noqa: E402

LEDGER_BYTES = 10 * 1024 * 1024
REPEATS = 3


def _synthetic_entry(k: int, when: datetime) -> str:
    """One realistic supervisor entry (fields, free text with a fence, action state, state line)."""
    focus = f"FOCUS-{k % 37:03d}-001"
    entry = ledger.make_entry(
        when, f"{focus} — cycle {k}: planning and handoff",
        fields={"dwell": f"{k % 4} (loops on this focus since the last RALPH progress)",
                "Focus issue": f"{focus} — synthetic benchmark item {k}",
                "Action type": "Planning → Implementation handoff", "Mode": "Implementation",
                "Git sync": "`git pull --rebase` → Already up to date.",
                "Documents reviewed": "docs/fix_plan.md, galph_memory.md, docs/findings.md, "
                                      f"plans/active/{focus}/implementation.md"},
        body=("**Analysis:** the previous run left artifacts under the report directory; "
              "the selector below reproduces the failure.\n\n```bash\n"
              f"pytest tests/ptycho/test_translation.py -k case_{k} -q\n# Expected: 2 passed\n```\n\n"
              "- Observation: shapes (B, N, N, C) float32 agree after the fix\n"
              "  - nested detail kept verbatim"),
        action_state="ready_for_implementation",
        state=ledger.StateLine(focus=focus, state="ready_for_implementation", dwell=k % 4,
                               ralph_last_commit=f"{k * 2654435761 % 16**8:08x}",
                               artifacts=f"plans/active/{focus}/reports/{when:%Y-%m-%dT%H%M%SZ}/",
                               next_action=f"run step {k} and record the result"))
    return ledger.render_entry(entry)


def synthetic_ledger(target_bytes: int = LEDGER_BYTES) -> str:
    """A separated ledger of at least ``target_bytes`` whose file order is not time order."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    parts: list[str] = []
    size = k = 0
    while size < target_bytes:
        when = start + timedelta(minutes=(k * 7919) % 500_000)  # scrambled times
        chunk = ("\n---\n\n" if k else "") + _synthetic_entry(k, when)
        parts.append(chunk)
        size += len(chunk.encode())
        k += 1
    return "".join(parts)


def measure_ledger_parse() -> dict:
    """Best-of-N wall (and CPU) time to read + parse a synthetic 10 MB ledger from a temp dir."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "galph_memory.md"
        path.write_text(synthetic_ledger(), encoding="utf-8")
        times, cpu = [], []
        for _ in range(REPEATS):
            t0, c0 = time.perf_counter(), time.process_time()
            doc = ledger.load(path)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        ordered = ledger.entries_in_time_order(doc)
        order_s = time.perf_counter() - t0
        size = path.stat().st_size
    return {"ledger_parse_s_10mb": round(min(times), 4), "ledger_parse_s_10mb_runs": [round(t, 4) for t in times],
            "ledger_parse_cpu_s_10mb": round(min(cpu), 4),  # CPU time: stable on a shared machine
            "ledger_bytes": size, "ledger_entries": len(doc.entries), "ledger_time_order_s": round(order_s, 4),
            "ledger_first_entry": ordered[0].timestamp_text}


def measurements() -> dict[str, Callable[[], dict]]:
    """Named measurements; each returns a dict merged into the printed JSON object."""
    return {"ledger_parse": measure_ledger_parse}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(measurements()), help="run only these measurements")
    args = parser.parse_args(argv)
    result: dict = {"python": platform.python_version(), "machine": platform.machine()}
    for name, fn in measurements().items():
        if args.only is None or name in args.only:
            result.update(fn())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
