"""The store: layout, verified blobs, atomic manifests, names, rm/cp/prune, locks and leases."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ggtool.errors import InvalidNameError, NotFoundError, VerificationError
from ggtool.manifest import (
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_SYSTEM,
    Descriptor,
    InvalidDigestError,
    ModelConfig,
    build_manifest,
    config_descriptor,
    sha256_digest,
)
from ggtool.names import ModelName
from ggtool.store import (
    LOCKS_DIRNAME,
    ModelNotFoundError,
    NotAModelError,
    Store,
    StoreError,
    default_root,
)

REPO = Path(__file__).resolve().parents[2]


def make_model(store: Store, name: str, *payloads: bytes, media_type: str = MEDIA_TYPE_MODEL) -> bytes:
    """Put blobs + a manifest; returns the manifest bytes."""
    cfg = ModelConfig(model_format="gguf", model_family="llama", model_families=["llama"]).to_bytes()
    store.put_bytes(cfg)
    layers = []
    for p in payloads or (name.encode(),):
        info = store.put_bytes(p)
        layers.append(Descriptor(media_type, info.digest, info.size))
    m = build_manifest(config_descriptor(cfg), layers)
    store.write_manifest(name, m)
    return m.raw


def assert_store_valid(store: Store) -> None:
    """Every manifest parses and every blob it names exists with the right bytes; no temp files."""
    for m in store.list_models(on_error=lambda p, e: pytest.fail(f"{p}: {e}")):
        for d in m.manifest.blobs():
            p = store.blob_path(d.digest)
            assert p.is_file(), f"{m.display}: missing {d.digest}"
            assert sha256_digest(p.read_bytes()) == d.digest
            assert p.stat().st_size == d.size
    leftovers = [p.name for p in store.blobs_dir.iterdir() if ".ggtool-tmp-" in p.name] if store.blobs_dir.exists() else []
    assert not leftovers, leftovers


# -- root and layout ---------------------------------------------------------------------------
def test_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GGTOOL_MODELS", raising=False)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    assert default_root() == tmp_path / ".ollama" / "models"
    monkeypatch.setenv("OLLAMA_MODELS", ' "/srv/ollama" ')
    assert default_root() == Path("/srv/ollama")
    monkeypatch.setenv("GGTOOL_MODELS", "/srv/gg")
    assert default_root() == Path("/srv/gg")
    assert default_root(tmp_path / "x") == tmp_path / "x"


def test_layout_is_ollamas(tmp_path: Path) -> None:
    s = Store(tmp_path)
    raw = make_model(s, "Qwen/Qwen3:8B", b"weights")
    assert (tmp_path / "manifests/registry.ollama.ai/Qwen/Qwen3/8B").read_bytes() == raw
    digest = hashlib.sha256(b"weights").hexdigest()
    blob = tmp_path / "blobs" / f"sha256-{digest}"
    assert blob.read_bytes() == b"weights"
    assert oct(blob.stat().st_mode & 0o777) == "0o644"
    assert s.partial_path(f"sha256:{digest}").name == f"sha256-{digest}-partial"
    assert s.partial_part_path(f"sha256:{digest}", 3).name == f"sha256-{digest}-partial-3"
    assert not any(LOCKS_DIRNAME in str(p) for p in (tmp_path / "blobs").iterdir())
    assert s.get("qwen/qwen3:8b").model_id == hashlib.sha256(raw).hexdigest()


def test_partial_part_paths_sorted(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.ensure_dirs()
    d = "sha256:" + "a" * 64
    for n in (10, 2, 0):
        s.partial_part_path(d, n).write_text("{}")
    (s.blobs_dir / f"sha256-{'a' * 64}-partial-x").write_text("junk")
    assert [p.name[-2:].lstrip("-") for p in s.partial_part_paths(d)] == ["0", "2", "10"]


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "sha256:" + "A" * 64, "md5:abc", "../x", "", "sha256:" + "a" * 63 + "/"])
def test_blob_paths_refuse_bad_digests(tmp_path: Path, digest: str) -> None:
    s = Store(tmp_path)
    for fn in (s.blob_path, s.partial_path, s.has_blob):
        with pytest.raises(InvalidDigestError):
            fn(digest)


@pytest.mark.parametrize("name", ["../../etc/x", "a/b/c/d/e", "host/ns/.hidden", "m:..", "/abs", "ns/..:tag", ""])
def test_manifest_paths_refuse_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidNameError):
        Store(tmp_path).manifest_path(name)


# -- blobs -------------------------------------------------------------------------------------
def test_blob_writer_streams_and_verifies(tmp_path: Path) -> None:
    s = Store(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 7)
    digest = sha256_digest(data)
    with s.blob_writer(expected_digest=digest, expected_size=len(data)) as w:
        for i in range(0, len(data), 65536):
            w.write(data[i : i + 65536])
        info = w.commit()
    assert info.created and info.digest == digest and s.blob_path(digest).read_bytes() == data
    assert s.put_bytes(data).created is False  # dedup by digest
    assert_store_valid(s)


def test_blob_writer_mismatch_leaves_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path)
    wrong = sha256_digest(b"other")
    with pytest.raises(VerificationError, match="digest mismatch"), s.blob_writer(expected_digest=wrong) as w:
        w.write(b"data")
        w.commit()
    with pytest.raises(VerificationError, match="larger"), s.blob_writer(expected_size=2) as w:
        w.write(b"data")
    with pytest.raises(VerificationError, match="size mismatch"), s.blob_writer(expected_size=10) as w:
        w.write(b"data")
        w.commit()
    assert sorted(p.name for p in s.blobs_dir.iterdir()) == []


def test_blob_writer_interrupted_leaves_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path)
    with pytest.raises(KeyboardInterrupt), s.blob_writer() as w:
        w.write(b"half")
        raise KeyboardInterrupt
    assert list(s.blobs_dir.iterdir()) == []


def test_install_blob_file(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.ensure_dirs()
    digest = sha256_digest(b"downloaded")
    part = s.partial_path(digest)
    part.write_bytes(b"downloaded")
    assert s.install_blob_file(part, digest).created and not part.exists()
    bad = s.partial_path(sha256_digest(b"x"))
    bad.write_bytes(b"corrupted")
    with pytest.raises(VerificationError, match="must be downloaded again"):
        s.install_blob_file(bad, sha256_digest(b"x"))
    assert not bad.exists() and not s.has_blob(sha256_digest(b"x"))


# -- manifests and names -----------------------------------------------------------------------
def test_write_manifest_requires_blobs(tmp_path: Path) -> None:
    s = Store(tmp_path)
    m = build_manifest(Descriptor("application/vnd.docker.container.image.v1+json", sha256_digest(b"c"), 1),
                       [Descriptor(MEDIA_TYPE_MODEL, sha256_digest(b"w"), 1)])
    with pytest.raises(StoreError, match="is not in the store"):
        s.write_manifest("m", m)
    assert not s.exists("m")


def test_pulled_manifest_stored_byte_for_byte(tmp_path: Path) -> None:
    s = Store(tmp_path)
    cfg = s.put_bytes(b"{}")
    layer = s.put_bytes(b"artifact")
    raw = (
        '{\n  "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
        f'  "config": {{"mediaType": "application/vnd.oci.empty.v1+json", "digest": "{cfg.digest}", "size": 2}},\n'
        f'  "layers": [{{"mediaType": "application/vnd.example.data", "digest": "{layer.digest}", "size": 8}}]\n}}'
    ).encode()
    stored, _ = s.write_manifest("localhost:5000/ns/thing:v1", raw)
    assert stored.path.read_bytes() == raw and stored.model_id == hashlib.sha256(raw).hexdigest()
    got = s.get("localhost:5000/ns/thing:v1")
    assert not got.is_model and got.display == "localhost:5000/ns/thing:v1"
    with pytest.raises(NotAModelError, match="no application/vnd.ollama.image.model layer"):
        s.require_model_layer(got)
    assert [m.display for m in s.list_models()] == ["localhost:5000/ns/thing:v1"]


def test_case_insensitive_resolution(tmp_path: Path) -> None:
    s = Store(tmp_path)
    make_model(s, "Llama3:Latest")
    assert s.resolve("llama3") == ModelName("registry.ollama.ai", "library", "Llama3", "Latest", "https")
    assert s.resolve("LLAMA3:other").tag == "other" and s.resolve("LLAMA3:other").model == "Llama3"
    make_model(s, "llama3:v2")  # resolves into the existing folder, not a second one
    assert sorted(p.name for p in (tmp_path / "manifests/registry.ollama.ai/library").iterdir()) == ["Llama3"]
    assert s.get("LLAMA3:V2").name.tag == "v2"
    assert s.get("llama3").name.tag == "Latest"
    with pytest.raises(ModelNotFoundError, match="model 'llama3:nope' not found"):
        s.get("llama3:nope")


def test_digest_pinned_lookup(tmp_path: Path) -> None:
    s = Store(tmp_path)
    raw = make_model(s, "m:1")
    assert s.get(f"m:1@{sha256_digest(raw)}").model_id == hashlib.sha256(raw).hexdigest()
    with pytest.raises(ModelNotFoundError, match="not the pinned"):
        s.get(f"m:1@{sha256_digest(b'other')}")


def test_list_skips_corrupt_and_orders_newest_first(tmp_path: Path) -> None:
    s = Store(tmp_path)
    make_model(s, "old")
    os.utime(s.manifest_path("old"), (1, 1))
    make_model(s, "new")
    bad = s.manifest_path("broken")
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    errors: list = []
    assert [m.display for m in s.list_models(on_error=lambda p, e: errors.append(p))] == ["new:latest", "old:latest"]
    assert errors == [bad]


# -- rm / cp -----------------------------------------------------------------------------------
def test_rm_keeps_shared_blobs(tmp_path: Path) -> None:
    s = Store(tmp_path)
    make_model(s, "a", b"shared", b"only-a")
    make_model(s, "b", b"shared")
    r = s.remove("A")
    assert sha256_digest(b"only-a") in r.removed_blobs
    assert sha256_digest(b"shared") in r.kept_blobs and s.has_blob(sha256_digest(b"shared"))
    assert not s.has_blob(sha256_digest(b"only-a"))
    assert not (tmp_path / "manifests/registry.ollama.ai/library/a").exists()  # empty dirs pruned
    assert_store_valid(s)
    with pytest.raises(ModelNotFoundError):
        s.remove("a")


def test_cp_keeps_the_id(tmp_path: Path) -> None:
    s = Store(tmp_path)
    raw = make_model(s, "src:1")
    dst = s.copy("SRC:1", "other/dst:2")
    assert dst.path.read_bytes() == raw and dst.model_id == s.get("src:1").model_id
    s.remove("src:1")
    assert_store_valid(s)
    assert s.get("other/dst:2").model_id == hashlib.sha256(raw).hexdigest()
    with pytest.raises(NotFoundError):
        s.copy("missing", "x")


def test_replacing_a_manifest_removes_unused_blobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Store(tmp_path)
    make_model(s, "m", b"v1")
    make_model(s, "m", b"v2")
    assert not s.has_blob(sha256_digest(b"v1"))
    monkeypatch.setenv("OLLAMA_NOPRUNE", "1")
    make_model(s, "m", b"v3")
    assert s.has_blob(sha256_digest(b"v2"))


# -- prune -------------------------------------------------------------------------------------
def _age(p: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(p, (t, t))


def test_prune_grace_window_and_dry_run(tmp_path: Path) -> None:
    s = Store(tmp_path)
    make_model(s, "keep", b"kept")
    old = s.put_bytes(b"orphan-old")
    young = s.put_bytes(b"orphan-young")
    _age(s.blob_path(old.digest), 7200)
    partial = s.partial_path(sha256_digest(b"dl"))
    partial.write_bytes(b"\0" * 10)
    s.partial_part_path(sha256_digest(b"dl"), 0).write_text('{"N":0}')
    ollama_tmp = s.blobs_dir / "sha256-123456789"
    ollama_tmp.write_bytes(b"t")
    unknown = s.blobs_dir / "README"
    unknown.write_text("not ours")
    for p in (partial, s.partial_part_path(sha256_digest(b"dl"), 0), ollama_tmp, unknown):
        _age(p, 7200)
    dry = s.prune(dry_run=True)
    assert {i.kind for i in dry.items} == {"blob", "partial", "temp"}
    assert {i.path.name for i in dry.items} == {
        f"sha256-{old.digest[7:]}", partial.name, partial.name + "-0", "sha256-123456789"}
    assert dry.total_size == len(b"orphan-old") + 10 + len('{"N":0}') + 1
    assert s.has_blob(old.digest)  # dry run deletes nothing
    real = s.prune()
    assert len(real.items) == 4 and real.skipped_young >= 1
    assert not s.has_blob(old.digest) and s.has_blob(young.digest) and unknown.exists()
    assert_store_valid(s)


def test_prune_removes_stale_create_scratch(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.ensure_dirs()
    stale, fresh = tmp_path / ".ggtool-create-abc", tmp_path / ".ggtool-create-def"
    for d in (stale, fresh):
        d.mkdir()
        (d / "converted.gguf").write_bytes(b"12345")
    _age(stale, 7200)
    r = s.prune()
    assert [(i.path, i.kind, i.size) for i in r.items] == [(stale, "temp", 5)]
    assert not stale.exists() and fresh.exists()


def test_prune_refuses_with_corrupt_manifest(tmp_path: Path) -> None:
    s = Store(tmp_path)
    make_model(s, "ok")
    p = s.manifest_path("bad")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"\x00garbage")
    with pytest.raises(StoreError, match="corrupt manifest"):
        s.prune(grace=0)


def test_prune_keeps_leased_and_locked(tmp_path: Path) -> None:
    s = Store(tmp_path)
    with s.lease() as lease:
        info = s.put_bytes(b"being created", lease=lease)
        _age(s.blob_path(info.digest), 7200)
        dl = sha256_digest(b"downloading")
        s.partial_path(dl).write_bytes(b"x")
        _age(s.partial_path(dl), 7200)
        with s.blob_lock(dl):
            assert s.prune(grace=0).items == []
        assert s.has_blob(info.digest)
    # lease released: now it goes
    assert {i.kind for i in s.prune(grace=0).items} == {"blob", "partial"}


# -- other processes ---------------------------------------------------------------------------
def _python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


LEASE_HOLDER = """
import sys, time
from ggtool.store import Store
s = Store(sys.argv[1])
lease = s.lease()
info = s.put_bytes(b"held by another process", lease=lease)
print(info.digest, flush=True)
time.sleep(60)
"""


def test_lease_of_live_process_protects_and_dead_one_does_not(tmp_path: Path) -> None:
    s = Store(tmp_path)
    p = _python(LEASE_HOLDER, str(tmp_path))
    try:
        digest = p.stdout.readline().strip()
        assert digest.startswith("sha256:"), p.stderr.read()
        _age(s.blob_path(digest), 7200)
        assert digest in s.leased_digests()
        assert s.prune(grace=0).items == []
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert s.leased_digests() == set()  # stale lease recognised and cleaned up
        assert [i.kind for i in s.prune(grace=0).items] == ["blob"]
        assert list(s.leases_dir.iterdir()) == []
    finally:
        p.kill()
        p.wait()


WRITER = """
import sys
from ggtool.manifest import Descriptor, ModelConfig, build_manifest, config_descriptor, MEDIA_TYPE_MODEL
from ggtool.store import Store
s = Store(sys.argv[1])
who, n = sys.argv[2], int(sys.argv[3])
shared = b"S" * 300000
cfg = ModelConfig().to_bytes()
for i in range(n):
    with s.lease() as lease:
        a = s.put_bytes(shared, lease=lease)
        b = s.put_bytes(f"{who}-{i}".encode() * 1000, lease=lease)
        c = s.put_bytes(cfg, lease=lease)
        m = build_manifest(config_descriptor(cfg), [Descriptor(MEDIA_TYPE_MODEL, a.digest, a.size),
                                                    Descriptor(MEDIA_TYPE_MODEL, b.digest, b.size)])
        s.write_manifest(f"{who}:{i % 3}", m)
