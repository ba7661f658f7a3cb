"""Registry fixtures: real docker-registry processes and loopback stand-ins (registry_servers.py).

Servers are started once per test session and shared; every test uses its own repository
names, so they do not see each other's data. Each test runs with HOME, GGTOOL_HOME,
DOCKER_CONFIG and the Ollama key pointed into its tmp folder and proxies cleared.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fixtures.components import require_component
from ggtool.store import Store
from tests.ggtool.registry.registry_helpers import USERS
from tests.ggtool.registry.registry_servers import (
    REGISTRY_BIN,
    CdnServer,
    FaultProxy,
    OllamaFront,
    Pki,
    RegistryServer,
    TokenService,
    free_port,
    htpasswd_auth,
    make_pki,
)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GGTOOL_HOME", str(home / ".ggtool"))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.setenv("GGTOOL_OLLAMA_KEY", str(home / ".ollama" / "id_ed25519"))
    for var in list(os.environ):
        if var.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") or var.startswith(
            ("GGTOOL_REGISTRY_", "GGTOOL_OLLAMA_AUTH_HOSTS", "OLLAMA_MODELS", "GGTOOL_MODELS")
        ):
            monkeypatch.delenv(var, raising=False)
    return home


# -- servers --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registries")


@pytest.fixture(scope="session")
def open_registry(servers_dir: Path) -> Iterator[RegistryServer]:
    if REGISTRY_BIN is None:
        require_component("docker-registry", False, "apt-get install docker-registry")
    reg = RegistryServer(servers_dir / "open").start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(servers_dir: Path) -> Iterator[RegistryServer]:
    if REGISTRY_BIN is None:
        require_component("docker-registry", False, "apt-get install docker-registry")
    folder = servers_dir / "basic"
    reg = RegistryServer(folder, auth=htpasswd_auth(folder, USERS)).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def pki(servers_dir: Path) -> Pki:
    return make_pki(servers_dir / "pki")


@pytest.fixture(scope="session")
def tls_registry(servers_dir: Path, pki: Pki) -> Iterator[RegistryServer]:
    if REGISTRY_BIN is None:
        require_component("docker-registry", False, "apt-get install docker-registry")
    reg = RegistryServer(servers_dir / "tls", tls=pki).start()
    yield reg
    reg.stop()


@dataclass
class TokenRegistry:
    registry: RegistryServer
    tokens: TokenService


@pytest.fixture(scope="session")
def token_registry(servers_dir: Path) -> Iterator[TokenRegistry]:
    """registry:2 with `auth: token:` and our token service (Basic users, anonymous pull)."""
    if REGISTRY_BIN is None:
        require_component("docker-registry", False, "apt-get install docker-registry")
    folder = servers_dir / "token"
    tokens = TokenService(folder, users=USERS, anonymous_pull=True).start()
    reg = RegistryServer(folder, auth=tokens.registry_auth()).start()
    yield TokenRegistry(reg, tokens)
    reg.stop()
    tokens.stop()


@dataclass
class OllamaRegistry:
    """Ollama's registry stood in: `host` is what clients use (the front)."""

    host: str
    front: OllamaFront
    cdn: CdnServer
    tokens: TokenService
    registry: RegistryServer


@pytest.fixture(scope="session")
def ollama_registry(servers_dir: Path) -> Iterator[OllamaRegistry]:
    if REGISTRY_BIN is None:
        require_component("docker-registry", False, "apt-get install docker-registry")
    folder = servers_dir / "ollama"
    front_port = free_port()
    tokens = TokenService(folder).start()
    reg = RegistryServer(
        folder, auth=tokens.registry_auth(realm=f"http://127.0.0.1:{front_port}/token")
    ).start()
    cdn = CdnServer(reg.host, tokens).start()
    front = OllamaFront(reg.host, tokens, cdn, front_port).start()
    yield OllamaRegistry(front.host, front, cdn, tokens, reg)
    front.stop()
    cdn.stop()
    reg.stop()
    tokens.stop()


@pytest.fixture
def fault_proxy(open_registry: RegistryServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(open_registry.host).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def other_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store2")
