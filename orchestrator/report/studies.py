"""Study results: ``summary.json`` tables and the embedded ``dose_comparison.png``.

Written by ``scripts/studies/dose_response_study.py`` somewhere under a report dir.
The per-arm metrics may be nested (``{"amplitude": {"psnr": …}}``); nested keys are
flattened to ``amplitude.psnr`` columns. Anything unreadable becomes a Notice.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.layout import Layout
from orchestrator.report.links import Linker
from orchestrator.report.model import Notice, StudyView

log = logging.getLogger(__name__)

FIGURE_NAME = "dose_comparison.png"
MAX_FIGURE_BYTES = 8 * 1024 * 1024
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ARM_KEYS = ("per_arm", "arms", "metrics", "results")
_SKIP_COLUMNS = {"panels", "panel_stats", "history", "paths", "files", "artifacts", "study_config",
                 "counts", "config", "arm", "name"}
_SCIENCE_KEYS = ("nll_beats_mae_at_low_dose", "high_dose_ssim_ge_0_5", "all_arms_beat_baseline_ssim")


def _flatten(value: Any, prefix: str, out: dict[str, Any], depth: int = 0) -> None:
    if isinstance(value, Mapping) and depth < 3:
        for key, sub in value.items():
            if str(key) in _SKIP_COLUMNS:
                continue
            _flatten(sub, f"{prefix}.{key}" if prefix else str(key), out, depth + 1)
    elif isinstance(value, (int, float, str, bool)) or value is None:
        out[prefix] = value


def format_cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def _arm_columns(record: Any) -> dict[str, Any]:
    """One arm's cells. The dose study's metrics.json shape is
    ``{"nphotons", "loss", "metrics": {...}, "baseline": {"amp_ssim"}, "wall_time_s": {"total"}}``;
    other shapes are flattened as they come."""
    if not isinstance(record, Mapping):
        return {"value": record}
    flat: dict[str, Any] = {}
    for key in ("nphotons", "loss"):
        if key in record:
            flat[key] = record[key]
    if isinstance(record.get("metrics"), Mapping):
        _flatten(record["metrics"], "", flat)
        base = record.get("baseline")
        if isinstance(base, Mapping) and "amp_ssim" in base:
            flat["baseline amp_ssim"] = base["amp_ssim"]
        wall = record.get("wall_time_s")
        if isinstance(wall, Mapping) and "total" in wall:
            flat["wall s"] = wall["total"]
        return flat
    _flatten(record, "", flat)
    return flat


def _arm_table(data: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
    arms: Any = None
    for key in _ARM_KEYS:
        if isinstance(data.get(key), (Mapping, list)):
            arms = data[key]
            break
    if arms is None:
        return (), ()
    if isinstance(arms, Mapping):
        named = [(str(k), v) for k, v in arms.items()]
    else:
        named = [(str(a.get("arm") or a.get("name") or i) if isinstance(a, Mapping) else str(i), a)
                 for i, a in enumerate(arms, 1)]
    flat_rows = [(name, _arm_columns(record)) for name, record in named]
    columns: dict[str, None] = {}
    for _, flat in flat_rows:
        for key in flat:
            columns.setdefault(key, None)
    cols = tuple(columns)
    rows = [(name, tuple(format_cell(flat.get(c)) for c in cols)) for name, flat in flat_rows]
    missing = data.get("arms_missing")
    if isinstance(missing, list):
        rows += [(f"{name} (missing)", tuple("—" for _ in cols)) for name in missing
                 if str(name) not in {n for n, _ in flat_rows}]
    return cols, tuple(rows)


def _facts(data: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    facts: list[tuple[str, str]] = []
    if "figure_ok" in data:
        facts.append(("figure_ok", format_cell(data["figure_ok"])))
    if data.get("arms_missing"):
        facts.append(("arms missing", ", ".join(map(str, data["arms_missing"]))))
    science = data.get("science")
    if isinstance(science, Mapping):
        for key in _SCIENCE_KEYS:
            if key in science:
                facts.append((key, format_cell(science[key])))
        ratio = science.get("counts_ratio")
        if isinstance(ratio, Mapping) and "value" in ratio:
            facts.append(("counts ratio high/low", f"{format_cell(ratio['value'])} "
                                                   f"(ok: {format_cell(ratio.get('ok'))})"))
    for key in ("config", "wall_times_s", "versions"):
        if key not in data:
            continue
        flat: dict[str, Any] = {}
        _flatten(data[key], key, flat)
        facts.extend((k, format_cell(v)) for k, v in list(flat.items())[:16])
    return tuple(facts)


def _figure(summary_dir: Path, data: Mapping[str, Any], source: str,
            notices: list[Notice]) -> tuple[str | None, str]:
    named = data.get("figure")
    if isinstance(named, Mapping):
        named = named.get("path")
    candidates = []
    if isinstance(named, str) and named:
        candidates.append(summary_dir / named if not Path(named).is_absolute() else Path(named))
    candidates.append(summary_dir / FIGURE_NAME)
    for path in candidates:
        if not path.is_file():
            continue
        size = path.stat().st_size
        if size > MAX_FIGURE_BYTES:
            notices.append(Notice(source, None, f"{path.name} is {size} bytes; not embedded "
                                                f"(limit {MAX_FIGURE_BYTES})"))
            return None, path.name
        blob = path.read_bytes()
        if not blob.startswith(_PNG_MAGIC):
            notices.append(Notice(source, None, f"{path.name} is not a PNG file; not embedded"))
            return None, path.name
        return "data:image/png;base64," + base64.b64encode(blob).decode("ascii"), path.name
    notices.append(Notice(source, None, f"no {FIGURE_NAME} next to summary.json"))
    return None, FIGURE_NAME


def read_study(path: Path, linker: Linker) -> StudyView:
    source = linker.rel(path)
    notices: list[Notice] = []
    data: Any = None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        notices.append(Notice(source, None, f"cannot read summary.json: {exc}"))
    except json.JSONDecodeError as exc:
        notices.append(Notice(source, exc.lineno, f"malformed summary.json: {exc.msg} (column {exc.colno})"))
    if data is not None and not isinstance(data, Mapping):
        notices.append(Notice(source, None, f"summary.json should hold an object, got {type(data).__name__}"))
        data = None
    if data is None:
        return StudyView(source, (), (), (), None, FIGURE_NAME, tuple(notices))
    columns, rows = _arm_table(data)
    if not rows:
        notices.append(Notice(source, None, "summary.json has no per-arm metrics "
                                            f"(looked for {', '.join(_ARM_KEYS)})"))
    if data.get("figure_ok") is False:
        notices.append(Notice(source, None, "study reports figure_ok: false (a panel is empty or constant)"))
    figure, figure_name = _figure(path.parent, data, source, notices)
    return StudyView(source, columns, rows, _facts(data), figure, figure_name, tuple(notices))


def collect_studies(repo_root: Path, linker: Linker) -> tuple[StudyView, ...]:
    """Every summary.json below a report dir (plans/active/*/reports/**), newest path first."""
    found = sorted(Layout(repo_root).plans.glob("*/reports/**/summary.json"), reverse=True)
    return tuple(read_study(p, linker) for p in found)