print("ok")
"""

REMOVER = """
import sys
from ggtool.store import Store, ModelNotFoundError
s = Store(sys.argv[1])
done = 0
for i in range(int(sys.argv[2])):
    for name in ("w1:0", "w1:1", "w1:2", "w2:0", "w2:1", "w2:2"):
        try:
            s.remove(name)
            done += 1
        except ModelNotFoundError:
            pass
print("ok", done)
"""


@pytest.mark.slow
def test_two_writers_and_a_remover_keep_the_store_valid(tmp_path: Path) -> None:
    procs = [_python(WRITER, str(tmp_path), "w1", "40"), _python(WRITER, str(tmp_path), "w2", "40"),
             _python(REMOVER, str(tmp_path), "60")]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.startswith("ok"), err
    s = Store(tmp_path)
    assert_store_valid(s)
    assert s.leased_digests() == set()


REUSER = """
import sys, time
from ggtool.manifest import Descriptor, ModelConfig, build_manifest, config_descriptor, MEDIA_TYPE_MODEL
from ggtool.store import Store
from ggtool.errors import NotFoundError
s = Store(sys.argv[1])
made = 0
deadline = time.time() + float(sys.argv[2])
cfg = ModelConfig().to_bytes()
while time.time() < deadline:
    with s.lease() as lease:
        try:
            info = s.reuse_blob(sys.argv[3], lease)   # cache hit: the blob a base model has
        except NotFoundError:
            continue                                  # removed before we leased it: fine
        c = s.put_bytes(cfg, lease=lease)
        time.sleep(0.002)                             # widen the window rm could hit
        m = build_manifest(config_descriptor(cfg), [Descriptor(MEDIA_TYPE_MODEL, info.digest, info.size)])
        s.write_manifest(f"copy:{made % 5}", m)       # would fail if rm deleted the blob
        made += 1
