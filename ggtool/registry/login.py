"""`login` / `logout`: check credentials against a registry, then store or forget them."""

from __future__ import annotations

from pathlib import Path

from ggtool.errors import AuthError, UsageError
from ggtool.registry.auth import Authenticator
from ggtool.registry.credentials import Credentials, normalize_host, remove_login, save_login
from ggtool.registry.transport import RegistryClient, TransportOptions


def verify_credentials(host: str, credentials: Credentials, transport: TransportOptions) -> None:
    """GET /v2/ with the credentials (answering a token or Basic challenge); AuthError if refused."""
    auth = Authenticator(host, credentials=credentials)
    if auth.uses_ollama_key():
        raise UsageError(
            f"{host} authenticates with your ed25519 key, not a password",
            hint="add ~/.ollama/id_ed25519.pub to your account there instead of logging in",
        )
    with RegistryClient(host, transport, auth) as client:
        client.request("GET", "/v2/", scope="", what=f"login to {host}", ok={200})


def login(
    registry: str,
    username: str,
    password: str,
    *,
    transport: TransportOptions | None = None,
    verify: bool = True,
) -> Path:
    host = normalize_host(registry)
    if not host:
        raise UsageError("login needs a registry host, e.g. `ggtool login localhost:5000`")
    creds = Credentials(username, password, source="login")
    if verify:
        try:
            verify_credentials(host, creds, transport or TransportOptions())
        except AuthError as e:
            raise AuthError(
                f"login to {host} failed: {e.message}", hint="check the username and password"
            ) from None
    return save_login(host, username, password)


def logout(registry: str) -> bool:
    return remove_login(registry)
