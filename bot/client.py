"""A small client for a remote `tasktrail serve` HTTP API (SPEC §9), used by
`tasktrail run --api URL --token T`. Errors come back as the ledger's own exceptions."""

from __future__ import annotations

from typing import Any

import httpx

from ledger.exceptions import (
    DatabaseBusy,
    IllegalTransition,
    InvalidInput,
    LedgerError,
    PermissionDenied,
    TaskNotFound,
)


class ApiError(LedgerError):
    def __init__(self, status: int, message: str) -> None:
        self.http_status = status
        super().__init__(f"HTTP {status}: {message}")


class ApiClient:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInput("api", f"{url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "tasktrail-run"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as error:
            raise DatabaseBusy(f"{self.url} did not answer: {error}") from None
        try:
            doc = response.json()
        except ValueError:
            doc = {"message": response.text[:300]}
        if response.status_code >= 400:
            raise _error(response.status_code, doc if isinstance(doc, dict) else {}, path)
        if not isinstance(doc, dict):
            raise ApiError(response.status_code, "unexpected response")
        return doc

    def create(self, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None and v is not False}
        task: dict[str, Any] = self._call("POST", "/api/v1/tasks", body)["task"]
        return task

    def event(self, ref: str, type: str, **fields: Any) -> dict[str, Any]:
        body = {"type": type, **{k: v for k, v in fields.items() if v is not None}}
        task: dict[str, Any] = self._call("POST", f"/api/v1/tasks/{ref}/events", body)["task"]
        return task

    def get(self, ref: str) -> dict[str, Any]:
        task: dict[str, Any] = self._call("GET", f"/api/v1/tasks/{ref}")["task"]
        return task

    def cancel(self, ref: str, reason: str | None = None) -> dict[str, Any]:
        task: dict[str, Any] = self._call(
            "POST", f"/api/v1/tasks/{ref}/cancel", {"reason": reason} if reason else {}
        )["task"]
        return task


def _error(status: int, doc: dict[str, Any], path: str) -> LedgerError:
    message = str(doc.get("message") or doc.get("detail") or "request failed")
    if status in (400, 422):
        return InvalidInput(str(doc.get("field") or "request"), message)
    if status == 404:
        return TaskNotFound(path.split("/")[4] if path.count("/") >= 4 else path)
    if status in (401, 403):
        return PermissionDenied("use the API", why=message)
    if status == 409:
        return IllegalTransition("?", "?", "?", message)
    if status == 503:
        return DatabaseBusy(message)
    return ApiError(status, message)
