"""The dose-response study: an installed package (``dose-study``, ``python -m dose_study``).

Modules:
  arms              -- the four arms and the study configuration (full / --quick sizes).
  store             -- output layout, atomic per-arm commits, completeness, stale-temp cleanup.
  figure            -- the 2x3 ``dose_comparison.png`` and its per-panel self-check.
  summary           -- ``summary.json`` / ``summary.md`` and the recorded science checks.
  study             -- selects the arms to train, runs them through an executor, merges.
  recipe            -- the one simulate -> train -> evaluate recipe of a PINN arm (also used by
                       ``benchmarks/bench_quality.py``; TensorFlow imported lazily).
  runner            -- trains, evaluates and saves one arm through ``recipe``.
  arm_process       -- one arm in a fresh process: the child entry and its launcher (stdlib
                       only; also the Dask task, shipped to workers by value).
  subprocess_runner -- the default runner: each arm in a fresh process, one after another.
  cluster           -- arms as Dask tasks (``--scheduler local|ADDRESS``; Dask imported lazily).
  seeds             -- merges runs of several seeds (``python -m dose_study.seeds``).
  cli               -- the command line (``dose-study``; ``scripts/studies/dose_response_study.py``
                       is a thin wrapper kept for handoffs that name that path).

Only the arm processes import TensorFlow, so the study process stays small, and
``--merge-only`` and argument errors are fast.
"""
