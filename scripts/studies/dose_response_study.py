#!/usr/bin/env python
"""Thin wrapper kept for handoffs and plans that name this path: the dose-response study is the
installed package ``dose_study`` (``dose-study``, ``python -m dose_study``); see
``dose_study/cli.py`` for the flags, outputs and exit codes."""

import sys

from dose_study.cli import main

if __name__ == "__main__":
    sys.exit(main())