print("ok", made)
"""

RM_LOOP = """
import sys, time
from ggtool.manifest import Descriptor, ModelConfig, build_manifest, config_descriptor, MEDIA_TYPE_MODEL
from ggtool.store import Store, ModelNotFoundError
s = Store(sys.argv[1])
deadline = time.time() + float(sys.argv[2])
cfg = ModelConfig().to_bytes()
n = 0
while time.time() < deadline:
    for name in ("base", "copy:0", "copy:1", "copy:2", "copy:3", "copy:4"):
        try:
            s.remove(name)
            n += 1
        except ModelNotFoundError:
            pass
    with s.lease() as lease:
        w = s.put_bytes(b"W" * 100000, lease=lease)
        c = s.put_bytes(cfg, lease=lease)
        s.write_manifest("base", build_manifest(config_descriptor(cfg), [Descriptor(MEDIA_TYPE_MODEL, w.digest, w.size)]))
print("ok", n)
"""


@pytest.mark.slow
def test_rm_during_a_create_never_strands_a_manifest(tmp_path: Path) -> None:
    s = Store(tmp_path)
    w = s.put_bytes(b"W" * 100000)
    make_model(s, "base", b"W" * 100000)
    procs = [_python(REUSER, str(tmp_path), "6", w.digest), _python(RM_LOOP, str(tmp_path), "6")]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.startswith("ok"), err
    made = int(outs[0][0].split()[1])
    removed = int(outs[1][0].split()[1])
    assert made > 20 and removed > 20  # both really ran interleaved
    assert_store_valid(s)


def test_store_lock_is_outside_blobs(tmp_path: Path) -> None:
    s = Store(tmp_path)
    make_model(s, "m")
    with s.lease():
        pass
    s.blob_lock(sha256_digest(b"x")).acquire()
    for p in s.blobs_dir.iterdir():
        assert p.name.startswith("sha256-") and len(p.name) == 71, p.name
    assert (tmp_path / LOCKS_DIRNAME / "store.lock").exists()


def test_manifest_json_is_what_ollama_reads(tmp_path: Path) -> None:
    s = Store(tmp_path)
    raw = make_model(s, "m", b"x", media_type=MEDIA_TYPE_SYSTEM)
    doc = json.loads(raw)
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert raw.endswith(b"}\n") and b" " not in raw
