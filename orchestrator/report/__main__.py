"""``python -m orchestrator.report --html PATH [--repo DIR]``."""

from orchestrator.report.command import main

raise SystemExit(main())
