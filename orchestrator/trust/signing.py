"""Supervisor side of the trust boundary: SSH-signed ``SUPERVISOR:`` commits.

The supervisor signs with git's SSH signing, configured per clone::

    git config gpg.format ssh
    git config user.signingkey ~/.ssh/orchestrator_supervisor   # or key::ssh-ed25519 AAAA… (ssh-agent)

When signed handoffs are required, :func:`signing_setup` checks this at the start of the
turn and raises :class:`SigningConfigError` naming the git setting to set. When they are not
required but the clone is configured for SSH signing anyway, the commits are signed too.
:func:`resolve_trust` decides the requirement for the role loop.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.config import ConfigError, HarnessConfig, TrustConfig
from orchestrator.vcs.repo import GitRepo

__all__ = ["SigningConfigError", "SigningSetup", "resolve_trust", "signed_handoff_required", "signing_setup"]

logger = logging.getLogger(__name__)

_ROLES = ("supervisor", "worker")


class SigningConfigError(ConfigError):
    """The clone cannot sign (or verify) handoffs; the message names the setting to set."""


@dataclass(frozen=True)
class SigningSetup:
    """``sign``: pass ``commit_args`` (``-S``) to ``git commit``; ``key``: user.signingkey."""

    sign: bool
    key: str | None = None

    @property
    def commit_args(self) -> tuple[str, ...]:
        return ("-S",) if self.sign else ()


def signed_handoff_required(trust: TrustConfig, role: str | None = None, remote: str | None = None) -> bool:
    """An explicit ``trust.require_signed_handoff`` wins; unset, it is on when a side of the
    role loop meets its peer through a remote (``--role supervisor|worker --remote NAME``),
    off for the single-process loop. (The supervisor must sign whenever its worker verifies,
    so both roles get the same default.)"""
    if trust.require_signed_handoff is not None:
        if trust.require_signed_handoff is False and role == "worker" and remote:
            logger.warning("%s: trust.require_signed_handoff is false: this worker runs handoffs from anyone who "
                           "can push to %s", trust.source, remote)
        return trust.require_signed_handoff
    if role is not None and role not in _ROLES:
        raise ValueError(f"role must be one of {_ROLES}, got {role!r}")
    return role is not None and bool(remote)


def resolve_trust(config: HarnessConfig, role: str | None = None, remote: str | None = None) -> HarnessConfig:
    """``config`` with ``trust.require_signed_handoff`` decided (True/False) for this run."""
    required = signed_handoff_required(config.trust, role, remote)
    return config.with_overrides(trust=replace(config.trust, require_signed_handoff=required))


def _literal_key(value: str) -> bool:
    return value.startswith(("key::", "ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-"))


def signing_setup(git: GitRepo, config: HarnessConfig) -> SigningSetup:
    """Whether the ``SUPERVISOR:`` commits of the clone ``git`` are signed; raises
    :class:`SigningConfigError` when signing is required but not configured."""
    repo = git.root
    fmt = (git.config_get("gpg.format") or "").lower()
    key = git.config_get("user.signingkey")
    required = config.trust.required
    if not required:
        return SigningSetup(sign=fmt == "ssh" and key is not None, key=key)
    where = f"{repo} (trust.require_signed_handoff is on in {config.trust.source})"
    if fmt != "ssh":
        raise SigningConfigError(
            f"{where}: git setting gpg.format is {fmt or 'unset'!r}, the supervisor signs with SSH: "
            f"run `git -C {repo} config gpg.format ssh`")
    if key is None:
        raise SigningConfigError(
            f"{where}: git setting user.signingkey is unset: run `git -C {repo} config user.signingkey "
            "~/.ssh/<your signing key>` (see docs/operations.md, 'Signing handoffs')")
    if not _literal_key(key):
        path = Path(key).expanduser()
        path = path if path.is_absolute() else Path(repo) / path
        if not path.is_file():
            raise SigningConfigError(
                f"{where}: git setting user.signingkey points to {key!r}, which does not exist ({path}): "
                "create it with `ssh-keygen -t ed25519 -f <path>` or set user.signingkey to an existing key")
    if shutil.which("ssh-keygen") is None:
        raise SigningConfigError(f"{where}: ssh-keygen is not on PATH; git needs it to sign with gpg.format ssh")
    return SigningSetup(sign=True, key=key)
