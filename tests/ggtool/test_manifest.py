"""Manifests, descriptors, config blobs and Go-compatible JSON (golden bytes from Ollama's tests)."""

from __future__ import annotations

import contextlib
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ggtool.manifest import (
    MAX_LAYERS,
    MAX_MANIFEST_BYTES,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    ImageIndex,
    InvalidDigestError,
    InvalidManifestError,
    Manifest,
    ModelConfig,
    build_manifest,
    config_descriptor,
    digests_in,
    go_float,
    go_json,
    go_json_line,
    messages_bytes,
    params_bytes,
    parse_index,
    parse_manifest,
    parse_manifest_or_index,
    validate_digest,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- golden bytes: digests Ollama's own server tests expect (server/routes_create_test.go) -------
OLLAMA_TEST_CONFIG = ModelConfig(
    model_format="gguf", model_family="test", model_families=["test"], model_type="0", file_type="unknown"
)


def test_config_blob_matches_ollama_golden_digest() -> None:
    data = OLLAMA_TEST_CONFIG.to_bytes()
    assert data == (
        b'{"model_format":"gguf","model_family":"test","model_families":["test"],"model_type":"0",'
        b'"file_type":"unknown","architecture":"amd64","os":"linux"}\n'
    )
    assert sha(data) == "99759ad5b91e723db0393d698ffbb448b1b7df5ff6377a108c49254583b1bc8c"


@pytest.mark.parametrize(
    ("params", "golden"),
    [
        ({"temperature": 1, "top_k": 10, "stop": ["USER:", "ASSISTANT:"]},
         "1d0ad71299d48c2fb7ae2b98e683643e771f8a5b72be34942af90d97a91c1e37"),
        ({"temperature": 0.6, "top_k": 10, "top_p": 0.7, "stop": ["USER:", "ASSISTANT:"]},
         "e29a7b3c47287a2489c895d21fe413c20f859a85d20e749492f52a838e36e1ba"),
        # '<' and '>' are HTML-escaped by Go's encoder
        ({"temperature": 0.6, "top_k": 10, "top_p": 0.7, "stop": ["<|endoftext|>"]},
         "12f58bb75cb3042d69a7e013ab87fb3c3c7088f50ddc62f0c77bd332f0d44d35"),
    ],
)
def test_params_layer_matches_ollama_golden_digest(params: dict, golden: str) -> None:
    assert sha(params_bytes(params)) == golden


@pytest.mark.parametrize(
    ("messages", "golden"),
    [
        ([{"role": "assistant", "content": "What is my purpose?"}, {"role": "user", "content": "You run tests."},
          {"role": "assistant", "content": "Oh, my god."}],
         "298baeaf6928a60cf666d88d64a1ba606feb43a2865687c39e40652e407bffc4"),
        ([{"role": "assistant", "content": "You're a test, Harry."}, {"role": "user", "content": "I-I'm a what?"},
          {"role": "assistant", "content": "A test. And a thumping good one at that, I'd wager."}],
         "a60ecc9da299ec7ede453f99236e5577fd125e143689b646d9f0ddc9971bf4db"),
    ],
)
def test_messages_layer_matches_ollama_golden_digest(messages: list, golden: str) -> None:
    assert sha(messages_bytes(messages)) == golden


def test_built_manifest_bytes_are_ollamas_layout() -> None:
    cfg = OLLAMA_TEST_CONFIG.to_bytes()
    layer = Descriptor(MEDIA_TYPE_MODEL, "sha256:89a2116c3a82d6a97f59f748d86ed4417214353fd178ee54df418fde32495fad", 68, from_="test.gguf")
    m = build_manifest(config_descriptor(cfg), [layer])
    assert m.raw == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        b'"config":{"mediaType":"application/vnd.docker.container.image.v1+json",'
        b'"digest":"sha256:99759ad5b91e723db0393d698ffbb448b1b7df5ff6377a108c49254583b1bc8c","size":' + str(len(cfg)).encode() + b'},'
        b'"layers":[{"mediaType":"application/vnd.ollama.image.model",'
        b'"digest":"sha256:89a2116c3a82d6a97f59f748d86ed4417214353fd178ee54df418fde32495fad","size":68,"from":"test.gguf"}]}\n'
    )
    assert m.model_id == sha(m.raw)
    assert parse_manifest(m.raw).to_bytes() == m.raw


