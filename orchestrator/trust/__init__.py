"""Trust boundary between supervisor and worker (issue #19).

``verify``: provenance of the handoff · ``allowlist``: ``worker.allow_commands`` ·
``signing``: the supervisor's SSH signing and the role default · ``enforce``: the worker's one
gate before any Do-Now step. Its git queries are :mod:`orchestrator.vcs.signatures`'. Nothing
is imported here, so the submodules can be imported without cycles.
"""
