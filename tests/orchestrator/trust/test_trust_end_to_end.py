"""Trust boundary end to end: real SSH keys from ssh-keygen, real git, a real bare remote.

A supervisor clone signs its SUPERVISOR commits; a worker clone (its config outside the
repository) runs a handoff only when that signature is good and from an allowed key, and no
later unsigned commit changed the handoff, its plan or orchestrator.yaml. A third clone
("mallory") can push to the same remote. Marker files prove what ran.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.config import TrustConfig, WorkerSettings
from orchestrator.cycle.loop import run_loop, run_turn
from orchestrator.documents import ledger as ledger_doc
from orchestrator.records.state import load_state
from orchestrator.trust.verify import HandoffRefused
from orchestrator.vcs.secret_scan import scan_text

pytestmark = [pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen"),
              pytest.mark.integration]  # spawns the orchestrator command line

FOCUS = "T-TRUST-001"
PRINCIPAL = "supervisor@lab.example"
MARKER, VICTIM = "ran_step_one", "victim"  # Do-Now paths must stay inside the repository


@pytest.fixture(autouse=True)
def _no_global_git_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@dataclass
class Setup:
    root: Path
    remote: Path
    supervisor: Path
    worker: Path
    key: Path
    rogue_key: Path
    allowed: Path
    worker_config: Path
    marker: Path
    victim: Path


def _keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def _clone(harness, remote: Path, dest: Path, name: str) -> Path:
    subprocess.run(["git", "clone", "-q", str(remote), str(dest)], check=True)
    harness.git(dest, "config", "user.name", name)
    harness.git(dest, "config", "user.email", f"{name.lower()}@example.invalid")
    return dest


def _sign_with(harness, clone: Path, key: Path) -> None:
    harness.git(clone, "config", "gpg.format", "ssh")
    harness.git(clone, "config", "user.signingkey", str(key))


def _setup(harness, tmp_path: Path, allow: list[str] | None = None) -> Setup:
    keys = tmp_path / "keys"
    keys.mkdir()
    key = _keygen(keys / "supervisor", PRINCIPAL)
    rogue = _keygen(keys / "rogue", "rogue@elsewhere")
    allowed = keys / "allowed_signers"
    pub = (keys / "supervisor.pub").read_text().strip()
    allowed.write_text(f"{PRINCIPAL} namespaces=\"git\" {pub}\n")  # README's line
    work_plan = harness.plan(FOCUS, [("Mark", [("mark", f"touch {MARKER}")])], ["marked — check: `true`"])
    seed = harness.make_repo(tmp_path / "seed", {FOCUS: (harness.item(FOCUS, "trusted item"), work_plan)},
                             identity=True)
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(remote)], check=True)
    sup = _clone(harness, remote, tmp_path / "supervisor", "Supervisor")
    _sign_with(harness, sup, key)
    wrk = _clone(harness, remote, tmp_path / "worker", "Worker")
    (wrk / VICTIM).mkdir()  # untracked files of the worker machine a hostile step would delete
    (wrk / VICTIM / "precious.txt").write_text("keep me\n")
    cfg = tmp_path / "worker.yaml"
    text = ("git_sync: false\nstep_timeout_s: 60\ncheck_timeout_s: 60\n"
            f"trust:\n  require_signed_handoff: true\n  allowed_signers: {allowed}\n"
            "notify: " + json.dumps(["/bin/sh", "-c", 'printf "%s %s\\n" "$0" "$1" >> "$2"', "{event}", "{focus}",
                                     str(tmp_path / "notified.txt")]) + "\n")
    if allow:
        text += "worker:\n  allow_commands:\n" + "".join(f"    - {json.dumps(p)}\n" for p in allow)
    cfg.write_text(text)
    return Setup(tmp_path, remote, sup, wrk, key, rogue, allowed, cfg, wrk / MARKER, wrk / VICTIM)


def _supervise_and_push(harness, s: Setup) -> str:
    ctx = harness.context(s.supervisor, trust=TrustConfig(require_signed_handoff=True))
    outcome = run_turn(ctx, "supervise")
    assert outcome.status == "supervised", outcome.message
    harness.git(s.supervisor, "push", "-q", "origin", "main")
    return outcome.supervisor_commit


def _cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args, "--repo", str(repo)], cwd=repo,
                          capture_output=True, text=True, timeout=120)


def _work(harness, s: Setup) -> subprocess.CompletedProcess[str]:
    harness.git(s.worker, "pull", "-q", "--ff-only")
    return _cli(s.worker, "work", "--config", str(s.worker_config))


def _last_ledger_entry(repo: Path) -> ledger_doc.LedgerEntry:
    return ledger_doc.load(repo / "galph_memory.md").entries[-1]


def _assert_refused(harness, s: Setup, proc: subprocess.CompletedProcess[str], culprit: str, who: str,
                    why: str) -> None:
    assert proc.returncode == 8, proc.stdout + proc.stderr
    assert "handoff refused" in proc.stderr and why in proc.stderr and culprit[:12] in proc.stderr
    assert f"committer {who}" in proc.stderr and "no Do-Now step ran" in proc.stderr
    assert not s.marker.exists(), "a Do-Now step ran"
    assert (s.victim / "precious.txt").read_text() == "keep me\n", "the injected step ran"
    entry = _last_ledger_entry(s.worker)
    assert entry.field("Refused commit") == culprit
    assert who in entry.field("Committer") and why in entry.field("Reason")
    head = harness.git(s.worker, "log", "-1", "--format=%s%n%b")
    assert head.startswith(f"RALPH: {FOCUS} — handoff refused") and f"Refused-Commit: {culprit}" in head
    assert load_state(s.worker).status == "refused"
    assert not list((s.worker / "plans/active").glob("*/reports/*/run.json")), "no run was recorded as executed"


def test_signed_handoff_runs_and_status_shows_the_signer(harness, tmp_path: Path) -> None:
    s = _setup(harness, tmp_path)
    sha = _supervise_and_push(harness, s)
    assert "-----BEGIN SSH SIGNATURE-----" in harness.git(s.supervisor, "cat-file", "commit", sha)
    harness.git(s.worker, "pull", "-q", "--ff-only")
    status = json.loads(_cli(s.worker, "status", "--json", "--config", str(s.worker_config)).stdout)
    assert status["handoff"]["commit"] == sha and status["handoff"]["signer"] == PRINCIPAL
    assert status["handoff"]["ok"] is True and status["handoff"]["required"] is True
    proc = _cli(s.worker, "work", "--config", str(s.worker_config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert s.marker.exists()
    run_json = next((s.worker / "plans/active").glob(f"{FOCUS}/reports/*/run.json"))
    run = json.loads(run_json.read_text())
    prov = run["harness"]["handoff_provenance"]
    assert prov["ok"] and prov["commit"] == sha and prov["signature"] == "G" and prov["signer"] == PRINCIPAL
    assert prov["key"].startswith("SHA256:")
    for path in [run_json, *run_json.parent.rglob("*.log"), run_json.parent / "summary.md"]:
        assert scan_text(path.read_text(), str(path)) == [], path
    # after the worker's own (unsigned) RALPH commit the handoff is still the signed SUPERVISOR
    # commit, but it would not be run again: the commit changed its plan
    after = json.loads(_cli(s.worker, "status", "--json", "--config", str(s.worker_config)).stdout)["handoff"]
    assert after["commit"] == sha and after["signature"] == "G" and after["signer"] == PRINCIPAL
    assert after["ok"] is False and after["offending"] == harness.git(s.worker, "rev-parse", "HEAD")


def test_handoff_amended_without_signature_by_a_third_clone_is_refused(harness, tmp_path: Path) -> None:
    s = _setup(harness, tmp_path)
    _supervise_and_push(harness, s)
    mallory = _clone(harness, s.remote, tmp_path / "mallory", "Mallory")
    handoff = (mallory / "input.md").read_text()
    assert f"touch {MARKER}" in handoff
    (mallory / "input.md").write_text(handoff.replace(f"touch {MARKER}", f"rm -rf {VICTIM}\ntouch {MARKER}"))
    harness.git(mallory, "commit", "-q", "-a", "--amend", "--no-edit")  # same SUPERVISOR: subject, no signature
    harness.git(mallory, "push", "-q", "--force", "origin", "main")
    evil = harness.git(mallory, "rev-parse", "HEAD")
    harness.git(s.worker, "fetch", "-q")
    harness.git(s.worker, "reset", "-q", "--hard", "origin/main")
    proc = _cli(s.worker, "work", "--config", str(s.worker_config))
    _assert_refused(harness, s, proc, evil, "Mallory", "has no signature")
    assert (tmp_path / "notified.txt").read_text() == f"refused {FOCUS}\n"  # the notify: hook ran
    assert "Supervisor" in _last_ledger_entry(s.worker).field("Author")  # --amend keeps the forged author
    assert _last_ledger_entry(s.worker).field("Handoff commit") == evil
    status = json.loads(_cli(s.worker, "status", "--json", "--config", str(s.worker_config)).stdout)
    assert status["handoff"]["ok"] is False and status["handoff"]["signature"] == "N"


def test_handoff_signed_by_a_key_not_in_allowed_signers_is_refused(harness, tmp_path: Path) -> None:
    s = _setup(harness, tmp_path)
    _sign_with(harness, s.supervisor, s.rogue_key)
    # a clone-local allowed-signers setting cannot widen the configured set
    lenient = tmp_path / "lenient_signers"
    lenient.write_text(f"rogue@elsewhere {(tmp_path / 'keys' / 'rogue.pub').read_text().strip()}\n")
    harness.git(s.worker, "config", "gpg.ssh.allowedSignersFile", str(lenient))
    sha = _supervise_and_push(harness, s)
    proc = _work(harness, s)
    _assert_refused(harness, s, proc, sha, "Supervisor", "not in the allowed signers")


def test_unsigned_commit_editing_the_plan_after_the_signed_handoff_is_refused(harness, tmp_path: Path) -> None:
    s = _setup(harness, tmp_path)
    _supervise_and_push(harness, s)
    mallory = _clone(harness, s.remote, tmp_path / "mallory", "Mallory")
    plan_file = mallory / f"plans/active/{FOCUS}/implementation.md"
    plan_file.write_text(plan_file.read_text().replace(f"touch {MARKER}", f"rm -rf {VICTIM}"))
    harness.git(mallory, "commit", "-q", "-am", "tidy the plan")
    harness.git(mallory, "push", "-q", "origin", "main")
    evil = harness.git(mallory, "rev-parse", "HEAD")
    proc = _work(harness, s)
    _assert_refused(harness, s, proc, evil, "Mallory", f"plans/active/{FOCUS}/implementation.md")


def test_unsigned_commit_to_orchestrator_yaml_after_the_signed_handoff_is_refused(harness, tmp_path: Path) -> None:
    s = _setup(harness, tmp_path)
    _supervise_and_push(harness, s)
    mallory = _clone(harness, s.remote, tmp_path / "mallory", "Mallory")
    (mallory / "orchestrator.yaml").write_text("step_timeout_s: 5\n")
    harness.git(mallory, "add", "orchestrator.yaml")
    harness.git(mallory, "commit", "-q", "-m", "config")
    harness.git(mallory, "push", "-q", "origin", "main")
    proc = _work(harness, s)
    _assert_refused(harness, s, proc, harness.git(mallory, "rev-parse", "HEAD"), "Mallory", "orchestrator.yaml")


def test_allow_commands_refuses_a_step_outside_the_allowlist_before_any_step(harness, tmp_path: Path) -> None:
    repo = harness.make_repo(tmp_path / "r", {FOCUS: (harness.item(FOCUS, "two steps"), harness.plan(FOCUS, [("Two", [
        ("allowed", "touch first"), ("not allowed", "echo injected > second")])],
        ["ok — check: `true`"]))})
    ctx = harness.context(repo, phases_per_cycle=0,
                          worker_settings=WorkerSettings(allow_commands=(r"touch \S+", "true")))
    with pytest.raises(HandoffRefused) as info:
        run_loop(ctx, cycles=1)
    assert not (repo / "first").exists(), "the allowed first step ran although a later one is refused"
    reason = info.value.provenance.reason
    assert "outside worker.allow_commands" in reason and "`echo injected > second`" in reason
    assert "Do-Now step 2" in reason
    assert _last_ledger_entry(repo).field("Reason") == reason
    # the same handoff with an allowlist that covers it runs (single-process loop, trust off)
    allow = (r"touch \S+", r"echo \w+ > \w+", "true")
    ctx = harness.context(repo, phases_per_cycle=0, worker_settings=WorkerSettings(allow_commands=allow))
    assert [c.status for c in run_loop(ctx, cycles=1).cycles] == ["done"]
    assert (repo / "first").exists() and (repo / "second").read_text() == "injected\n"


@pytest.mark.parametrize("missing", ["gpg.format", "user.signingkey", "key file"])
def test_supervisor_without_signing_configuration_fails_at_start_naming_the_setting(harness, tmp_path: Path,
                                                                                     missing: str) -> None:
    s = _setup(harness, tmp_path)
    if missing == "gpg.format":
        harness.git(s.supervisor, "config", "--unset", "gpg.format")
    elif missing == "user.signingkey":
        harness.git(s.supervisor, "config", "--unset", "user.signingkey")
    else:
        harness.git(s.supervisor, "config", "user.signingkey", str(tmp_path / "keys" / "no-such-key"))
    cfg = tmp_path / "supervisor.yaml"
    cfg.write_text("git_sync: false\ntrust:\n  require_signed_handoff: true\n")
    before = harness.git(s.supervisor, "rev-parse", "HEAD")
    proc = _cli(s.supervisor, "supervise", "--config", str(cfg))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    setting = "user.signingkey" if missing == "key file" else missing
    assert f"git setting {setting}" in proc.stderr and f"git -C {s.supervisor} config" in proc.stderr \
        or (missing == "key file" and "does not exist" in proc.stderr)
    assert harness.git(s.supervisor, "rev-parse", "HEAD") == before
    assert harness.git(s.supervisor, "status", "--porcelain") == ""


def test_single_process_loop_signs_and_verifies(harness, tmp_path: Path) -> None:
    """require_signed_handoff on in one clone: the loop signs its own handoffs and runs them."""
    s = _setup(harness, tmp_path)
    trust = TrustConfig(require_signed_handoff=True, allowed_signers=str(s.allowed))
    result = run_loop(harness.context(s.supervisor, trust=trust), cycles=1)
    assert [c.status for c in result.cycles] == ["done"] and (s.supervisor / MARKER).exists()
    assert harness.git(s.supervisor, "-c", f"gpg.ssh.allowedSignersFile={s.allowed}", "log", "-1", "--format=%G?",
               "--", "input.md") == "G"


def test_uncommitted_edit_of_the_signed_handoff_is_refused_and_kept(harness, tmp_path: Path) -> None:
    s = _setup(harness, tmp_path)
    trust = TrustConfig(require_signed_handoff=True, allowed_signers=str(s.allowed))
    ctx = harness.context(s.supervisor, trust=trust)
    assert run_turn(ctx, "supervise").status == "supervised"
    head = harness.git(s.supervisor, "rev-parse", "HEAD")
    edited = (s.supervisor / "input.md").read_text().replace(f"touch {MARKER}", f"rm -rf {VICTIM}\ntouch {MARKER}")
    (s.supervisor / "input.md").write_text(edited)
    with pytest.raises(HandoffRefused) as info:
        run_turn(ctx, "work")
    assert "uncommitted changes to input.md" in info.value.provenance.reason and info.value.commit is None
    assert not (s.supervisor / MARKER).exists()
    assert harness.git(s.supervisor, "rev-parse", "HEAD") == head  # nothing committed, the edit is kept as it was
    assert (s.supervisor / "input.md").read_text() == edited
    assert _last_ledger_entry(s.supervisor).field("Reason") == info.value.provenance.reason
