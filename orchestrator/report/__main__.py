"""``python -m orchestrator.report --html PATH [--repo-root DIR]``."""

from orchestrator.report.command import main

raise SystemExit(main())
