"""Report dirs, atomic writes, run.json (schema-validated), summary.md and blocked_<ts>.md."""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from orchestrator.execution.runner import run
from orchestrator.execution.steps import step_record
from orchestrator.fsutil import atomic_write_json, atomic_write_text
from orchestrator.records.artifacts import (
    CriterionRecord,
    GitInfo,
    RunRecord,
    StepRecord,
    collect_artifacts,
    new_report_dir,
    package_versions,
    read_run_record,
    render_summary,
    step_log_path,
    validate_run_record,
    write_blocked,
    write_run_record,
    write_summary,
)
from orchestrator.vcs.secret_scan import redact_env

T0 = datetime(2026, 1, 7, 7, 30, 0, 250_000, tzinfo=UTC)
FOCUS = "STUDY-SYNTH-DOSE-COMPARISON-001"


def _clock(dt: datetime = T0):
    return lambda: dt


def test_report_dir_uses_the_harness_clock(tmp_path: Path) -> None:
    d = new_report_dir(tmp_path, FOCUS, clock=_clock())
    assert d == tmp_path / "plans" / "active" / FOCUS / "reports" / "2026-01-07T073000Z"
    assert (d / "logs").is_dir()
    local = T0.astimezone(timezone(timedelta(hours=-5)))  # a non-UTC clock is converted
    assert new_report_dir(tmp_path, "OTHER-1", clock=_clock(local)).name == "2026-01-07T073000Z"


def test_report_dirs_in_one_second_never_collide_and_sort_in_order(tmp_path: Path) -> None:
    made = [new_report_dir(tmp_path, FOCUS, clock=_clock()) for _ in range(12)]
    names = [p.name for p in made]
    assert len(set(names)) == 12
    assert names[1:3] == ["2026-01-07T073000Z-2", "2026-01-07T073000Z-3"]
    assert sorted(names) == names  # lexical order = creation order, also past -9
    later = new_report_dir(tmp_path, FOCUS, clock=_clock(T0 + timedelta(seconds=1)))
    assert sorted(names + [later.name])[-1] == later.name


def test_concurrent_report_dirs_are_distinct(tmp_path: Path) -> None:
    out: list[Path] = []
    threads = [threading.Thread(target=lambda: out.append(new_report_dir(tmp_path, FOCUS,
                                                                         clock=_clock())))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p.name for p in out}) == 8


@pytest.mark.parametrize("bad", ["", "../escape", "a/b", ".hidden", "x..y"])
def test_bad_focus_id_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="focus id"):
        new_report_dir(tmp_path, bad, clock=_clock())


def test_naive_clock_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="naive"):
        new_report_dir(tmp_path, FOCUS, clock=lambda: datetime(2026, 1, 1))


def test_step_log_paths_are_numbered_from_one(tmp_path: Path) -> None:
    assert step_log_path(tmp_path, 3) == tmp_path / "logs" / "step-03.log"
    assert step_log_path(tmp_path, 1, prefix="check").name == "check-01.log"
    with pytest.raises(ValueError):
        step_log_path(tmp_path, 0)


def test_atomic_writes_replace_and_never_leave_partial_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2, "ü": "ok"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 2, "ü": "ok"}
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text(encoding="utf-8"))["a"] == 2  # untouched on failure
    atomic_write_text(tmp_path / "sub" / "t.md", "hello\n")
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json", "t.md"]


def test_secret_like_env_names_and_values_are_redacted() -> None:
    fake_pat = "gh" + "p_" + "a1B2" * 9
    env = {"GITHUB_TOKEN": "x", "aws_secret_access_key": "y", "DB_PASSWORD": "z",
           "OPENAI_API_KEY": "k", "MY_CREDENTIALS": "c", "INNOCENT": fake_pat,
           "HOME": "/root", "PATH": "/bin"}
    red = redact_env(env)
    assert red == {"GITHUB_TOKEN": "***", "aws_secret_access_key": "***", "DB_PASSWORD": "***",
                   "OPENAI_API_KEY": "***", "MY_CREDENTIALS": "***", "INNOCENT": "***",
                   "HOME": "/root", "PATH": "/bin"}


