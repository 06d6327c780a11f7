"""The fake Slack behaves like Slack towards the real slack_sdk and Bolt clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.async_app import AsyncAck, AsyncRespond, AsyncSay
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookClient

from .slack_payloads import (
    BOT_USER_ID,
    app_mention_event_body,
    app_mention_event_payload,
    block_actions_body,
    sign_request,
    slash_command_body,
    slash_command_payload,
)
from .slack_server import FakeSlack, run_fake_slack_in_thread

pytestmark = pytest.mark.timeout(60)

SECRET = "fake-signing-secret"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with run_fake_slack_in_thread(channels=["C1", "C2"]) as running:
        yield running


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.api_url)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def slack_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        call()
    return caught.value


# Web API state ---------------------------------------------------------------------------------


def test_a_threaded_reply_is_read_back_with_its_metadata(
    fake: FakeSlack, client: WebClient
) -> None:
    parent = client.chat_postMessage(channel="C1", text="task started")
    metadata = {"event_type": "tasktrail_notice", "event_payload": {"key": "t1:done"}}
    reply = client.chat_postMessage(
        channel="C1",
        thread_ts=parent["ts"],
        text="task done",
        blocks=[section("*done*")],
        metadata=metadata,
        unfurl_links=False,
    )
    assert reply["channel"] == "C1"
    assert reply["message"]["thread_ts"] == parent["ts"]
    assert float(reply["ts"]) > float(parent["ts"])

    thread = client.conversations_replies(channel="C1", ts=parent["ts"], include_all_metadata=True)
    assert [m["ts"] for m in thread["messages"]] == [parent["ts"], reply["ts"]]
    assert thread["messages"][0]["reply_count"] == 1
    assert thread["messages"][1]["metadata"] == metadata
    plain = client.conversations_replies(channel="C1", ts=parent["ts"])
    assert "metadata" not in plain["messages"][1]
    assert fake.messages("C1", thread_ts=parent["ts"])[1]["text"] == "task done"
    assert fake.calls_to("chat.postMessage")[1]["unfurl_links"] is False
    assert fake.violations == []


def test_message_timestamps_increase_strictly_like_slacks(client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel="C1", text=str(i))["ts"] for i in range(3)]
    assert stamps == ["1700000000.000100", "1700000000.000200", "1700000000.000300"]


def test_history_is_newest_first_and_pages_with_a_cursor(client: WebClient) -> None:
    for i in range(3):
        client.chat_postMessage(channel="C2", text=f"m{i}")
    first = client.conversations_history(channel="C2", limit=2)
    assert [m["text"] for m in first["messages"]] == ["m2", "m1"]
    assert first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    rest = client.conversations_history(channel="C2", limit=2, cursor=cursor)
    assert [m["text"] for m in rest["messages"]] == ["m0"]
    assert rest["has_more"] is False


def test_form_encoded_calls_with_a_token_field_work_like_json_ones(
    fake: FakeSlack, client: WebClient
) -> None:
    anonymous = WebClient(base_url=fake.api_url)
    params = {"token": "xoxb-test", "channel": "C1", "blocks": json.dumps([section("hi")])}
    posted = anonymous.api_call("chat.postMessage", params=params)
    assert posted["message"]["blocks"] == [section("hi")]
    assert fake.calls_to("chat.postMessage") == [{"channel": "C1", "blocks": [section("hi")]}]
    caught = slack_error(lambda: anonymous.auth_test())
    assert caught.response["error"] == "not_authed"


def test_posting_into_a_thread_that_does_not_exist_is_refused(client: WebClient) -> None:
    error = slack_error(lambda: client.chat_postMessage(channel="C1", thread_ts="1.2", text="x"))
    assert error.response["error"] == "thread_not_found"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda f: None, "channel_not_found"),
        (lambda f: f.add_channel("C9", archived=True), "is_archived"),
        (lambda f: f.add_channel("C9", bot_member=False), "not_in_channel"),
    ],
)
def test_an_unusable_channel_refuses_posts_with_slacks_error(
    fake: FakeSlack, client: WebClient, setup: Any, expected: str
) -> None:
    setup(fake)
    error = slack_error(lambda: client.chat_postMessage(channel="C9", text="hello"))
    assert error.response["error"] == expected
    assert fake.outcomes[-1] == ("chat.postMessage", 200, expected)


def test_a_deleted_thread_parent_makes_replies_fail(fake: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="anchor")["ts"]
    fake.delete_message("C1", parent)
    error = slack_error(lambda: client.chat_postMessage(channel="C1", thread_ts=parent, text="x"))
    assert error.response["error"] == "thread_not_found"
    error = slack_error(lambda: client.conversations_replies(channel="C1", ts=parent))
    assert error.response["error"] == "thread_not_found"


def test_updates_dms_ephemerals_users_and_groups(fake: FakeSlack, client: WebClient) -> None:
    fake.add_user("U0BOB", "bob", is_admin=True)
    fake.add_usergroup("S0OPS", ["U0BOB"])
    posted = client.chat_postMessage(channel="C1", text="running")
    updated = client.chat_update(channel="C1", ts=posted["ts"], text="done")
    assert updated["message"]["text"] == "done"
    assert fake.messages("C1")[0]["edited"]["user"] == BOT_USER_ID
    dm = client.conversations_open(users="U0BOB")["channel"]["id"]
    assert dm.startswith("D")
    assert client.conversations_open(users=["U0BOB"])["already_open"] is True
    client.chat_postMessage(channel=dm, text="your task failed")
    assert fake.messages(dm)[0]["text"] == "your task failed"
    assert client.chat_postEphemeral(channel="C1", user="U0BOB", text="psst")["message_ts"]
    assert fake.ephemerals[0]["text"] == "psst"
    assert client.users_info(user="U0BOB")["user"]["is_admin"] is True
    assert client.usergroups_users_list(usergroup="S0OPS")["users"] == ["U0BOB"]
    assert slack_error(lambda: client.users_info(user="U0NOPE")).response["error"] == (
        "user_not_found"
    )
    assert client.auth_test()["user_id"] == BOT_USER_ID


def test_mass_mentions_are_recorded(fake: FakeSlack, client: WebClient) -> None:
    client.chat_postMessage(channel="C1", text="hey <!here> and @channel")
    client.chat_postMessage(channel="C1", text="hey @everyone", link_names=True)
    assert [p[2] for p in fake.pings] == ["<!here>", "@everyone"]


# Fault injection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        "invalid_auth",
        "token_revoked",
        "channel_not_found",
        "thread_not_found",
        "is_archived",
        "not_in_channel",
    ],
)
def test_each_injected_permanent_error_surfaces_as_slack_api_error(
    fake: FakeSlack, client: WebClient, error: str
) -> None:
    injection = fake.inject("chat.postMessage", error=error, channel="C1")
    client.chat_postMessage(channel="C2", text="other channels are unaffected")
    caught = slack_error(lambda: client.chat_postMessage(channel="C1", text="hello"))
    assert caught.response.status_code == 200
    assert caught.response["error"] == error
    assert injection.hits == 1
    assert client.chat_postMessage(channel="C1", text="again")["ok"] is True


def test_a_rate_limit_carries_retry_after_that_slack_sdk_exposes(
    fake: FakeSlack, client: WebClient
) -> None:
    fake.inject("chat.postMessage", status=429, retry_after=7)
    caught = slack_error(lambda: client.chat_postMessage(channel="C1", text="hello"))
    assert caught.response.status_code == 429
    assert caught.response["error"] == "ratelimited"
    assert caught.response.headers["Retry-After"] == "7"
    assert caught.response.headers["retry-after"] == "7"


def test_slack_sdk_rate_limit_retry_handler_honours_the_fakes_retry_after(
    fake: FakeSlack,
) -> None:
    retrying = WebClient(
        token="xoxb-test",
        base_url=fake.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    fake.inject("chat.postMessage", status=429, retry_after=0)
    assert retrying.chat_postMessage(channel="C1", text="hello")["ok"] is True
    assert [o[1] for o in fake.outcomes] == [429, 200]


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_surface_with_their_status(
    fake: FakeSlack, client: WebClient, status: int
) -> None:
    fake.inject("*", status=status, times=2)
    assert slack_error(lambda: client.auth_test()).response.status_code == status
    assert slack_error(lambda: client.auth_test()).response.status_code == status
    assert client.auth_test()["ok"] is True


def test_a_delay_makes_a_client_time_out(fake: FakeSlack) -> None:
    slow = WebClient(token="xoxb-test", base_url=fake.api_url, timeout=1, retry_handlers=[])
    fake.inject("chat.postMessage", delay=1.5)
    with pytest.raises(TimeoutError):
        slow.chat_postMessage(channel="C1", text="hello")
    fake.wait_until_sync(lambda: len(fake.messages("C1")) == 1)  # Slack still posted it


def test_the_async_client_sees_the_same_faults(fake: FakeSlack) -> None:
    async def scenario() -> None:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.api_url)
        fake.inject("chat.postMessage", status=429, retry_after=3)
        with pytest.raises(SlackApiError) as caught:
            await client.chat_postMessage(channel="C1", text="hello")
        assert caught.value.response.headers["retry-after"] == "3"
        fake.inject("chat.postMessage", status=503)
        with pytest.raises(SlackApiError) as caught:
            await client.chat_postMessage(channel="C1", text="hello")
        assert caught.value.response.status_code == 503
        fake.revoke_token("xoxb-revoked")
        with pytest.raises(SlackApiError) as caught:
            await client.auth_test(token="xoxb-revoked")
        assert caught.value.response["error"] == "token_revoked"
        metadata = {"event_type": "notice", "event_payload": {"key": "k"}}
        posted = await client.chat_postMessage(channel="C1", text="fine")
        await client.chat_postMessage(
            channel="C1", thread_ts=posted["ts"], text="reply", metadata=metadata
        )
        thread = await client.conversations_replies(
            channel="C1", ts=posted["ts"], include_all_metadata=True
        )
        assert thread["messages"][1]["metadata"] == metadata

    asyncio.run(scenario())


# Block Kit limits -----------------------------------------------------------------------------


def test_a_51_block_message_is_refused_and_recorded_as_a_violation(
    fake: FakeSlack, client: WebClient
) -> None:
    client.chat_postMessage(channel="C1", text="fits", blocks=[section("x")] * 50)
    assert fake.violations == []
    caught = slack_error(
        lambda: client.chat_postMessage(channel="C1", text="board", blocks=[section("x")] * 51)
    )
    assert caught.response["error"] == "invalid_blocks"
    assert caught.response["errors"] == ["no more than 50 items allowed [json-pointer:/blocks]"]
    [violation] = fake.violations
    assert (violation.method, violation.channel, violation.error) == (
        "chat.postMessage",
        "C1",
        "invalid_blocks",
    )
    assert len(fake.messages("C1")) == 1


def button(text: str = "Cancel", value: str = "v", action_id: str = "a") -> dict[str, Any]:
    label = {"type": "plain_text", "text": text}
    return {"type": "button", "text": label, "value": value, "action_id": action_id}


def overflow(n: int) -> dict[str, Any]:
    options = [{"text": {"type": "plain_text", "text": f"o{i}"}, "value": str(i)} for i in range(n)]
    return {"type": "overflow", "action_id": "more", "options": options}


def fields(n: int, size: int = 5) -> dict[str, Any]:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * size}] * n}


@pytest.mark.parametrize(
    ("block", "pointer"),
    [
        (section("x" * 3001), "/blocks/0/text/text"),
        ({"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}, "/blocks/0/text"),
        ({"type": "actions", "elements": [button(text="b" * 76)]}, "/blocks/0/elements/0/text"),
        ({"type": "actions", "elements": [button(value="v" * 2001)]}, "/elements/0/value"),
        ({"type": "actions", "elements": [button(action_id="a" * 256)]}, "/0/action_id"),
        ({**section("x"), "block_id": "b" * 256}, "/blocks/0/block_id"),
        ({**section("x"), "accessory": overflow(1)}, "/blocks/0/accessory/options"),
        ({**section("x"), "accessory": overflow(6)}, "/blocks/0/accessory/options"),
        (fields(11), "/blocks/0/fields"),
        (fields(1, size=2001), "/blocks/0/fields/0/text"),
        ({"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}, "/elements"),
    ],
)
def test_block_kit_limits_are_enforced(
    fake: FakeSlack, client: WebClient, block: dict[str, Any], pointer: str
) -> None:
    caught = slack_error(lambda: client.chat_postMessage(channel="C1", text="t", blocks=[block]))
    assert caught.response["error"] == "invalid_blocks"
    assert pointer in caught.response["errors"][0]
    assert fake.violations[0].details == tuple(caught.response["errors"])


def test_blocks_at_the_limits_are_accepted(fake: FakeSlack, client: WebClient) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
        {**section("x" * 3000), "block_id": "b" * 255, "accessory": overflow(5)},
        fields(10, size=2000),
        {"type": "actions", "elements": [button("b" * 75, "v" * 2000, "a" * 255)]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10},
    ]
    client.chat_postMessage(channel="C1", text="t" * 40_000, blocks=blocks)
    assert fake.violations == []


def test_overlong_text_is_refused_as_msg_too_long(fake: FakeSlack, client: WebClient) -> None:
    caught = slack_error(lambda: client.chat_postMessage(channel="C1", text="t" * 40_001))
    assert caught.response["error"] == "msg_too_long"
    assert fake.violations[0].error == "msg_too_long"


def test_home_tabs_take_100_blocks_and_refuse_101(fake: FakeSlack, client: WebClient) -> None:
    home = {"type": "home", "blocks": [section("x")] * 100}
    assert client.views_publish(user_id="U0BOB", view=home)["view"]["type"] == "home"
    assert len((fake.home_view("U0BOB") or {})["blocks"]) == 100
    home["blocks"] = [section("x")] * 101
    caught = slack_error(lambda: client.views_publish(user_id="U0BOB", view=home))
    assert caught.response["error"] == "invalid_arguments"
    assert caught.response["response_metadata"]["messages"] == [
        "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"
    ]
    assert fake.violations[0].method == "views.publish"


def test_modals_open_with_a_trigger(fake: FakeSlack, client: WebClient) -> None:
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Task"}, "blocks": []}
    client.views_open(trigger_id="1.2.abc", view=modal)
    assert fake.opened_views[0]["trigger_id"] == "1.2.abc"
    modal["title"] = {"type": "plain_text", "text": "t" * 25}
    caught = slack_error(lambda: client.views_open(trigger_id="1.2.abc", view=modal))
    assert caught.response["error"] == "invalid_arguments"


# Bolt over HTTP -------------------------------------------------------------------------------


def bolt_app(fake: FakeSlack, **kwargs: Any) -> AsyncApp:
    web_client = AsyncWebClient(token="xoxb-test", base_url=fake.api_url)
    return AsyncApp(client=web_client, signing_secret=SECRET, **kwargs)


def test_bolt_accepts_signed_requests_and_refuses_tampered_or_stale_ones(fake: FakeSlack) -> None:
    app = bolt_app(fake)
    seen: list[str] = []

    @app.command("/tasks")
    async def tasks(ack: AsyncAck, respond: AsyncRespond, command: dict[str, Any]) -> None:
        await ack("Looking…")
        seen.append(command["text"])
        await respond(text="board", blocks=[section("*Running*")])

    @app.action("cancel")
    async def cancel(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        seen.append(body["actions"][0]["value"])

    @app.event("app_mention")
    async def mention(event: dict[str, Any], say: AsyncSay) -> None:
        await say(text="on it", thread_ts=event["ts"])

    async def dispatch(body: bytes, headers: dict[str, str]) -> int:
        request = AsyncBoltRequest(body=body.decode(), headers={**headers})
        return (await app.async_dispatch(request)).status

    async def scenario() -> None:
        body = slash_command_body(text="mine", response_url=fake.response_url("cmd"))
        assert await dispatch(body, sign_request(SECRET, body)) == 200
        assert await dispatch(body + b"x", sign_request(SECRET, body)) == 401
        stale = sign_request(SECRET, body, timestamp=int(time.time()) - 600)
        assert await dispatch(body, stale) == 401
        action = block_actions_body("cancel", value="t1", response_url=fake.response_url("a"))
        assert await dispatch(action, sign_request(SECRET, action)) == 200
        fake.add_user_message("C1", f"<@{BOT_USER_ID}> track this")
        ts = fake.messages("C1")[0]["ts"]
        event = app_mention_event_body("track this", channel_id="C1", ts=ts)
        assert await dispatch(event, sign_request(SECRET, event)) == 200
        await fake.wait_until(lambda: len(fake.messages("C1", thread_ts=ts)) == 2)
        await fake.wait_until(lambda: fake.responses("cmd"))

    asyncio.run(scenario())
    assert seen[:2] == ["mine", "t1"]
    assert fake.responses("cmd")[0]["blocks"] == [section("*Running*")]
    assert fake.messages("C1", thread_ts=fake.messages("C1")[0]["ts"])[1]["text"] == "on it"


def test_a_response_url_refuses_oversized_boards(fake: FakeSlack) -> None:
    webhook = WebhookClient(fake.response_url("r"))
    assert webhook.send(text="board", blocks=[section("x")] * 50).status_code == 200
    refused = webhook.send(text="board", blocks=[section("x")] * 51)
    assert (refused.status_code, refused.body) == (400, "invalid_blocks")
    assert len(fake.responses("r")) == 2
    assert fake.violations[0].method == "response_url"


# Socket Mode ----------------------------------------------------------------------------------


def test_the_socket_mode_client_connects_receives_an_envelope_and_acks(fake: FakeSlack) -> None:
    async def scenario() -> dict[str, Any]:
        web_client = AsyncWebClient(base_url=fake.api_url)
        client = SocketModeClient(app_token="xapp-test", web_client=web_client)

        async def listener(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
            response = SocketModeResponse(req.envelope_id, payload={"text": req.payload["text"]})
            await client.send_socket_mode_response(response)

        client.socket_mode_request_listeners.append(listener)
        try:
            await client.connect()
            await fake.wait_socket_connected()
            payload = slash_command_payload(text="all")
            envelope_id = fake.socket_send_envelope(type="slash_commands", payload=payload)
            return await fake.wait_socket_ack(envelope_id, 10)
        finally:
            await client.close()

    ack = asyncio.run(scenario())
    assert ack["payload"] == {"text": "all"}
    assert fake.calls_to("apps.connections.open") == [{}]
    assert fake.socket_envelopes_sent[0]["accepts_response_payload"] is True


def test_bolts_async_socket_mode_handler_runs_commands_and_events(fake: FakeSlack) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        app = bolt_app(fake)

        @app.command("/tasks")
        async def tasks(ack: AsyncAck) -> None:
            await ack(text="board")

        @app.event("app_mention")
        async def mention(event: dict[str, Any], say: AsyncSay) -> None:
            await say(text="on it", thread_ts=event["ts"])

        handler = AsyncSocketModeHandler(app, app_token="xapp-test")
        await handler.connect_async()
        try:
            command = fake.socket_send_envelope(
                type="slash_commands", payload=slash_command_payload()
            )
            ts = fake.add_user_message("C1", f"<@{BOT_USER_ID}> hi")
            event = fake.socket_send_envelope(
                type="events_api", payload=app_mention_event_payload("hi", channel_id="C1", ts=ts)
            )
            acks = await fake.wait_socket_ack(command), await fake.wait_socket_ack(event)
            await fake.wait_until(lambda: len(fake.messages("C1", thread_ts=ts)) == 2)
            return acks
        finally:
            await handler.close_async()

    command_ack, event_ack = asyncio.run(scenario())
    assert command_ack["payload"]["text"] == "board"
    assert "payload" not in event_ack
    assert fake.socket_envelopes_sent[1]["retry_attempt"] == 0


def test_socket_mode_works_with_a_fake_on_the_tests_own_loop() -> None:
    async def scenario() -> tuple[str, dict[str, Any]]:
        async with FakeSlack() as fake:
            web_client = AsyncWebClient(base_url=fake.api_url)
            client = SocketModeClient(app_token="xapp-test", web_client=web_client)

            async def ack(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
                await client.send_socket_mode_response(SocketModeResponse(req.envelope_id))

            client.socket_mode_request_listeners.append(ack)
            envelope_id = fake.socket_send_envelope(type="interactive", payload={"type": "x"})
            try:
                await client.connect()  # the envelope queued before the connection arrives now
                return envelope_id, await fake.wait_socket_ack(envelope_id)
            finally:
                await client.close()

    envelope_id, ack = asyncio.run(scenario())
    assert ack == {"envelope_id": envelope_id}


def test_a_bot_token_cannot_open_a_socket_connection(fake: FakeSlack, client: WebClient) -> None:
    caught = slack_error(lambda: client.apps_connections_open(app_token="xoxb-test"))
    assert caught.response["error"] == "not_allowed_token_type"
