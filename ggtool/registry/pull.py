"""`pull`: manifest by tag (or digest), then every layer and the config, then the manifest.

Events are Ollama's: `pulling manifest`, `pulling <hex12>` (digest, total, completed) per
blob, `verifying sha256 digest`, `writing manifest`, `removing unused layers`, `success`.
Layers already in the store are not downloaded. Blobs come in parallel ranged parts
(download.py); registries that redirect blob GETs (Ollama's CDN) and registries that answer
200 (registry:2, Harbor, Zot, GHCR) both work.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from filelock import Timeout

from ggtool.errors import NotFoundError, UsageError, VerificationError
from ggtool.events import ProgressEvent, no_progress
from ggtool.manifest import (
    ACCEPT_MANIFEST,
    Descriptor,
    ImageIndex,
    Manifest,
    parse_manifest,
    parse_manifest_or_index,
    sha256_digest,
)
from ggtool.names import ModelName, parse_model_name
from ggtool.registry.auth import Authenticator, scope_for
from ggtool.registry.credentials import Credentials
from ggtool.registry.download import BlobDownload, BlobOutcome, DiskFullError, load_parts
from ggtool.registry.transport import RegistryClient, TransportOptions
from ggtool.store import Lease, Store


@dataclass(frozen=True)
class PullOptions:
    transport: TransportOptions = field(default_factory=TransportOptions)
    connections: int = field(default_factory=lambda: _env_int("GGTOOL_PULL_CONNECTIONS", 4))
    part_size: int | None = None
    verify_retries: int = 1  # a digest mismatch downloads the blob once more, then fails
    credentials: Credentials | None = None  # explicit; otherwise looked up (login, Docker, env)


@dataclass
class PullResult:
    name: str
    digest: str  # the manifest digest = the model id with "sha256:"
    blobs: list[BlobOutcome]
    cached: list[str]  # digests that were already in the store
    removed: list[str]  # old blobs deleted because the pull replaced a manifest

    @property
    def downloaded_bytes(self) -> int:
        return sum(b.downloaded for b in self.blobs)

    @property
    def resumed_bytes(self) -> int:
        return sum(b.resumed for b in self.blobs)

    def to_dict(self) -> dict:
        return {
            "status": "success",
            "name": self.name,
            "digest": self.digest,
            "downloaded_bytes": self.downloaded_bytes,
            "resumed_bytes": self.resumed_bytes,
            "blobs_downloaded": len(self.blobs),
            "blobs_cached": len(self.cached),
        }


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise UsageError(f"{name} must be a whole number, got {raw!r}") from e
    if value < 1:
        raise UsageError(f"{name} must be at least 1")
    return value


def check_scheme(name: ModelName, transport: TransportOptions) -> None:
    """`http://` in a name needs --plain-http (Ollama: "insecure protocol http")."""
    if name.scheme == "http" and not transport.plain_http:
        raise UsageError("insecure protocol http", hint="add --plain-http to use plain HTTP")
    if name.scheme not in ("", "http", "https"):
        raise UsageError(f"unsupported protocol {name.scheme!r}")


def open_client(
    name: ModelName, transport: TransportOptions, credentials: Credentials | None
) -> RegistryClient:
    if name.scheme == "http" and not transport.plain_http:
        check_scheme(name, transport)
    auth = Authenticator(name.host, credentials=credentials)
    return RegistryClient(name.host, transport, auth)


def fetch_manifest(client: RegistryClient, name: ModelName, scope: str) -> Manifest:
    """GET the manifest (an index picks one entry), validated; digests checked where known."""
    repo = name.display_namespace_model()
    reference = name.digest or name.tag
    try:
        body, ctype = _get_manifest(
            client, repo, reference, scope, expect_digest=name.digest or None
        )
    except NotFoundError as e:
        raise NotFoundError(
            f"pull model manifest: {name.display_shortest()} does not exist on {name.host} ({e.message})",
            hint="check the name and tag",
        ) from None
    doc = parse_manifest_or_index(body, content_type=ctype)
    if isinstance(doc, ImageIndex):
        entry = doc.pick()
        if entry is None:
            raise VerificationError(
                f"{name.display_shortest()}: the image index lists no manifest to pull"
            )
        body, ctype = _get_manifest(
            client, repo, entry.descriptor.digest, scope, expect_digest=entry.descriptor.digest
        )
        if len(body) != entry.descriptor.size:
            raise VerificationError(
                f"manifest {entry.descriptor.digest} is {len(body)} bytes, the index says {entry.descriptor.size}"
            )
        return parse_manifest(body, content_type=ctype)
    return doc


def _get_manifest(
    client: RegistryClient, repo: str, reference: str, scope: str, expect_digest: str | None
) -> tuple[bytes, str]:
    reply = client.request(
        "GET",
        f"/v2/{repo}/manifests/{reference}",
        scope=scope,
        what=f"pull model manifest {repo}:{reference}",
        headers={"Accept": ACCEPT_MANIFEST},
    )
    body = reply.content
    got = sha256_digest(body)
    if expect_digest and got != expect_digest:
        raise VerificationError(f"manifest digest mismatch: want {expect_digest}, got {got}")
    header = reply.headers.get("docker-content-digest", "")
    if header.startswith("sha256:") and header != got:
        raise VerificationError(
            f"manifest digest mismatch: the registry says {header}, the bytes are {got}"
        )
    return body, reply.headers.get("content-type", "")


def pull(
    name: str | ModelName,
    *,
    store: Store,
    options: PullOptions | None = None,
    progress: Callable[[ProgressEvent], None] = no_progress,
    log: Callable[[str], None] = lambda m: None,
) -> PullResult:
    """Pull `name` into `store`. Raises the error family; leaves the store valid on any failure."""
    options = options or PullOptions()
    parsed = name if isinstance(name, ModelName) else parse_model_name(name)
    check_scheme(parsed, options.transport)
    repo = parsed.display_namespace_model()
    scope = scope_for(repo, "pull")
    local_name = store.resolve(parsed.without_digest())
    progress(ProgressEvent("pulling manifest"))
    with open_client(parsed, options.transport, options.credentials) as client:
        manifest = fetch_manifest(client, parsed, scope)
        blobs = _unique(manifest.blobs())
        outcomes: list[BlobOutcome] = []
        cached: list[str] = []
        with store.lease() as lease:
            lease.add(*(d.digest for d in blobs))
            _check_space(store, [d for d in blobs if not store.has_blob(d.digest)])
            for desc in blobs:
                got = _fetch_blob(client, store, repo, desc, scope, lease, options, progress, log)
                if got is None:
                    cached.append(desc.digest)
                else:
                    outcomes.append(got)
            progress(ProgressEvent("writing manifest"))
            _stored, removed = store.write_manifest(local_name, manifest.raw)
            if removed:
                progress(ProgressEvent("removing unused layers"))
    progress(ProgressEvent("success"))
    return PullResult(local_name.display_shortest(), manifest.digest, outcomes, cached, removed)


def _unique(blobs: list[Descriptor]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for d in blobs:
        if d.digest in seen and seen[d.digest].size != d.size:
            raise VerificationError(f"the manifest lists {d.digest} with two different sizes")
        seen.setdefault(d.digest, d)
    return list(seen.values())


def _check_space(store: Store, missing: list[Descriptor]) -> None:
    """Refuse before downloading anything when the missing blobs cannot fit."""
    store.ensure_dirs()
    need = 0
    for d in missing:
        try:  # a partial file already holds (or reserved) some of its space
            allocated = store.partial_path(d.digest).stat().st_blocks * 512
        except OSError:
            allocated = 0
        need += max(0, d.size - allocated)
    try:
        st = os.statvfs(store.blobs_dir)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise DiskFullError(
            f"not enough disk space in {store.blobs_dir}: the pull needs {need} bytes, {free} are free",
            hint="free some space (ggtool prune, ggtool rm) or use another --store",
        )


def _fetch_blob(
    client: RegistryClient,
    store: Store,
    repo: str,
    desc: Descriptor,
    scope: str,
    lease: Lease,
    options: PullOptions,
    progress: Callable[[ProgressEvent], None],
    log: Callable[[str], None],
) -> BlobOutcome | None:
    """None for a cache hit, else how the download went. One downloader per digest at a time."""
    status = f"pulling {desc.short}"
    if _cache_hit(store, desc, lease):
        progress(ProgressEvent(status, desc.digest, desc.size, desc.size))
        return None
    lock = store.blob_lock(desc.digest)
    waited = False
    while True:
        try:
            lock.acquire(timeout=0.25)
            break
        except Timeout:
            # another process downloads this blob: show its progress from the part records
            if not waited:
                log(f"{desc.short}: another process is downloading it; waiting")
                waited = True
            parts = load_parts(store.partial_part_paths(desc.digest), desc.size) or []
            progress(ProgressEvent(status, desc.digest, desc.size, sum(p.completed for p in parts)))
    try:
        if _cache_hit(store, desc, lease):
            progress(ProgressEvent(status, desc.digest, desc.size, desc.size))
            return None
        progress(ProgressEvent(status, desc.digest, desc.size, 0))
        job = BlobDownload(
            client,
            store,
            repo,
            desc,
            scope=scope,
            lease=lease,
            connections=options.connections,
            part_size=options.part_size,
            progress=progress,
            log=log,
        )
        started = time.monotonic()
        outcome = job.run(verify_retries=options.verify_retries)
        log(f"{desc.short}: {outcome.downloaded} bytes in {time.monotonic() - started:.1f} s")
        progress(ProgressEvent(status, desc.digest, desc.size, desc.size))
        return outcome
    finally:
        lock.release()


def _cache_hit(store: Store, desc: Descriptor, lease: Lease) -> bool:
    if not store.has_blob(desc.digest):
        return False
    info = store.reuse_blob(desc.digest, lease)
    if info.size != desc.size:
        raise VerificationError(
            f"blob {desc.digest} in the store is {info.size} bytes but the manifest says {desc.size}",
            hint="the store copy is damaged: remove the models using it and pull again",
        )
    return True
