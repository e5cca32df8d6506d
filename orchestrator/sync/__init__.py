"""Supervisor and worker on two machines, taking turns over a git remote (see
``docs/architecture.md``, "Two machines"). ``remote`` holds every git call of this package."""
