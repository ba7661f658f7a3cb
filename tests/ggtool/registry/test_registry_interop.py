"""Interoperability with clients nobody here wrote: skopeo and the `oras` Python package."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from ggtool.manifest import (
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    parse_manifest,
)
from ggtool.registry import PullOptions, PushOptions, pull, push
from tests.ggtool.registry.registry_helpers import fast, make_model, repo_name

pytestmark = pytest.mark.slow

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None and not os.environ.get("CI"), reason="skopeo is not installed")


def _ref(name: str) -> str:
    return name  # host/ns/model:tag is already a docker reference


def _skopeo(*args: str) -> bytes:
    r = subprocess.run([SKOPEO, *args], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


@needs_skopeo
def test_skopeo_reads_what_ggtool_pushed(open_registry, store):
    name = repo_name(open_registry.host)
    model = make_model(store, name)
    push(name, store=store, options=PushOptions(transport=fast()))
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{_ref(name)}")
    assert raw == store.read_manifest_bytes(name)  # the exact stored bytes
    assert hashlib.sha256(raw).hexdigest() == model.model_id
    doc = json.loads(raw)
    assert doc["mediaType"] == MEDIA_TYPE_DOCKER_MANIFEST
    assert doc["layers"][0]["mediaType"] == "application/vnd.ollama.image.model"


def test_oras_pulls_byte_identical_layers(open_registry, store, tmp_path):
    import oras.client

    name = repo_name(open_registry.host)
    model = make_model(store, name)
    push(name, store=store, options=PushOptions(transport=fast()))
    client = oras.client.OrasClient(hostname=open_registry.host, insecure=True)
    out = tmp_path / "oras-out"
    files = client.pull(
        target=name, outdir=str(out), allowed_media_type=[MEDIA_TYPE_DOCKER_MANIFEST]
    )
    assert len(files) == len(model.manifest.layers)
    got = {
        f"sha256:{hashlib.sha256(Path(f).read_bytes()).hexdigest()}": Path(f).read_bytes()
        for f in files
    }
    want = {d.digest: store.blob_path(d.digest).read_bytes() for d in model.manifest.layers}
    assert got == want


def test_ggtool_pulls_an_oras_artifact(open_registry, other_store, tmp_path, monkeypatch):
    import oras.client

    files = {"weights.bin": b"\x00\x01" * 300_000, "notes.txt": b"hello from oras\n"}
    monkeypatch.chdir(tmp_path)
    for fname, data in files.items():
        (tmp_path / fname).write_bytes(data)
    name = repo_name(open_registry.host, "oras")
    client = oras.client.OrasClient(hostname=open_registry.host, insecure=True)
    client.push(
        target=name,
        files=[
            "weights.bin:application/vnd.example.weights",
            "notes.txt:application/vnd.example.notes+text",
        ],
    )
    pull(name, store=other_store, options=PullOptions(transport=fast()))
    model = other_store.get(name)
    assert model.manifest.media_type in ("", MEDIA_TYPE_OCI_MANIFEST)
    assert [d.media_type for d in model.manifest.layers] == [
        "application/vnd.example.weights",
        "application/vnd.example.notes+text",
    ]
    assert not model.is_model  # a foreign artifact: stored and listed, no GGUF
    for d, data in zip(model.manifest.layers, files.values(), strict=True):
        assert other_store.blob_path(d.digest).read_bytes() == data


def _tar_layer(content: bytes) -> bytes:
    buf = BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, BytesIO(content))
    return buf.getvalue()


def _oci_layout(folder: Path, *, with_index: bool) -> None:
    """A one-layer linux/amd64 image as an OCI layout (what skopeo copies from)."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return f"sha256:{h}"

    layer = _tar_layer(b"hi from a docker image\n" * 1000)
    layer_d = put(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_d]},
            "config": {},
        }
    ).encode()
    config_d = put(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_d,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_d,
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    manifest_d = put(manifest)
    entry = {
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "digest": manifest_d,
        "size": len(manifest),
        "platform": {"architecture": "amd64", "os": "linux"},
    }
    top = [entry]
    if with_index:
        arm = dict(entry, platform={"architecture": "arm64", "os": "linux"})
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": [arm, entry]}
        ).encode()
        top = [{"mediaType": MEDIA_TYPE_OCI_INDEX, "digest": put(index), "size": len(index)}]
    (folder / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": top}))
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


@needs_skopeo
def test_ggtool_pulls_a_docker_v2_image_skopeo_pushed(open_registry, other_store, tmp_path):
    layout = tmp_path / "layout"
    _oci_layout(layout, with_index=False)
    name = repo_name(open_registry.host, "docker")
    _skopeo(
        "copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{layout}", f"docker://{name}"
    )
    pull(name, store=other_store, options=PullOptions(transport=fast()))
    model = other_store.get(name)
    assert model.manifest.media_type == MEDIA_TYPE_DOCKER_MANIFEST
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}")
    assert other_store.read_manifest_bytes(name) == raw
    for d in model.manifest.blobs():
        assert hashlib.sha256(other_store.blob_path(d.digest).read_bytes()).hexdigest() == d.hex


@needs_skopeo
def test_ggtool_pulls_through_an_oci_index(open_registry, other_store, tmp_path):
    layout = tmp_path / "layout"
    _oci_layout(layout, with_index=True)
    name = repo_name(open_registry.host, "index")
    _skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}", f"docker://{name}")
    top = json.loads(_skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}"))
    assert top["mediaType"] == MEDIA_TYPE_OCI_INDEX
    pull(name, store=other_store, options=PullOptions(transport=fast()))
    stored = parse_manifest(other_store.read_manifest_bytes(name))
    amd64 = next(e for e in top["manifests"] if e["platform"]["architecture"] == "amd64")
    assert stored.digest == amd64["digest"]  # the linux/amd64 entry, stored byte for byte
