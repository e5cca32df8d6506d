"""``python -m dose_study``: the dose-response study's command line (``dose_study.cli``)."""

import sys

from .cli import main

sys.exit(main())
