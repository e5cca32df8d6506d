"""The worker's gate: one call before any Do-Now step runs.

:func:`verify_handoff` checks the handoff's provenance (:mod:`orchestrator.trust.verify`)
and the ``worker.allow_commands`` allowlist (:mod:`orchestrator.trust.allowlist`). When
signed handoffs are required and the provenance fails, or any command line is outside the
allowlist, it refuses: an ERROR log line, a ledger entry naming the commit, its author and
the reason (committed as ``RALPH: <ID> — handoff refused …``), the cycle recorded as
``refused``, the context's ``on_refusal`` hook called, and :class:`HandoffRefused` raised
(``orchestrator`` exits 8). Nothing of the handoff is executed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from orchestrator.config import HarnessConfig
from orchestrator.context import HarnessContext
from orchestrator.documents import fix_plan as fix_plan_doc
from orchestrator.documents import handoff as handoff_doc
from orchestrator.documents import ledger as ledger_doc
from orchestrator.documents.common import read_text
from orchestrator.documents.errors import DocumentError
from orchestrator.layout import Layout, check_focus_id
from orchestrator.records.state import CycleState, Phase
from orchestrator.trust.allowlist import disallowed_commands
from orchestrator.trust.signing import SigningConfigError
from orchestrator.trust.verify import (
    FIX_PLAN,
    HANDOFF,
    HandoffRefused,
    Provenance,
    allowed_signers_path,
    check_provenance,
    protected_paths,
)
from orchestrator.turns.notify import notify
from orchestrator.vcs.repo import GitError, GitRepo
from orchestrator.vcs.signatures import SignatureLog

__all__ = ["RefusalHook", "describe_handoff", "handoff_scripts", "verification_setup", "verify_handoff"]

logger = logging.getLogger(__name__)

#: Called with the refusal after it was recorded (notifications plug in here).
RefusalHook = Callable[[HandoffRefused], None]


def handoff_scripts(doc: handoff_doc.Handoff) -> list[tuple[str, str]]:
    """``(label, script)`` for every Do-Now command block and exit-criterion check."""
    out: list[tuple[str, str]] = []
    n = 0
    for phase in doc.phases:
        for step in phase.steps:
            blocks = [b.script for b in step.command_blocks if b.script.strip()]
            if blocks:
                n += 1
                out.append((f"Do-Now step {n} ({HANDOFF}:{step.line})", "\n".join(blocks)))
    for i, c in enumerate(doc.exit_criteria, 1):
        if c.check:
            out.append((f"exit criterion {i} check", c.check))
    return out


def _signers(repo: Path, config: HarnessConfig, strict: bool) -> Path | None:
    trust = config.trust
    try:
        path = allowed_signers_path(repo, trust.allowed_signers)
    except ValueError as exc:
        raise SigningConfigError(f"{trust.source}: {exc}") from exc
    if strict and path is None:
        raise SigningConfigError(f"{trust.source}: trust.require_signed_handoff is on but trust.allowed_signers is "
                                 "not set: name the file with the supervisor's public key (git's SSH allowed-signers "
                                 "format, `<principal> <key type> <key>`)")
    if path is not None and not path.is_file():
        if strict:
            raise SigningConfigError(f"{trust.source}: trust.allowed_signers {trust.allowed_signers!r} does not exist "
                                     f"({path})")
        return None
    return path


def verification_setup(repo: Path, config: HarnessConfig) -> Path | None:
    """The worker's allowed-signers file, checked (as every turn does) once at the start of the
    role loop: :class:`SigningConfigError` when verification is required and the file is unset,
    missing or inside the repository."""
    return _signers(repo, config, strict=config.trust.required)


def _parse(repo: Path) -> handoff_doc.Handoff | None:
    try:
        return handoff_doc.parse(read_text(repo / HANDOFF), repo / HANDOFF)
    except (DocumentError, OSError):
        return None


def _working_plan(repo: Path, focus: str | None) -> str | None:
    if not focus:
        return None
    try:
        return fix_plan_doc.load(repo / FIX_PLAN).item(focus).working_plan
    except (DocumentError, OSError, KeyError, ValueError):
        return None


def _valid_focus(focus: str | None) -> str | None:
    try:
        return check_focus_id(focus) if focus else None
    except ValueError:
        return None


def describe_handoff(repo: Path, config: HarnessConfig) -> dict[str, Any]:
    """The provenance of the committed handoff (for ``status --json``): commit, author,
    signature letter, signer, key, and whether it would be accepted. Never raises."""
    try:
        doc = _parse(repo)
        focus = _valid_focus(doc.focus_item_id if doc else None)
        signers = _signers(repo, config, strict=False)
        prov = check_provenance(SignatureLog(GitRepo(repo), signers),
                                protected_paths(focus, _working_plan(repo, focus)), config.trust.required)
        return prov.to_dict()
    except (SigningConfigError, GitError, OSError) as exc:
        return {"ok": False, "required": config.trust.required, "error": str(exc)}


def _record_refusal(ctx: HarnessContext, state: CycleState, focus: str | None,
                    prov: Provenance) -> tuple[str | None, str | None]:
    """Ledger entry + RALPH commit; returns (ledger entry ``ts (line N)``, commit sha)."""
    label = focus or "UNKNOWN"
    culprit = prov.offending or prov.commit or "none"
    sig = (prov.signature + (f", signer {prov.signer}" if prov.signer else "")
           + (f", key {prov.key}" if prov.key else ""))
    entry = ledger_doc.make_entry(
        ctx.clock(), f"{label} — handoff refused by the worker",
        fields=[("Action type", "Handoff refused"), ("Refused commit", culprit),
                ("Author", prov.offending_author or prov.author or "unknown"),
                ("Committer", prov.offending_committer or prov.committer or "unknown"),
                ("Handoff commit", prov.commit or "none"), ("Signature", sig), ("Reason", prov.reason or "-"),
                ("Cycle", state.cycle_id)],
        action_state="refused",
        state=ledger_doc.StateLine(focus=label, state="refused", artifacts="none",
                                   next_action="the supervisor commits a handoff signed by an allowed key"))
    # the refusal commit stages every changed owned file: never turn someone's uncommitted
    # edit of a harness document into a commit — then the entry stays uncommitted
    edited = SignatureLog(ctx.git).modified([HANDOFF, FIX_PLAN, Layout.FINDINGS, Layout.item_rel(label)])
    line = ledger_doc.append(ctx.layout.ledger, entry)
    ts = f"{entry.timestamp_text} (line {line})"
    if edited:
        logger.warning("the refusal's ledger entry is not committed: uncommitted changes to %s", ", ".join(edited))
        return ts, None
    message = (f"handoff refused: commit {culprit[:12]} not trusted\n\nLedger-Entry: {ts}\n"
               f"Cycle-Id: {state.cycle_id}\nRefused-Commit: {culprit}\nRun-Status: refused")
    try:
        result = ctx.git.commit_owned("RALPH", label, message, ctx.config.max_commit_bytes,
                                        expected_branch=ctx.expected_branch)
        return ts, result.sha
    except (GitError, ValueError) as exc:
        logger.error("the refusal's ledger entry could not be committed: %s", exc)
        return ts, None


def verify_handoff(ctx: HarnessContext, state: CycleState,
                   save: Callable[[CycleState], None]) -> Provenance:
    """Check ``input.md`` before the worker runs it; returns the provenance (recorded in
    run.json) or raises :class:`HandoffRefused` after recording the refusal. Raises
    :class:`SigningConfigError` when verification is required but ``trust.allowed_signers``
    is unset, missing or inside the repository."""
    required = ctx.config.trust.required
    signers = _signers(ctx.repo, ctx.config, strict=required)
    doc = _parse(ctx.repo)
    focus = _valid_focus((doc.focus_item_id if doc else None) or state.focus)
    prov = check_provenance(SignatureLog(ctx.git, signers), protected_paths(focus, _working_plan(ctx.repo, focus)),
                            required)
    refuse = required and not prov.ok
    allow = ctx.config.worker_settings.allow_commands
    if not refuse and allow and doc is not None:
        outside = disallowed_commands(handoff_scripts(doc), allow)
        if outside:
            shown = "; ".join(outside[:3]) + (f" (+{len(outside) - 3} more)" if len(outside) > 3 else "")
            prov = replace(prov, ok=False, reason=f"{len(outside)} command line(s) outside worker.allow_commands: "
                           f"{shown}", offending=prov.commit, offending_author=prov.author,
                           offending_committer=prov.committer)
            refuse = True
    if not refuse:
        if not prov.ok:
            logger.info("handoff provenance not verified (signed handoffs not required): %s", prov.reason)
        else:
            logger.info("handoff %s verified: signed by %s", (prov.commit or "")[:12], prov.signer)
        return prov
    logger.error("refusing the handoff: %s (commit %s, author %s, committer %s); no Do-Now step runs", prov.reason,
                 (prov.offending or prov.commit or "-")[:12], prov.offending_author or prov.author,
                 prov.offending_committer or prov.committer)
    ts, sha = _record_refusal(ctx, state, focus, prov)
    save(state.advance(Phase.DONE, status="refused", worker_commit=sha,
                       notes=(*state.notes, f"handoff refused: {prov.reason}")))
    refusal = HandoffRefused(prov, ts, sha)
    notify(ctx.turns.notify, "refused", focus=focus or "", message=str(refusal),
           report_dir=state.report_dir or "")
    if ctx.on_refusal is not None:
        try:
            ctx.on_refusal(refusal)
        except Exception:  # a failing notifier must not turn a refusal into a crash
            logger.exception("the on_refusal hook failed")
    raise refusal
