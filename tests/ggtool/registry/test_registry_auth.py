"""Auth pieces that need no server: challenges, credential sources, Ollama's key and signature."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ggtool.errors import UsageError
from ggtool.registry.auth import Authenticator, parse_challenges
from ggtool.registry.credentials import (
    Credentials,
    credentials_file,
    find_credentials,
    remove_login,
    save_login,
)
from ggtool.registry.ollama_key import EMPTY_BODY_SUM, load_or_create_key


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull"',
            [
                (
                    "bearer",
                    {
                        "realm": "https://auth.example.com/token",
                        "service": "registry.example.com",
                        "scope": "repository:a/b:pull",
                    },
                )
            ],
        ),
        (
            'Bearer realm="https://ollama.com/token", service="ollama.com", scope="repository:library/x:pull repository:library/y:pull"',
            [
                (
                    "bearer",
                    {
                        "realm": "https://ollama.com/token",
                        "service": "ollama.com",
                        "scope": "repository:library/x:pull repository:library/y:pull",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
        (
            'Basic realm="a, b", Bearer realm="r"',
            [("basic", {"realm": "a, b"}), ("bearer", {"realm": "r"})],
        ),
        (
            "bearer realm=unquoted,service=svc",
            [("bearer", {"realm": "unquoted", "service": "svc"})],
        ),
        ('Bearer realm="esc\\"aped"', [("bearer", {"realm": 'esc"aped'})]),
        ("", []),
        ("Negotiate", [("negotiate", {})]),
    ],
)
def test_parse_challenges(header: str, expected: list) -> None:
    got = [(c.scheme, c.params) for c in parse_challenges(header)]
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parse_challenges_never_raises(header: str) -> None:
    for c in parse_challenges([header, header]):
        assert isinstance(c.scheme, str) and isinstance(c.params, dict)


def test_login_file_is_private_and_round_trips(isolated_home: Path) -> None:
    path = save_login("https://LocalHost:5000/v2/", "bob", "pa:ss")
    assert path == credentials_file() and path.parent == isolated_home / ".ggtool"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    creds = find_credentials("localhost:5000")
    assert creds is not None and (creds.username, creds.password, creds.source) == (
        "bob",
        "pa:ss",
        "ggtool login",
    )
    assert "pa:ss" not in repr(creds) and "pa:ss" not in str(creds)
    assert remove_login("localhost:5000") is True
    assert remove_login("localhost:5000") is False
    assert find_credentials("localhost:5000") is None


def test_login_rejects_colon_in_username() -> None:
    with pytest.raises(UsageError):
        save_login("h:1", "a:b", "pw")


def _docker_config(home: Path, doc: dict) -> None:
    d = home / ".docker"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(doc))


def test_docker_config_auths(isolated_home: Path) -> None:
    auth = base64.b64encode(b"carol:hunter2").decode()
    _docker_config(
        isolated_home,
        {
            "auths": {
                "https://reg.example:443": {"auth": auth},
                "other.example": {"username": "u", "password": "p"},
            }
        },
    )
    c = find_credentials("reg.example:443")
    assert c is not None and (c.username, c.password, c.source) == (
        "carol",
        "hunter2",
        "docker config",
    )
    c2 = find_credentials("other.example")
    assert c2 is not None and (c2.username, c2.password) == ("u", "p")
    assert find_credentials("nobody.example") is None


def _helper(folder: Path, name: str, answers: dict[str, dict]) -> None:
    """A real credential helper executable speaking the docker-credential protocol."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / f"docker-credential-{name}"
    exe.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"answers = {json.dumps(answers)!r}\n"
        "answers = json.loads(answers)\n"
        "assert sys.argv[1] == 'get'\n"
        "server = sys.stdin.read().strip()\n"
        "if server not in answers:\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n"
        "print(json.dumps(answers[server]))\n"
    )
    exe.chmod(0o755)


def test_docker_cred_helpers_and_store(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = isolated_home / "bin"
    _helper(
        bin_dir,
        "ggtest",
        {"helped.example": {"ServerURL": "helped.example", "Username": "h", "Secret": "s1"}},
    )
    _helper(bin_dir, "ggstore", {"stored.example": {"Username": "<token>", "Secret": "refresh-me"}})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _docker_config(
        isolated_home, {"credHelpers": {"helped.example": "ggtest"}, "credsStore": "ggstore"}
    )
    c = find_credentials("helped.example")
    assert c is not None and (c.username, c.password, c.source) == (
        "h",
        "s1",
        "docker-credential-ggtest",
    )
    t = find_credentials("stored.example")
    assert t is not None and t.identity_token == "refresh-me" and t.username == ""
    assert find_credentials("missing.example") is None


def test_env_credentials_and_precedence(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GGTOOL_REGISTRY_USERNAME", "envuser")
    monkeypatch.setenv("GGTOOL_REGISTRY_PASSWORD", "envpw")
    monkeypatch.setenv("GGTOOL_REGISTRY_HOST", "env.example")
    assert find_credentials("elsewhere.example") is None
    c = find_credentials("env.example")
    assert c is not None and c.source == "environment"
    save_login("env.example", "loginuser", "loginpw")
    c = find_credentials("env.example")
    assert c is not None and c.username == "loginuser"  # ggtool login wins


def test_ollama_key_generated_like_ollama(isolated_home: Path) -> None:
    path = isolated_home / ".ollama" / "id_ed25519"
    key = load_or_create_key()
    assert key.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    pub = path.with_name("id_ed25519.pub").read_text()
    assert pub.startswith("ssh-ed25519 AAAA") and pub.endswith("\n") and len(pub.split()) == 2
    # ssh-keygen, a client nobody here wrote, reads the key and derives the same public key
    if subprocess.run(["which", "ssh-keygen"], capture_output=True).returncode == 0:
        derived = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True, check=True
        )
        assert derived.stdout.split()[:2] == pub.split()[:2]
    again = load_or_create_key()
    assert again.public_b64 == key.public_b64  # loaded, not regenerated


def test_ollama_signature_verifies(isolated_home: Path) -> None:
    key = load_or_create_key()
    url = "https://ollama.com/token?nonce=abc&scope=repository%3Alibrary%2Fx%3Apull&service=ollama.com&ts=1"
    value = key.sign_token_request(url)
    pub_b64, sig_b64 = value.split(":")
    assert pub_b64 == key.public_b64
    pub = serialization.load_ssh_public_key(f"ssh-ed25519 {pub_b64}".encode())
    assert isinstance(pub, Ed25519PublicKey)
    pub.verify(base64.b64decode(sig_b64), f"GET,{url},{EMPTY_BODY_SUM}".encode())
    assert (
        EMPTY_BODY_SUM
        == "ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ=="
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [("registry.ollama.ai", True), ("hf.co", True), ("localhost:5000", False), ("ghcr.io", False)],
)
def test_which_hosts_use_the_ollama_key(host: str, expected: bool) -> None:
    assert Authenticator(host).uses_ollama_key() is expected


def test_ollama_auth_hosts_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GGTOOL_OLLAMA_AUTH_HOSTS", "127.0.0.1:9999, mirror.example")
    assert Authenticator("127.0.0.1:9999").uses_ollama_key()
    assert Authenticator("mirror.example").uses_ollama_key()


def test_credentials_repr_hides_secrets() -> None:
    c = Credentials("u", "topsecret", identity_token="tok-secret", source="x")
    assert "topsecret" not in repr(c) and "tok-secret" not in repr(c)
