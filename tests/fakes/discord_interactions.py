"""Interactions in the fake Discord: building INTERACTION_CREATE payloads and taking responses.

A test builds an interaction (slash command, autocomplete, component click), the fake sends it
over the gateway and keeps an :class:`InteractionRecord`. discord.py answers on
``POST /interactions/{id}/{token}/callback`` (once; a second answer is 400 code 40060, an
answer after ``fake.interaction_ack_deadline`` seconds is 404 code 10062 as Discord's 3-second
rule), then works through the webhook of the application:
``PATCH /webhooks/{application_id}/{token}/messages/@original`` edits the response and
``POST /webhooks/{application_id}/{token}`` sends followups.

Callback types: 1 PONG, 4 CHANNEL_MESSAGE_WITH_SOURCE, 5 DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
6 DEFERRED_UPDATE_MESSAGE, 7 UPDATE_MESSAGE, 8 APPLICATION_COMMAND_AUTOCOMPLETE_RESULT,
9 MODAL, 12 LAUNCH_ACTIVITY.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakes import discord_limits as limits
from tests.fakes.discord_model import DM, FakeChannel, StoredMessage
from tests.fakes.discord_rest import ApiError, RestRequest, Router, invalid_form

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

CALLBACK_TYPES_FOR: dict[int, frozenset[int]] = {
    PING: frozenset({1}),
    APPLICATION_COMMAND: frozenset({4, 5, 9, 12}),
    MESSAGE_COMPONENT: frozenset({4, 5, 6, 7, 9, 12}),
    AUTOCOMPLETE: frozenset({8}),
    MODAL_SUBMIT: frozenset({4, 5, 6, 7}),
}

# Option types of application commands.
SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING = 3
INTEGER = 4
BOOLEAN = 5
NUMBER = 10


@dataclass
class InteractionRecord:
    """One interaction the fake sent and everything the bot did with it."""

    id: int
    token: str
    payload: dict[str, Any]
    created_at: float = field(default_factory=time.monotonic)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    """Accepted callback bodies (at most one)."""
    refused_callbacks: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    """Callback bodies the fake refused, with the Discord error code."""
    original_message_id: int | None = None
    original_edits: list[dict[str, Any]] = field(default_factory=list)
    """Bodies of ``PATCH .../messages/@original``, in order."""
    followup_ids: list[int] = field(default_factory=list)

    @property
    def type(self) -> int:
        return int(self.payload["type"])

    @property
    def response(self) -> dict[str, Any] | None:
        return self.callbacks[0] if self.callbacks else None

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)


def _option_type(value: Any) -> int:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    return STRING


def _declared_options(command: Mapping[str, Any] | None, path: Sequence[str]) -> dict[str, int]:
    """Option name -> declared type, following the subcommand path of a synced command."""
    node: Mapping[str, Any] | None = command
    for name in path:
        children = (node or {}).get("options") or []
        node = next((o for o in children if o.get("name") == name), None)
    return {o["name"]: int(o["type"]) for o in (node or {}).get("options") or []}


def build_options(
    options: Mapping[str, Any],
    declared: Mapping[str, int],
    *,
    focused: str | None,
) -> list[dict[str, Any]]:
    built: list[dict[str, Any]] = []
    for name, value in options.items():
        if isinstance(value, Mapping):
            built.append({"name": name, **value})
            continue
        kind = declared.get(name, _option_type(value))
        option: dict[str, Any] = {"name": name, "type": kind, "value": value}
        if name == focused:
            option["focused"] = True
            option["value"] = str(value)
        elif kind in (INTEGER,) and isinstance(value, str) and value.lstrip("-").isdigit():
            option["value"] = int(value)
        built.append(option)
    if focused is not None and focused not in options:
        built.append({"name": focused, "type": declared.get(focused, STRING), "value": ""})
        built[-1]["focused"] = True
    return built


def interaction_base(
    fake: FakeDiscord,
    *,
    kind: int,
    channel: FakeChannel,
    user_id: int,
    data: dict[str, Any],
) -> dict[str, Any]:
    """The fields every INTERACTION_CREATE carries (discord.py reads all of these)."""
    interaction_id = fake.snowflakes.next()
    payload: dict[str, Any] = {
        "id": str(interaction_id),
        "application_id": str(fake.application_id),
        "type": kind,
        "data": data,
        "channel_id": str(channel.id),
        "channel": fake.channel_payload(channel),
        "token": f"fake-interaction-{secrets.token_urlsafe(24)}",
        "version": 1,
        "app_permissions": str(fake.bot_permissions(channel)),
        "locale": "en-US",
        "entitlements": [],
        "attachment_size_limit": 10_485_760,
    }
    user = fake.ensure_user(user_id)
    if channel.type == DM or channel.guild_id is None:
        payload["user"] = user.payload()
        payload["context"] = 1
        payload["authorizing_integration_owners"] = {"1": str(user.id)}
        return payload
    guild = fake.guilds[channel.guild_id]
    member = fake.ensure_member(guild.id, user_id)
    payload.update(
        {
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "guild_locale": "en-US",
            "member": member.payload(permissions=guild.permissions_of(user_id)),
            "context": 0,
            "authorizing_integration_owners": {"0": str(guild.id)},
        }
    )
    return payload


def command_payload(
    fake: FakeDiscord,
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    subcommand: str | None = None,
    group: str | None = None,
    focused: str | None = None,
    channel_id: int | None = None,
    user_id: int | None = None,
    resolved: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An APPLICATION_COMMAND (or, with ``focused``, AUTOCOMPLETE) interaction payload.

    Option types come from the synced command definition when there is one, else from the
    Python type of each value (str 3, int 4, bool 5, float 10). A mapping value is taken as a
    raw option (``{"type": 6, "value": "123"}``).
    """
    channel = fake.channels[channel_id or fake.channel_id]
    synced = fake.synced_command(name, channel.guild_id)
    path = [p for p in (group, subcommand) if p is not None]
    declared = _declared_options(synced, path)
    leaf = build_options(options or {}, declared, focused=focused)
    if subcommand is not None:
        leaf = [{"name": subcommand, "type": SUB_COMMAND, "options": leaf}]
    if group is not None:
        leaf = [{"name": group, "type": SUB_COMMAND_GROUP, "options": leaf}]
    data: dict[str, Any] = {
        "id": synced["id"] if synced else str(fake.snowflakes.next()),
        "name": name,
        "type": 1,
        "options": leaf,
    }
    if synced is not None and synced.get("guild_id"):
        data["guild_id"] = synced["guild_id"]
    if resolved is not None:
        data["resolved"] = dict(resolved)
    kind = AUTOCOMPLETE if focused is not None else APPLICATION_COMMAND
    return interaction_base(
        fake, kind=kind, channel=channel, user_id=user_id or fake.user_id, data=data
    )


