"""Untrusted registry input without a server: manifests, part records, Content-Range, errors."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggtool.errors import GgtoolError
from ggtool.manifest import ImageIndex, Manifest, parse_manifest_or_index
from ggtool.registry.download import Part, load_parts, plan_parts
from ggtool.registry.transport import (
    TransportOptions,
    _parse_content_range,
    redact_url,
    registry_error_message,
)

DIGEST = "sha256:" + "ab" * 32

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
descriptor = st.fixed_dictionaries(
    {},
    optional={
        "mediaType": st.sampled_from(["application/vnd.ollama.image.model", "x", "", "a/b" * 200])
        | st.text(max_size=20),
        "digest": st.sampled_from([DIGEST, "sha256:" + "AB" * 32, "md5:00", "sha256:../../x", ""])
        | st.text(max_size=70),
        "size": st.integers(-5, 2**64) | st.text(max_size=5) | st.booleans(),
        "from": st.text(max_size=20),
        "annotations": json_values,
    },
)
manifest_like = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.sampled_from([2, 1, "2", True, None]),
        "mediaType": st.sampled_from(
            [
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.index.v1+json",
                "text/plain",
            ]
        )
        | st.text(max_size=10),
        "config": descriptor | json_values,
        "layers": st.lists(descriptor, max_size=4) | json_values,
        "manifests": st.lists(
            st.builds(lambda d, p: {**d, "platform": p}, descriptor, json_values), max_size=3
        ),
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=manifest_like,
    ctype=st.sampled_from([None, "text/plain", "application/vnd.oci.image.index.v1+json"]),
)
def test_manifest_parser_accepts_or_refuses_cleanly(doc, ctype):
    body = json.dumps(doc).encode()
    try:
        parsed = parse_manifest_or_index(body, content_type=ctype)
    except GgtoolError:
        return
    assert isinstance(parsed, Manifest | ImageIndex)
    descs = (
        parsed.blobs() if isinstance(parsed, Manifest) else [e.descriptor for e in parsed.manifests]
    )
    for d in descs:  # whatever passes can only name a store path inside blobs/
        assert d.digest.startswith("sha256:") and len(d.digest) == 71
        assert all(c in "0123456789abcdef" for c in d.digest[7:])
        assert 0 <= d.size <= 1 << 44


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_manifest_parser_on_arbitrary_bytes(body):
    with contextlib.suppress(GgtoolError):
        parse_manifest_or_index(body)


@pytest.mark.parametrize(
    ("total", "part_size", "sizes"),
    [
        (10, 4, [4, 4, 2]),
        (8, 4, [4, 4]),
        (0, None, [0]),
        (100 << 20, None, [32 << 20, 32 << 20, 32 << 20, 4 << 20]),
        (64 * 1000 * 1000 * 1000, None, [1000 * 1000 * 1000] * 64),
    ],
)
def test_plan_parts(total, part_size, sizes):
    parts = plan_parts(total, part_size)
    assert [p.size for p in parts] == sizes
    assert [p.n for p in parts] == list(range(len(parts)))
    assert sum(p.size for p in parts) == total


def test_part_record_is_ollamas_json():
    p = Part(3, 300, 100, completed=42)
    assert p.record_bytes() == b'{"N":3,"Offset":300,"Size":100,"Completed":42}\n'


def _write(folder: Path, records: list) -> list[Path]:
    paths = []
    for i, r in enumerate(records):
        p = folder / f"rec-{i}"
        p.write_text(r if isinstance(r, str) else json.dumps(r))
        paths.append(p)
    return paths


@pytest.mark.parametrize(
    ("records", "total", "ok"),
    [
        (
            [
                {"N": 0, "Offset": 0, "Size": 5, "Completed": 5},
                {"N": 1, "Offset": 5, "Size": 5, "Completed": 1},
            ],
            10,
            True,
        ),
        (
            [
                {"N": 1, "Offset": 5, "Size": 5, "Completed": 0},
                {"N": 0, "Offset": 0, "Size": 5, "Completed": 0},
            ],
            10,
            True,
        ),
        ([{"N": 0, "Offset": 0, "Size": 5, "Completed": 6}], 5, False),  # more than the part
        ([{"N": 0, "Offset": 0, "Size": 5, "Completed": 0}], 10, False),  # does not cover the blob
        ([{"N": 0, "Offset": 1, "Size": 9, "Completed": 0}], 10, False),  # gap at the start
        (
            [
                {"N": 0, "Offset": 0, "Size": 5, "Completed": 0},
                {"N": 0, "Offset": 5, "Size": 5, "Completed": 0},
            ],
            10,
            False,
        ),
        ([{"N": 0, "Offset": 0, "Size": -1, "Completed": 0}], 10, False),
        (["not json"], 10, False),
        ([{"N": True, "Offset": 0, "Size": 10, "Completed": 0}], 10, False),
    ],
)
def test_load_parts_validates(tmp_path, records, total, ok):
    parts = load_parts(_write(tmp_path, records), total)
    assert (parts is not None) is ok


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(json_values, max_size=4), total=st.integers(0, 100))
def test_load_parts_fuzz(tmp_path, records, total):
    folder = tmp_path / "fuzz"
    folder.mkdir(exist_ok=True)
    for p in folder.iterdir():
        p.unlink()
    parts = load_parts(_write(folder, records), total)
    if parts is not None:
        assert sum(p.size for p in parts) == total
        assert all(0 <= p.completed <= p.size for p in parts)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/1000", (0, 99, 1000)),
        ("bytes 5-9/*", (5, 9, None)),
        ("items 0-1/2", None),
        ("bytes 0-x/10", None),
        ("", None),
    ],
)
def test_content_range(value, expected):
    assert _parse_content_range(value) == expected


@given(st.text(max_size=60))
def test_content_range_never_raises(value):
    _parse_content_range(value)


def test_redact_url_drops_credentials_and_signatures():
    url = "https://user:pw@r2.example.com:8443/blob/x?X-Amz-Signature=secret&token=t"
    shown = redact_url(url)
    assert shown == "https://r2.example.com:8443/blob/x"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}',
            "MANIFEST_UNKNOWN: manifest unknown",
        ),
        (
            b'{"error":"pull model manifest: file does not exist"}',
            "pull model manifest: file does not exist",
        ),
        (b"<html>\n  bad   gateway </html>", "<html> bad gateway </html>"),
        (b"\xff\xfe", "\ufffd\ufffd"),
    ],
)
def test_registry_error_message(body, expected):
    assert registry_error_message(body) == expected


def test_backoff_is_bounded_and_jittered():
    t = TransportOptions(backoff_base=1.0, backoff_max=10.0)
    for attempt in range(1, 12):
        d = t.backoff(attempt)
        base = min(2 ** (attempt - 1), 10.0)
        assert 0.5 * base <= d <= 1.5 * base
