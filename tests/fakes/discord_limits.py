"""Discord message limits for the fake Discord, worded the way Discord words its refusals.

Discord refuses a body it will not take with HTTP 400, code 50035 ``Invalid Form Body`` and an
``errors`` tree keyed by the JSON path of the bad field, each leaf holding ``_errors``:
``{"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer
in length."}]}}``. The checks below return one :class:`LimitError` per broken rule; the server
turns them into that tree and records them as violations. Limits are those of Discord's
message, embed, component, allowed-mentions and application-command references.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELDS_MAX = 25
EMBED_FIELD_NAME_MAX = 256
EMBED_FIELD_VALUE_MAX = 1024
EMBED_FOOTER_MAX = 2048
EMBED_AUTHOR_NAME_MAX = 256
EMBED_TOTAL_MAX = 6000
ACTION_ROWS_MAX = 5
BUTTONS_PER_ROW_MAX = 5
SELECT_OPTIONS_MAX = 25
CUSTOM_ID_MAX = 100
BUTTON_LABEL_MAX = 80
SELECT_PLACEHOLDER_MAX = 150
SELECT_OPTION_TEXT_MAX = 100
COMPONENTS_V2_TOTAL_MAX = 40
NONCE_MAX = 25
AUTOCOMPLETE_CHOICES_MAX = 25
CHOICE_NAME_MAX = 100
CHOICE_VALUE_MAX = 100
MODAL_TITLE_MAX = 45
COMMAND_NAME_RE = re.compile(r"^[-_\w]{1,32}$")
COMMAND_DESCRIPTION_MAX = 100
COMMAND_OPTIONS_MAX = 25

FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_IS_COMPONENTS_V2 = 1 << 15

BUTTON = 2
SELECT_TYPES = frozenset({3, 5, 6, 7, 8})
LINK_STYLE = 5
PREMIUM_STYLE = 6


@dataclass(frozen=True)
class LimitError:
    """One broken rule: the JSON path of the field, Discord's error code and its sentence."""

    path: tuple[str, ...]
    code: str
    message: str

    @property
    def field(self) -> str:
        return ".".join(self.path) or "<body>"