# -- Go's encoding/json ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("<a href='x'>&</a>", '"\\u003ca href=\'x\'\\u003e\\u0026\\u003c/a\\u003e"'),
        ("line\nnext\ttab\r\b\f", '"line\\nnext\\ttab\\r\\b\\f"'),
        ("\x01\x1f\x7f", '"\\u0001\\u001f\x7f"'),
        ("sep\u2028par\u2029", '"sep\\u2028par\\u2029"'),
        ("héllo 你好 👋", '"héllo 你好 👋"'),
        ('quote " back \\', '"quote \\" back \\\\"'),
        ("\ud800", '"\ufffd"'),  # invalid UTF-8 / lone surrogate -> U+FFFD
        (None, "null"),
        (True, "true"),
        ([], "[]"),
        ({}, "{}"),
        (9223372036854775807, "9223372036854775807"),
    ],
)
def test_go_json_values(value: object, encoded: str) -> None:
    assert go_json(value).decode() == encoded


@pytest.mark.parametrize(
    ("value", "bits", "encoded"),
    [
        (0.0, 64, "0"),
        (1.0, 64, "1"),
        (4096.0, 64, "4096"),
        (0.7, 64, "0.7"),
        (0.1 + 0.2, 64, "0.30000000000000004"),
        (1e20, 64, "100000000000000000000"),
        (1e21, 64, "1e+21"),
        (1.5e-7, 64, "1.5e-7"),  # Go trims e-07 to e-7
        (1e-6, 64, "0.000001"),
        (-2.5e-10, 64, "-2.5e-10"),
        (0.7, 32, "0.7"),
        (0.1, 32, "0.1"),
        (16777217.0, 32, "16777216"),
        (9.223372036854776e18, 64, "9223372036854776000"),  # shortest digits, zero-padded
    ],
)
def test_go_float_format(value: float, bits: int, encoded: str) -> None:
    assert go_float(value, bits) == encoded


def test_go_float_rejects_nan() -> None:
    with pytest.raises(ValueError):
        go_float(float("nan"))


def test_go_json_line_has_trailing_newline_and_struct_order() -> None:
    assert go_json_line({"b": 1, "a": 2}) == b'{"b":1,"a":2}\n'


# -- config blob -------------------------------------------------------------------------------
def test_config_omitempty_and_field_order() -> None:
    cfg = ModelConfig(model_format="gguf", model_family="llama", model_families=["llama"], model_type="1B",
                      file_type="Q4_K_M", renderer="r", requires="0.14.0", capabilities=["completion"],
                      context_length=4096)
    assert list(json.loads(cfg.to_bytes())) == [
        "model_format", "model_family", "model_families", "model_type", "file_type", "renderer",
        "requires", "capabilities", "context_length", "architecture", "os",
    ]
    assert ModelConfig().to_bytes() == (
        b'{"model_format":"","model_family":"","model_families":null,"model_type":"","file_type":"",'
        b'"architecture":"amd64","os":"linux"}\n'
    )


def test_config_tolerates_rootfs_and_odd_types() -> None:
    raw = json.dumps({
        "model_format": "gguf", "model_family": "llama", "model_families": ["llama"], "model_type": "8B",
        "file_type": "Q4_0", "rootfs": {"type": "layers", "diff_ids": [D1]}, "context_length": "x",
        "architecture": "amd64", "os": "linux", "draft": {"model_format": "gguf", "architecture": "qwen3"},
    }).encode()
    cfg = ModelConfig.from_bytes(raw)
    assert cfg.model_type == "8B" and cfg.file_type == "Q4_0"
    assert cfg.extra["rootfs"]["type"] == "layers"
    assert cfg.extra["context_length"] == "x" and cfg.context_length == 0
    assert cfg.draft is not None and cfg.draft.architecture == "qwen3"


