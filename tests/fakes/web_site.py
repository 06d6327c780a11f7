"""A small real HTTP server on 127.0.0.x for proof checks: pages whose status, body,
headers, redirects and delays a test sets (and changes) while it runs.

    site = Site()                       # started on 127.0.0.1, random port
    site.page("/", body="<link rel=canonical>")
    site.redirect("/old", "/")
    site.page("/slow", delay=5)         # held until the delay passes or the site closes
    site.url("/")  -> "http://127.0.0.1:PORT/"
    site.hits["/"] -> number of requests served
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Page:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: Stream the body in chunks without Content-Length (size caps must count bytes).
    chunked: bool = False


class Site:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.pages: dict[str, Page] = {}
        self.hits: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                return

            def do_GET(self) -> None:
                site._serve(self)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # -- setup ------------------------------------------------------------------------------

    def page(
        self,
        path: str,
        body: str | bytes = "",
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        chunked: bool = False,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.pages[path] = Page(status, data, dict(headers or {}), delay, chunked)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.pages[path] = Page(status, b"", {"Location": location})

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()

    # -- serving ----------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.hits[path] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            page = self.pages.get(path) or Page(404, b"not found")
            if page.delay:
                self._closing.wait(page.delay)
            handler.send_response(page.status)
            for name, value in page.headers.items():
                handler.send_header(name, value)
            if page.chunked:
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                for start in range(0, len(page.body), 8192):
                    chunk = page.body[start : start + 8192]
                    handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                handler.wfile.write(b"0\r\n\r\n")
            else:
                handler.send_header("Content-Length", str(len(page.body)))
                handler.end_headers()
                handler.wfile.write(page.body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self._lock:
                self.in_flight -= 1
