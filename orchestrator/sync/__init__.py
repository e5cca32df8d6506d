"""Supervisor and worker on two machines, taking turns over a git remote (see
``docs/architecture.md``, "Two machines"). Its git commands are
:class:`orchestrator.vcs.remote.RemoteBranch`'s (the gateway's topic class)."""
