"""Shared helpers for the dose-response study tests (scripts/studies/ on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUDY_DIR = ROOT / "scripts" / "studies"
SCRIPT = STUDY_DIR / "dose_response_study.py"

if str(STUDY_DIR) not in sys.path:
    sys.path.insert(0, str(STUDY_DIR))
