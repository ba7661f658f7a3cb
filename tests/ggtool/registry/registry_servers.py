"""Real servers on 127.0.0.1 for the registry tests (no mocks).

- `RegistryServer`: Debian's `docker-registry` (the CNCF distribution registry, registry:2)
  in a temp folder: open, htpasswd Basic auth, TLS with a self-signed CA, or token auth.
- `TokenService`: issues the JWTs registry:2 verifies (x5c chain to a cert we generate),
  for Basic credentials, anonymous pulls, or Ollama's ed25519-signed token request.
- `OllamaFront`: what makes Ollama's registry different, in front of a token-auth registry:2:
  the token realm on the same host, `/v2/` answering 404, manifests served as text/plain,
  and blob GET/HEAD answered with a 307 to another host (`CdnServer`, which refuses any
  Authorization header: credentials must never follow a cross-host redirect).
- `FaultProxy`: forwards to a registry and injects faults into blob GETs: dropped
  connections, stalls, 5xx, corrupted bytes, throttling.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

REGISTRY_BIN = shutil.which("docker-registry")
EMPTY_BODY_SUM = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# -- certificates ---------------------------------------------------------------------------
@dataclass
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_pki(folder: Path) -> Pki:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ggtool test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


# -- docker-registry ------------------------------------------------------------------------
class RegistryServer:
    """`docker-registry serve config.yml` on a free loopback port with its own storage folder."""

    def __init__(
        self,
        folder: Path,
        *,
        auth: dict | None = None,
        tls: Pki | None = None,
        port: int | None = None,
    ):
        self.folder = folder
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        folder.mkdir(parents=True, exist_ok=True)
        config: dict = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(folder / "data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        if tls is not None:
            config["http"]["tls"] = {
                "certificate": str(tls.server_cert),
                "key": str(tls.server_key),
            }
        if auth is not None:
            config["auth"] = auth
        # JSON is YAML: no YAML writer needed
        self.config_path = folder / "config.yml"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.proc: subprocess.Popen | None = None

    def start(self) -> RegistryServer:
        assert REGISTRY_BIN, "docker-registry is not installed (apt-get install docker-registry)"
        self.log = open(self.folder / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.config_path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited: {(self.folder / 'registry.log').read_text()[-2000:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not start within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        with contextlib.suppress(Exception):
            self.log.close()


def htpasswd_auth(folder: Path, users: dict[str, str]) -> dict:
    """registry:2's htpasswd auth config (bcrypt hashes, as it requires)."""
    path = folder / "htpasswd"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
            for u, p in users.items()
        )
    )
    return {"htpasswd": {"realm": "ggtool-test", "path": str(path)}}