def _too_long(path: tuple[str, ...], limit: int) -> LimitError:
    return LimitError(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _too_many(path: tuple[str, ...], limit: int) -> LimitError:
    return LimitError(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _required(path: tuple[str, ...]) -> LimitError:
    return LimitError(path, "BASE_TYPE_REQUIRED", "This field is required")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def check_message(body: Mapping[str, Any]) -> list[LimitError]:
    """Every limit a message body (create, edit, interaction reply, followup) breaks."""
    errors: list[LimitError] = []
    content = body.get("content")
    if isinstance(content, str) and len(content) > CONTENT_MAX:
        errors.append(_too_long(("content",), CONTENT_MAX))
    nonce = body.get("nonce")
    if nonce is not None and len(str(nonce)) > NONCE_MAX:
        errors.append(_too_long(("nonce",), NONCE_MAX))
    if body.get("enforce_nonce") and nonce is None:
        errors.append(_required(("nonce",)))
    errors.extend(check_embeds(body.get("embeds")))
    flags = body.get("flags") or 0
    components = body.get("components")
    if isinstance(flags, int) and flags & FLAG_IS_COMPONENTS_V2:
        errors.extend(_check_components_v2(body, components))
    else:
        errors.extend(check_components(components))
    errors.extend(check_allowed_mentions(body.get("allowed_mentions")))
    return errors


def check_embeds(embeds: Any) -> list[LimitError]:
    if not embeds:
        return []
    errors: list[LimitError] = []
    if len(embeds) > EMBEDS_MAX:
        errors.append(_too_many(("embeds",), EMBEDS_MAX))
    total = 0
    for index, embed in enumerate(embeds):
        at = ("embeds", str(index))
        title = _text(embed.get("title"))
        description = _text(embed.get("description"))
        footer = _text((embed.get("footer") or {}).get("text"))
        author = _text((embed.get("author") or {}).get("name"))
        total += len(title) + len(description) + len(footer) + len(author)
        for name, value, limit in (
            ("title", title, EMBED_TITLE_MAX),
            ("description", description, EMBED_DESCRIPTION_MAX),
        ):
            if len(value) > limit:
                errors.append(_too_long((*at, name), limit))
        if len(footer) > EMBED_FOOTER_MAX:
            errors.append(_too_long((*at, "footer", "text"), EMBED_FOOTER_MAX))
        if len(author) > EMBED_AUTHOR_NAME_MAX:
            errors.append(_too_long((*at, "author", "name"), EMBED_AUTHOR_NAME_MAX))
        fields = embed.get("fields") or []
        if len(fields) > EMBED_FIELDS_MAX:
            errors.append(_too_many((*at, "fields"), EMBED_FIELDS_MAX))
        for findex, field in enumerate(fields):
            fat = (*at, "fields", str(findex))
            name = _text(field.get("name"))
            value = _text(field.get("value"))
            total += len(name) + len(value)
            if not name:
                errors.append(_required((*fat, "name")))
            elif len(name) > EMBED_FIELD_NAME_MAX:
                errors.append(_too_long((*fat, "name"), EMBED_FIELD_NAME_MAX))
            if not value:
                errors.append(_required((*fat, "value")))
            elif len(value) > EMBED_FIELD_VALUE_MAX:
                errors.append(_too_long((*fat, "value"), EMBED_FIELD_VALUE_MAX))
    if total > EMBED_TOTAL_MAX:
        errors.append(
            LimitError(
                ("embeds",),
                "MAX_EMBED_SIZE_EXCEEDED",
                f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}",
            )
        )
    return errors


def check_components(components: Any) -> list[LimitError]:
    """Classic (non-v2) components: at most five action rows of buttons or one select each."""
    if not components:
        return []
    errors: list[LimitError] = []
    if len(components) > ACTION_ROWS_MAX:
        errors.append(_too_many(("components",), ACTION_ROWS_MAX))
    seen: set[str] = set()
    for rindex, row in enumerate(components):
        at = ("components", str(rindex))
        if row.get("type") != 1:
            errors.append(
                LimitError(
                    (*at, "type"),
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "Top-level components must be action rows",
                )
            )
            continue
        children = row.get("components") or []
        if not children:
            errors.append(_required((*at, "components")))
        selects = [c for c in children if c.get("type") in SELECT_TYPES]
        if selects and len(children) > 1:
            errors.append(
                LimitError(
                    (*at, "components"),
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
            )
        elif len(children) > BUTTONS_PER_ROW_MAX:
            errors.append(_too_many((*at, "components"), BUTTONS_PER_ROW_MAX))
        for cindex, child in enumerate(children):
            errors.extend(_check_interactive((*at, "components", str(cindex)), child, seen))
    return errors


def _check_interactive(
    at: tuple[str, ...], child: Mapping[str, Any], seen: set[str]
) -> list[LimitError]:
    errors: list[LimitError] = []
    kind = child.get("type")
    custom_id = child.get("custom_id")
    if custom_id is not None:
        if len(str(custom_id)) > CUSTOM_ID_MAX:
            errors.append(_too_long((*at, "custom_id"), CUSTOM_ID_MAX))
        if custom_id in seen:
            errors.append(
                LimitError(
                    (*at, "custom_id"),
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            )
        seen.add(str(custom_id))
    if kind == BUTTON:
        label = _text(child.get("label"))
        if len(label) > BUTTON_LABEL_MAX:
            errors.append(_too_long((*at, "label"), BUTTON_LABEL_MAX))
        style = child.get("style")
        if style == LINK_STYLE:
            if not child.get("url"):
                errors.append(_required((*at, "url")))
        elif style != PREMIUM_STYLE and not custom_id:
            errors.append(_required((*at, "custom_id")))
    elif kind in SELECT_TYPES:
        if not custom_id:
            errors.append(_required((*at, "custom_id")))
        if len(_text(child.get("placeholder"))) > SELECT_PLACEHOLDER_MAX:
            errors.append(_too_long((*at, "placeholder"), SELECT_PLACEHOLDER_MAX))
        options = child.get("options") or []
        if kind == 3 and not options:
            errors.append(_required((*at, "options")))
        if len(options) > SELECT_OPTIONS_MAX:
            errors.append(_too_many((*at, "options"), SELECT_OPTIONS_MAX))
        for oindex, option in enumerate(options):
            for key in ("label", "value", "description"):
                if len(_text(option.get(key))) > SELECT_OPTION_TEXT_MAX:
                    errors.append(
                        _too_long((*at, "options", str(oindex), key), SELECT_OPTION_TEXT_MAX)
                    )
        max_values = child.get("max_values")
        if isinstance(max_values, int) and max_values > SELECT_OPTIONS_MAX:
            errors.append(
                LimitError(
                    (*at, "max_values"),
                    "NUMBER_TYPE_MAX",
                    f"int value should be less than or equal to {SELECT_OPTIONS_MAX}.",
                )
            )
    return errors


def _check_components_v2(body: Mapping[str, Any], components: Any) -> list[LimitError]:
    errors: list[LimitError] = []
    if body.get("content") or body.get("embeds"):
        errors.append(
            LimitError(
                ("content",),
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content' and 'embeds' fields cannot be used when using components v2",
            )
        )
    seen: set[str] = set()
    total = 0
    stack: list[tuple[tuple[str, ...], Mapping[str, Any]]] = [
        (("components", str(i)), c) for i, c in enumerate(components or [])
    ]
    while stack:
        at, component = stack.pop()
        total += 1
        errors.extend(_check_interactive(at, component, seen))
        for key in ("components",):
            for index, child in enumerate(component.get(key) or []):
                stack.append(((*at, key, str(index)), child))
        accessory = component.get("accessory")
        if isinstance(accessory, Mapping):
            stack.append(((*at, "accessory"), accessory))
    if total > COMPONENTS_V2_TOTAL_MAX:
        errors.append(_too_many(("components",), COMPONENTS_V2_TOTAL_MAX))
    return errors


def check_allowed_mentions(allowed: Any) -> list[LimitError]:
    if allowed is None:
        return []
    errors: list[LimitError] = []
    parse = allowed.get("parse") or []
    for index, kind in enumerate(parse):
        if kind not in ("users", "roles", "everyone"):
            errors.append(
                LimitError(
                    ("allowed_mentions", "parse", str(index)),
                    "BASE_TYPE_CHOICES",
                    "Value must be one of {'roles', 'users', 'everyone'}.",
                )
            )
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            errors.append(
                LimitError(
                    ("allowed_mentions",),
                    "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                    f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
                )
            )
        if len(allowed.get(kind) or []) > 100:
            errors.append(_too_many(("allowed_mentions", kind), 100))
    return errors


def is_empty_message(body: Mapping[str, Any]) -> bool:
    """Discord refuses (50006) a new message with nothing to show."""
    keys = ("content", "embeds", "components", "attachments", "sticker_ids", "poll", "files")
    return not any(body.get(key) for key in keys)


def check_autocomplete(data: Mapping[str, Any]) -> list[LimitError]:
    choices = data.get("choices")
    if choices is None:
        return [_required(("data", "choices"))]
    errors: list[LimitError] = []
    if len(choices) > AUTOCOMPLETE_CHOICES_MAX:
        errors.append(_too_many(("data", "choices"), AUTOCOMPLETE_CHOICES_MAX))
    for index, choice in enumerate(choices):
        at = ("data", "choices", str(index))
        name = _text(choice.get("name"))
        if not 1 <= len(name) <= CHOICE_NAME_MAX:
            errors.append(_too_long((*at, "name"), CHOICE_NAME_MAX))
        value = choice.get("value")
        if isinstance(value, str) and len(value) > CHOICE_VALUE_MAX:
            errors.append(_too_long((*at, "value"), CHOICE_VALUE_MAX))
    return errors


def check_modal(data: Mapping[str, Any]) -> list[LimitError]:
    errors: list[LimitError] = []
    if len(_text(data.get("title"))) > MODAL_TITLE_MAX:
        errors.append(_too_long(("data", "title"), MODAL_TITLE_MAX))
    custom_id = _text(data.get("custom_id"))
    if not custom_id:
        errors.append(_required(("data", "custom_id")))
    elif len(custom_id) > CUSTOM_ID_MAX:
        errors.append(_too_long(("data", "custom_id"), CUSTOM_ID_MAX))
    components = data.get("components") or []
    if not 1 <= len(components) <= ACTION_ROWS_MAX:
        errors.append(_too_many(("data", "components"), ACTION_ROWS_MAX))
    return errors


def check_commands(commands: Sequence[Mapping[str, Any]]) -> list[LimitError]:
    """Bulk-overwrite validation: names, descriptions, option counts, required-first order."""
    errors: list[LimitError] = []
    for index, command in enumerate(commands):
        errors.extend(_check_command((str(index),), command))
    return errors


def _check_command(at: tuple[str, ...], command: Mapping[str, Any]) -> list[LimitError]:
    errors: list[LimitError] = []
    name = _text(command.get("name"))
    chat_input = command.get("type", 1) == 1
    if chat_input and (not COMMAND_NAME_RE.match(name) or name != name.lower()):
        errors.append(
            LimitError((*at, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        )
    description = _text(command.get("description"))
    if chat_input and not 1 <= len(description) <= COMMAND_DESCRIPTION_MAX:
        errors.append(_too_long((*at, "description"), COMMAND_DESCRIPTION_MAX))
    options = command.get("options") or []
    if len(options) > COMMAND_OPTIONS_MAX:
        errors.append(_too_many((*at, "options"), COMMAND_OPTIONS_MAX))
    optional_seen = False
    for oindex, option in enumerate(options):
        oat = (*at, "options", str(oindex))
        if option.get("type") in (1, 2):
            errors.extend(_check_command(oat, option))
            continue
        errors.extend(_check_command(oat, {**option, "options": None}))
        if option.get("required"):
            if optional_seen:
                errors.append(
                    LimitError(
                        (*oat, "required"),
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
                )
        else:
            optional_seen = True
        if len(option.get("choices") or []) > AUTOCOMPLETE_CHOICES_MAX:
            errors.append(_too_many((*oat, "choices"), AUTOCOMPLETE_CHOICES_MAX))
    return errors


def error_tree(errors: Sequence[LimitError]) -> dict[str, Any]:
    """Discord's nested ``errors`` object for a 50035 response."""
    tree: dict[str, Any] = {}
    for error in errors:
        node = tree
        for part in error.path:
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": error.code, "message": error.message})
    return tree
