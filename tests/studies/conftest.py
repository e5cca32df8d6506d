"""Put scripts/studies/ on sys.path so the tests can import the ``dose_study`` package."""

from __future__ import annotations

import sys
from pathlib import Path

STUDY_DIR = Path(__file__).resolve().parents[2] / "scripts" / "studies"

if str(STUDY_DIR) not in sys.path:
    sys.path.insert(0, str(STUDY_DIR))
