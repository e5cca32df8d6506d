"""``python -m orchestrator.report --html PATH [--repo-root DIR]``."""

from orchestrator.cli.report import main

raise SystemExit(main())