def component_payload(
    fake: FakeDiscord,
    message_id: int,
    custom_id: str,
    *,
    values: Sequence[str] | None = None,
    component_type: int | None = None,
    user_id: int | None = None,
) -> dict[str, Any]:
    """A MESSAGE_COMPONENT interaction: a click (or select) on a message the fake holds."""
    message = fake.messages[message_id]
    channel = fake.channels[message.channel_id]
    data: dict[str, Any] = {
        "custom_id": custom_id,
        "component_type": component_type or (2 if values is None else 3),
    }
    if values is not None:
        data["values"] = list(values)
    payload = interaction_base(
        fake,
        kind=MESSAGE_COMPONENT,
        channel=channel,
        user_id=user_id or fake.user_id,
        data=data,
    )
    payload["message"] = message.payload
    return payload


# -- REST side ----------------------------------------------------------------------------


def _record(fake: FakeDiscord, interaction_id: str, token: str) -> InteractionRecord:
    record = fake.interactions.get(int(interaction_id)) if interaction_id.isdigit() else None
    if record is None or record.token != token:
        raise ApiError(404, 10062)
    return record


def _webhook_record(fake: FakeDiscord, req: RestRequest) -> InteractionRecord:
    if req.params["application_id"] != str(fake.application_id):
        raise ApiError(404, 10015)
    record = fake.interaction_by_token(req.params["token"])
    if record is None or not record.acknowledged:
        raise ApiError(404, 10015)
    return record


def _channel_of(fake: FakeDiscord, record: InteractionRecord) -> FakeChannel:
    return fake.channels[int(record.payload["channel_id"])]


def _source_message(fake: FakeDiscord, record: InteractionRecord) -> StoredMessage:
    return fake.messages[int(record.payload["message"]["id"])]


def _callback_response(
    record: InteractionRecord, kind: int, message: StoredMessage | None
) -> dict[str, Any]:
    interaction: dict[str, Any] = {"id": str(record.id), "type": record.type}
    result: dict[str, Any] = {"interaction": interaction}
    if message is not None:
        flags = int(message.payload.get("flags") or 0)
        interaction["response_message_id"] = str(message.id)
        interaction["response_message_loading"] = bool(flags & limits.FLAG_LOADING)
        interaction["response_message_ephemeral"] = bool(flags & limits.FLAG_EPHEMERAL)
        result["resource"] = {"type": kind, "message": message.payload}
    elif kind not in (1, 6, 8):
        result["resource"] = {"type": kind}
    return result


async def callback(fake: FakeDiscord, req: RestRequest) -> Any:
    record = _record(fake, req.params["interaction_id"], req.params["token"])
    body = req.json or {}
    kind = int(body.get("type", 0))
    deadline = fake.interaction_ack_deadline
    try:
        if record.acknowledged:
            raise ApiError(400, 40060)
        if deadline is not None and time.monotonic() - record.created_at > deadline:
            raise ApiError(404, 10062)
        if kind not in CALLBACK_TYPES_FOR.get(record.type, frozenset()):
            error = limits.LimitError(
                ("type",),
                "INTERACTION_RESPONSE_TYPE_INVALID",
                f"Callback type {kind} is not valid for interaction type {record.type}",
            )
            invalid_form(fake, req, [error])
        message = _apply_callback(fake, req, record, kind, body.get("data") or {})
    except ApiError as exc:
        record.refused_callbacks.append((body, exc.code))
        raise
    record.callbacks.append(body)
    fake.notify()
    if req.query.get("with_response") in ("1", "true", "True"):
        return _callback_response(record, kind, message)
    return None


