"""``orchestrator status``: where the loop stands, as one JSON-friendly dict.

Lock holder, the saved cycle state, branch/HEAD/dirty, the current focus with its computed
dwell, every fix-plan item (status, priority, eligibility, plan progress), the newest run
records, the recent harness commits and the provenance of the committed handoff (``handoff``:
commit, author, signature, signer; see :mod:`orchestrator.trust`).
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.config import HarnessConfig
from orchestrator.cycle.meter import read_live
from orchestrator.cycle.supervisor import eligible_items
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import plan as plan_doc
from orchestrator.documents.errors import DocumentError
from orchestrator.fsutil import parse_iso
from orchestrator.layout import Layout
from orchestrator.records.state import StateError, load_state, read_lock
from orchestrator.trust.enforce import describe_handoff
from orchestrator.vcs.history import cycle_commits, dwell, make_judge
from orchestrator.vcs.repo import GitError, GitRepo

__all__ = ["collect_status", "format_status"]


def _items(layout: Layout) -> tuple[list[dict[str, Any]], str | None]:
    try:
        plan = fix_plan_doc.load(layout.fix_plan)
    except FileNotFoundError:
        return [], f"{layout.fix_plan}: missing"
    except DocumentError as exc:
        return [], str(exc)
    eligible = {it.id for it in eligible_items(plan)}
    out = []
    for it in plan.items:
        progress = None
        plan_path = layout.plan_of(it.id, it.working_plan)
        try:
            wp = plan_doc.load(plan_path)
            progress = {"ticked": sum(1 for x in wp.items if x.checked), "total": len(wp.items)}
        except (OSError, DocumentError):
            pass
        out.append({"id": it.id, "title": it.title, "status": it.status, "priority": it.priority,
                    "depends_on": list(it.depends_on), "eligible": it.id in eligible, "plan": progress,
                    "attempts": len(it.attempts)})
    return out, None


def _runs(layout: Layout, limit: int = 5) -> list[dict[str, Any]]:
    repo = layout.root
    paths = sorted(layout.plans.glob("*/reports/*/run.json"),
                   key=lambda p: p.parent.name, reverse=True)[:limit]
    runs = []
    for p in paths:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            runs.append({"path": str(p.relative_to(repo)), "error": str(exc)})
            continue
        steps = data.get("steps", [])
        crit = data.get("exit_criteria", [])
        runs.append({"path": str(p.relative_to(repo)), "focus": data.get("focus"), "status": data.get("status"),
                     "steps_ok": sum(1 for s in steps if s.get("rc") == 0 and not s.get("timed_out")),
                     "steps": len(steps), "criteria_passed": sum(1 for c in crit if c.get("ok") is True),
                     "criteria": len(crit), "ended_at": data.get("ended_at")})
    return runs


_SPEND_KEYS = ("cost_usd", "input_tokens", "output_tokens")


def _spend(layout: Layout) -> dict[str, dict[str, float | int]]:
    """Spend per focus: the ``usage`` of every agent turn record (``reports/*/agent/*.json``)."""
    per_focus: dict[str, dict[str, float | int]] = {}
    for path in sorted(layout.plans.glob("*/reports/*/agent/*.json")):
        try:
            usage = json.loads(path.read_text(encoding="utf-8")).get("usage")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if not isinstance(usage, dict):
            continue
        focus = path.parents[3].name
        sums = per_focus.setdefault(focus, {"cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0})
        for key in _SPEND_KEYS:
            value = usage.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                sums[key] += value
    for sums in per_focus.values():
        sums["cost_usd"] = round(float(sums["cost_usd"]), 6)
    return per_focus


def _live(repo: Path, per_focus: dict[str, dict[str, float | int]], running: bool) -> dict[str, Any]:
    """The running turn or wait (with elapsed seconds; only while a loop holds the lock), the
    loop's and the repository's spend."""
    live = read_live(repo) or {}
    if not running:
        live = {**live, "turn": None, "waiting": None}
    total = {k: sum(v[k] for v in per_focus.values()) for k in _SPEND_KEYS}
    total["cost_usd"] = round(float(total["cost_usd"]), 6)
    out: dict[str, Any] = {"spend": {"total": total, "per_focus": per_focus, "loop": live.get("spend")},
                           "running_turn": None, "waiting": None, "loop_stopped": live.get("stopped")}
    now = datetime.now(UTC)
    turn = live.get("turn")
    if isinstance(turn, dict) and turn.get("started_at"):
        with contextlib.suppress(ValueError):
            turn = {**turn, "elapsed_s": round((now - parse_iso(turn["started_at"])).total_seconds(), 1)}
        out["running_turn"] = {**turn, "spend_so_far": live.get("spend")}
    if isinstance(live.get("waiting"), dict):
        out["waiting"] = live["waiting"]
    return out


def collect_status(repo: Path, config: HarnessConfig) -> dict[str, Any]:
    repo = Path(repo)
    status: dict[str, Any] = {"repo": str(repo), "lock": read_lock(repo), "errors": []}
    try:
        state = load_state(repo)
        status["state"] = state.to_dict() if state else None
    except StateError as exc:
        status["state"] = None
        status["errors"].append(str(exc))
    git: GitRepo | None = None
    try:
        git = GitRepo(repo)
        status["git"] = {"branch": git.current_branch(),
                         "head": git.head_sha() if git.has_commits() else None, "dirty": git.is_dirty()}
        commits = list(cycle_commits(git))
    except GitError as exc:
        status["git"], commits = None, []
        status["errors"].append(str(exc))
    layout = Layout(repo)
    items, err = _items(layout)
    if err:
        status["errors"].append(err)
    status["items"] = items
    current = next((c.focus for c in commits if c.kind == "SUPERVISOR"), None)
    focus: dict[str, Any] | None = None
    if current and git is not None:
        focus = {"id": current, "dwell": dwell(commits, current, make_judge(git)),
                 "dwell_limit": config.dwell_limit}
    status["focus"] = focus
    status["next_eligible"] = next((i["id"] for i in items if i["eligible"]), None)
    status["recent_commits"] = [{"sha": c.sha[:12], "kind": c.kind, "focus": c.focus, "subject": c.subject,
                                 "date": c.committed_at} for c in commits[:6]]
    status["runs"] = _runs(layout)
    lock = status["lock"]
    status.update(_live(repo, _spend(layout), running=bool(lock and lock.get("alive"))))
    status["sync"] = _sync(repo, status["errors"])
    status["handoff"] = describe_handoff(repo, config) if status["git"] else None  # signer of the handoff
    return status


def _sync(repo: Path, errors: list[str]) -> dict[str, Any] | None:
    """Two machines: whose turn, leases, last push (None unless ``loop --role`` ran here)."""
    from orchestrator.sync.status import sync_status

    try:
        return sync_status(repo)
    except ValueError as exc:
        errors.append(str(exc))
        return None


def format_status(s: dict[str, Any]) -> str:
    """Human-readable text for :func:`collect_status`'s dict."""
    lines = [f"repo: {s['repo']}"]
    git = s.get("git") or {}
    lines.append(f"git: branch {git.get('branch')} at {(git.get('head') or '-')[:12]}"
                 f"{' (dirty)' if git.get('dirty') else ''}")
    lock = s.get("lock")
    lines.append("lock: free" if not lock else
                 f"lock: held by pid {(lock.get('owner') or {}).get('pid')} "
                 f"({'alive' if lock.get('alive') else 'stale'})")
    st = s.get("state")
    if st:
        lines.append(f"cycle: {st['cycle_id']} phase={st['phase']} focus={st.get('focus')} "
                     f"status={st.get('status')} interrupted={st.get('interrupted')} "
                     f"steps done={len(st.get('steps') or {})}")
    f = s.get("focus")
    lines.append(f"focus: {f['id']} dwell {f['dwell']}/{f['dwell_limit']}" if f else "focus: none yet")
    lines.append(f"next eligible: {s.get('next_eligible') or 'none'}")
    lines.append("items:")
    for it in s.get("items", []):
        prog = f"{it['plan']['ticked']}/{it['plan']['total']}" if it.get("plan") else "-"
        lines.append(f"  {it['id']:<40} {it['status'] or '?':<12} {it['priority'] or '-':<3} plan {prog:<6}"
                     f"{' eligible' if it['eligible'] else ''}")
    for r in s.get("runs", [])[:3]:
        lines.append(f"run: {r['path']} {r.get('status')} steps {r.get('steps_ok')}/{r.get('steps')} "
                     f"criteria {r.get('criteria_passed')}/{r.get('criteria')}")
    spend = (s.get("spend") or {}).get("total")
    if spend:
        lines.append(f"spend: ${spend['cost_usd']:.4f}, {spend['input_tokens']} in / "
                     f"{spend['output_tokens']} out tokens")
    turn = s.get("running_turn")
    if turn:
        lines.append(f"running: {turn.get('role')} turn on {turn.get('focus')} for {turn.get('elapsed_s', '?')} s")
    wait = s.get("waiting")
    if wait:
        lines.append(f"waiting until {wait.get('until')} ({wait.get('role')} agent: {wait.get('excerpt')})")
    sync = s.get("sync")
    if sync:
        turn = sync.get("turn") or {}
        lines.append(f"sync: {sync['role']} via {sync['remote']}/{sync['branch']}; turn: {turn.get('holder')} "
                     f"(handed by {(turn.get('handed_by') or '-')[:12]}); lease age {sync.get('lease_age_s')} s; "
                     f"peer heartbeat {sync.get('peer_last_heartbeat_utc')}; last push "
                     f"{(sync.get('last_push') or {}).get('utc')}")
    h = s.get("handoff")
    if h and h.get("commit"):
        lines.append(f"handoff: {h['commit'][:12]} by {h.get('author')}, signature {h.get('signature')}"
                     f"{' signer ' + h['signer'] if h.get('signer') else ''}"
                     f"{'' if h.get('ok') else ' — not verified: ' + str(h.get('reason'))}"
                     f"{' (required)' if h.get('required') else ''}")
    lines += [f"error: {e}" for e in s.get("errors", [])]
    return "\n".join(lines)
