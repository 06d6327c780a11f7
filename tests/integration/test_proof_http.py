"""Proof checks of URLs against a real local HTTP server (SPEC §2, issue 9): expected and
forbidden text, status, headers, redirect limits, timeouts, size caps, the deny list, and
bounded concurrency — recorded on the artifact and summarized on the task, on SQLite and
PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ledger import Ledger, LedgerConfig
from ledger.exceptions import InvalidInput
from ledger.proof_checks import CheckLimits, CheckRequest, run_checks
from ledger.records import ArtifactRecord, TaskRecord
from tests.fakes.web_site import Site

PAGE = '<html><head><link rel="canonical" href="/p"></head><body>hello</body></html>'


@pytest.fixture
def config() -> LedgerConfig:
    # Long enough that a slow moment on a busy CI machine cannot fail a good page (0.5 s
    # did, once in several full runs), short enough for the hanging-server test.
    return LedgerConfig(
        proof_timeout=timedelta(seconds=2),
        proof_max_redirects=3,
        proof_max_bytes=64 * 1024,
    )


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    yield server
    server.close()


def checked(ledger: Ledger, url: str, **proof: object) -> tuple[TaskRecord, ArtifactRecord]:
    """A task with one url artifact, its proof checked now."""
    task = ledger.create(runtime="cli", label="publish", proof_required=True)
    ledger.add_artifact(task.task_id, kind="url", value=url, proof=proof)
    record = ledger.check_proof(task.task_id)
    (artifact,) = record.artifacts
    return record, artifact


def test_a_page_with_the_expected_text_is_verified(ledger: Ledger, site: Site) -> None:
    site.page("/", PAGE)
    task, artifact = checked(ledger, site.url("/"), expect_status=200, expect_text="canonical")
    assert artifact.proof_status == "verified"
    assert artifact.detail == "200, 'canonical' found"
    assert artifact.checked_at is not None
    assert task.proof_status == "verified"


def test_a_page_without_the_expected_text_fails_naming_what_is_missing(
    ledger: Ledger, site: Site
) -> None:
    site.page("/", PAGE)
    task, artifact = checked(ledger, site.url("/"), expect_text=["canonical", "checkout"])
    assert artifact.proof_status == "failed"
    assert artifact.detail == "200, 'canonical' found, 'checkout' missing"
    assert task.proof_status == "unchecked"  # to be re-checked: not yet a final verdict
    assert artifact.next_check_at is not None


def test_forbidden_text_and_expected_headers_are_judged_too(ledger: Ledger, site: Site) -> None:
    site.page("/", PAGE + "maintenance mode", headers={"X-Release": "v42", "Cache-Control": "no"})
    _, artifact = checked(
        ledger,
        site.url("/"),
        forbid_text="maintenance",
        expect_header=["X-Release: v42", "Cache-Control: no-store", "X-Absent"],
    )
    assert artifact.proof_status == "failed"
    assert artifact.detail == (
        "200, 'maintenance' present, header X-Release ok, header Cache-Control is 'no', "
        "header X-Absent missing"
    )


def test_a_redirect_chain_within_the_limit_is_followed(ledger: Ledger, site: Site) -> None:
    site.page("/final", PAGE)
    site.redirect("/a", "/b", 301)
    site.redirect("/b", site.url("/final"), 308)
    _, artifact = checked(ledger, site.url("/a"), expect_text="canonical")
    assert artifact.proof_status == "verified"
    assert artifact.detail == "200 after 2 redirects, 'canonical' found"
    assert site.hits["/final"] == 1


def test_a_redirect_chain_beyond_the_limit_fails_without_fetching_the_end(
    ledger: Ledger, site: Site
) -> None:
    for i in range(5):
        site.redirect(f"/r{i}", f"/r{i + 1}")
    site.page("/r5", PAGE)
    _, artifact = checked(ledger, site.url("/r0"), expect_text="canonical")
    assert artifact.proof_status == "failed"
    assert artifact.detail == "302, more than 3 redirects"
    assert site.hits["/r5"] == 0


def test_a_server_error_fails_the_check(ledger: Ledger, site: Site) -> None:
    site.page("/", "oops", status=500)
    _, artifact = checked(ledger, site.url("/"), expect_status=200)
    assert artifact.proof_status == "failed"
    assert artifact.detail == "500 (expected 200)"


def test_without_an_expected_status_any_2xx_passes_and_a_404_does_not(
    ledger: Ledger, site: Site
) -> None:
    site.page("/created", "made", status=201)
    _, created = checked(ledger, site.url("/created"), expect_text="made")
    _, missing = checked(ledger, site.url("/nowhere"), expect_text="made")
    assert created.proof_status == "verified", created.detail
    assert missing.detail == "404 (expected 2xx), 'made' missing"


def test_a_hanging_server_times_out_within_the_per_check_timeout(
    ledger: Ledger, site: Site
) -> None:
    site.page("/hang", PAGE, delay=30)
    started = time.monotonic()
    _, artifact = checked(ledger, site.url("/hang"), expect_text="canonical")
    assert time.monotonic() - started < 8
    assert artifact.proof_status == "failed"
    assert artifact.detail == "timed out after 2s"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_body_fails_at_the_size_cap(ledger: Ledger, site: Site, chunked: bool) -> None:
    site.page("/big", "canonical" + "x" * 200_000, chunked=chunked)
    _, artifact = checked(ledger, site.url("/big"), expect_text="canonical")
    assert artifact.proof_status == "failed"
    assert artifact.detail == "200, body over 64 KiB"


def test_a_link_local_metadata_address_is_never_fetched(ledger: Ledger) -> None:
    task, artifact = checked(ledger, "http://169.254.169.254/latest/meta-data/", expect_status=200)
    assert artifact.proof_status == "failed"
    assert artifact.detail == "denied: 169.254.169.254 is in the deny list"
    assert artifact.next_check_at is None  # retrying cannot help
    assert task.proof_status == "failed"


@pytest.mark.parametrize("value", ["gopher://example/", "file:///etc/passwd", "example.com/"])
def test_only_http_and_https_urls_are_accepted_for_proof(ledger: Ledger, value: str) -> None:
    task = ledger.create(runtime="cli", label="x")
    with pytest.raises(InvalidInput) as refused:
        ledger.add_artifact(task.task_id, kind="url", value=value, proof={"expect_status": 200})
    assert refused.value.field == "value"


def test_a_redirect_to_another_scheme_is_not_followed(ledger: Ledger, site: Site) -> None:
    site.redirect("/", "file:///etc/passwd")
    _, artifact = checked(ledger, site.url("/"), expect_text="root")
    assert artifact.detail == "only http and https URLs are checked, not 'file' (after 1 redirect)"
    assert artifact.next_check_at is None


@pytest.fixture
def second_site() -> Iterator[Site]:
    server = Site("127.0.0.2")
    yield server
    server.close()


def test_a_configured_deny_entry_blocks_a_host_that_is_otherwise_reachable(
    site: Site, second_site: Site
) -> None:
    second_site.page("/", PAGE)
    request = [CheckRequest("url", second_site.url("/"), {"expect_text": "canonical"})]
    now = datetime.now(UTC)
    allowed = run_checks(request, CheckLimits(timeout=2), now)
    denied = run_checks(request, CheckLimits(timeout=2, deny=("127.0.0.2",)), now)
    assert allowed[0].passed
    assert not denied[0].passed
    assert denied[0].detail == "denied: 127.0.0.2 is in the deny list"
    assert denied[0].permanent
    assert second_site.hits["/"] == 1


def test_every_redirect_hop_is_checked_against_the_deny_list(site: Site, second_site: Site) -> None:
    second_site.page("/", PAGE)
    site.redirect("/go", second_site.url("/"))
    request = [CheckRequest("url", site.url("/go"), {"expect_text": "canonical"})]
    (result,) = run_checks(
        request, CheckLimits(timeout=2, deny=("127.0.0.2/32",)), datetime.now(UTC)
    )
    assert result.detail == "denied: 127.0.0.2 is in the deny list"
    assert site.hits["/go"] == 1
    assert second_site.hits["/"] == 0


def test_a_host_name_is_denied_when_any_address_it_resolves_to_is_denied(site: Site) -> None:
    site.page("/", PAGE)
    url = f"http://localhost:{site.port}/"
    request = [CheckRequest("url", url, {"expect_text": "canonical"})]
    now = datetime.now(UTC)
    (by_network,) = run_checks(request, CheckLimits(timeout=2, deny=("127.0.0.0/8", "::1")), now)
    (by_name,) = run_checks(request, CheckLimits(timeout=2, deny=("LOCALHOST.",)), now)
    assert by_network.detail.startswith("denied: localhost (")
    assert by_name.detail == "denied: localhost is in the deny list"
    assert site.hits["/"] == 0


def test_checks_run_concurrently_but_no_more_than_the_bound(site: Site) -> None:
    site.page("/slow", PAGE, delay=0.3)
    requests = [CheckRequest("url", site.url("/slow"), {"expect_text": "canonical"})] * 6
    started = time.monotonic()
    results = run_checks(requests, CheckLimits(timeout=5, concurrency=2), datetime.now(UTC))
    elapsed = time.monotonic() - started
    assert all(r.passed for r in results)
    assert site.max_in_flight == 2
    assert 0.85 < elapsed < 3


def test_a_refused_connection_is_reported_and_retried_later(ledger: Ledger) -> None:
    _, artifact = checked(ledger, "http://127.0.0.1:9/", expect_status=200)
    assert artifact.detail == "connection refused"
    assert artifact.next_check_at is not None


def test_checks_can_be_run_from_a_thread_that_runs_an_event_loop(site: Site) -> None:
    import asyncio

    site.page("/", PAGE)

    async def inside_a_loop() -> bool:
        request = [CheckRequest("url", site.url("/"), {"expect_text": "canonical"})]
        return run_checks(request, CheckLimits(timeout=2), datetime.now(UTC))[0].passed

    assert asyncio.run(inside_a_loop())


def test_the_default_entry_keeps_the_built_in_deny_list_when_adding_to_it(
    second_site: Site,
) -> None:
    from bot.settings import load_settings

    settings = load_settings({"TASKTRAIL_PROOF_DENY": "default, 127.0.0.2"})
    limits = CheckLimits.from_config(settings.ledger)
    requests = [
        CheckRequest("url", second_site.url("/"), {}),
        CheckRequest("url", "http://[fe80::1]/", {}),
        CheckRequest("url", "http://[::ffff:169.254.169.254]/", {}),
        CheckRequest("url", "http://[64:ff9b::a9fe:a9fe]/", {}),
        CheckRequest("url", "http://2852039166/", {}),  # 169.254.169.254 as one number
    ]
    results = run_checks(requests, limits, datetime.now(UTC))
    assert [r.detail.split(" is ")[0] for r in results] == [
        "denied: 127.0.0.2",
        "denied: fe80::1",
        "denied: ::ffff:169.254.169.254",
        "denied: 64:ff9b::a9fe:a9fe",
        "denied: 2852039166 (169.254.169.254)",
    ]
    assert second_site.hits["/"] == 0


def test_a_bad_proof_url_at_creation_is_refused_before_anything_is_recorded(
    ledger: Ledger,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        ledger.create(runtime="cli", label="x", run_id="r-bad", proof_url="ftp://example/x")
    assert refused.value.field == "value"
    assert ledger.list(limit=None) == []
