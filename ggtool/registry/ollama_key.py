"""Ollama's registry identity: an ed25519 key at `~/.ollama/id_ed25519`, and its signatures.

The key files are the ones `ollama serve` makes (OpenSSH private key PEM, mode 0600, in a
0755 folder; `id_ed25519.pub` as an authorized_keys line), so ggtool and Ollama share one
identity. `GGTOOL_OLLAMA_KEY` points at another private key file (tests use it).

A token request is signed as Ollama signs it (server/auth.go): the bytes
`GET,<token URL>,<base64(hex(sha256("")))>`, sent as `Authorization: <pubkey b64>:<sig b64>`
where the public key is the base64 field of the authorized_keys line and the signature is
the raw 64-byte ed25519 signature, standard base64.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ggtool.atomic import atomic_output
from ggtool.errors import AuthError

# base64(hex(sha256(b""))): Ollama signs the digest of an empty body this way
EMPTY_BODY_SUM = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


def default_key_path() -> Path:
    raw = os.environ.get("GGTOOL_OLLAMA_KEY", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".ollama" / "id_ed25519"


@dataclass(frozen=True)
class OllamaKey:
    private: Ed25519PrivateKey
    path: Path

    @property
    def public_b64(self) -> str:
        """The base64 field of the authorized_keys line (SSH wire format of the key)."""
        line = self.private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return line.split(b" ")[1].decode()

    @property
    def authorized_key(self) -> str:
        return f"ssh-ed25519 {self.public_b64}"

    def sign(self, data: bytes) -> str:
        """`<pubkey b64>:<signature b64>`, Ollama's Authorization value."""
        sig = self.private.sign(data)
        return f"{self.public_b64}:{base64.b64encode(sig).decode()}"

    def sign_token_request(self, token_url: str) -> str:
        return self.sign(f"GET,{token_url},{EMPTY_BODY_SUM}".encode())


def load_or_create_key(path: Path | None = None) -> OllamaKey:
    """Load the key, generating it like `ollama serve` does when it is missing."""
    path = Path(path) if path is not None else default_key_path()
    if not path.exists():
        return _generate(path)
    try:
        raw = path.read_bytes()
        key = serialization.load_ssh_private_key(raw, password=None)
    except (OSError, ValueError, TypeError) as e:
        raise AuthError(f"cannot load the registry key {path}: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise AuthError(f"{path} is not an ed25519 key")
    return OllamaKey(key, path)


def _generate(path: Path) -> OllamaKey:
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    try:
        with atomic_output(path, overwrite=False) as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(pem)
    except FileExistsError:
        return load_or_create_key(path)  # another process made it first: use theirs
    pub = OllamaKey(key, path).authorized_key + "\n"
    pub_path = path.with_name(path.name + ".pub")
    with atomic_output(pub_path) as f:
        os.fchmod(f.fileno(), 0o644)
        f.write(pub.encode())
    return OllamaKey(key, path)
