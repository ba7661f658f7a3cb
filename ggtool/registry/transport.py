"""HTTP to OCI distribution registries: one httpx client per registry, retries, TLS options.

Two paths share the same options (TLS context, proxies, timeouts):

- `RegistryClient.request` (httpx) for everything small: manifests, HEAD, tokens, uploads.
  It retries transient failures with jittered exponential backoff, answers a 401 by asking
  the authenticator for credentials once, and maps HTTP failures onto the error family.
- `RangeReader` (the standard library's http.client) for the bulk blob bytes. h11, under
  httpx, copies every 64 KiB chunk several times; on a two-core machine it halves the rate a
  verified pull reaches (measured ~350 vs ~550 MB/s against curl's ~630). `readinto` a reused
  buffer avoids those copies. It does its own redirects, auth header and stall timeout.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import select
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ggtool import __version__
from ggtool.errors import AuthError, GgtoolError, NetworkError, NotFoundError, UsageError

if TYPE_CHECKING:
    from ggtool.registry.auth import Authenticator

# Statuses worth another try: the registry or something in front of it is briefly unwell.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Cap on any registry answer read into memory (manifests, error bodies, tokens).
MAX_SMALL_BODY = 4 * 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DOCKER_HUB_API = "registry-1.docker.io"
MAX_REDIRECTS = 10


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError as e:
        raise UsageError(f"{name} must be a number of seconds, got {raw!r}") from e


@dataclass(frozen=True)
class TransportOptions:
    """How to reach a registry. The defaults are safe; each relaxation is explicit."""

    plain_http: bool = False  # http:// instead of https:// (Ollama's --insecure)
    insecure_skip_tls_verify: bool = False
    ca_file: Path | None = None
    connect_timeout: float = 30.0
    # No byte for this long on a transfer = stalled: the part is re-requested (Ollama: 30 s).
    stall_timeout: float = field(default_factory=lambda: _env_float("GGTOOL_STALL_TIMEOUT", 30.0))
    max_retries: int = 6
    backoff_base: float = field(default_factory=lambda: _env_float("GGTOOL_RETRY_BACKOFF", 1.0))
    backoff_max: float = 10.0
    user_agent: str = f"ggtool/{__version__}"

    @property
    def scheme(self) -> str:
        return "http" if self.plain_http else "https"

    def ssl_context(self) -> ssl.SSLContext:
        if self.insecure_skip_tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if self.ca_file is not None:
            if not Path(self.ca_file).is_file():
                raise UsageError(f"--ca-file {self.ca_file}: no such file")
            ctx = ssl.create_default_context()
            try:
                ctx.load_verify_locations(cafile=str(self.ca_file))
            except ssl.SSLError as e:
                raise UsageError(
                    f"--ca-file {self.ca_file}: not a PEM certificate bundle ({e})"
                ) from e
            return ctx
        return ssl.create_default_context()

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry `attempt` (1-based): exponential, capped, jittered."""
        base = min(self.backoff_base * (2 ** (attempt - 1)), self.backoff_max)
        return base * random.uniform(0.5, 1.5)


def redact_url(url: str) -> str:
    """A URL safe to show: no userinfo, no query (presigned URLs carry credentials there)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def registry_error_message(body: bytes) -> str:
    """The registry's own words from an OCI error body, else a short excerpt of the text."""
    try:
        doc = json.loads(body[:65536])
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
        msgs = []
        for err in doc["errors"][:3]:
            if isinstance(err, dict):
                code, msg = err.get("code"), err.get("message")
                msgs.append(": ".join(str(x) for x in (code, msg) if x))
        if msgs:
            return "; ".join(msgs)[:300]
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return doc["error"][:300]
    text = body[:300].decode("utf-8", "replace").strip()
    return " ".join(text.split())


def status_error(status: int, body: bytes, what: str) -> GgtoolError:
    """The error for a final non-success answer."""
    detail = registry_error_message(body)
    msg = f"{what}: {status}" + (f" {detail}" if detail else "")
    if status == 404:
        return NotFoundError(msg)
    if status in (401, 403):
        return AuthError(msg)
    return NetworkError(msg)


Body = bytes | Callable[[], Iterable[bytes]] | None


