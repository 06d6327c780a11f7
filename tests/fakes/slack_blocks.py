"""Block Kit limit checks for the fake Slack, worded the way Slack words its refusals.

Slack answers a message it will not take with ``invalid_blocks`` and an ``errors`` list such as
``"no more than 50 items allowed [json-pointer:/blocks]"`` or
``"must be less than 3001 characters [json-pointer:/blocks/0/text/text]"``; a view it will not
take with ``invalid_arguments`` and the same sentences as ``"[ERROR] ..."`` in
``response_metadata.messages``. Limits are those of the Block Kit reference.
"""

from __future__ import annotations

import re
from typing import Any

MESSAGE_MAX_BLOCKS = 50
VIEW_MAX_BLOCKS = 100
MESSAGE_TEXT_MAX = 40_000
SECTION_TEXT_MAX = 3000
SECTION_FIELDS_MAX = 10
SECTION_FIELD_TEXT_MAX = 2000
HEADER_TEXT_MAX = 150
CONTEXT_ELEMENTS_MAX = 10
ACTIONS_ELEMENTS_MAX = 25
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
OPTION_TEXT_MAX = 75
OPTION_VALUE_MAX = 150
OVERFLOW_OPTIONS_MIN = 2
OVERFLOW_OPTIONS_MAX = 5
SELECT_OPTIONS_MAX = 100
ID_MAX = 255
URL_MAX = 3000
VIEW_TITLE_MAX = 24
PRIVATE_METADATA_MAX = 3000

BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "video",
    }
)

_PING = re.compile(r"<!(?:channel|here|everyone)(?:\|[^>]*)?>|<!subteam\^[A-Z0-9]+(?:\|[^>]*)?>")
_BARE_PING = re.compile(r"(?<![\w<])@(?:channel|here|everyone)\b")


def too_long(limit: int, pointer: str) -> str:
    return f"must be less than {limit + 1} characters [json-pointer:{pointer}]"


def too_many(limit: int, pointer: str) -> str:
    return f"no more than {limit} items allowed [json-pointer:{pointer}]"


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, message: str) -> None:
        self.errors.append(message)

    def length(self, value: Any, limit: int, pointer: str) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.fail(too_long(limit, pointer))

    def text(self, obj: Any, limit: int, pointer: str, *, required: bool = True) -> None:
        if obj is None:
            if required:
                self.fail(f"missing required field: text [json-pointer:{pointer}]")
            return
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            self.fail(f"failed to match all allowed schemas [json-pointer:{pointer}]")
            return
        if obj["text"] == "":
            self.fail(f"must be more than 0 characters [json-pointer:{pointer}/text]")
        self.length(obj["text"], limit, f"{pointer}/text")

    def items(self, value: Any, pointer: str, maximum: int, minimum: int = 0) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"must be an array [json-pointer:{pointer}]")
            return []
        if len(value) > maximum:
            self.fail(too_many(maximum, pointer))
        if len(value) < minimum:
            self.fail(f"must provide at least {minimum} items [json-pointer:{pointer}]")
        return value

    def option(self, option: Any, pointer: str) -> None:
        if not isinstance(option, dict):
            self.fail(f"failed to match all allowed schemas [json-pointer:{pointer}]")
            return
        self.text(option.get("text"), OPTION_TEXT_MAX, f"{pointer}/text")
        self.length(option.get("value"), OPTION_VALUE_MAX, f"{pointer}/value")
        self.length(option.get("url"), URL_MAX, f"{pointer}/url")

    def element(self, element: Any, pointer: str) -> None:
        if not isinstance(element, dict) or not isinstance(element.get("type"), str):
            self.fail(f"failed to match all allowed schemas [json-pointer:{pointer}]")
            return
        kind = element["type"]
        self.length(element.get("action_id"), ID_MAX, f"{pointer}/action_id")
        if kind == "button":
            self.text(element.get("text"), BUTTON_TEXT_MAX, f"{pointer}/text")
            self.length(element.get("value"), BUTTON_VALUE_MAX, f"{pointer}/value")
            self.length(element.get("url"), URL_MAX, f"{pointer}/url")
        elif kind == "overflow":
            options = self.items(
                element.get("options"),
                f"{pointer}/options",
                OVERFLOW_OPTIONS_MAX,
                OVERFLOW_OPTIONS_MIN,
            )
            for i, option in enumerate(options):
                self.option(option, f"{pointer}/options/{i}")
        elif kind in ("static_select", "multi_static_select", "radio_buttons", "checkboxes"):
            limit = SELECT_OPTIONS_MAX if "select" in kind else 10
            options = self.items(element.get("options"), f"{pointer}/options", limit)
            for i, option in enumerate(options):
                self.option(option, f"{pointer}/options/{i}")
        elif kind == "image":
            self.length(element.get("alt_text"), 2000, f"{pointer}/alt_text")
            self.length(element.get("image_url"), URL_MAX, f"{pointer}/image_url")
        elif kind in ("plain_text", "mrkdwn"):
            self.length(element.get("text"), SECTION_TEXT_MAX, f"{pointer}/text")
        confirm = element.get("confirm")
        if isinstance(confirm, dict):
            self.text(confirm.get("title"), 100, f"{pointer}/confirm/title")
            self.text(confirm.get("text"), 300, f"{pointer}/confirm/text")
            self.text(confirm.get("confirm"), 30, f"{pointer}/confirm/confirm")
            self.text(confirm.get("deny"), 30, f"{pointer}/confirm/deny")

    def block(self, block: Any, pointer: str) -> None:
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            self.fail(f"failed to match all allowed schemas [json-pointer:{pointer}]")
            return
        kind = block["type"]
        self.length(block.get("block_id"), ID_MAX, f"{pointer}/block_id")
        if kind == "section":
            if block.get("text") is None and not block.get("fields"):
                self.fail(f"must provide text or fields [json-pointer:{pointer}]")
            self.text(block.get("text"), SECTION_TEXT_MAX, f"{pointer}/text", required=False)
            fields = self.items(block.get("fields"), f"{pointer}/fields", SECTION_FIELDS_MAX)
            for i, field in enumerate(fields):
                self.text(field, SECTION_FIELD_TEXT_MAX, f"{pointer}/fields/{i}")
            if block.get("accessory") is not None:
                self.element(block["accessory"], f"{pointer}/accessory")
        elif kind == "header":
            self.text(block.get("text"), HEADER_TEXT_MAX, f"{pointer}/text")
        elif kind == "context":
            pointer_elements = f"{pointer}/elements"
            elements = self.items(block.get("elements"), pointer_elements, CONTEXT_ELEMENTS_MAX, 1)
            for i, element in enumerate(elements):
                self.element(element, f"{pointer_elements}/{i}")
        elif kind == "actions":
            pointer_elements = f"{pointer}/elements"
            elements = self.items(block.get("elements"), pointer_elements, ACTIONS_ELEMENTS_MAX, 1)
            for i, element in enumerate(elements):
                self.element(element, f"{pointer_elements}/{i}")
        elif kind == "image":
            self.length(block.get("alt_text"), 2000, f"{pointer}/alt_text")
            self.length(block.get("image_url"), URL_MAX, f"{pointer}/image_url")
        elif kind == "input":
            self.text(block.get("label"), 2000, f"{pointer}/label")
            self.text(block.get("hint"), 2000, f"{pointer}/hint", required=False)
            if block.get("element") is not None:
                self.element(block["element"], f"{pointer}/element")
        elif kind == "markdown":
            self.length(block.get("text"), 12_000, f"{pointer}/text")

    def blocks(self, blocks: Any, pointer: str, maximum: int) -> None:
        for i, block in enumerate(self.items(blocks, pointer, maximum)):
            self.block(block, f"{pointer}/{i}")


