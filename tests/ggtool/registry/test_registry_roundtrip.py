"""Round trips against a real docker-registry: push → rm → pull, mounts, cache hits."""

from __future__ import annotations

import pytest

from ggtool.registry import PullOptions, PushOptions, pull, push
from tests.ggtool.registry.registry_helpers import blob_bytes, fast, make_model, repo_name

pytestmark = pytest.mark.slow


def test_push_rm_pull_is_byte_identical(open_registry, store):
    name = repo_name(open_registry.host)
    model = make_model(store, name, model_size=5 << 20)
    before = blob_bytes(store, model)
    pushed = push(name, store=store, options=PushOptions(transport=fast()))
    assert pushed.digest == f"sha256:{model.model_id}"
    assert len(pushed.uploaded) == 4
    store.remove(name)
    assert not any(store.has_blob(d) for d in before)
    events = []
    result = pull(
        name,
        store=store,
        options=PullOptions(transport=fast(), part_size=1 << 20),
        progress=events.append,
    )
    again = store.get(name)
    assert again.model_id == model.model_id
    assert blob_bytes(store, again) == before
    assert result.downloaded_bytes == sum(len(b) for b in before.values())
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "writing manifest" in statuses and "verifying sha256 digest" in statuses
    # a second pull downloads nothing
    second = pull(name, store=store, options=PullOptions(transport=fast()))
    assert second.downloaded_bytes == 0 and len(second.cached) == 4


def test_cross_repository_mount(open_registry, store, other_store):
    base = repo_name(open_registry.host, "base")
    base_model = make_model(store, base, model_size=2 << 20, seed=b"base")
    push(base, store=store, options=PushOptions(transport=fast()))
    # a derived model reuses the base's weights, recording where they came from (as create does)
    derived = repo_name(open_registry.host, "derived")
    weights = store.blob_path(base_model.manifest.model_layer.digest).read_bytes()
    make_model(
        store, derived, model_data=weights, template="{{ .System }} {{ .Prompt }}", from_=base
    )
    result = push(derived, store=store, options=PushOptions(transport=fast()))
    assert result.mounted == [base_model.manifest.model_layer.digest]
    assert base_model.manifest.model_layer.digest not in result.uploaded
    pull(derived, store=other_store, options=PullOptions(transport=fast()))
    assert other_store.blob_path(base_model.manifest.model_layer.digest).read_bytes() == weights


def test_push_again_skips_everything(open_registry, store):
    name = repo_name(open_registry.host)
    make_model(store, name)
    push(name, store=store, options=PushOptions(transport=fast()))
    again = push(name, store=store, options=PushOptions(transport=fast()))
    assert again.uploaded == [] and len(again.skipped) == 4 and again.uploaded_bytes == 0


def test_chunked_push_resumes_after_interruption(open_registry, fault_proxy, store, other_store):
    from ggtool.errors import NetworkError
    from tests.ggtool.registry.registry_servers import Fault

    name = fault_proxy.host + repo_name(open_registry.host)[len(open_registry.host) :]
    size = 5 << 20
    make_model(store, name, model_size=size)
    opts = PushOptions(transport=fast(max_retries=1), chunk_size=1 << 20, monolithic_max=1 << 19)
    # the registry accepts two chunks, then every PATCH fails
    fault_proxy.faults = [
        Fault("status", status=500, times=-1, skip=2, methods=("PATCH",), target="upload")
    ]
    with pytest.raises(NetworkError):
        push(name, store=store, options=opts)
    fault_proxy.faults = []
    result = push(name, store=store, options=opts)
    assert 0 < result.uploaded_bytes < size + 4096  # the model layer resumed after 2 MiB
    assert result.uploaded_bytes <= size - (2 << 20) + 4096
    pull(name, store=other_store, options=PullOptions(transport=fast()))
    assert other_store.get(name).model_id == store.get(name).model_id


def test_server_ignoring_range(open_registry, fault_proxy, store, other_store):
    from tests.ggtool.registry.registry_servers import Fault

    name = repo_name(open_registry.host)
    model = make_model(store, name, model_size=3 << 20)
    push(name, store=store, options=PushOptions(transport=fast()))
    via = fault_proxy.host + name[len(open_registry.host) :]
    fault_proxy.faults = [Fault("norange", times=-1)]
    pull(via, store=other_store, options=PullOptions(transport=fast(), part_size=1 << 20))
    assert blob_bytes(other_store, other_store.get(via)) == blob_bytes(store, model)


def test_pull_by_digest_pin(open_registry, store, other_store):
    from ggtool.errors import VerificationError

    name = repo_name(open_registry.host)
    model = make_model(store, name)
    push(name, store=store, options=PushOptions(transport=fast()))
    pinned = f"{name}@sha256:{model.model_id}"
    pull(pinned, store=other_store, options=PullOptions(transport=fast()))
    assert other_store.get(name).model_id == model.model_id
    with pytest.raises((VerificationError, Exception)):
        pull(f"{name}@sha256:{'0' * 64}", store=other_store, options=PullOptions(transport=fast()))


def test_pull_replacing_a_manifest_removes_unused_layers(open_registry, store, other_store):
    name = repo_name(open_registry.host)
    first = make_model(store, name, seed=b"one")
    push(name, store=store, options=PushOptions(transport=fast()))
    pull(name, store=other_store, options=PullOptions(transport=fast()))
    second = make_model(store, name, seed=b"two")
    push(name, store=store, options=PushOptions(transport=fast()))
    events = []
    result = pull(
        name, store=other_store, options=PullOptions(transport=fast()), progress=events.append
    )
    assert result.removed == [first.manifest.model_layer.digest]
    assert "removing unused layers" in [e.status for e in events]
    assert other_store.get(name).model_id == second.model_id


def test_proxy_from_environment(open_registry, store, other_store, monkeypatch):
    from tests.ggtool.registry.registry_servers import ForwardProxy

    name = repo_name(open_registry.host)
    model = make_model(store, name)
    push(name, store=store, options=PushOptions(transport=fast()))
    proxy = ForwardProxy().start()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        pull(name, store=other_store, options=PullOptions(transport=fast(), part_size=1 << 20))
    finally:
        proxy.stop()
    seen = [path for _m, path, _h in proxy.requests]
    assert any("/manifests/" in p for p in seen)  # httpx went through it
    assert sum("/blobs/sha256:" in p for p in seen) >= 3  # and so did the ranged blob GETs
    assert other_store.get(name).model_id == model.model_id