# -- small HTTP servers -----------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _dispatch(self) -> None:
        try:
            self.server.app.handle(self)  # type: ignore[attr-defined]
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - stdlib signature
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class HttpApp:
    """Base: a threaded HTTP server on 127.0.0.1 calling `handle(request_handler)`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.app = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()

    def start(self) -> HttpApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((h.command, h.path, dict(h.headers.items())))

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    @staticmethod
    def read_body(h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += h.rfile.read(size)
                h.rfile.readline()
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n else b""

    @staticmethod
    def reply(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD" and body:
            h.wfile.write(body)


_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-length",
}


def forward(
    h: BaseHTTPRequestHandler,
    upstream: str,
    *,
    path: str | None = None,
    extra_headers: dict[str, str] | None = None,
    drop_headers: tuple[str, ...] = (),
    body_filter=None,
    header_filter=None,
) -> None:
    """Send the request to `upstream` (host:port, plain http) and stream the answer back.

    `body_filter(chunk_iter, resp)` may rewrite/interrupt the body stream; it yields chunks.
    """
    body = HttpApp.read_body(h)
    host, port = upstream.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {
        k: v
        for k, v in h.headers.items()
        if k.lower() not in _HOP and k.lower() not in drop_headers
    }
    headers.update(extra_headers or {})
    if body or h.command in ("PUT", "POST", "PATCH"):
        headers["Content-Length"] = str(len(body))
    conn.request(h.command, path or h.path, body=body or None, headers=headers)
    resp = conn.getresponse()
    out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
    if header_filter is not None:
        out_headers = header_filter(out_headers, resp)
    length = resp.getheader("Content-Length")
    h.send_response(resp.status)
    for k, v in out_headers:
        h.send_header(k, v)
    if h.command == "HEAD" or resp.status in (204, 304):
        if length is not None:
            h.send_header("Content-Length", length)
        h.end_headers()
        conn.close()
        return
    if length is None:
        data = resp.read()
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        conn.close()
        return
    h.send_header("Content-Length", length)
    h.end_headers()

    def chunks():
        while True:
            c = resp.read(64 * 1024)
            if not c:
                return
            yield c

    stream = body_filter(chunks(), resp) if body_filter else chunks()
    try:
        for c in stream:
            h.wfile.write(c)
    finally:
        conn.close()


def _blob_get(path: str) -> tuple[str, str] | None:
    """(repo, digest) when `path` is /v2/<repo>/blobs/<digest>."""
    p = urllib.parse.urlsplit(path).path
    if not p.startswith("/v2/") or "/blobs/" not in p or "/blobs/uploads" in p:
        return None
    repo, digest = p[4:].rsplit("/blobs/", 1)
    return repo, digest


# -- faults ---------------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str  # "drop" | "stall" | "status" | "corrupt" | "norange"
    times: int = 1  # how many matching requests it applies to (-1: all)
    after: int = 0  # body bytes sent before the fault (drop/stall) or offset to corrupt
    status: int = 500
    seconds: float = 5.0
    methods: tuple[str, ...] = ("GET",)
    target: str = "blob"  # "blob": /v2/<repo>/blobs/<digest>; "upload": /v2/<repo>/blobs/uploads/…
    skip: int = 0  # let this many matching requests through first


class FaultProxy(HttpApp):
    def __init__(
        self, upstream: str, faults: list[Fault] | None = None, rate: float | None = None
    ) -> None:
        super().__init__()
        self.upstream = upstream
        self.faults = faults or []
        self.rate = rate  # bytes per second per response, for slow downloads
        self.blob_gets = 0
        self.applied: list[str] = []

    def _next_fault(self, method: str, target: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times != 0 and method in f.methods and f.target == target:
                    if f.skip > 0:
                        f.skip -= 1
                        return None
                    if f.times > 0:
                        f.times -= 1
                    self.applied.append(f.kind)
                    return f
        return None

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        self.record(h)
        blob = _blob_get(h.path)
        if blob is None:
            fault = self._next_fault(h.command, "upload") if "/blobs/uploads/" in h.path else None
            if fault is not None and fault.kind == "status":
                self.read_body(h)
                self.reply(h, fault.status, b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}')
                return
            forward(h, self.upstream)
            return
        with self._lock:
            if h.command == "GET":
                self.blob_gets += 1
        fault = self._next_fault(h.command, "blob")
        if fault is not None and fault.kind == "status":
            self.reply(h, fault.status, b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}')
            return
        drop = ("range",) if fault is not None and fault.kind == "norange" else ()
        forward(
            h,
            self.upstream,
            drop_headers=drop,
            body_filter=lambda it, resp: self._filter(it, fault, h),
        )

    def _filter(self, chunks, fault: Fault | None, h: BaseHTTPRequestHandler):
        sent = 0
        started = time.monotonic()
        for c in chunks:
            if (
                fault is not None
                and fault.kind in ("drop", "stall")
                and sent + len(c) > fault.after
            ):
                head = c[: max(0, fault.after - sent)]
                if head:
                    yield head
                h.wfile.flush()
                if fault.kind == "stall":
                    time.sleep(fault.seconds)
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(socket.SHUT_RDWR)
                return
            if (
                fault is not None
                and fault.kind == "corrupt"
                and sent <= fault.after < sent + len(c)
            ):
                i = fault.after - sent
                c = c[:i] + bytes([c[i] ^ 0xFF]) + c[i + 1 :]
            sent += len(c)
            yield c
            if self.rate:
                ahead = sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)


# -- token service --------------------------------------------------------------------------
class TokenService(HttpApp):
    """Docker's token protocol (GET /token?service=&scope=) for registry:2's `auth: token:`.

    Grants: Basic users (pull+push), anonymous pulls if `anonymous_pull`, and requests signed
    with an authorized ed25519 key the way Ollama signs them (pull+push).
    """

    def __init__(
        self,
        folder: Path,
        *,
        service: str = "ggtool-test",
        issuer: str = "ggtool-test-issuer",
        users: dict[str, str] | None = None,
        anonymous_pull: bool = False,
        port: int | None = None,
        public_url: str | None = None,
    ) -> None:
        super().__init__(port)
        self.service, self.issuer = service, issuer
        self.users = users or {}
        self.anonymous_pull = anonymous_pull
        self.authorized_keys: set[str] = set()  # base64 of the SSH public key blobs
        self.public_url = public_url  # the URL clients use (when behind a front)
        self.token_requests: list[dict] = []
        self.nonces: set[str] = set()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ggtool test token issuer")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .sign(self.key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        self.cert_path = folder / "token-issuer.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def registry_auth(self, realm: str | None = None) -> dict:
        return {
            "token": {
                "realm": realm or f"{self.url}/token",
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert_path),
            }
        }

    def mint(self, subject: str, access: list[dict], lifetime: int = 300) -> str:
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + lifetime,
            "nbf": now - 30,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(sig)}"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        self.record(h)
        parts = urllib.parse.urlsplit(h.path)
        if parts.path != "/token":
            self.reply(h, 404)
            return
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        scopes = [s for v in query.get("scope", []) for s in v.split(" ") if s]
        auth = h.headers.get("Authorization", "")
        who, actions_allowed, how = None, set(), ""
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:  # noqa: BLE001
                user, pw = "", ""
            if self.users.get(user) != pw or not user:
                self.reply(h, 401, b'{"details":"bad credentials"}')
                return
            who, actions_allowed, how = user, {"pull", "push"}, "basic"
        elif auth and ":" in auth and " " not in auth:
            ok, why = self._check_signed(h, auth, query)
            if not ok:
                self.reply(h, 401, json.dumps({"error": why}).encode())
                return
            who, actions_allowed, how = (
                "ed25519:" + auth.split(":", 1)[0][:16],
                {"pull", "push"},
                "ed25519",
            )
        elif self.anonymous_pull:
            who, actions_allowed, how = "", {"pull"}, "anonymous"
        else:
            self.reply(h, 401, b'{"details":"authentication required"}')
            return
        if query.get("service", [""])[0] != self.service:
            self.reply(h, 400, b'{"details":"wrong service"}')
            return
        access = []
        for s in scopes:
            typ, _, rest = s.partition(":")
            name, _, acts = rest.rpartition(":")
            granted = [a for a in acts.split(",") if a in actions_allowed]
            if typ == "repository" and granted:
                access.append({"type": typ, "name": name, "actions": granted})
        with self._lock:
            self.token_requests.append({"how": how, "scopes": scopes, "who": who})
        token = self.mint(who or "anonymous", access)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self.reply(h, 200, body, {"Content-Type": "application/json"})

    def _check_signed(self, h: BaseHTTPRequestHandler, auth: str, query: dict) -> tuple[bool, str]:
        pub_b64, _, sig_b64 = auth.partition(":")
        if pub_b64 not in self.authorized_keys:
            return False, "unknown key"
        try:
            blob = base64.b64decode(pub_b64)
            # SSH wire format: string "ssh-ed25519", string key(32)
            tlen = int.from_bytes(blob[:4], "big")
            klen = int.from_bytes(blob[4 + tlen : 8 + tlen], "big")
            raw_key = blob[8 + tlen : 8 + tlen + klen]
            key = Ed25519PublicKey.from_public_bytes(raw_key)
            sig = base64.b64decode(sig_b64)
        except Exception:  # noqa: BLE001
            return False, "malformed signature"
        base = self.public_url or f"http://{h.headers.get('Host')}"
        url = base + h.path
        try:
            key.verify(sig, f"GET,{url},{EMPTY_BODY_SUM}".encode())
        except Exception:  # noqa: BLE001
            return False, "bad signature"
        ts = query.get("ts", ["0"])[0]
        nonce = query.get("nonce", [""])[0]
        if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
            return False, "stale ts"
        with self._lock:
            if not nonce or nonce in self.nonces:
                return False, "nonce reused"
            self.nonces.add(nonce)
        return True, ""


# -- Ollama's registry, stood in -------------------------------------------------------------
class CdnServer(HttpApp):
    """The "R2" host: serves blobs by opaque URL, supports Range, refuses credentials."""

    def __init__(self, registry: str, tokens: TokenService) -> None:
        super().__init__()
        self.registry = registry
        self.tokens = tokens
        self.leaked_auth = 0
        # a different host name than 127.0.0.1, so the redirect is cross-host
        self.url = f"http://localhost:{self.port}"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        self.record(h)
        if h.headers.get("Authorization"):
            with self._lock:
                self.leaked_auth += 1
            self.reply(h, 400, b"credentials sent to the CDN")
            return
        parts = urllib.parse.urlsplit(h.path)
        q = urllib.parse.parse_qs(parts.query)
        repo, digest = q.get("repo", [""])[0], q.get("digest", [""])[0]
        token = self.tokens.mint("cdn", [{"type": "repository", "name": repo, "actions": ["pull"]}])
        forward(
            h,
            self.registry,
            path=f"/v2/{repo}/blobs/{digest}",
            extra_headers={"Authorization": f"Bearer {token}"},
            drop_headers=("host",),
        )


class OllamaFront(HttpApp):
    """registry.ollama.ai's shape in front of a token-auth registry:2 (see module doc)."""

    def __init__(self, registry: str, tokens: TokenService, cdn: CdnServer, port: int) -> None:
        super().__init__(port)
        self.registry, self.tokens, self.cdn = registry, tokens, cdn

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        self.record(h)
        path = urllib.parse.urlsplit(h.path).path
        if path == "/token":
            forward(h, self.tokens.host)
            return
        if path in ("/v2", "/v2/"):
            self.reply(h, 404, b"404 page not found")
            return
        blob = _blob_get(h.path)
        if blob is not None and h.command in ("GET", "HEAD"):
            # authenticated like the registry, then sent elsewhere
            if not h.headers.get("Authorization", "").startswith("Bearer "):
                forward(h, self.registry)  # → 401 with the challenge
                return
            repo, digest = blob
            status = self._registry_head(h)
            if status != 200:
                self.reply(h, status)
                return
            q = urllib.parse.urlencode(
                {"repo": repo, "digest": digest, "X-Amz-Signature": secrets.token_hex(8)}
            )
            self.reply(h, 307, b"", {"Location": f"{self.cdn.url}/r2/blob?{q}"})
            return

        def text_plain(headers, resp):
            if "/manifests/" in path and h.command == "GET":
                return [
                    (k, "text/plain; charset=utf-8" if k.lower() == "content-type" else v)
                    for k, v in headers
                ]
            return headers

        forward(h, self.registry, header_filter=text_plain)

    def _registry_head(self, h: BaseHTTPRequestHandler) -> int:
        host, port = self.registry.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request(
                "HEAD", h.path, headers={"Authorization": h.headers.get("Authorization", "")}
            )
            return conn.getresponse().status
        finally:
            conn.close()