def message_problem(params: dict[str, Any]) -> tuple[str, list[str]] | None:
    """Return ``(error, details)`` when Slack would refuse this message payload, else None."""
    text = params.get("text")
    blocks = params.get("blocks")
    if not text and not blocks and not params.get("attachments"):
        return "no_text", []
    if isinstance(text, str) and len(text) > MESSAGE_TEXT_MAX:
        return "msg_too_long", [too_long(MESSAGE_TEXT_MAX, "/text")]
    if blocks is not None and not isinstance(blocks, list):
        return "invalid_blocks_format", ["must be an array [json-pointer:/blocks]"]
    checker = _Checker()
    checker.blocks(blocks, "/blocks", MESSAGE_MAX_BLOCKS)
    if checker.errors:
        return "invalid_blocks", checker.errors
    metadata = params.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        return "invalid_metadata_format", ["metadata needs event_type and event_payload"]
    return None


def view_problems(view: Any) -> list[str]:
    """Return Slack's complaints about a modal or home tab view (empty when acceptable)."""
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        return ["failed to match all allowed schemas [json-pointer:/view]"]
    checker = _Checker()
    checker.blocks(view.get("blocks"), "/view/blocks", VIEW_MAX_BLOCKS)
    if view["type"] == "modal":
        checker.text(view.get("title"), VIEW_TITLE_MAX, "/view/title")
        checker.text(view.get("submit"), VIEW_TITLE_MAX, "/view/submit", required=False)
        checker.text(view.get("close"), VIEW_TITLE_MAX, "/view/close", required=False)
    checker.length(view.get("private_metadata"), PRIVATE_METADATA_MAX, "/view/private_metadata")
    checker.length(view.get("callback_id"), ID_MAX, "/view/callback_id")
    checker.length(view.get("external_id"), ID_MAX, "/view/external_id")
    return checker.errors


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def find_pings(params: dict[str, Any]) -> list[str]:
    """Mass mentions Slack would act on in this payload (``<!here>``, ``<!subteam^…>``, …).

    A bare ``@here`` only pings when the caller asked Slack to link names.
    """
    found: list[str] = []
    bare = str(params.get("link_names", "")).lower() in ("1", "true") or params.get("parse") == (
        "full"
    )
    for s in _strings([params.get("text"), params.get("blocks"), params.get("attachments")]):
        found.extend(_PING.findall(s))
        if bare:
            found.extend(_BARE_PING.findall(s))
    return found
