"""Request and response models of the HTTP API (SPEC §9). Field names match the task
record and the CLI's JSON documents."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RuntimeName = Literal["subagent", "acp", "cron", "cli", "media"]
PolicyName = Literal["done_only", "state_changes", "silent"]
EventType = Literal[
    "start", "heartbeat", "progress", "succeed", "fail", "timeout", "cancelled", "artifact"
]
ArtifactKindName = Literal["commit", "url", "file", "build", "deploy", "other"]


class Strict(BaseModel):
    """Unknown fields are refused by name; text must be storable (no NUL, valid UTF-8)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("contains a NUL character, which cannot be stored")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("is not valid Unicode text (lone surrogate)") from None
        return value


class CreateTask(Strict):
    runtime: RuntimeName
    label: str = Field(min_length=1, max_length=5000)
    task: str | None = Field(default=None, max_length=100_000)
    task_kind: str | None = Field(default=None, max_length=64)
    run_id: str | None = Field(default=None, max_length=255)
    source_id: str | None = Field(default=None, max_length=255)
    child_session_key: str | None = Field(default=None, max_length=512)
    requester_session_key: str | None = Field(default=None, max_length=512)
    parent: str | None = Field(default=None, max_length=512, description="Parent task ref.")
    reply_to: str | None = Field(
        default=None, max_length=512, description="slack:T/C[/TS][@U] or discord:G/C[/T][@U]"
    )
    notify: PolicyName | Literal["inherit"] | None = None
    lease: float | None = Field(default=None, gt=0, le=365 * 86400, description="Seconds.")
    queued: bool = False
    proof_required: bool = False
    proof_url: str | None = Field(default=None, max_length=8192)
    expect_status: int | None = Field(default=None, ge=100, le=599)
    expect_text: str | None = Field(default=None, max_length=8192)
    runner: Literal["run", "track"] | None = Field(
        default=None, description="Set by `tasktrail run`/`track()`: a runner that honours cancel."
    )


class TaskEvent(Strict):
    """One producer event. `progress` needs `text`; `artifact` needs `kind` and `value`."""

    type: EventType
    summary: str | None = Field(default=None, max_length=20_000)
    error: str | None = Field(default=None, max_length=20_000)
    text: str | None = Field(default=None, max_length=20_000)
    kind: ArtifactKindName | None = None
    value: str | None = Field(default=None, max_length=8192)
    expect_status: int | None = Field(default=None, ge=100, le=599)
    expect_text: str | None = Field(default=None, max_length=8192)
    #: Further proof expectations for an artifact: forbid_text, expect_header, sha256,
    #: max_age, exists, repo, branch (validated by the ledger, errors name `proof.KEY`).
    proof: dict[str, str | int | bool | list[str]] | None = None


class CancelRequest(Strict):
    reason: str | None = Field(default=None, max_length=20_000)


class NotifyRequest(Strict):
    policy: PolicyName


class MaintenanceRequest(Strict):
    apply: bool = False


class TaskDocument(BaseModel):
    schema_version: int = 1
    task: dict[str, Any]
    events: list[dict[str, Any]] | None = None


class TaskListDocument(BaseModel):
    schema_version: int = 1
    tasks: list[dict[str, Any]]
    next_cursor: str | None


class ErrorDocument(BaseModel):
    error: str
    message: str
    field: str | None = None
