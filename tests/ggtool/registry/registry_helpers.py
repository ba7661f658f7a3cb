"""Helpers for the registry tests: transport options, fresh repository names, models in a store."""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid

import pytest

from ggtool.manifest import (
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_TEMPLATE,
    Descriptor,
    ModelConfig,
    build_manifest,
    config_descriptor,
    layer_descriptor,
    params_bytes,
)
from ggtool.registry.transport import TransportOptions
from ggtool.store import Store, StoredModel
from tests.ggtool.registry.registry_servers import REGISTRY_BIN

# a skip on a developer's machine without the package; CI (CI set) installs it, so there it fails
needs_registry = pytest.mark.skipif(
    REGISTRY_BIN is None and not os.environ.get("CI"), reason="docker-registry is not installed"
)

USERS = {"alice": "wonder-land-7"}


def fast(**kw) -> TransportOptions:
    """Transport options for tests: plain HTTP, quick retries, 2 s stall timeout."""
    base = {
        "plain_http": True,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "stall_timeout": 2.0,
        "max_retries": 4,
    }
    base.update(kw)
    return TransportOptions(**base)


def repo_name(host: str, prefix: str = "m") -> str:
    """A fresh `host/ns/model:tag` so tests sharing a registry never collide."""
    return f"{host}/test/{prefix}-{uuid.uuid4().hex[:10]}:latest"


# -- models in a store ---------------------------------------------------------------------
def make_model(
    store: Store,
    name: str,
    *,
    model_size: int = 3 << 20,
    seed: bytes | None = None,
    template: str = "{{ .Prompt }}",
    from_: str = "",
    model_data: bytes | None = None,
) -> StoredModel:
    """A model written with the store API: random "weights", a template, params, config."""
    data = model_data if model_data is not None else _random_bytes(model_size, seed)
    with store.lease() as lease:
        model = store.put_bytes(data, lease=lease)
        tmpl = template.encode()
        store.put_bytes(tmpl, lease=lease)
        params = params_bytes({"temperature": 0.7, "stop": ["<|end|>"]})
        store.put_bytes(params, lease=lease)
        cfg = ModelConfig(
            model_format="gguf",
            model_family="llama",
            model_families=["llama"],
            model_type="1M",
            file_type="F16",
        ).to_bytes()
        store.put_bytes(cfg, lease=lease)
        layers = [
            Descriptor(MEDIA_TYPE_MODEL, model.digest, model.size, from_=from_),
            layer_descriptor(MEDIA_TYPE_TEMPLATE, tmpl),
            layer_descriptor(MEDIA_TYPE_PARAMS, params),
        ]
        manifest = build_manifest(config_descriptor(cfg), layers)
        stored, _ = store.write_manifest(name, manifest)
    return stored


def _random_bytes(n: int, seed: bytes | None) -> bytes:
    if seed is None:
        return secrets.token_bytes(n)
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


def blob_bytes(store: Store, model: StoredModel) -> dict[str, bytes]:
    return {d.digest: store.blob_path(d.digest).read_bytes() for d in model.manifest.blobs()}
