"""Secret detection shared by :mod:`orchestrator.records.run_record` (env redaction in run.json)
and :mod:`orchestrator.vcs.repo` (refusing commits whose staged text holds a credential)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "REDACTED",
    "SECRET_NAME_RE",
    "SECRET_PATTERNS",
    "SecretHit",
    "is_secret_name",
    "redact_env",
    "scan_diff",
    "scan_lines",
    "scan_text",
]

REDACTED = "***"

#: Environment variable names whose values are never recorded.
SECRET_NAME_RE = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)

#: (kind, pattern) pairs for credentials in text. Deliberately specific: each pattern
#: needs the provider's prefix plus a token-length tail, so prose about keys does not match.
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private key block", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("Slack token", re.compile(r"\bxox[a-z]-[A-Za-z0-9-]{10,}")),
    ("API key (sk-...)", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
    (
        "Authorization bearer token",
        re.compile(r"Authorization:\s*Bearer\s+[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE),
    ),
)


@dataclass(frozen=True)
class SecretHit:
    """One credential-looking match. ``excerpt`` is masked: it never holds the secret."""

    kind: str
    path: str
    line: int
    excerpt: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.path else f"line {self.line}"
        return f"{where}: {self.kind} ({self.excerpt})"


def _mask(token: str) -> str:
    return f"{token[:6]}… ({len(token)} chars)"


def scan_lines(lines: Iterable[tuple[int, str]], path: str = "") -> list[SecretHit]:
    """Scan ``(line_number, text)`` pairs; returns every hit, in order."""
    hits: list[SecretHit] = []
    for lineno, text in lines:
        for kind, pattern in SECRET_PATTERNS:
            for m in pattern.finditer(text):
                hits.append(SecretHit(kind, path, lineno, _mask(m.group(0))))
    return hits


def scan_text(text: str, path: str = "") -> list[SecretHit]:
    """Scan a whole text; line numbers are 1-based."""
    return scan_lines(enumerate(text.splitlines(), start=1), path)


def is_secret_name(name: str) -> bool:
    """True for variable names such as ``GITHUB_TOKEN``, ``api_key``, ``DB_PASSWORD``."""
    return SECRET_NAME_RE.search(name) is not None


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """Copy of ``env`` (sorted by name) with secret-named or secret-looking values as ``***``."""
    out: dict[str, str] = {}
    for name in sorted(env):
        value = env[name]
        secret = is_secret_name(name) or any(p.search(value) for _, p in SECRET_PATTERNS)
        out[name] = REDACTED if secret else value
    return out


_HUNK_RE = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def scan_diff(diff: str) -> list[SecretHit]:
    """Secret patterns in the lines a unified diff (``git diff -U0``) adds, with their path and
    line number in the new file."""
    hits: list[SecretHit] = []
    path, lineno, in_header = "", 0, False
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            path, in_header = "", True
        elif in_header and line.startswith("+++ "):
            path = line[6:] if line.startswith("+++ b/") else ""
        elif (m := _HUNK_RE.match(line)) is not None:
            lineno, in_header = int(m.group(1)), False
        elif not in_header and line.startswith("+") and path:
            hits += scan_lines([(lineno, line[1:])], path)
            lineno += 1
    return hits
