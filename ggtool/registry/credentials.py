"""Where registry credentials come from, in order: `ggtool login`, Docker's config, the environment.

- ggtool's own file: `$GGTOOL_HOME/credentials.json` (default `~/.ggtool`), mode 0600, in
  Docker's `{"auths": {host: {"auth": base64("user:password")}}}` shape.
- Docker: `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): `credHelpers[host]`,
  then `credsStore`, then `auths[host]` (`auth`, or `username`/`password`, or
  `identitytoken`). Helpers are the `docker-credential-<name>` executables on PATH.
- Environment: `GGTOOL_REGISTRY_USERNAME` / `GGTOOL_REGISTRY_PASSWORD`, for the one host
  `GGTOOL_REGISTRY_HOST` names (for any host when it is unset).

Secrets never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ggtool.atomic import atomic_output
from ggtool.errors import AuthError, UsageError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)  # an OAuth2 refresh token (Docker)
    source: str = ""  # where they came from, for messages: "ggtool login", "docker config", …

    def __repr__(self) -> str:  # never the secrets
        return f"Credentials(username={self.username!r}, source={self.source!r})"

    @property
    def usable(self) -> bool:
        return bool(self.identity_token or (self.username and self.password))


def ggtool_home() -> Path:
    raw = os.environ.get("GGTOOL_HOME", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".ggtool"


def credentials_file() -> Path:
    return ggtool_home() / "credentials.json"


def normalize_host(host: str) -> str:
    """`https://Host:5000/v2/` → `host:5000`: the key credentials are stored under."""
    h = host.strip()
    if "://" in h:
        h = h.split("://", 1)[1]
    h = h.split("/", 1)[0].lower()
    return h


def _docker_key_matches(key: str, host: str) -> bool:
    k = normalize_host(key)
    if host in _DOCKER_HUB_HOSTS:
        return k in _DOCKER_HUB_HOSTS
    return k == host


# -- ggtool's own store ---------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise AuthError(f"cannot read {path}: {e}") from e
    return data if isinstance(data, dict) else {}


def _decode_auth(value: object) -> tuple[str, str] | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        raw = base64.b64decode(value, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, pw = raw.partition(":")
    return (user, pw) if sep else None


def save_login(host: str, username: str, password: str) -> Path:
    """Store credentials for `host` in ggtool's file (0600, written atomically)."""
    host = normalize_host(host)
    if not host or not username or not password:
        raise UsageError("login needs a registry, a username and a password")
    if ":" in username:
        raise UsageError("a username cannot contain ':'")
    path = credentials_file()
    data = _read_json(path)
    auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
    auths[host] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    data["auths"] = auths
    _write_private(path, data)
    return path


def remove_login(host: str) -> bool:
    """Forget `host`; True if something was removed."""
    host = normalize_host(host)
    path = credentials_file()
    data = _read_json(path)
    auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
    if host not in auths:
        return False
    del auths[host]
    data["auths"] = auths
    _write_private(path, data)
    return True


def _write_private(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with atomic_output(path) as f:
        os.fchmod(f.fileno(), 0o600)  # before any secret byte is written
        f.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def ggtool_credentials(host: str) -> Credentials | None:
    auths = _read_json(credentials_file()).get("auths")
    if not isinstance(auths, dict):
        return None
    entry = auths.get(host)
    if isinstance(entry, dict):
        pair = _decode_auth(entry.get("auth"))
        if pair:
            return Credentials(pair[0], pair[1], source="ggtool login")
    return None


# -- Docker ---------------------------------------------------------------------------------
def docker_config_file() -> Path:
    raw = os.environ.get("DOCKER_CONFIG", "").strip()
    base = Path(raw).expanduser() if raw else Path.home() / ".docker"
    return base / "config.json"


def docker_credentials(host: str) -> Credentials | None:
    config = _read_json(docker_config_file())
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if isinstance(helper, str) and _docker_key_matches(key, host):
                return _from_helper(helper, key)
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        found = _from_helper(store, DOCKER_HUB_KEY if host in _DOCKER_HUB_HOSTS else host)
        if found is not None:
            return found
    auths = config.get("auths")
    if isinstance(auths, dict):
        for key, entry in auths.items():
            if not (isinstance(entry, dict) and _docker_key_matches(key, host)):
                continue
            token = entry.get("identitytoken")
            pair = _decode_auth(entry.get("auth"))
            user = pair[0] if pair else str(entry.get("username") or "")
            pw = pair[1] if pair else str(entry.get("password") or "")
            creds = Credentials(
                user,
                pw,
                identity_token=token if isinstance(token, str) else "",
                source="docker config",
            )
            if creds.usable:
                return creds
    return None


def _from_helper(helper: str, server: str) -> Credentials | None:
    """Ask `docker-credential-<helper> get` (the credential-helper protocol)."""
    if not helper.replace("-", "").replace("_", "").isalnum():
        return None  # only plain helper names become an executable name
    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "get"], input=server.encode(), capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None  # "credentials not found in native keychain" and the like
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    user, secret = str(doc.get("Username") or ""), str(doc.get("Secret") or "")
    if not secret:
        return None
    if user == "<token>":
        return Credentials(identity_token=secret, source=f"docker-credential-{helper}")
    return Credentials(user, secret, source=f"docker-credential-{helper}")


# -- environment ----------------------------------------------------------------------------
def env_credentials(host: str) -> Credentials | None:
    user = os.environ.get("GGTOOL_REGISTRY_USERNAME", "")
    pw = os.environ.get("GGTOOL_REGISTRY_PASSWORD", "")
    only = os.environ.get("GGTOOL_REGISTRY_HOST", "").strip()
    if not (user and pw):
        return None
    if only and normalize_host(only) != host:
        return None
    return Credentials(user, pw, source="environment")


def find_credentials(host: str) -> Credentials | None:
    """The first credentials found for `host`: ggtool login, Docker, environment."""
    host = normalize_host(host)
    found = ggtool_credentials(host)  # ggtool's own file: a broken one is an error
    if found is None:
        with contextlib.suppress(AuthError):  # Docker's file is another tool's business
            found = docker_credentials(host)
    if found is None:
        found = env_credentials(host)
    return found if found is not None and found.usable else None
