"""Proof of commits and files, expectation validation, the re-check schedule and its
deadline, and the one follow-up `proof` notice — on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from ledger import Ledger, LedgerConfig
from ledger.exceptions import InvalidInput
from ledger.records import DeliveryRecord
from tests.conftest import T0
from tests.fakes.web_site import Site

THREAD = "slack:T1/C1/1700000000.000100@U1"
PAGE = '<link rel="canonical" href="/"><button id="checkout">Buy</button>'


@pytest.fixture
def config() -> LedgerConfig:
    return LedgerConfig(
        proof_timeout=timedelta(seconds=2),
        proof_recheck=timedelta(minutes=1),
        proof_recheck_max=timedelta(minutes=10),
        proof_deadline=timedelta(hours=1),
    )


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    yield server
    server.close()


def git(repo: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(repo),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    out = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "site-repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "index.html").write_text(PAGE)
    git(path, "add", "index.html")
    git(path, "commit", "-q", "-m", "publish")
    return path


def proof_notices(ledger: Ledger, task_id: str) -> list[DeliveryRecord]:
    rows = sorted(ledger.deliveries(task=task_id, limit=None), key=lambda d: d.id)
    return [d for d in rows if d.kind == "proof"]


# -- commits ----------------------------------------------------------------------------------


def test_a_commit_present_in_the_repository_is_verified(ledger: Ledger, repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    task = ledger.create(runtime="cron", label="publish")
    ledger.add_artifact(task.task_id, kind="commit", value=f"{repo}@{sha}", proof={"exists": True})
    ledger.add_artifact(task.task_id, kind="commit", value=sha[:10], proof={"repo": str(repo)})
    ledger.add_artifact(
        task.task_id, kind="commit", value=sha, proof={"repo": str(repo), "branch": "main"}
    )
    record = ledger.check_proof(task.task_id)
    assert [a.proof_status for a in record.artifacts] == ["verified"] * 3
    assert record.artifacts[0].detail == f"commit {sha[:12]} present"
    assert record.artifacts[2].detail == f"commit {sha[:12]} present, on 'main'"
    assert record.proof_status == "verified"


def test_a_commit_absent_from_the_repository_fails(ledger: Ledger, repo: Path) -> None:
    task = ledger.create(runtime="cron", label="publish")
    absent = "0123456789abcdef0123456789abcdef01234567"
    ledger.add_artifact(
        task.task_id, kind="commit", value=f"{repo}@{absent}", proof={"exists": True}
    )
    record = ledger.check_proof(task.task_id)
    (artifact,) = record.artifacts
    assert artifact.proof_status == "failed"
    assert artifact.detail == "commit 0123456789ab not found"


def test_a_commit_not_on_the_named_branch_fails(ledger: Ledger, repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "extra.txt").write_text("x")
    git(repo, "add", "extra.txt")
    git(repo, "commit", "-q", "-m", "feature work")
    sha = git(repo, "rev-parse", "HEAD")
    task = ledger.create(runtime="cron", label="publish")
    ledger.add_artifact(
        task.task_id, kind="commit", value=sha, proof={"repo": str(repo), "branch": "main"}
    )
    (artifact,) = ledger.check_proof(task.task_id).artifacts
    assert artifact.detail == f"commit {sha[:12]} present, not on 'main'"


def test_a_directory_that_is_not_a_repository_is_reported(ledger: Ledger, tmp_path: Path) -> None:
    task = ledger.create(runtime="cron", label="publish")
    ledger.add_artifact(
        task.task_id, kind="commit", value=f"{tmp_path}@abcdef1", proof={"exists": True}
    )
    (artifact,) = ledger.check_proof(task.task_id).artifacts
    assert artifact.proof_status == "failed"
    assert "is not a git repository" in (artifact.detail or "")


# -- files ------------------------------------------------------------------------------------


def test_a_file_with_the_right_sha256_is_verified_and_a_wrong_one_fails(
    ledger: Ledger, tmp_path: Path
) -> None:
    build = tmp_path / "app.tar.gz"
    build.write_bytes(b"release bytes" * 1000)
    right = hashlib.sha256(build.read_bytes()).hexdigest()
    wrong = hashlib.sha256(b"something else").hexdigest()
    task = ledger.create(runtime="cli", label="build")
    ledger.add_artifact(task.task_id, kind="file", value=str(build), proof={"sha256": right})
    ledger.add_artifact(
        task.task_id, kind="file", value=str(build), proof={"sha256": wrong.upper()}
    )
    good, bad = ledger.check_proof(task.task_id).artifacts
    assert good.proof_status == "verified"
    assert good.detail == "present, 12.7 KiB, sha256 ok"
    assert bad.proof_status == "failed"
    assert bad.detail == f"present, 12.7 KiB, sha256 is {right[:12]}…, expected {wrong[:12]}…"


def test_a_file_older_than_its_max_age_fails(ledger: Ledger, tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("BUILD SUCCESSFUL\n")
    three_hours_before = (T0 - timedelta(hours=3)).timestamp()
    os.utime(log, (three_hours_before, three_hours_before))
    task = ledger.create(runtime="cli", label="build")
    ledger.add_artifact(task.task_id, kind="build", value=str(log), proof={"max_age": "1h"})
    ledger.add_artifact(task.task_id, kind="build", value=f"file://{log}", proof={"max_age": "4h"})
    stale, fresh = ledger.check_proof(task.task_id, now=T0).artifacts
    assert stale.proof_status == "failed"
    assert stale.detail == "present, 17 bytes, modified 3h ago (max 1h)"
    assert fresh.proof_status == "verified"


def test_text_is_found_in_a_large_build_log_even_across_read_chunks(
    ledger: Ledger, tmp_path: Path
) -> None:
    log = tmp_path / "build.log"
    filler = b"." * ((1 << 20) - 5)
    log.write_bytes(filler + b"BUILD SUCCESSFUL" + filler + b"\n")  # spans the 1 MiB boundary
    task = ledger.create(runtime="cli", label="build")
    ledger.add_artifact(
        task.task_id,
        kind="build",
        value=str(log),
        proof={"expect_text": "BUILD SUCCESSFUL", "forbid_text": "FAILED"},
    )
    (artifact,) = ledger.check_proof(task.task_id).artifacts
    assert artifact.proof_status == "verified"
    assert artifact.detail == "present, 2 MiB, 'BUILD SUCCESSFUL' found, 'FAILED' absent"


def test_a_missing_file_fails_and_is_checked_again_later(ledger: Ledger, tmp_path: Path) -> None:
    task = ledger.create(runtime="cli", label="build")
    ledger.add_artifact(
        task.task_id, kind="file", value=str(tmp_path / "later.bin"), proof={"exists": True}
    )
    (artifact,) = ledger.check_proof(task.task_id).artifacts
    assert artifact.detail == "missing"
    assert artifact.next_check_at == T0 + timedelta(minutes=1)


# -- expectations are validated when the artifact is added -------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "proof", "field"),
    [
        ("url", "https://example.com/", {"expect_txt": "x"}, "proof.expect_txt"),
        ("url", "https://example.com/", {"expect_status": 99}, "proof.expect_status"),
        (
            "url",
            "https://example.com/",
            {"expect_header": "no colon allowed?"},
            "proof.expect_header",
        ),
        ("url", "https://example.com/", {"sha256": "ab" * 32}, "proof.sha256"),
        ("file", "/tmp/x", {"sha256": "not-hex"}, "proof.sha256"),
        ("file", "/tmp/x", {"max_age": "soon"}, "proof.max_age"),
        ("commit", "abcdef1", {"exists": True}, "proof.repo"),
        ("commit", "/repo@not-a-sha!", {"exists": True}, "value"),
        ("commit", "/repo@abcdef1", {"expect_status": 200}, "proof.expect_status"),
        ("other", "a note", {"expect_text": "x"}, "value"),
    ],
)
def test_bad_expectations_are_refused_naming_the_field(
    ledger: Ledger, kind: str, value: str, proof: dict[str, object], field: str
) -> None:
    task = ledger.create(runtime="cli", label="x")
    with pytest.raises(InvalidInput) as refused:
        ledger.add_artifact(task.task_id, kind=kind, value=value, proof=proof)
    assert refused.value.field == field
    assert ledger.get(task.task_id, details=True).artifacts == ()


# -- schedule, deadline, and the follow-up notice ----------------------------------------------


def published_task(ledger: Ledger, url: str, *, notify: str = "done_only") -> str:
    task = ledger.create(
        runtime="cron",
        label="nightly publish",
        reply_to=THREAD,
        notify=notify,
        proof_url=url,
        expect_text="checkout",
    )
    return task.task_id


def test_late_proof_sends_exactly_one_follow_up_notice(ledger: Ledger, site: Site) -> None:
    site.page("/", "<p>old page</p>")
    task_id = published_task(ledger, site.url("/"))
    ledger.finish(task_id, status="succeeded", summary="published")
    first = ledger.run_due_proof_checks(now=T0 + timedelta(seconds=5))
    assert (first.checked, first.failed) == (1, 1)
    task = ledger.get(task_id)
    assert task.proven is False
    assert proof_notices(ledger, task_id) == []

    site.page("/", PAGE)
    assert ledger.run_due_proof_checks(now=T0 + timedelta(seconds=30)).checked == 0  # not due
    later = ledger.run_due_proof_checks(now=T0 + timedelta(minutes=2))
    assert (later.checked, later.verified) == (1, 1)
    assert ledger.get(task_id).proven is True
    ledger.check_proof(task_id, now=T0 + timedelta(minutes=3))  # verified again: no new notice
    assert ledger.run_due_proof_checks(now=T0 + timedelta(hours=5)).checked == 0

    (notice,) = proof_notices(ledger, task_id)
    assert notice.target == THREAD
    assert notice.payload["proof"] == "proven"
    assert notice.payload["status"] == "succeeded"
    assert notice.payload["event"] == "proof"
    assert notice.payload["summary"] == "published"
    assert notice.payload["proof_detail"] == f"url {site.url('/')}: 200, 'checkout' found"
    events = [e for e in ledger.events(task_id) if e.kind == "proof_checked"]
    assert [e.summary.split(":")[0] for e in events if e.summary] == ["proof verified"]


def test_proof_that_keeps_failing_is_given_up_at_the_deadline_with_one_notice(
    ledger: Ledger, site: Site
) -> None:
    site.page("/", "<p>old page</p>")
    task_id = published_task(ledger, site.url("/"), notify="state_changes")
    ledger.finish(task_id, status="succeeded", now=T0)
    now = T0
    passes = 0
    while now < T0 + timedelta(hours=2):
        now += timedelta(minutes=1)
        passes += ledger.run_due_proof_checks(now=now).checked
        if ledger.get(task_id).proof_status == "failed":
            break
    task = ledger.get(task_id, details=True)
    assert task.proof_status == "failed"
    assert now == T0 + timedelta(hours=1)  # given up exactly at the deadline
    assert 5 <= passes <= 15  # backoff: not a check every minute
    assert task.artifacts[0].next_check_at is None
    (notice,) = proof_notices(ledger, task_id)
    assert notice.payload["proof"] == "proof failed"
    assert notice.payload["proof_detail"] == f"url {site.url('/')}: 200, 'checkout' missing"


def test_a_silent_task_gets_no_proof_notice(ledger: Ledger, site: Site) -> None:
    site.page("/", PAGE)
    task_id = published_task(ledger, site.url("/"), notify="silent")
    ledger.finish(task_id, status="succeeded")
    assert ledger.check_proof(task_id).proven is True
    assert proof_notices(ledger, task_id) == []


def test_proof_verified_before_the_task_ends_needs_no_follow_up(ledger: Ledger, site: Site) -> None:
    site.page("/", PAGE)
    task_id = published_task(ledger, site.url("/"))
    assert ledger.check_proof(task_id).proof_status == "verified"
    finished = ledger.finish(task_id, status="succeeded")
    assert finished.proven is True
    assert proof_notices(ledger, task_id) == []
    kinds = [d.kind for d in ledger.deliveries(task=task_id, limit=None)]
    assert kinds == ["terminal"]
    assert ledger.deliveries(task=task_id, limit=None)[0].payload["proof"] == "proven"


def test_a_task_that_ended_gets_checked_at_the_next_pass_not_after_its_backoff(
    ledger: Ledger, site: Site
) -> None:
    site.page("/", "<p>building</p>")
    task_id = published_task(ledger, site.url("/"))
    for minutes in (1, 3, 7, 15):  # the backoff grows while the task runs
        ledger.run_due_proof_checks(now=T0 + timedelta(minutes=minutes))
    pending = ledger.get(task_id, details=True).artifacts[0].next_check_at
    assert pending is not None and pending > T0 + timedelta(minutes=20)
    site.page("/", PAGE)
    ledger.finish(task_id, status="succeeded", now=T0 + timedelta(minutes=16))
    result = ledger.run_due_proof_checks(now=T0 + timedelta(minutes=16, seconds=30))
    assert result.checked == 1
    assert ledger.get(task_id).proven is True


def test_artifacts_of_a_failed_task_are_no_longer_checked_on_a_schedule(
    ledger: Ledger, site: Site
) -> None:
    site.page("/", "<p>old</p>")
    task_id = published_task(ledger, site.url("/"))
    ledger.finish(task_id, status="failed", error="deploy broke")
    assert ledger.run_due_proof_checks(now=T0 + timedelta(minutes=1)).checked == 0
    assert ledger.get(task_id, details=True).artifacts[0].next_check_at is None
    assert site.hits["/"] == 0


def test_a_claimed_check_is_not_taken_by_a_second_pass(ledger: Ledger, site: Site) -> None:
    from ledger.proof import _claim_due

    site.page("/", PAGE)
    task_id = published_task(ledger, site.url("/"))
    first = _claim_due(ledger.engine, ledger.config, now=T0, limit=10)
    second = _claim_due(ledger.engine, ledger.config, now=T0 + timedelta(seconds=1), limit=10)
    assert [d.task_id for d in first] == [task_id]
    assert second == []


def test_hostile_response_content_is_stored_as_plain_text_and_escaped_in_chat(
    ledger: Ledger, site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.render import Renderer

    hostile = "<!channel> [b]x[/b] @everyone <@U123> <https://evil|click> *bold*"
    site.page("/", "<script>alert(1)</script> <!here>", headers={"X-Release": hostile})
    task = ledger.create(runtime="cli", label="deploy", reply_to=THREAD, notify="done_only")
    ledger.add_artifact(
        task.task_id, kind="deploy", value=site.url("/"), proof={"expect_header": "X-Release: v1"}
    )
    ledger.finish(task.task_id, status="succeeded", now=T0)
    ledger.check_proof(task.task_id, now=T0 + timedelta(hours=3))  # past the deadline: final
    (artifact,) = ledger.get(task.task_id, details=True).artifacts
    assert artifact.detail == f"200, header X-Release is '{hostile[:39]}…'"
    (notice,) = proof_notices(ledger, task.task_id)
    assert notice.payload["proof_detail"].endswith(artifact.detail)

    renderer = Renderer()
    for surface in ("slack", "discord"):
        text = renderer.render_string(surface, "{{ p.proof_detail }}", p=notice.payload)
        assert "<!channel>" not in text
        assert "@everyone" not in text.replace("@\u200beveryone", "")
        assert "<@U123>" not in text

    from bot.cli.output import print_task_detail

    monkeypatch.setenv("COLUMNS", "400")  # one line per row
    print_task_detail(ledger.get(task.task_id, details=True), None)
    shown = capsys.readouterr().out
    assert artifact.detail in shown  # literally: rich markup in it is not interpreted


def test_flapping_proof_sends_at_most_one_notice_per_outcome(ledger: Ledger, site: Site) -> None:
    site.page("/", "<p>old</p>")
    task_id = published_task(ledger, site.url("/"))
    ledger.finish(task_id, status="succeeded", now=T0)
    late = T0 + timedelta(hours=2)  # past the deadline: every failure is final
    outcomes = []
    for page in (PAGE, "<p>broken</p>", PAGE, "<p>broken</p>", PAGE):
        site.page("/", page)
        late += timedelta(minutes=1)
        outcomes.append(ledger.check_proof(task_id, now=late).proof_status)
    assert outcomes == ["verified", "failed", "verified", "failed", "verified"]
    assert [n.payload["proof"] for n in proof_notices(ledger, task_id)] == [
        "proven",
        "proof failed",
    ]


def test_the_scheduled_auditor_runs_due_proof_checks(ledger: Ledger, site: Site) -> None:
    from bot.scheduler import build_scheduler
    from bot.settings import load_settings

    site.page("/", PAGE)
    task_id = published_task(ledger, site.url("/"))
    ledger.finish(task_id, status="succeeded")
    auditor = build_scheduler(load_settings({}), ledger)
    assert auditor.jobs["proof"].interval == timedelta(seconds=30)
    assert auditor.run_job("proof")
    assert ledger.get(task_id).proven is True
    assert site.hits["/"] == 1