class EvilRegistry(HttpApp):
    """A registry that lies: serves whatever manifest and blob bytes a test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.manifests: dict[str, tuple[bytes, str]] = {}  # tag -> (body, content type)
        self.blobs: dict[str, bytes] = {}  # digest -> bytes served (may not match the digest)
        self.head_sizes: dict[str, int] = {}  # digest -> Content-Length claimed by HEAD

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        self.record(h)
        path = urllib.parse.urlsplit(h.path).path
        if "/manifests/" in path:
            tag = path.rsplit("/", 1)[1]
            if tag not in self.manifests:
                self.reply(
                    h, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
                )
                return
            body, ctype = self.manifests[tag]
            self.reply(h, 200, body, {"Content-Type": ctype})
            return
        blob = _blob_get(h.path)
        if blob is None or blob[1] not in self.blobs:
            self.reply(h, 404)
            return
        data = self.blobs[blob[1]]
        if h.command == "HEAD":
            size = self.head_sizes.get(blob[1], len(data))
            h.send_response(200)
            h.send_header("Content-Length", str(size))
            h.end_headers()
            return
        rng = h.headers.get("Range", "")
        if rng.startswith("bytes="):
            a, b = rng[6:].split("-")
            start, end = int(a), min(int(b), len(data) - 1)
            chunk = data[start : end + 1]
            self.reply(h, 206, chunk, {"Content-Range": f"bytes {start}-{end}/{len(data)}"})
            return
        self.reply(h, 200, data)


class ForwardProxy(HttpApp):
    """A plain forward HTTP proxy (absolute-URI requests), as HTTP_PROXY names one."""

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        self.record(h)
        target = urllib.parse.urlsplit(h.path)
        if target.scheme != "http" or not target.netloc:
            self.reply(h, 400, b"absolute http:// URI expected")
            return
        path = urllib.parse.urlunsplit(("", "", target.path or "/", target.query, ""))
        forward(h, target.netloc, path=path, drop_headers=("proxy-authorization",))


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def env_without_proxies() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
