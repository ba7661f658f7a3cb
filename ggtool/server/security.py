"""HTTP-level protections, as Ollama applies them, plus request-size limits.

- DNS-rebinding guard (Ollama's allowedHostsMiddleware): when the server listens on loopback,
  a request's Host must be a loopback/private/unspecified/local IP, `localhost`, this machine's
  hostname, or end in .localhost/.local/.internal; anything else is 403. A web page on
  evil.example that resolves its name to 127.0.0.1 therefore cannot drive the API.
- CORS: Ollama's allowed origins (OLLAMA_ORIGINS plus localhost/127.0.0.1/0.0.0.0 on any
  port, app://, file://, tauri://, vscode-webview://, vscode-file://) and headers.
- Body limits: JSON endpoints refuse bodies over the limit (413) before they are buffered;
  /api/blobs streams unbounded bodies (the digest is verified instead).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

DEFAULT_ORIGINS = [
    "http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*",
    "http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1:*",
    "http://0.0.0.0", "https://0.0.0.0", "http://0.0.0.0:*", "https://0.0.0.0:*",
    "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
]
ALLOWED_HEADERS = [
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With",
    "OpenAI-Beta", "x-stainless-arch", "x-stainless-async", "x-stainless-custom-poll-interval",
    "x-stainless-helper-method", "x-stainless-lang", "x-stainless-os", "x-stainless-package-version",
    "x-stainless-poll-helper", "x-stainless-retry-count", "x-stainless-runtime",
    "x-stainless-runtime-version", "x-stainless-timeout",
]
ALLOWED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def origin_regex(extra: list[str]) -> str:
    """One regex for Ollama's origin patterns ('*' matches anything)."""
    pats = []
    for o in [*extra, *DEFAULT_ORIGINS]:
        if o == "*":
            pats.append(".*")
        else:
            pats.append(".*".join(re.escape(part) for part in o.split("*")))
    return "^(?:" + "|".join(pats) + ")$"


def _local_ips() -> set[str]:
    ips: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ips.add(str(info[4][0]))
    except OSError:
        pass
    return ips


def host_allowed(host_header: str, hostname: str | None = None, local_ips: set[str] | None = None) -> bool:
    """Ollama's rule for the Host header of a request to a loopback-bound server."""
    host = host_header.strip()
    if host.startswith("["):  # [::1]:port
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_loopback or ip.is_private or ip.is_unspecified:
            return True
        return str(ip) in (local_ips if local_ips is not None else _local_ips())
    h = host.lower()
    if h in ("", "localhost"):
        return True
    if h == (hostname if hostname is not None else socket.gethostname()).lower():
        return True
    return any(h.endswith("." + tld) for tld in ("localhost", "local", "internal"))


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json; charset=utf-8"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class HostGuard:
    def __init__(self, app: ASGIApp, *, enabled: bool) -> None:
        self.app = app
        self.enabled = enabled
        self.hostname = socket.gethostname()
        self.local_ips = _local_ips()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        host = ""
        for k, v in scope.get("headers", []):
            if k == b"host":
                host = v.decode("latin-1")
                break
        if not host_allowed(host, self.hostname, self.local_ips):
            await _send_json(send, 403, {"error": "forbidden: host not allowed"})
            return
        if scope.get("method") == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies larger than `limit` bytes, except on unbounded (streamed) paths."""

    def __init__(self, app: ASGIApp, *, limit: int, unbounded_prefixes: tuple[str, ...] = ("/api/blobs/",)) -> None:
        self.app = app
        self.limit = limit
        self.unbounded = unbounded_prefixes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(self.unbounded):
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    await _send_json(send, 400, {"error": "invalid Content-Length"})
                    return
                if n > self.limit:
                    await _send_json(send, 413, {"error": "request body too large"})
                    return
        state = {"seen": 0, "over": False, "started": False}

        async def limited_receive() -> Any:
            msg = await receive()
            if msg["type"] == "http.request":
                state["seen"] += len(msg.get("body", b""))
                if state["seen"] > self.limit:
                    state["over"] = True
                    raise _TooLarge()
            return msg

        async def guarded_send(msg: Any) -> None:
            if state["over"]:
                if msg["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await _send_json(send, 413, {"error": "request body too large"})
                return
            if msg["type"] == "http.response.start":
                state["started"] = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not state["started"]:
                await _send_json(send, 413, {"error": "request body too large"})


class ForceJSON:
    """Ollama decodes every API body as JSON whatever its Content-Type (`curl -d` sends
    x-www-form-urlencoded); FastAPI only parses declared JSON, so declare it."""

    def __init__(self, app: ASGIApp, *, skip_prefixes: tuple[str, ...] = ("/api/blobs/",)) -> None:
        self.app = app
        self.skip = skip_prefixes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") in ("POST", "DELETE", "PUT")
            and not scope.get("path", "").startswith(self.skip)
        ):
            headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