def _build_record(tmp_path: Path) -> tuple[Path, RunRecord]:
    report = new_report_dir(tmp_path, FOCUS, clock=_clock())
    r1 = run("echo 'collected 2 items'; echo '== 2 passed in 0.05s =='", tmp_path, 10,
             step_log_path(report, 1), echo=False)
    r2 = run("echo boom | tee a.log; exit 2", tmp_path, 10, step_log_path(report, 2), echo=False)
    steps = (
        step_record(1, r1, report, title="sanity | pytest", expectation="2 passed"),
        step_record(2, r2, report, title="study", expectation="1 passed"),
    )
    (report / "study_outputs").mkdir()
    (report / "study_outputs" / "metrics.json").write_text('{"psnr": 20}\n')
    (report / "big.npz").write_bytes(b"\0" * 5000)
    criteria = (
        CriterionRecord(1, "study completes", check="test -f big.npz", ok=True, reason="rc=0", rc=0,
                        log="logs/check-01.log"),
        CriterionRecord(2, "figure shows data"),
    )
    env = {"HOME": "/root", "GITHUB_TOKEN": "should-not-appear", "API_KEY": "nor-this"}
    record = RunRecord(
        run_id=report.name, focus=FOCUS, role="RALPH", status="failed",
        started_at=T0, ended_at=T0 + timedelta(seconds=5),
        git=GitInfo(branch="main", sha_before="a" * 40, sha_after="b" * 40, dirty=True),
        report_dir=report.relative_to(tmp_path).as_posix(), steps=steps, exit_criteria=criteria,
        artifacts=collect_artifacts(report, max_commit_bytes=1000), env=env,
        notes="step 2 failed",
    )
    return report, record


def test_run_json_holds_every_design_field_and_validates(tmp_path: Path) -> None:
    tf_was_loaded = "tensorflow" in sys.modules
    report, record = _build_record(tmp_path)
    path = write_run_record(report, record)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert validate_run_record(data) == []
    for key in ("schema_version", "run_id", "focus", "role", "status", "started_at", "ended_at",
                "git", "steps", "exit_criteria", "artifacts", "host", "python", "packages", "env"):
        assert key in data, key
    assert data["git"] == {"branch": "main", "sha_before": "a" * 40, "sha_after": "b" * 40,
                           "dirty": True}
    assert data["started_at"] == "2026-01-07T07:30:00.250Z"
    s1, s2 = data["steps"]
    for key in ("argv", "cwd", "timeout_s", "rc", "timed_out", "duration_s", "pytest_counts",
                "expectation_ok"):
        assert key in s1, key
    assert s1["argv"][:3] == ["bash", "-o", "pipefail"] and s1["cwd"] == str(tmp_path)
    assert (s1["rc"], s1["timeout_s"], s1["pytest_counts"]["passed"], s1["expectation_ok"]) == (
        0, 10.0, 2, True)
    assert s1["log"] == "logs/step-01.log"
    assert (s2["rc"], s2["expectation_ok"]) == (2, False)
    assert "no pytest summary" in s2["expectation_reason"]
    by_path = {a["path"]: a for a in data["artifacts"]}
    assert set(by_path) == {"big.npz", "logs/step-01.log", "logs/step-02.log",
                            "study_outputs/metrics.json"}
    metrics = report / "study_outputs" / "metrics.json"
    assert by_path["study_outputs/metrics.json"]["sha256"] == hashlib.sha256(
        metrics.read_bytes()).hexdigest()
    assert by_path["big.npz"]["size"] == 5000 and by_path["big.npz"]["over_commit_limit"] is True
    assert data["env"] == {"API_KEY": "***", "GITHUB_TOKEN": "***", "HOME": "/root"}
    assert "should-not-appear" not in path.read_text()
    assert data["packages"]["pytest"] == importlib.metadata.version("pytest")
    assert "tensorflow" in data["packages"]
    if not tf_was_loaded:
        assert "tensorflow" not in sys.modules  # versions come from metadata, not imports
    assert data["python"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}")
    assert data["host"]["hostname"]
    again = read_run_record(path)
    assert again.to_dict() == data


