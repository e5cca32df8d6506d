"""Pure building blocks of an agent turn, free of git and of the loop.

| module | holds |
| --- | --- |
| :mod:`~orchestrator.turns.errors` | :class:`TurnConfigError` (bad configuration; names the key or file:line) |
| :mod:`~orchestrator.turns.transient` | rate/usage-limit and overload detection, reset times, backoff, waits |
| :mod:`~orchestrator.turns.usage` | :class:`Usage` and the ``claude-json`` / ``codex-jsonl`` / ``none`` parsers |
| :mod:`~orchestrator.turns.breaker` | :class:`TurnStatus`, the circuit breaker and the spend :class:`Budget` |
| :mod:`~orchestrator.turns.commit_policy` | which changed paths a turn may commit (globs, size, secrets) |
| :mod:`~orchestrator.turns.progress` | progressed / done / turn status judged from evidence |
| :mod:`~orchestrator.turns.notify` | the ``notify:`` argv hook (never a shell, never fatal) |
| :mod:`~orchestrator.turns.prompts` | Jinja2 prompt templates validated at load time against :class:`PromptContext` |
| :mod:`~orchestrator.turns.config` | validators for the new ``orchestrator.yaml`` keys |

Nothing here calls git or imports the rest of the orchestrator: git facts (changed paths,
commits) come in as plain data, file reads and secret scans as callables.
"""