def _apply_callback(
    fake: FakeDiscord, req: RestRequest, record: InteractionRecord, kind: int, data: Any
) -> StoredMessage | None:
    channel = _channel_of(fake, record)
    if kind == 8:
        invalid_form(fake, req, limits.check_autocomplete(data))
        return None
    if kind == 9:
        invalid_form(fake, req, limits.check_modal(data))
        return None
    if kind == 4:
        invalid_form(fake, req, limits.check_message(data))
        if limits.is_empty_message(data):
            raise ApiError(400, 50006)
    if kind in (4, 5):
        flags = int(data.get("flags") or 0)
        body = dict(data) if kind == 4 else {"content": "", "flags": flags | limits.FLAG_LOADING}
        message = fake.store_message(
            channel,
            body,
            author=fake.bot_user,
            interaction=record,
            ephemeral=bool(flags & limits.FLAG_EPHEMERAL),
        )
        record.original_message_id = message.id
        return message
    if kind in (6, 7) and "message" in record.payload:
        message = _source_message(fake, record)
        record.original_message_id = message.id
        if kind == 7:
            invalid_form(fake, req, limits.check_message({**message.request, **data}))
            fake.edit_stored(message, data)
        return message
    return None


def _original(fake: FakeDiscord, record: InteractionRecord) -> StoredMessage:
    if record.original_message_id is None:
        raise ApiError(404, 10008)
    return fake.messages[record.original_message_id]


def _followup(fake: FakeDiscord, record: InteractionRecord, message_id: str) -> StoredMessage:
    if message_id == "@original":
        return _original(fake, record)
    if not message_id.isdigit() or int(message_id) not in record.followup_ids:
        raise ApiError(404, 10008)
    return fake.messages[int(message_id)]


async def get_webhook_message(fake: FakeDiscord, req: RestRequest) -> Any:
    record = _webhook_record(fake, req)
    return _followup(fake, record, req.params["message_id"]).payload


async def edit_webhook_message(fake: FakeDiscord, req: RestRequest) -> Any:
    record = _webhook_record(fake, req)
    message = _followup(fake, record, req.params["message_id"])
    body = req.json or {}
    merged = {**message.request, **body}
    invalid_form(fake, req, limits.check_message(merged))
    if req.params["message_id"] == "@original":
        record.original_edits.append(body)
    flags = int(message.payload.get("flags") or 0)
    if flags & limits.FLAG_LOADING:
        body = {**body, "flags": (flags & ~limits.FLAG_LOADING) | int(body.get("flags") or 0)}
    fake.edit_stored(message, body)
    return message.payload


async def delete_webhook_message(fake: FakeDiscord, req: RestRequest) -> Any:
    record = _webhook_record(fake, req)
    _followup(fake, record, req.params["message_id"]).deleted = True
    fake.notify()
    return None


async def send_followup(fake: FakeDiscord, req: RestRequest) -> Any:
    record = _webhook_record(fake, req)
    body = req.json or {}
    invalid_form(fake, req, limits.check_message(body))
    if limits.is_empty_message(body):
        raise ApiError(400, 50006)
    flags = int(body.get("flags") or 0)
    message = fake.store_message(
        _channel_of(fake, record),
        body,
        author=fake.bot_user,
        interaction=record,
        ephemeral=bool(flags & limits.FLAG_EPHEMERAL),
    )
    record.followup_ids.append(message.id)
    fake.notify()
    if req.query.get("wait") in ("1", "true", "True"):
        return message.payload
    return None


def register(router: Router) -> None:
    add = router.add
    add("POST", "/interactions/{interaction_id}/{token}/callback", callback, auth=False)
    add("POST", "/webhooks/{application_id}/{token}", send_followup, auth=False)
    message = "/webhooks/{application_id}/{token}/messages/{message_id}"
    add("GET", message, get_webhook_message, auth=False)
    add("PATCH", message, edit_webhook_message, auth=False)
    add("DELETE", message, delete_webhook_message, auth=False)


async def wait_response(fake: FakeDiscord, interaction_id: int, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    record = fake.interactions[interaction_id]
    try:
        await fake.wait_until(lambda: record.acknowledged, timeout=timeout)
    except TimeoutError:
        refused = ", ".join(f"code {code}" for _, code in record.refused_callbacks)
        detail = f" (refused: {refused})" if refused else ""
        raise TimeoutError(
            f"interaction {interaction_id} got no accepted response in {timeout}s{detail}"
        ) from None
    assert record.response is not None
    return record.response