@dataclass(frozen=True)
class Reply:
    """A finished answer: status, headers, the whole (bounded) body, the final URL."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str

    def location(self) -> str | None:
        """The Location / Docker-Upload-Location header resolved against the request URL."""
        loc = self.headers.get("docker-upload-location") or self.headers.get("location")
        return urllib.parse.urljoin(self.url, loc) if loc else None


class RegistryClient:
    """One registry host: base URL, an httpx client, and the authenticator for 401s."""

    def __init__(self, host: str, options: TransportOptions, authenticator: Authenticator) -> None:
        self.host = host
        self.options = options
        self.auth = authenticator
        # Docker Hub's names say docker.io; its registry API lives on registry-1.docker.io
        api_host = DOCKER_HUB_API if host.lower() in ("docker.io", "index.docker.io") else host
        self.base_url = f"{options.scheme}://{api_host}"
        self._ssl = options.ssl_context()
        self.http = httpx.Client(
            verify=self._ssl,
            timeout=httpx.Timeout(options.stall_timeout, connect=options.connect_timeout),
            headers={"User-Agent": options.user_agent},
            follow_redirects=False,
            trust_env=True,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        self.auth.bind(self)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return self.base_url + path

    def is_registry_origin(self, url: str) -> bool:
        """True when `url` is this registry (only there do our credentials go)."""
        a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(self.base_url)
        return (a.scheme, a.hostname, a.port or _default_port(a.scheme)) == (
            b.scheme,
            b.hostname,
            b.port or _default_port(b.scheme),
        )

    def ssl_context(self) -> ssl.SSLContext:
        return self._ssl

    # -- requests ------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        what: str,
        headers: dict[str, str] | None = None,
        body: Body = None,
        ok: Iterable[int] = (200,),
        follow_redirects: bool = False,
        max_body: int = MAX_SMALL_BODY,
    ) -> Reply:
        """Send one request with retries and auth; return the reply if its status is in `ok`.

        The body is read whole (at most `max_body` bytes, else a NetworkError). `body` may be
        a callable that yields the body afresh for each attempt.
        """
        ok = frozenset(ok)
        if not url.startswith(("http://", "https://")):
            url = self.url(url)
        attempt = 0
        auth_tries = 0
        while True:
            attempt += 1
            send_headers = dict(headers or {})
            if self.is_registry_origin(url):
                send_headers.update(self.auth.headers(scope))
            content: Any = body() if callable(body) else body
            try:
                resp = self._send(method, url, send_headers, content, follow_redirects, max_body)
            except (httpx.TransportError, _BodyTooLarge) as e:
                # a refused connection or a TLS failure rarely heals: fail fast after 2 tries
                limit = 2 if isinstance(e, httpx.ConnectError) else self.options.max_retries
                if isinstance(e, _BodyTooLarge) or attempt > min(limit, self.options.max_retries):
                    raise NetworkError(f"{what}: {_describe(e)} ({redact_url(url)})") from e
                time.sleep(self.options.backoff(attempt))
                continue
            if resp.status_code == 401 and self.is_registry_origin(resp.url) and auth_tries < 2:
                auth_tries += 1
                if self.auth.on_challenge(
                    resp.headers.get_list("www-authenticate"), scope, resp.url
                ):
                    attempt -= 1  # an auth round trip is not a failed attempt
                    continue
            if resp.status_code in ok:
                return resp
            if resp.status_code in RETRY_STATUSES and attempt <= self.options.max_retries:
                time.sleep(_retry_after(resp) or self.options.backoff(attempt))
                continue
            if resp.status_code == 401:
                raise AuthError(
                    f"{what}: unauthorized: {registry_error_message(resp.content) or 'access denied'}",
                    hint=f"check the name, or run `ggtool login {self.host}`",
                )
            raise status_error(resp.status_code, resp.content, what)

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: Any,
        follow_redirects: bool,
        max_body: int,
    ) -> Reply:
        for _ in range(MAX_REDIRECTS + 1):
            req = self.http.build_request(method, url, headers=headers, content=content)
            resp = self.http.send(req, stream=True)
            try:
                data = bytearray()
                if method != "HEAD":
                    for chunk in resp.iter_bytes():
                        data += chunk
                        if len(data) > max_body:
                            raise _BodyTooLarge(f"answer larger than {max_body} bytes")
            finally:
                resp.close()
            reply = Reply(resp.status_code, resp.headers, bytes(data), str(resp.url))
            if not (follow_redirects and reply.status_code in REDIRECT_STATUSES):
                return reply
            location = reply.headers.get("location")
            if not location:
                return reply
            url = urllib.parse.urljoin(reply.url, location)
            if not self.is_registry_origin(url):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if resp.status_code == 303:
                method, content = "GET", None
        raise NetworkError(f"too many redirects ({redact_url(url)})")


class _BodyTooLarge(Exception):
    pass


def _describe(e: BaseException) -> str:
    if isinstance(e, httpx.ConnectError):
        return f"cannot connect ({e})" if str(e) else "cannot connect"
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    return str(e) or type(e).__name__


def _retry_after(resp: Reply) -> float | None:
    raw = resp.headers.get("retry-after", "")
    try:
        return min(max(float(raw), 0.0), 30.0)
    except ValueError:
        return None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


# -- bulk blob bytes ----------------------------------------------------------------------
class StalledError(Exception):
    """No byte arrived for stall_timeout seconds."""


class RangeStatusError(Exception):
    """A ranged GET got an answer it cannot use; `status` says which."""

    def __init__(self, status: int, message: str, headers: http.client.HTTPMessage | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


SPLICE_CHUNK = 1 << 20
_HAVE_SPLICE = hasattr(os, "splice")


@dataclass
class RangeResponse:
    """The open body of a ranged GET: `readinto` (or `splice_to`) until it returns 0.

    On Linux, a plain-HTTP body can be moved socket → pipe → file by `os.splice` with no
    copy through Python; it costs about a third of the CPU of `readinto` + `pwrite` (measured
    0.33 vs 0.93-1.21 CPU s per GiB), which on a small machine is what the hasher needs.
    """

    response: http.client.HTTPResponse
    status: int
    start: int  # offset of the first body byte in the blob
    length: int  # body bytes to read
    url: str
    can_splice: bool = False
    stall_timeout: float | None = None
    sock: object | None = None  # the connection's socket (for splice)
    _left: int = 0
    _pipe: tuple[int, int] | None = None
    _drained: bool = False

    def __post_init__(self) -> None:
        self._left = self.length

    def splice_to(self, fd: int, offset: int, limit: int) -> int:
        """Move up to `limit` body bytes into `fd` at `offset`; returns how many (>0)."""
        limit = min(limit, self._left)
        if limit <= 0:
            return 0
        if not self._drained:
            # bytes http.client already buffered behind the headers go the ordinary way
            self._drained = True
            try:
                head = self.response.fp.peek(1)[:limit] if self.response.fp else b""
            except TimeoutError as e:
                raise StalledError("stalled") from e
            if head:
                head = self.response.fp.read(len(head))
                _pwrite_all(fd, head, offset)
                self._left -= len(head)
                return len(head)
        sock = self.sock
        if sock is None or self.response.fp is None:
            raise http.client.IncompleteRead(b"", self._left)
        if self._pipe is None:
            r, w = os.pipe()
            with contextlib.suppress(OSError):
                import fcntl

                fcntl.fcntl(w, 1031, SPLICE_CHUNK)  # F_SETPIPE_SZ: fewer, larger moves
            self._pipe = (r, w)
        r, w = self._pipe
        sfd = sock.fileno()  # type: ignore[attr-defined]
        while True:
            try:
                n = os.splice(sfd, w, limit)
                break
            except BlockingIOError:  # the socket has a timeout, so it is non-blocking
                if not select.select([sfd], [], [], self.stall_timeout)[0]:
                    raise StalledError("stalled") from None
        if n == 0:
            raise http.client.IncompleteRead(b"", self._left)
        moved = 0
        while moved < n:
            moved += os.splice(r, fd, n - moved, offset_dst=offset + moved)
        self._left -= n
        return n

    def close(self) -> None:
        if self._pipe is not None:
            for p in self._pipe:
                with contextlib.suppress(OSError):
                    os.close(p)
            self._pipe = None

    def readinto(self, buf: memoryview) -> int:
        if self._left <= 0:
            return 0
        view = buf[: min(len(buf), self._left)]
        try:
            n = self.response.readinto(view)
        except TimeoutError as e:
            raise StalledError("stalled") from e
        if n == 0:
            raise http.client.IncompleteRead(b"", self._left)
        self._left -= n
        return n


class RangeReader:
    """Ranged GETs over one kept-alive http.client connection per origin (one per worker)."""

    def __init__(self, options: TransportOptions, ssl_context: ssl.SSLContext) -> None:
        self.options = options
        self.ssl_context = ssl_context
        self._conns: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._open: http.client.HTTPResponse | None = None
        self._range: RangeResponse | None = None

    def close(self) -> None:
        self._finish_open(reuse=False)
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._conns.clear()

    def _finish_open(self, reuse: bool) -> None:
        if self._range is not None:
            self._range.close()
            self._range = None
        if self._open is not None:
            resp, self._open = self._open, None
            if not reuse or not resp.isclosed():
                # a half-read body makes the connection unusable: drop it
                with contextlib.suppress(Exception):
                    resp.close()
                self._drop(resp)

    def _drop(self, resp: http.client.HTTPResponse) -> None:
        for key, conn in list(self._conns.items()):
            if getattr(conn, "_ggtool_resp", None) is resp:
                with contextlib.suppress(Exception):
                    conn.close()
                del self._conns[key]

    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urllib.parse.urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or _default_port(scheme)
        key = (scheme, host, port)
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        conn = self._conns.get(key)
        if conn is None:
            proxy = _proxy_for(url)
            timeout = self.options.stall_timeout
            if scheme == "https":
                if proxy:
                    p = urllib.parse.urlsplit(proxy)
                    conn = http.client.HTTPSConnection(
                        p.hostname or "", p.port or 80, timeout=timeout, context=self.ssl_context
                    )
                    conn.set_tunnel(host, port, headers=_proxy_auth_headers(p))
                else:
                    conn = http.client.HTTPSConnection(
                        host, port, timeout=timeout, context=self.ssl_context
                    )
            elif proxy:
                p = urllib.parse.urlsplit(proxy)
                conn = http.client.HTTPConnection(p.hostname or "", p.port or 80, timeout=timeout)
                target = urllib.parse.urlunsplit(
                    (scheme, f"{host}:{port}", parts.path, parts.query, "")
                )
                conn._ggtool_proxy_headers = _proxy_auth_headers(p)  # type: ignore[attr-defined]
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            self._conns[key] = conn
        return conn, target

    def get(
        self, url: str, start: int, end: int, total: int, headers: dict[str, str]
    ) -> RangeResponse:
        """GET bytes [start, end) of a `total`-byte blob; redirects are returned, not followed.

        Raises RangeStatusError (with the status) for redirects and failures, StalledError
        when the server stops answering, OSError/HTTPException for broken connections.
        """
        self._finish_open(reuse=True)
        conn, target = self._connection(url)
        send = {
            "User-Agent": self.options.user_agent,
            "Range": f"bytes={start}-{end - 1}",
            "Accept-Encoding": "identity",
            **getattr(conn, "_ggtool_proxy_headers", {}),
            **headers,
        }
        try:
            conn.request("GET", target, headers=send)
            resp = conn.getresponse()
        except TimeoutError as e:
            self._reset(conn)
            raise StalledError("no answer") from e
        except (OSError, http.client.HTTPException):
            self._reset(conn)
            raise
        conn._ggtool_resp = resp  # type: ignore[attr-defined]
        self._open = resp
        status = resp.status
        if status == 206:
            got = _parse_content_range(resp.getheader("Content-Range", ""))
            if got is None or got[0] != start or got[1] != end - 1 or got[2] not in (None, total):
                self._finish_open(reuse=False)
                raise RangeStatusError(
                    status, f"unexpected Content-Range {got} for bytes {start}-{end - 1}/{total}"
                )
            self._range = RangeResponse(
                resp,
                status,
                start,
                end - start,
                url,
                self._splice_ok(url, resp),
                self.options.stall_timeout,
                conn.sock,
            )
            return self._range
        if status == 200:
            length = resp.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) != total:
                self._finish_open(reuse=False)
                raise RangeStatusError(status, f"blob is {length} bytes, the manifest says {total}")
            # the server ignored Range: the body starts at 0
            return RangeResponse(resp, status, 0, end, url)
        body = b""
        with contextlib.suppress(Exception):
            body = resp.read(65536)
        self._finish_open(reuse=False)
        raise RangeStatusError(status, registry_error_message(body), resp.headers)

    @staticmethod
    def _splice_ok(url: str, resp: http.client.HTTPResponse) -> bool:
        return (
            _HAVE_SPLICE
            and url.startswith("http://")
            and not resp.chunked
            and resp.length is not None
            and os.environ.get("GGTOOL_NO_SPLICE", "") in ("", "0")
        )

    def _reset(self, conn: http.client.HTTPConnection) -> None:
        with contextlib.suppress(Exception):
            conn.close()
        for key, c in list(self._conns.items()):
            if c is conn:
                del self._conns[key]


def _parse_content_range(value: str) -> tuple[int, int, int | None] | None:
    # "bytes 0-99/1000" or "bytes 0-99/*"
    try:
        unit, rest = value.strip().split(" ", 1)
        span, size = rest.split("/", 1)
        a, b = span.split("-", 1)
        if unit.lower() != "bytes":
            return None
        return int(a), int(b), None if size.strip() == "*" else int(size)
    except ValueError:
        return None


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if urllib.request.proxy_bypass_environment(host):
        return None
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = "http://" + proxy
    return proxy or None


def _proxy_auth_headers(proxy: urllib.parse.SplitResult) -> dict[str, str]:
    if proxy.username is None:
        return {}
    import base64

    user = urllib.parse.unquote(proxy.username)
    pw = urllib.parse.unquote(proxy.password or "")
    token = base64.b64encode(f"{user}:{pw}".encode()).decode()
    return {"Proxy-Authorization": f"Basic {token}"}


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while len(view):
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