@pytest.mark.parametrize("raw", [b"", b"[]", b"nope", b'"s"', b"\xff\xfe"])
def test_config_not_an_object(raw: bytes) -> None:
    with pytest.raises(InvalidManifestError):
        ModelConfig.from_bytes(raw)


# -- parsing -----------------------------------------------------------------------------------
def _doc(**over: object) -> dict:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": MEDIA_TYPE_DOCKER_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": MEDIA_TYPE_MODEL, "digest": D2, "size": 100, "from": "x.gguf"}],
    }
    doc.update(over)
    return doc


def test_parse_docker_manifest_keeps_raw_bytes() -> None:
    raw = json.dumps(_doc(), indent=3).encode()  # not our serialisation: kept byte for byte
    m = parse_manifest(raw)
    assert m.raw == raw and m.model_id == sha(raw)
    assert m.model_layer is not None and m.model_layer.from_ == "x.gguf"
    assert m.size == 110 and [d.digest for d in m.blobs()] == [D2, D1]


def test_parse_oci_artifact_without_media_type() -> None:
    raw = json.dumps({
        "schemaVersion": 2,
        "artifactType": "application/vnd.example.thing",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": D1, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.data", "digest": D3, "size": 5,
                    "annotations": {"org.opencontainers.image.title": "a.bin"}}],
    }).encode()
    m = parse_manifest(raw)
    assert m.is_oci and m.model_layer is None and m.artifact_type == "application/vnd.example.thing"
    assert m.layers[0].annotations == {"org.opencontainers.image.title": "a.bin"}


