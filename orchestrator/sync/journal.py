"""This clone's record of the two-machine loop, under ``.orchestrator/``:

* ``sync.json`` (rewritten atomically): role, remote, branch, the turn this side last took
  (``turn_of``; a restarted side resumes its unfinished cycle only when it is still that turn),
  the last push and the last successful fetch;
* ``sync-events.jsonl`` (appended): one JSON object per event (``turn_started``, ``pushed``,
  ``peer_dead``, ``offline``, ``online``, ``conflict``, ``stopped``) with ``t`` (epoch seconds)
  and ``utc``; the latency benchmark and the tests read it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.fsutil import atomic_write_text, iso_utc
from orchestrator.records.state import state_dir

__all__ = ["EVENTS_NAME", "SYNC_NAME", "Journal", "read_events", "read_sync"]

SYNC_NAME = "sync.json"
EVENTS_NAME = "sync-events.jsonl"


def read_sync(repo: Path) -> dict[str, Any] | None:
    """``sync.json`` of ``repo`` (None when this clone never ran a role loop)."""
    path = state_dir(repo) / SYNC_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def read_events(repo: Path) -> list[dict[str, Any]]:
    path = state_dir(repo) / EVENTS_NAME
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
    return out


class Journal:
    """Writer for one role loop."""

    def __init__(self, repo: Path, role: str, remote: str, branch: str) -> None:
        self.repo = Path(repo)
        self.data: dict[str, Any] = {**(read_sync(self.repo) or {}), "role": role, "remote": remote,
                                     "branch": branch}

    def update(self, **changes: Any) -> None:
        self.data.update(changes)
        atomic_write_text(state_dir(self.repo) / SYNC_NAME, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def event(self, name: str, **fields: Any) -> None:
        t = time.time()
        utc = iso_utc(datetime.fromtimestamp(t, UTC))
        line = json.dumps({"event": name, "role": self.data["role"], "t": round(t, 4), "utc": utc, **fields},
                          sort_keys=True)
        path = state_dir(self.repo) / EVENTS_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
