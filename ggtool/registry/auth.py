"""Answering a registry's 401: bearer tokens (Docker's token spec, Ollama's signed flavour), Basic.

On a 401 the `WWW-Authenticate` challenges are read and tried in order of preference:

1. `Bearer realm=…,service=…,scope=…`: fetch a token from the realm.
   - Ollama hosts (registry.ollama.ai, ollama.com, hf.co, and any in
     `GGTOOL_OLLAMA_AUTH_HOSTS`): the token URL gets `ts` and `nonce` and is signed with the
     ed25519 key (see ollama_key.py). The realm must be the registry's host or a known alias,
     as Ollama insists since CVE-2025-51471 (a hostile realm must not collect signatures).
   - Others: a GET with Basic credentials when we have some (anonymous otherwise), or the
     OAuth2 refresh-token POST when Docker stored an identity token.
2. `Basic`: the credentials, if any.

Tokens are cached per requested scope until shortly before they expire.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from ggtool.errors import AuthError, NetworkError
from ggtool.registry.credentials import Credentials, find_credentials, normalize_host
from ggtool.registry.transport import redact_url

if TYPE_CHECKING:
    from ggtool.registry.transport import RegistryClient

OLLAMA_HOSTS = frozenset({"registry.ollama.ai", "ollama.com", "hf.co", "huggingface.co"})
# Realm hosts Ollama's own registries really use for their tokens (pain point #5).
REALM_ALIASES = {
    "registry.ollama.ai": frozenset({"ollama.com", "registry.ollama.ai"}),
    "hf.co": frozenset({"huggingface.co", "hf.co"}),
}
MAX_TOKEN_LEN = 64 * 1024
TOKEN_MARGIN = 10.0  # seconds: refresh a token this long before it expires
DEFAULT_TOKEN_LIFETIME = 60.0  # the token spec's default for expires_in


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic", …
    params: dict[str, str]


def parse_challenges(values: list[str] | str) -> list[Challenge]:
    """Parse WWW-Authenticate header values (RFC 7235 auth-params; tolerant, never raises)."""
    if isinstance(values, str):
        values = [values]
    out: list[Challenge] = []
    for value in values:
        out.extend(_parse_one_header(value))
    return out


def _parse_one_header(s: str) -> list[Challenge]:
    out: list[Challenge] = []
    i, n = 0, len(s)
    current: Challenge | None = None

    def skip(chars: str) -> None:
        nonlocal i
        while i < n and s[i] in chars:
            i += 1

    while i < n:
        skip(" \t,")
        start = i
        while i < n and s[i] not in " \t,=":
            i += 1
        token = s[start:i]
        if not token:
            i += 1
            continue
        skip(" \t")
        if i < n and s[i] == "=" and current is not None:
            i += 1
            skip(" \t")
            if i < n and s[i] == '"':
                i += 1
                buf = []
                while i < n and s[i] != '"':
                    if s[i] == "\\" and i + 1 < n:
                        i += 1
                    buf.append(s[i])
                    i += 1
                i += 1  # closing quote
                value = "".join(buf)
            else:
                vstart = i
                while i < n and s[i] not in ",":
                    i += 1
                value = s[vstart:i].strip()
            current.params.setdefault(token.lower(), value)
        elif i < n and s[i] == "=":
            # token68 or a param before any scheme: skip to the next comma
            while i < n and s[i] != ",":
                i += 1
        else:
            current = Challenge(token.lower(), {})
            out.append(current)
    return out


@dataclass
class _Token:
    value: str
    expires: float


class Authenticator:
    """Credentials and tokens for one registry host; shared by all its requests (thread-safe)."""

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        key_path: Path | None = None,
        ollama_hosts: frozenset[str] | None = None,
    ) -> None:
        self.host = normalize_host(host)
        self._explicit = credentials
        self._credentials: Credentials | None = None
        self._looked_up = False
        self.key_path = key_path
        self._ollama_hosts = ollama_hosts
        self._tokens: dict[str, _Token] = {}
        self._basic = False
        self._lock = threading.Lock()
        self._client: RegistryClient | None = None

    def bind(self, client: RegistryClient) -> None:
        self._client = client

    # -- what every request carries ------------------------------------------------------
    def headers(self, scope: str) -> dict[str, str]:
        with self._lock:
            tok = self._tokens.get(scope)
            if tok is not None and tok.expires > time.time():
                return {"Authorization": f"Bearer {tok.value}"}
            if self._basic:
                creds = self.credentials()
                if creds is not None and creds.username:
                    return {"Authorization": _basic_value(creds)}
        return {}

    def credentials(self) -> Credentials | None:
        if self._explicit is not None:
            return self._explicit
        if not self._looked_up:
            self._credentials = find_credentials(self.host)
            self._looked_up = True
        return self._credentials

    def uses_ollama_key(self) -> bool:
        extra = {
            normalize_host(h)
            for h in os.environ.get("GGTOOL_OLLAMA_AUTH_HOSTS", "").split(",")
            if h.strip()
        }
        hosts = self._ollama_hosts if self._ollama_hosts is not None else OLLAMA_HOSTS
        return self.host in hosts or self.host in extra

    # -- 401 -----------------------------------------------------------------------------
    def on_challenge(self, header_values: list[str], scope: str, url: str) -> bool:
        """Obtain what the challenge asks for; True if the request is worth sending again."""
        challenges = parse_challenges(header_values)
        bearer = next(
            (c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None
        )
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        with self._lock:
            if bearer is not None:
                token = self._fetch_token(bearer, scope, url)
                self._tokens[scope] = token
                return True
            if basic is not None:
                creds = self.credentials()
                if creds is None or not creds.username or self._basic:
                    return False  # none to offer, or the ones we sent were refused
                self._basic = True
                return True
        return False

    def _fetch_token(self, challenge: Challenge, scope: str, url: str) -> _Token:
        realm = challenge.params["realm"]
        service = challenge.params.get("service", "")
        scopes = _merge_scopes(challenge.params.get("scope", ""), scope)
        self._check_realm(realm, url)
        if self.uses_ollama_key():
            return self._ollama_token(realm, service, scopes, url)
        creds = self.credentials()
        if creds is not None and creds.identity_token:
            return self._oauth_refresh_token(realm, service, scopes, creds)
        query = [("service", service)] if service else []
        query += [("scope", s) for s in scopes]
        if creds is not None and creds.username:
            query.append(("account", creds.username))
        headers = (
            {"Authorization": _basic_value(creds)} if creds is not None and creds.username else {}
        )
        return self._token_request("GET", _with_query(realm, query), headers, None)

    def _check_realm(self, realm: str, url: str) -> None:
        r, u = urllib.parse.urlsplit(realm), urllib.parse.urlsplit(url)
        if r.scheme not in ("http", "https") or not r.hostname:
            raise AuthError(f"the registry asked for a token from an invalid realm {realm[:100]!r}")
        if r.scheme == "http" and u.scheme == "https":
            raise AuthError(
                f"the registry {self.host} (https) wants credentials sent to a plain-http token "
                f"service ({r.hostname}); refusing"
            )
        if self.uses_ollama_key():
            realm_host = r.netloc.rsplit("@", 1)[-1].lower()
            allowed = REALM_ALIASES.get(self.host, frozenset()) | {self.host, u.netloc.lower()}
            if realm_host not in allowed:
                raise AuthError(
                    f"realm host {realm_host!r} does not match the registry host {self.host!r}; "
                    "refusing to sign a token request for another host"
                )

    def _ollama_token(self, realm: str, service: str, scopes: list[str], url: str) -> _Token:
        from ggtool.registry.ollama_key import load_or_create_key  # cryptography: only when needed

        key = load_or_create_key(self.key_path)
        parts = urllib.parse.urlsplit(realm)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query.append(("service", service))
        query += [("scope", s) for s in scopes]
        query.append(("ts", str(int(time.time()))))
        query.append(
            ("nonce", base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="))
        )
        # Go's url.Values.Encode: keys sorted, values in insertion order, QueryEscape'd
        query.sort(key=lambda kv: kv[0])
        token_url = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(query), "")
        )
        headers = {"Authorization": key.sign_token_request(token_url)}
        try:
            return self._token_request("GET", token_url, headers, None)
        except AuthError as e:
            raise AuthError(
                f"{e.message}",
                hint=f"register {key.path}.pub with the registry (ollama.com keys, or Hugging Face)",
            ) from None

    def _oauth_refresh_token(
        self, realm: str, service: str, scopes: list[str], creds: Credentials
    ) -> _Token:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": creds.identity_token,
            "service": service,
            "scope": " ".join(scopes),
            "client_id": "ggtool",
        }
        return self._token_request("POST", realm, {}, form)

    def _token_request(
        self, method: str, url: str, headers: dict[str, str], form: dict[str, str] | None
    ) -> _Token:
        assert self._client is not None, "Authenticator used before RegistryClient.bind"
        http = self._client.http
        shown = redact_url(url)
        last: Exception | None = None
        for attempt in range(1, 4):
            try:
                resp = http.request(method, url, headers=headers, data=form, follow_redirects=False)
            except httpx.TransportError as e:
                last = e
                time.sleep(self._client.options.backoff(attempt))
                continue
            if resp.status_code >= 500 and attempt < 3:
                time.sleep(self._client.options.backoff(attempt))
                continue
            break
        else:
            raise NetworkError(f"token service {shown}: {last}") from last
        if resp.status_code in (401, 403):
            raise AuthError(
                f"the token service {shown} refused: {resp.status_code}",
                hint=f"check the credentials for {self.host} (`ggtool login {self.host}`)",
            )
        if resp.status_code >= 400:
            raise AuthError(f"token service {shown}: {resp.status_code}")
        if len(resp.content) > MAX_TOKEN_LEN * 2:
            raise AuthError(f"token service {shown}: answer too large")
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise AuthError(f"token service {shown}: the answer is not a JSON object")
        value = doc.get("token") or doc.get("access_token")
        if (
            not isinstance(value, str)
            or not value
            or len(value) > MAX_TOKEN_LEN
            or any(c in value for c in "\r\n\0 ")
        ):
            raise AuthError(f"token service {shown}: no usable token in the answer")
        lifetime = doc.get("expires_in")
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        lifetime = min(float(lifetime), 24 * 3600.0)
        return _Token(value, time.time() + max(lifetime - TOKEN_MARGIN, lifetime / 2))


def _merge_scopes(challenge_scope: str, requested: str) -> list[str]:
    out: list[str] = []
    for s in challenge_scope.split(" ") + requested.split(" "):
        if s and s not in out:
            out.append(s)
    return out


def _with_query(url: str, extra: list[tuple[str, str]]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + extra
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(query), "")
    )


def _basic_value(creds: Credentials | None) -> str:
    assert creds is not None
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def scope_for(repository: str, actions: str) -> str:
    """`repository:<ns/model>:<actions>` (actions: "pull" or "pull,push")."""
    return f"repository:{repository}:{actions}"
