"""The HTTP layer in-process (no model needed): routes, error bodies and status codes for bad
requests, the DNS-rebinding guard, CORS, body limits, blob uploads, and a property test of
every request body in the server's OpenAPI document (no input may produce a 5xx)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggtool.server.app import create_app
from ggtool.server.config import ServerConfig, parse_host
from ggtool.server.security import host_allowed, origin_regex
from ggtool.store import Store
from tests.ggtool.server.openapi_strategies import operations

BASE = "http://127.0.0.1:11434"


def _client(tmp: Path, **cfg: Any) -> TestClient:
    config = ServerConfig(host=parse_host("127.0.0.1:11434"), **cfg)
    return TestClient(create_app(config, Store(tmp / "store")), base_url=BASE)


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path, max_body=64 * 1024) as c:
        yield c


def test_root_and_version(client: TestClient) -> None:
    r = client.get("/")
    assert (r.status_code, r.text) == (200, "Ollama is running")
    assert client.head("/").status_code == 200
    assert client.get("/api/version").json()["version"]
    assert client.get("/api/tags").json() == {"models": []}
    assert client.get("/api/ps").json() == {"models": []}
    assert client.get("/v1/models").json() == {"object": "list", "data": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("POST", "/api/generate", b"{not json", 400, "invalid JSON"),
        ("POST", "/api/generate", b"", 400, "missing request body"),
        ("POST", "/api/generate", {"model": 5}, 400, "invalid request: model"),
        ("POST", "/api/generate", {"model": "m", "prompt": ["x"]}, 400, "invalid request: prompt"),
        ("POST", "/api/generate", {"model": "m", "stream": "yes"}, 400, "invalid request: stream"),
        ("POST", "/api/generate", {"model": "ghost", "prompt": "hi"}, 404, "model 'ghost' not found"),
        ("POST", "/api/generate", {"model": "bad name!", "prompt": "hi"}, 400, 'name "bad name!" is invalid'),
        ("POST", "/api/generate", {"model": "", "prompt": "hi"}, 400, "model is required"),
        ("POST", "/api/generate", {"model": "m", "raw": True, "system": "s"}, 400, "raw mode does not support"),
        ("POST", "/api/generate", {"model": "m", "format": "xml"}, 400, "invalid format"),
        ("POST", "/api/generate", {"model": "m", "keep_alive": "forever"}, 400, "invalid duration"),
        ("POST", "/api/generate", {"model": "m", "top_logprobs": 21}, 400, "top_logprobs"),
        ("POST", "/api/chat", {"model": "ghost", "messages": [{"role": "user", "content": "x"}]}, 404, "not found"),
        ("POST", "/api/chat", {"model": "m", "messages": [{"content": "x"}]}, 400, "invalid request"),
        ("POST", "/api/chat", {"model": "m", "messages": "hi"}, 400, "invalid request"),
        ("POST", "/api/chat", {"model": "m", "tools": [{"type": "function"}],
                               "messages": [{"role": "user", "content": "x"}]}, 400, "invalid tool"),
        ("POST", "/api/embed", {"model": "m", "input": [1, 2]}, 400, "invalid request: input"),
        ("POST", "/api/embed", {"model": "ghost", "input": "x"}, 404, "not found"),
        ("POST", "/api/show", {"model": "ghost"}, 404, "model 'ghost' not found"),
        ("POST", "/api/show", {"model": "a/b/c/d/e"}, 400, "is invalid"),
        ("POST", "/api/copy", {"source": "ghost", "destination": "new"}, 404, 'model "ghost" not found'),
        ("POST", "/api/copy", {"source": "a", "destination": "bad name"}, 400, 'destination "bad name" is invalid'),
        ("DELETE", "/api/delete", {"model": "ghost"}, 404, "model 'ghost' not found"),
        ("DELETE", "/api/delete", {"model": "x:y:z!"}, 400, "is invalid"),
        ("POST", "/api/pull", {"model": "bad name"}, 400, "invalid model name"),
        ("POST", "/api/push", {"model": "bad name"}, 400, "invalid model name"),
        ("POST", "/api/create", {"model": "new"}, 400, "neither 'from' or 'files' was specified"),
        ("POST", "/api/create", {"model": "new", "files": {"../x.gguf": "sha256:" + "0" * 64}}, 400,
         "file path must be relative"),
        ("POST", "/api/create", {"model": "new", "files": {"m.gguf": "sha256:" + "0" * 64}}, 404, "not found"),
        ("HEAD", "/api/blobs/sha256:" + "a" * 64, None, 404, None),
        ("HEAD", "/api/blobs/sha256:zz", None, 400, None),
        ("POST", "/api/blobs/md5:abc", b"x", 400, "invalid digest format"),
        ("GET", "/api/nope", None, 404, "404 page not found"),
    ],
)
def test_bad_requests(client: TestClient, method: str, path: str, body: Any, status: int, error: str | None) -> None:
    content = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    r = client.request(method, path, content=content)
    assert r.status_code == status, r.text
    if error is not None:
        assert error in r.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "status", "kind", "message"),
    [
        ("/v1/chat/completions", {"model": "m", "messages": []}, 400, "invalid_request_error", "[] is too short"),
        ("/v1/chat/completions", {"model": "ghost", "messages": [{"role": "user", "content": "x"}]}, 404,
         "not_found_error", "not found"),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url",
         "image_url": {"url": "http://x/y.png"}}]}]}, 400, "invalid_request_error", "invalid image"),
        ("/v1/completions", {"model": "m", "prompt": ["a", "b"]}, 400, "invalid_request_error", "prompt must be a string"),
        ("/v1/embeddings", {"model": "m", "input": "x", "encoding_format": "hex"}, 400, "invalid_request_error", "encoding_format"),
        ("/v1/chat/completions", b"{", 400, "invalid_request_error", "invalid JSON"),
    ],
)
def test_openai_errors(client: TestClient, path: str, body: Any, status: int, kind: str, message: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post(path, content=content)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["type"] == kind and message in err["message"] and err["param"] is None and err["code"] is None
    assert client.get("/v1/models/ghost").json()["error"]["type"] == "not_found_error"


def test_curl_style_form_content_type_is_read_as_json(client: TestClient) -> None:
    r = client.post("/api/show", content=b'{"model": "ghost"}',
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 404


def test_body_limit(client: TestClient) -> None:
    big = json.dumps({"model": "m", "prompt": "x" * 100_000}).encode()
    r = client.post("/api/generate", content=big)
    assert r.status_code == 413 and "too large" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b" " * 8192

    r = client.post("/api/generate", content=chunks())
    assert r.status_code == 413


def test_blob_upload_is_verified_and_unbounded(client: TestClient, tmp_path: Path) -> None:
    data = b"\x00blob" * 40_000  # larger than the JSON body limit
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    bad = client.post(f"/api/blobs/sha256:{'1' * 64}", content=data)
    assert bad.status_code == 400 and "digest mismatch" in bad.json()["error"]
    assert not any((tmp_path / "store" / "blobs").glob("sha256-1111*"))
    assert client.post(f"/api/blobs/{digest}", content=data).status_code == 201
    assert client.head(f"/api/blobs/{digest}").status_code == 200
    assert client.post(f"/api/blobs/{digest}", content=data).status_code == 200  # already there
    assert (tmp_path / "store" / "blobs" / f"sha256-{digest[7:]}").read_bytes() == data
    leftovers = [p.name for p in (tmp_path / "store" / "blobs").iterdir() if not p.name.startswith("sha256-")]
    assert leftovers == []


@pytest.mark.parametrize(
    ("host", "ok"),
    [("127.0.0.1:11434", True), ("localhost", True), ("LOCALHOST:1", True), ("[::1]:11434", True),
     ("10.1.2.3", True), ("192.168.0.9:80", True), ("0.0.0.0", True), ("app.localhost", True),
     ("printer.local", True), ("svc.internal", True), ("", True),
     ("evil.example", False), ("evil.example:11434", False), ("localhost.evil.com", False),
     ("8.8.8.8", False)],
)
def test_host_guard_rules(host: str, ok: bool) -> None:
    assert host_allowed(host, hostname="myhost", local_ips=set()) is ok


def test_host_guard_in_the_app(client: TestClient) -> None:
    assert client.get("/api/version", headers={"Host": "evil.example:11434"}).status_code == 403
    assert client.get("/api/version", headers={"Host": "localhost:11434"}).status_code == 200
    assert client.options("/api/tags", headers={"Host": "localhost"}).status_code == 204


def test_host_guard_off_when_not_bound_to_loopback(tmp_path: Path) -> None:
    config = ServerConfig(host=parse_host("0.0.0.0:11434"))
    with TestClient(create_app(config, Store(tmp_path / "s")), base_url=BASE) as c:
        assert c.get("/api/version", headers={"Host": "evil.example"}).status_code == 200


def test_cors(tmp_path: Path) -> None:
    with _client(tmp_path, origins=["chrome-extension://*"]) as c:
        ok = c.get("/api/version", headers={"Origin": "http://localhost:3000"})
        assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
        ext = c.get("/api/version", headers={"Origin": "chrome-extension://abc"})
        assert ext.headers["access-control-allow-origin"] == "chrome-extension://abc"
        evil = c.get("/api/version", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in evil.headers
        pre = c.options("/api/chat", headers={"Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "content-type,x-stainless-os"})
        assert pre.status_code in (200, 204) and pre.headers["access-control-allow-origin"] == "http://127.0.0.1:8080"


def test_origin_regex_wildcards() -> None:
    import re

    rx = re.compile(origin_regex(["https://*.example.com"]))
    assert rx.match("https://a.example.com") and rx.match("vscode-webview://x") and not rx.match("https://example.org")


# -- property test over the OpenAPI document -------------------------------------------------
def _bodies(tmp: Path) -> tuple[TestClient, list[tuple[str, str, st.SearchStrategy[Any]]]]:
    app_client = _client(tmp)
    return app_client, operations(app_client.app.openapi(), skip={"/api/pull", "/api/push"})  # network


@pytest.fixture(scope="module")
def property_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, list]]:
    c, ops = _bodies(tmp_path_factory.mktemp("prop"))
    with c:
        yield c, ops


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_openapi_property_no_server_errors(property_client: tuple[TestClient, list], data: st.DataObject) -> None:
    c, ops = property_client
    method, path, strat = data.draw(st.sampled_from(ops))
    body = data.draw(strat)
    if path == "/api/create" and isinstance(body, dict):
        body.pop("from", None)  # a missing base model is pulled from the network
    r = c.request(method, path, content=json.dumps(body).encode())
    assert r.status_code < 500, (method, path, body, r.text)
    err = r.json().get("error") if r.status_code >= 400 and r.content else None
    if r.status_code >= 400:
        assert err, r.text
