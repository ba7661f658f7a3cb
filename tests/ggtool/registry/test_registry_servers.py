"""Pull/push against each kind of server: Basic auth, TLS, token auth, Ollama's registry shape."""

from __future__ import annotations

import pytest

from ggtool.errors import AuthError, NetworkError
from ggtool.registry import PullOptions, PushOptions, pull, push
from ggtool.registry.credentials import Credentials, save_login
from ggtool.registry.ollama_key import load_or_create_key
from ggtool.registry.transport import TransportOptions
from tests.ggtool.registry.registry_helpers import USERS, blob_bytes, fast, make_model, repo_name

pytestmark = pytest.mark.slow

ALICE = Credentials("alice", USERS["alice"])


def _round_trip(store, other_store, name, push_opts, pull_opts):
    model = make_model(store, name)
    pushed = push(name, store=store, options=push_opts)
    pulled = pull(name, store=other_store, options=pull_opts)
    got = other_store.get(name)
    assert got.model_id == model.model_id == pushed.digest.split(":")[1]
    assert blob_bytes(other_store, got) == blob_bytes(store, model)
    return pulled


def test_basic_auth_with_login(basic_registry, store, other_store):
    name = repo_name(basic_registry.host)
    save_login(basic_registry.host, "alice", USERS["alice"])
    _round_trip(
        store, other_store, name, PushOptions(transport=fast()), PullOptions(transport=fast())
    )


def test_basic_auth_without_credentials_is_refused(basic_registry, store):
    name = repo_name(basic_registry.host)
    make_model(store, name)
    with pytest.raises(AuthError) as e:
        push(name, store=store, options=PushOptions(transport=fast()))
    assert e.value.exit_code == 4 and "ggtool login" in str(e.value)


def test_basic_auth_wrong_password_is_refused(basic_registry, store):
    name = repo_name(basic_registry.host)
    make_model(store, name)
    with pytest.raises(AuthError):
        push(
            name,
            store=store,
            options=PushOptions(transport=fast(), credentials=Credentials("alice", "nope")),
        )


def test_tls_with_ca_file(tls_registry, pki, store, other_store):
    name = repo_name(tls_registry.host)
    t = fast(plain_http=False, ca_file=pki.ca_cert)
    _round_trip(store, other_store, name, PushOptions(transport=t), PullOptions(transport=t))


def test_tls_untrusted_certificate_fails_then_skip_verify_works(tls_registry, store):
    name = repo_name(tls_registry.host)
    make_model(store, name)
    with pytest.raises(NetworkError) as e:
        push(
            name, store=store, options=PushOptions(transport=fast(plain_http=False, max_retries=0))
        )
    assert "certificate" in str(e.value).lower()
    push(
        name,
        store=store,
        options=PushOptions(transport=fast(plain_http=False, insecure_skip_tls_verify=True)),
    )


def test_plain_http_against_tls_registry_fails_clearly(tls_registry, store):
    name = repo_name(tls_registry.host)
    make_model(store, name)
    with pytest.raises(NetworkError):
        push(name, store=store, options=PushOptions(transport=fast(max_retries=0)))


def test_token_auth_push_with_credentials_and_anonymous_pull(token_registry, store, other_store):
    name = repo_name(token_registry.registry.host)
    tokens = token_registry.tokens
    model = make_model(store, name)
    push(name, store=store, options=PushOptions(transport=fast(), credentials=ALICE))
    pushes = [r for r in tokens.token_requests if r["how"] == "basic"]
    assert pushes and all(any(s.endswith(":pull,push") for s in r["scopes"]) for r in pushes)
    before = len(tokens.token_requests)
    pull(name, store=other_store, options=PullOptions(transport=fast(), part_size=1 << 20))
    new = tokens.token_requests[before:]
    # one anonymous token, cached for the manifest, every HEAD and every ranged part
    assert [r["how"] for r in new] == ["anonymous"]
    assert other_store.get(name).model_id == model.model_id


def test_token_auth_bad_credentials(token_registry, store):
    name = repo_name(token_registry.registry.host)
    make_model(store, name)
    with pytest.raises(AuthError) as e:
        push(
            name,
            store=store,
            options=PushOptions(transport=fast(), credentials=Credentials("alice", "bad")),
        )
    assert "bad" not in str(e.value)  # the password never shows


def test_ollama_registry_signed_tokens_redirects_and_quirks(
    ollama_registry, store, other_store, monkeypatch
):
    reg = ollama_registry
    monkeypatch.setenv("GGTOOL_OLLAMA_AUTH_HOSTS", reg.host)
    key = load_or_create_key()
    reg.tokens.authorized_keys.add(key.public_b64)
    name = repo_name(reg.host)
    cdn_before = len(reg.cdn.requests)
    pulled = _round_trip(
        store,
        other_store,
        name,
        PushOptions(transport=fast()),
        PullOptions(transport=fast(), part_size=1 << 20),
    )
    cdn = reg.cdn.requests[cdn_before:]
    # every blob byte came from the CDN host, by ranged GETs, and no credentials went there
    assert any(r[0] == "GET" and "Range" in r[2] for r in cdn)
    assert reg.cdn.leaked_auth == 0
    assert pulled.downloaded_bytes == sum(b.size for b in pulled.blobs)
    hows = {r["how"] for r in reg.tokens.token_requests}
    assert hows == {"ed25519"}


def test_ollama_registry_unknown_key_is_refused_with_hint(ollama_registry, store, monkeypatch):
    monkeypatch.setenv("GGTOOL_OLLAMA_AUTH_HOSTS", ollama_registry.host)
    name = repo_name(ollama_registry.host)
    make_model(store, name)
    with pytest.raises(AuthError) as e:
        push(name, store=store, options=PushOptions(transport=fast()))
    assert "id_ed25519.pub" in str(e.value)


def test_ollama_realm_on_another_host_is_refused(ollama_registry, store, monkeypatch):
    # the token service's own port is not the registry host: a signed request must not go there
    monkeypatch.setenv("GGTOOL_OLLAMA_AUTH_HOSTS", ollama_registry.registry.host)
    name = repo_name(ollama_registry.registry.host)
    make_model(store, name)
    with pytest.raises(AuthError) as e:
        push(name, store=store, options=PushOptions(transport=fast()))
    assert "realm host" in str(e.value)


def test_http_scheme_needs_plain_http(open_registry, store):
    with pytest.raises(Exception) as e:
        pull(
            f"http://{open_registry.host}/a/b:c",
            store=store,
            options=PullOptions(transport=TransportOptions()),
        )
    assert "insecure protocol http" in str(e.value)
