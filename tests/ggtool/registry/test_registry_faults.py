"""Pulls under faults: a proxy in front of a real registry drops, stalls, fails and corrupts;
the puller is killed with SIGKILL and resumed; the disk fills; two pulls race; rm runs meanwhile."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.components import require_component
from ggtool.errors import NetworkError, VerificationError
from ggtool.registry import PullOptions, PushOptions, pull, push
from ggtool.registry.download import DiskFullError, load_parts
from ggtool.store import Store
from tests.ggtool.registry.registry_helpers import blob_bytes, fast, make_model, repo_name
from tests.ggtool.registry.registry_servers import Fault

pytestmark = pytest.mark.slow

MODEL_SIZE = 6 << 20
PART = 1 << 20
REPO_ROOT = Path(__file__).resolve().parents[3]


def _published(registry, store: Store, size: int = MODEL_SIZE):
    """A model pushed to the real registry; returns (name, model, blob bytes)."""
    name = repo_name(registry.host)
    model = make_model(store, name, model_size=size)
    push(name, store=store, options=PushOptions(transport=fast()))
    return name, model, blob_bytes(store, model)


def _via(proxy, name: str) -> str:
    return proxy.host + name[name.index("/") :]


def _nothing_left(store: Store, blobs: dict[str, bytes], name: str) -> None:
    assert not store.exists(name)
    big = max(blobs, key=lambda d: len(blobs[d]))
    assert not store.has_blob(big)
    assert not store.partial_path(big).exists()
    assert store.partial_part_paths(big) == []


def _opts(**kw) -> PullOptions:
    t = kw.pop("transport", fast())
    return PullOptions(transport=t, part_size=PART, connections=kw.pop("connections", 3), **kw)


@pytest.mark.parametrize(
    ("faults", "check"),
    [
        ([Fault("drop", after=300_000), Fault("drop", after=10)], "retries"),
        ([Fault("status", status=500, times=3)], "retries"),
        ([Fault("status", status=503, times=1, methods=("HEAD",))], "none"),
        ([Fault("stall", after=100_000, seconds=3.0)], "stalls"),
    ],
    ids=["drops", "500s", "503-on-head", "stall"],
)
@pytest.mark.parametrize("splice", [True, False], ids=["splice", "readinto"])
def test_transient_faults_are_retried(
    open_registry, fault_proxy, store, other_store, faults, check, splice, monkeypatch
):
    if not splice:
        monkeypatch.setenv("GGTOOL_NO_SPLICE", "1")
    faults = [dataclasses.replace(f) for f in faults]  # parametrize shares the objects
    name, model, blobs = _published(open_registry, store)
    fault_proxy.faults = faults
    result = pull(
        _via(fault_proxy, name), store=other_store, options=_opts(transport=fast(stall_timeout=1.0))
    )
    got = other_store.get(_via(fault_proxy, name))
    assert got.model_id == model.model_id
    assert blob_bytes(other_store, got) == blobs
    assert fault_proxy.applied, "the fault was never injected"
    big = max(result.blobs, key=lambda b: b.size)
    if check == "retries":
        assert sum(b.retries for b in result.blobs) >= 1
    if check == "stalls":
        assert sum(b.stalls for b in result.blobs) >= 1
    # a dropped or stalled part resumes at its last byte: nothing is fetched twice
    assert big.downloaded == big.size


def test_persistent_500_gives_up_and_writes_nothing(open_registry, fault_proxy, store, other_store):
    name, _model, blobs = _published(open_registry, store)
    fault_proxy.faults = [Fault("status", status=500, times=-1)]
    with pytest.raises(NetworkError) as e:
        pull(
            _via(fault_proxy, name), store=other_store, options=_opts(transport=fast(max_retries=2))
        )
    assert e.value.exit_code == 5
    assert not other_store.exists(_via(fault_proxy, name))
    assert not any(other_store.has_blob(d) for d in blobs if len(blobs[d]) == MODEL_SIZE)


def test_corruption_once_is_downloaded_again(open_registry, fault_proxy, store, other_store):
    name, model, blobs = _published(open_registry, store)
    fault_proxy.faults = [Fault("corrupt", after=12345)]
    result = pull(_via(fault_proxy, name), store=other_store, options=_opts())
    assert fault_proxy.applied == ["corrupt"]
    big = max(result.blobs, key=lambda b: b.size)
    assert big.attempts == 2
    assert blob_bytes(other_store, other_store.get(_via(fault_proxy, name))) == blobs


def test_persistent_corruption_fails_verification_with_nothing_written(
    open_registry, fault_proxy, store, other_store
):
    name, _model, blobs = _published(open_registry, store)
    fault_proxy.faults = [Fault("corrupt", after=777, times=-1)]
    with pytest.raises(VerificationError) as e:
        pull(_via(fault_proxy, name), store=other_store, options=_opts())
    assert e.value.exit_code == 6
    assert "digest mismatch, file must be downloaded again" in str(e.value)
    _nothing_left(other_store, blobs, _via(fault_proxy, name))


_CHILD = """
import sys
from ggtool.registry import PullOptions, pull
from ggtool.registry.transport import TransportOptions
from ggtool.store import Store
opts = PullOptions(transport=TransportOptions(plain_http=True), part_size={part}, connections={conns})
r = pull(sys.argv[1], store=Store(sys.argv[2]), options=opts)
import json; print(json.dumps(r.to_dict()))
"""


def _spawn_pull(name: str, root: Path, part: int = PART, conns: int = 2) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(part=part, conns=conns), name, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO_ROOT,
    )


def _recorded(store: Store, digest: str, size: int) -> int:
    parts = load_parts(store.partial_part_paths(digest), size) or []
    return sum(p.completed for p in parts)


def _wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_mid_blob_then_resume(open_registry, fault_proxy, store, other_store):
    name, model, blobs = _published(open_registry, store)
    big = max(blobs, key=lambda d: len(blobs[d]))
    fault_proxy.rate = 1.5e6  # bytes/s per connection: slow enough to kill mid-blob
    via = _via(fault_proxy, name)
    child = _spawn_pull(via, other_store.root)
    try:
        _wait_for(
            lambda: _recorded(other_store, big, MODEL_SIZE) >= 2 * PART, 30, "two recorded parts"
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    kept = _recorded(other_store, big, MODEL_SIZE)
    assert 0 < kept < MODEL_SIZE
    # the records are Ollama's: exactly its four fields, one JSON object and a newline each
    for p in other_store.partial_part_paths(big):
        raw = p.read_bytes()
        assert raw.endswith(b"\n") and list(json.loads(raw)) == ["N", "Offset", "Size", "Completed"]
    assert other_store.partial_path(big).stat().st_size == MODEL_SIZE
    fault_proxy.rate = None
    result = pull(via, store=other_store, options=_opts())
    blob = next(b for b in result.blobs if b.digest == big)
    assert blob.resumed == kept
    assert blob.downloaded == MODEL_SIZE - kept  # the bytes fetched again are reported
    assert blob_bytes(other_store, other_store.get(via)) == blobs
    assert other_store.partial_part_paths(big) == [] and not other_store.partial_path(big).exists()
    assert other_store.get(via).model_id == model.model_id


def test_resumes_an_ollama_partial_download(open_registry, store, other_store):
    """Partial files laid out as Ollama writes them (two parts, the first one complete)."""
    name, _model, blobs = _published(open_registry, store)
    big = max(blobs, key=lambda d: len(blobs[d]))
    data = blobs[big]
    half = len(data) // 2
    other_store.ensure_dirs()
    partial = other_store.partial_path(big)
    with open(partial, "wb") as f:
        f.write(data[:half])
        f.truncate(len(data))
    for n, (off, size, done) in enumerate([(0, half, half), (half, len(data) - half, 1000)]):
        record = json.dumps(
            {"N": n, "Offset": off, "Size": size, "Completed": done}, separators=(",", ":")
        )
        other_store.partial_part_path(big, n).write_text(record + "\n")
    with open(partial, "r+b") as f:
        f.seek(half)
        f.write(data[half : half + 1000])
    result = pull(name, store=other_store, options=_opts())
    blob = next(b for b in result.blobs if b.digest == big)
    assert blob.resumed == half + 1000
    assert blob.downloaded == len(data) - half - 1000
    assert other_store.blob_path(big).read_bytes() == data


def test_unusable_partial_records_start_over(open_registry, store, other_store):
    name, _model, blobs = _published(open_registry, store)
    big = max(blobs, key=lambda d: len(blobs[d]))
    other_store.ensure_dirs()
    other_store.partial_path(big).write_bytes(b"junk")
    other_store.partial_part_path(big, 0).write_text('{"N":0,"Offset":5,"Size":1,"Completed":9}\n')
    result = pull(name, store=other_store, options=_opts())
    assert next(b for b in result.blobs if b.digest == big).resumed == 0
    assert other_store.blob_path(big).read_bytes() == blobs[big]


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        require_component("a tmpfs mount (root)", False, r.stderr.decode().strip())
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_fails_before_writing(open_registry, store, small_disk):
    name, _model, blobs = _published(open_registry, store)
    full = Store(small_disk / "store")
    with pytest.raises(DiskFullError) as e:
        pull(name, store=full, options=_opts())
    assert "not enough disk space" in str(e.value)
    _nothing_left(full, blobs, name)


def test_two_concurrent_pulls_download_once(open_registry, fault_proxy, store, other_store):
    name, model, blobs = _published(open_registry, store)
    fault_proxy.rate = 4e6
    via = _via(fault_proxy, name)
    children = [_spawn_pull(via, other_store.root), _spawn_pull(via, other_store.root)]
    results = []
    for c in children:
        out, err = c.communicate(timeout=120)
        assert c.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert blob_bytes(other_store, other_store.get(via)) == blobs
    total = sum(len(b) for b in blobs.values())
    assert sum(r["downloaded_bytes"] for r in results) == total  # each blob fetched by one of them
    assert other_store.get(via).model_id == model.model_id


def test_rm_during_a_pull_keeps_the_pulls_blobs(open_registry, fault_proxy, store, other_store):
    # B shares its template/params/config with A, which is already in the pulling store
    name_b, model_b, blobs_b = _published(open_registry, store)
    name_a = repo_name("local.test")
    model_a = make_model(other_store, name_a, model_size=1 << 20)
    shared = model_a.manifest.digests() & model_b.manifest.digests()
    assert len(shared) == 3
    fault_proxy.rate = 2e6
    via = _via(fault_proxy, name_b)
    child = _spawn_pull(via, other_store.root)
    try:
        big = max(blobs_b, key=lambda d: len(blobs_b[d]))
        _wait_for(lambda: other_store.partial_path(big).exists(), 30, "the download to start")
        other_store.remove(name_a)  # rm while the pull runs
        assert all(other_store.has_blob(d) for d in shared), "rm deleted blobs a running pull uses"
        out, err = child.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    assert child.returncode == 0, err.decode()[-2000:]
    assert blob_bytes(other_store, other_store.get(via)) == blobs_b
    assert not other_store.has_blob(model_a.manifest.model_layer.digest)
