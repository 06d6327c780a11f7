"""Board data and the chat command service on real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.chat.board import Board, BoardGroup, build_board
from bot.chat.commands import parse_command
from bot.chat.permissions import Actor, Permissions
from bot.chat.service import (
    BoardReply,
    ChatPlace,
    ChatService,
    DoneReply,
    ErrorReply,
    HelpReply,
    TaskReply,
)
from ledger import Ledger, db
from ledger.address import Address, parse_address
from ledger.followers import followers_of
from ledger.lookup import fetch_row
from ledger.status import Status
from ledger.transitions import transition
from tests.conftest import T0

TENANT = "slack:T1"
HERE = "slack:T1/C1"
ALICE = Actor("slack", "UALICE", TENANT)
BOB = Actor("slack", "UBOB", TENANT)
ADMIN = Actor("slack", "UADMIN", TENANT)


def _mark_lost(ledger: Ledger, task_id: str) -> None:
    with db.write(ledger.engine) as conn:
        row = fetch_row(conn, task_id)
        assert row is not None
        transition(
            conn, row, Status.LOST, now=T0, config=ledger.config, actor="test", summary="gone"
        )


def _make(
    ledger: Ledger,
    label: str,
    *,
    reply_to: str | None = HERE + "/1.1@UALICE",
    tenant: str = TENANT,
    **kw: object,
) -> str:
    return ledger.create(
        runtime=str(kw.pop("runtime", "subagent")),
        label=label,
        tenant=tenant,
        reply_to=reply_to,
        now=T0 - timedelta(minutes=len(label)),
        **kw,  # type: ignore[arg-type]
    ).task_id


def _followers(ledger: Ledger, task_id: str) -> list[str]:
    with db.read(ledger.engine) as conn:
        return followers_of(conn, task_id)


def _group(board: Board, key: str) -> BoardGroup:
    return next(g for g in board.groups if g.key == key)


def _labels(board: Board, key: str) -> list[str]:
    return [r.label for r in _group(board, key).rows]


@pytest.fixture
def seeded(ledger: Ledger) -> dict[str, str]:
    ids = {
        "run": _make(ledger, "run"),
        "queue": _make(ledger, "queue", queued=True),
        "fail": _make(ledger, "fail-x"),
        "ok": _make(ledger, "ok-xxxx"),
        "proof": _make(ledger, "proof-xxxxx", proof_required=True),
        "lost": _make(ledger, "lost-xxxxxxx"),
        "other": _make(ledger, "other-channel", reply_to="slack:T1/C2/2.2@UBOB"),
        "cron": _make(ledger, "cron-job-xyz", reply_to=None, runtime="cron"),
        "foreign": _make(ledger, "foreign-tenant", tenant="slack:T9", reply_to=None),
    }
    ledger.finish(ids["fail"], status="failed", error="boom", now=T0)
    ledger.finish(ids["ok"], status="succeeded", now=T0)
    ledger.finish(ids["proof"], status="succeeded", now=T0)
    _mark_lost(ledger, ids["lost"])
    return ids


def test_the_channel_board_groups_this_channels_tasks_and_counts_the_rest(
    ledger: Ledger, seeded: dict[str, str]
) -> None:
    board = build_board(ledger, tenant=TENANT, channel_key=HERE, filter=None, actor=ALICE, now=T0)
    assert [g.key for g in board.groups] == ["attention", "running", "queued", "finished"]
    assert sorted(_labels(board, "attention")) == ["fail-x", "lost-xxxxxxx", "proof-xxxxx"]
    assert _labels(board, "running") == ["run"]
    assert _labels(board, "queued") == ["queue"]
    assert _labels(board, "finished") == ["ok-xxxx"]
    assert (board.counts.running, board.counts.queued, board.counts.attention) == (1, 1, 3)
    assert board.elsewhere is not None
    assert (board.elsewhere.running, board.elsewhere.queued) == (2, 0)  # other + cron


def test_rows_carry_what_every_surface_shows(ledger: Ledger, seeded: dict[str, str]) -> None:
    board = build_board(ledger, tenant=TENANT, channel_key=None, filter="all", actor=None, now=T0)
    proof = next(r for r in _group(board, "attention").rows if r.label == "proof-xxxxx")
    assert proof.proof == "unproven"
    assert proof.short_id == seeded["proof"][:8]
    assert proof.icon == "✅"
    assert proof.requester == "slack:UALICE"
    run = _group(board, "running").rows[0]
    assert run.age_seconds == pytest.approx(timedelta(minutes=3).total_seconds())
    assert run.runtime == "subagent"


def test_all_shows_the_whole_tenant_and_never_another_tenant(
    ledger: Ledger, seeded: dict[str, str]
) -> None:
    board = build_board(ledger, tenant=TENANT, channel_key=HERE, filter="all", actor=None, now=T0)
    shown = {r.label for g in board.groups for r in g.rows}
    assert "other-channel" in shown
    assert "cron-job-xyz" in shown
    assert "foreign-tenant" not in shown
    assert board.elsewhere is None


def test_mine_shows_only_the_actors_tasks(ledger: Ledger, seeded: dict[str, str]) -> None:
    board = build_board(ledger, tenant=TENANT, channel_key=HERE, filter="mine", actor=BOB, now=T0)
    assert {r.label for g in board.groups for r in g.rows} == {"other-channel"}


@pytest.mark.parametrize(
    ("filter", "labels"),
    [
        ("running", {"run", "other-channel", "cron-job-xyz"}),
        ("queued", {"queue"}),
        ("failed", {"fail-x"}),
        ("lost", {"lost-xxxxxxx"}),
        ("runtime:cron", {"cron-job-xyz"}),
    ],
)
def test_filters_narrow_the_board(
    ledger: Ledger, seeded: dict[str, str], filter: str, labels: set[str]
) -> None:
    board = build_board(ledger, tenant=TENANT, channel_key=HERE, filter=filter, actor=None, now=T0)
    assert {r.label for g in board.groups for r in g.rows} == labels


def test_a_followed_task_shows_on_the_followers_channel_board(
    ledger: Ledger, seeded: dict[str, str]
) -> None:
    ledger.follow(seeded["other"], "slack:T1/C1/9.9", tenant=TENANT, now=T0)
    board = build_board(ledger, tenant=TENANT, channel_key=HERE, filter=None, actor=None, now=T0)
    assert "other-channel" in _labels(board, "running")


def test_long_groups_are_cut_with_a_more_count(ledger: Ledger) -> None:
    for i in range(15):
        _make(ledger, f"task-{i:02d}")
    board = build_board(
        ledger, tenant=TENANT, channel_key=HERE, filter=None, actor=None, now=T0, rows=10
    )
    running = _group(board, "running")
    assert len(running.rows) == 10
    assert running.more == 5
    capped = build_board(
        ledger, tenant=TENANT, channel_key=None, filter="all", actor=None, now=T0, count_cap=12
    )
    assert _group(capped, "running").capped
    assert capped.counts.capped


def test_dismissing_a_lost_task_moves_it_out_of_needs_attention(
    ledger: Ledger, seeded: dict[str, str]
) -> None:
    ledger.dismiss(seeded["lost"], tenant=TENANT, now=T0)
    board = build_board(ledger, tenant=TENANT, channel_key=HERE, filter=None, actor=None, now=T0)
    assert "lost-xxxxxxx" not in _labels(board, "attention")
    assert "lost-xxxxxxx" in _labels(board, "finished")


# -- the command service ---------------------------------------------------------------------

PLACE = ChatPlace(parse_address("slack:T1/C1"))


def _run(
    service: ChatService, text: str, actor: Actor, place: ChatPlace | None = PLACE, **kw: object
) -> object:
    return asyncio.run(service.execute(parse_command(text), actor, place, **kw))  # type: ignore[arg-type]


@pytest.fixture
def service(ledger: Ledger) -> ChatService:
    return ChatService(ledger, Permissions(["slack:UADMIN"]))


def test_the_service_answers_board_show_and_help(
    service: ChatService, seeded: dict[str, str]
) -> None:
    assert isinstance(_run(service, "", ALICE), BoardReply)
    shown = _run(service, f"show {seeded['run'][:6]}", BOB)
    assert isinstance(shown, TaskReply)
    assert shown.task.task_id == seeded["run"]
    assert shown.events
    assert not shown.can_change
    assert isinstance(_run(service, "help", BOB), HelpReply)


def test_the_requester_cancels_and_a_bystander_is_refused(
    service: ChatService, ledger: Ledger, seeded: dict[str, str]
) -> None:
    refused = _run(service, f"cancel {seeded['run']}", BOB)
    assert isinstance(refused, ErrorReply)
    assert refused.kind == "denied"
    assert ledger.get(seeded["run"]).status is Status.RUNNING
    done = _run(service, f"cancel {seeded['run']} not needed", ALICE)
    assert isinstance(done, DoneReply)
    after = ledger.get(seeded["run"])
    assert after.status is Status.CANCELLED
    assert after.cancel_reason == "not needed"


def test_an_admin_changes_the_notify_policy_of_anyones_task(
    service: ChatService, ledger: Ledger, seeded: dict[str, str]
) -> None:
    done = _run(service, f"notify {seeded['other']} state_changes", ADMIN)
    assert isinstance(done, DoneReply)
    assert ledger.get(seeded["other"]).notify_policy == "state_changes"


def test_tasks_of_another_tenant_are_not_found(
    service: ChatService, seeded: dict[str, str]
) -> None:
    reply = _run(service, f"show {seeded['foreign']}", ADMIN)
    assert isinstance(reply, ErrorReply)
    assert reply.kind == "not_found"


def test_audit_is_for_admins(service: ChatService) -> None:
    reply = _run(service, "audit", ALICE)
    assert isinstance(reply, ErrorReply)
    assert reply.kind == "denied"


def test_follow_posts_an_anchor_and_unfollow_from_the_channel_removes_it(
    service: ChatService, ledger: Ledger, seeded: dict[str, str]
) -> None:
    async def anchor(task: object) -> Address:
        return parse_address("slack:T1/C1/5.5")

    done = _run(service, f"follow {seeded['other']}", BOB, anchor=anchor)
    assert isinstance(done, DoneReply)
    assert _followers(ledger, seeded["other"]) == ["slack:T1/C1/5.5"]
    gone = _run(service, f"unfollow {seeded['other']}", BOB)
    assert isinstance(gone, DoneReply)
    assert _followers(ledger, seeded["other"]) == []
    again = _run(service, f"unfollow {seeded['other']}", BOB)
    assert isinstance(again, ErrorReply)
    assert again.kind == "not_found"


def test_a_reply_to_merged_in_later_puts_the_task_on_that_channels_board(ledger: Ledger) -> None:
    first = ledger.create(runtime="cli", label="late-address", tenant=TENANT, run_id="r-9")
    assert build_board(
        ledger, tenant=TENANT, channel_key=HERE, filter=None, actor=None, now=T0
    ).is_empty
    merged = ledger.create(
        runtime="cli", label="late-address", tenant=TENANT, run_id="r-9", reply_to=HERE + "@UZED"
    )
    assert merged.task_id == first.task_id
    board = build_board(ledger, tenant=TENANT, channel_key=HERE, filter=None, actor=None, now=T0)
    assert _labels(board, "running") == ["late-address"]
    mine = build_board(
        ledger, tenant=TENANT, channel_key=None, filter="mine",
        actor=Actor("slack", "UZED", TENANT), now=T0,
    )  # fmt: skip
    assert _labels(mine, "running") == ["late-address"]


def test_an_unexpected_failure_answers_a_short_message_instead_of_a_traceback(
    service: ChatService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> Board:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("bot.chat.service.build_board", broken)
    reply = _run(service, "all", ALICE)
    assert isinstance(reply, ErrorReply)
    assert reply.message.startswith("`board` failed on our side")
    assert "disk on fire" not in reply.message