def test_parse_index_and_pick() -> None:
    raw = json.dumps({
        "schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX,
        "manifests": [
            {"mediaType": MEDIA_TYPE_OCI_MANIFEST, "digest": D1, "size": 300, "platform": {"os": "darwin", "architecture": "arm64"}},
            {"mediaType": MEDIA_TYPE_OCI_MANIFEST, "digest": D2, "size": 300, "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }).encode()
    idx = parse_manifest_or_index(raw)
    assert isinstance(idx, ImageIndex)
    picked = idx.pick()
    assert picked is not None and picked.descriptor.digest == D2
    assert parse_index(raw).pick("windows", "x").descriptor.digest == D1  # first manifest entry
    with pytest.raises(InvalidManifestError, match="image index"):
        parse_manifest(raw)
    assert isinstance(parse_manifest_or_index(json.dumps(_doc()).encode()), Manifest)


BAD_MANIFESTS = [
    ("not json", b"{", "not valid JSON"),
    ("array", b"[]", "JSON object"),
    ("schema 1", json.dumps(_doc(schemaVersion=1)).encode(), "schemaVersion"),
    ("schema bool", json.dumps(_doc(schemaVersion=True)).encode(), "schemaVersion"),
    ("unknown media", json.dumps(_doc(mediaType="text/html")).encode(), "unsupported media type"),
    ("no config", json.dumps({k: v for k, v in _doc().items() if k != "config"}).encode(), "config"),
    ("layers not list", json.dumps(_doc(layers={"a": 1})).encode(), "'layers' must be a list"),
    ("upper hex", json.dumps(_doc(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": "sha256:" + "A" * 64, "size": 1}])).encode(), "digest"),
    ("sha512", json.dumps(_doc(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": "sha512:" + "a" * 128, "size": 1}])).encode(), "only sha256"),
    ("traversal digest", json.dumps(_doc(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": "sha256:../../etc/passwd", "size": 1}])).encode(), "digest"),
    ("negative size", json.dumps(_doc(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": D2, "size": -1}])).encode(), "out of range"),
    ("huge size", json.dumps(_doc(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": D2, "size": 1 << 60}])).encode(), "out of range"),
    ("float size", json.dumps(_doc(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": D2, "size": 1.5}])).encode(), "integer"),
    ("bool size", json.dumps(_doc(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": D2, "size": True}])).encode(), "integer"),
    ("bad layer media", json.dumps(_doc(layers=[{"mediaType": "x", "digest": D2, "size": 1}])).encode(), "media type"),
    ("from not str", json.dumps(_doc(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": D2, "size": 1, "from": 3}])).encode(), "'from'"),
    ("NaN", b'{"schemaVersion": NaN}', "not valid JSON"),
    ("bom", b"\xef\xbb\xbf" + json.dumps(_doc()).encode(), "byte order mark"),
    ("too big", b" " * (MAX_MANIFEST_BYTES + 1), "allowed"),
    ("too many layers", json.dumps(_doc(layers=[{"mediaType": "a/b", "digest": D2, "size": 1}] * (MAX_LAYERS + 1)), separators=(",", ":")).encode(), "layers"),
    ("deep nesting", b'{"schemaVersion":2,"x":' + b"[" * 100000 + b"]" * 100000 + b"}", "JSON"),
]


@pytest.mark.parametrize(("case", "raw", "message"), BAD_MANIFESTS, ids=[c[0] for c in BAD_MANIFESTS])
def test_bad_manifests_are_refused(case: str, raw: bytes, message: str) -> None:
    with pytest.raises(InvalidManifestError, match=message):
        parse_manifest(raw)


@pytest.mark.parametrize("digest", ["", "sha256:", "sha256:" + "a" * 63, "sha256:" + "a" * 65, "SHA256:" + "a" * 64,
                                    "sha256-" + "a" * 64, "sha256:" + "g" * 64, 5, None])
def test_validate_digest_refuses(digest: object) -> None:
    with pytest.raises(InvalidDigestError):
        validate_digest(digest)


def test_digests_in_is_lenient() -> None:
    raw = json.dumps(_doc(layers=[{"digest": D2}, {"digest": "bad"}, "junk"])).encode()
    assert digests_in(raw) == {D1, D2}
    assert digests_in(b"garbage") is None


# -- fuzz: untrusted bytes only ever raise the project's error --------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_manifest_bytes(data: bytes) -> None:
    with contextlib.suppress(InvalidManifestError):
        parse_manifest_or_index(data)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
_descriptorish = st.fixed_dictionaries(
    {"mediaType": st.sampled_from([MEDIA_TYPE_MODEL, "x", 3, "application/vnd.a+json"]),
     "digest": st.sampled_from([D1, D2, "sha256:zz", 4, None]),
     "size": st.one_of(st.integers(-5, 1 << 50), st.booleans(), st.floats(), st.text(max_size=3))},
    optional={"from": _json_values, "name": _json_values, "annotations": _json_values},
)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries(
    {"schemaVersion": st.sampled_from([2, 1, "2", None]),
     "config": st.one_of(_descriptorish, _json_values),
     "layers": st.one_of(st.lists(st.one_of(_descriptorish, _json_values), max_size=4), _json_values)},
    optional={"mediaType": st.sampled_from([MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX, "a/b", 7]),
              "manifests": st.lists(st.one_of(_descriptorish, _json_values), max_size=3)},
))
def test_fuzz_manifest_structures(doc: dict) -> None:
    raw = json.dumps(doc).encode()
    try:
        result = parse_manifest_or_index(raw)
    except InvalidManifestError:
        return
    # whatever was accepted is fully validated
    descs = result.blobs() if isinstance(result, Manifest) else [e.descriptor for e in result.manifests]
    for d in descs:
        validate_digest(d.digest)
        assert isinstance(d.size, int) and d.size >= 0
