"""Building blocks of the dose-response study (``scripts/studies/dose_response_study.py``).

Modules:
  arms     -- the four arms and the study configuration (full / --quick sizes); no ptycho import.
  store    -- output layout, atomic per-arm commits, completeness and stale-temp cleanup.
  figure   -- the 2x3 ``dose_comparison.png`` and its per-panel self-check (numpy + matplotlib).
  summary  -- ``summary.json`` / ``summary.md`` and the recorded science checks.
  study    -- runs the selected arms and merges; the only part that imports ``runner``.
  runner   -- trains and evaluates one arm with ``ptycho`` (imported lazily: TensorFlow).

Everything except ``runner`` works without TensorFlow, so ``--merge-only`` and argument
errors are fast.
"""
