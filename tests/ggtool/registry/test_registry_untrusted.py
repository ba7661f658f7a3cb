"""A registry that lies (a loopback server serving crafted answers): nothing bad reaches the store."""

from __future__ import annotations

import hashlib
import json

import pytest

from ggtool.errors import GgtoolError, VerificationError
from ggtool.manifest import MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_MODEL
from ggtool.registry import PullOptions, pull
from tests.ggtool.registry.registry_helpers import fast
from tests.ggtool.registry.registry_servers import EvilRegistry


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(layers: list[dict], config: bytes = b"{}") -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
            "config": {
                "mediaType": MEDIA_TYPE_DOCKER_CONFIG,
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()


@pytest.fixture
def evil():
    server = EvilRegistry().start()
    yield server
    server.stop()


def _serve(
    evil: EvilRegistry,
    layer_data: bytes,
    *,
    declared: dict | None = None,
    served: bytes | None = None,
):
    config = b"{}"
    desc = {"mediaType": MEDIA_TYPE_MODEL, "digest": _digest(layer_data), "size": len(layer_data)}
    desc.update(declared or {})
    evil.manifests["latest"] = (_manifest([desc], config), MEDIA_TYPE_DOCKER_MANIFEST)
    evil.blobs[desc["digest"]] = served if served is not None else layer_data
    evil.blobs[_digest(config)] = config
    return desc


def _assert_store_clean(store) -> None:
    if store.blobs_dir.exists():
        names = [p.name for p in store.blobs_dir.iterdir()]
        assert all(n == f"sha256-{hashlib.sha256(b'{}').hexdigest()}" for n in names), names
    assert not store.manifests_dir.exists() or not any(
        p.is_file() for p in store.manifests_dir.rglob("*")
    )


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("wrong bytes", VerificationError),
        ("longer than declared", VerificationError),
        ("head lies about size", VerificationError),
        ("path in digest", GgtoolError),
        ("other algorithm", GgtoolError),
        ("negative size", GgtoolError),
    ],
)
def test_lying_registry_cannot_corrupt_the_store(evil, store, case, error):
    data = b"GGUF" + bytes(range(256)) * 400
    if case == "wrong bytes":
        _serve(evil, data, served=data[:-1] + b"X")
    elif case == "longer than declared":
        _serve(evil, data, declared={"size": len(data) - 100})
    elif case == "head lies about size":
        desc = _serve(evil, data)
        evil.head_sizes[desc["digest"]] = len(data) + 5
    elif case == "path in digest":
        _serve(evil, data, declared={"digest": "sha256:../../../../etc/passwd"})
    elif case == "other algorithm":
        _serve(evil, data, declared={"digest": "sha512:" + "a" * 128})
    elif case == "negative size":
        _serve(evil, data, declared={"size": -1})
    with pytest.raises(error):
        pull(
            f"{evil.host}/evil/model:latest",
            store=store,
            options=PullOptions(transport=fast(), part_size=4096),
        )
    _assert_store_clean(store)


def test_manifest_too_large_is_refused(evil, store):
    evil.manifests["latest"] = (
        b'{"schemaVersion":2,' + b" " * (5 << 20) + b"}",
        MEDIA_TYPE_DOCKER_MANIFEST,
    )
    with pytest.raises(GgtoolError):
        pull(
            f"{evil.host}/evil/model:latest",
            store=store,
            options=PullOptions(transport=fast(max_retries=0)),
        )
    _assert_store_clean(store)


def test_manifest_not_json(evil, store):
    evil.manifests["latest"] = (b"<html>hello</html>", "text/html")
    with pytest.raises(GgtoolError):
        pull(f"{evil.host}/evil/model:latest", store=store, options=PullOptions(transport=fast()))
    _assert_store_clean(store)