def test_schema_catches_missing_fields_and_wrong_types(tmp_path: Path) -> None:
    report, record = _build_record(tmp_path)
    good = record.to_dict()
    assert validate_run_record(good) == []
    cases = [
        (lambda d: d.pop("focus"), "missing required field 'focus'"),
        (lambda d: d["git"].pop("sha_before"), "$.git: missing required field 'sha_before'"),
        (lambda d: d["steps"][0].__setitem__("rc", "0"), "$.steps[0].rc: expected integer"),
        (lambda d: d["steps"][1].__setitem__("timed_out", 1), "$.steps[1].timed_out"),
        (lambda d: d["artifacts"][0].__setitem__("size", True), "$.artifacts[0].size"),
        (lambda d: d["artifacts"][0].__setitem__("sha256", "xyz"), "sha256"),
        (lambda d: d.__setitem__("status", "great"), "'great' is not one of"),
        (lambda d: d.__setitem__("started_at", "yesterday"), "$.started_at"),
        (lambda d: d["packages"].__setitem__("numpy", 2), "$.packages.numpy"),
        (lambda d: d.__setitem__("steps", {}), "$.steps: expected array"),
    ]
    for mutate, message in cases:
        data = copy.deepcopy(good)
        mutate(data)
        problems = validate_run_record(data)
        assert any(message in p for p in problems), (message, problems)
    bad_path = report / "run.json"
    bad = copy.deepcopy(good)
    del bad["steps"][0]["argv"]
    bad_path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"run.json: invalid run record: .*argv"):
        read_run_record(bad_path)


def test_invalid_record_is_not_written(tmp_path: Path) -> None:
    report, record = _build_record(tmp_path)
    step = record.steps[0]
    broken = RunRecord(**{**record.__dict__, "steps": (StepRecord(**{**step.__dict__, "index": 0}),)})
    with pytest.raises(ValueError, match=r"steps\[0\]\.index"):
        write_run_record(report, broken)
    assert not (report / "run.json").exists()
    with pytest.raises(ValueError, match="status"):
        RunRecord(**{**record.__dict__, "status": "meh"})
    with pytest.raises(ValueError, match="role"):
        RunRecord(**{**record.__dict__, "role": "BOT"})


def test_summary_md_has_a_step_table(tmp_path: Path) -> None:
    report, record = _build_record(tmp_path)
    path = write_summary(report, record)
    text = path.read_text(encoding="utf-8")
    assert text == render_summary(record)
    assert f"# Run {report.name} — {FOCUS} (RALPH)" in text
    assert "| # | Step | Command | rc |" in text
    rows = [line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 4  # two steps + two criteria
    assert "sanity \\| pytest" in rows[0] and "✅ pass 2 passed" in rows[0]
    assert "| 2 |" in rows[1] and "❌ fail 1 passed" in rows[1] and "[logs/step-02.log]" in rows[1]
    assert "`big.npz` (5000 bytes) is over the commit size limit" in text
    assert "**failed**" in text


def test_write_blocked_never_overwrites(tmp_path: Path) -> None:
    first = write_blocked(tmp_path, "dwell limit reached\nthree failed cycles",
                          {"focus": FOCUS, "dwell": 3}, clock=_clock())
    second = write_blocked(tmp_path, "again", "free text context", clock=_clock())
    assert first.name == "blocked_2026-01-07T073000Z.md"
    assert second.name == "blocked_2026-01-07T073000Z-2.md"
    text = first.read_text(encoding="utf-8")
    assert text.startswith("# Blocked: dwell limit reached\n")
    assert f"- focus: {FOCUS}" in text and "- dwell: 3" in text and "three failed cycles" in text
    assert "free text context" in second.read_text(encoding="utf-8")
    with pytest.raises(ValueError):
        write_blocked(tmp_path, "  ", clock=_clock())


def test_package_versions_reports_missing_as_none() -> None:
    versions = package_versions(("pytest", "surely-not-installed-pkg-xyz"))
    assert versions == {"pytest": importlib.metadata.version("pytest"),
                        "surely-not-installed-pkg-xyz": None}
