"""`push`: every blob the registry lacks, then the manifest as the exact bytes stored locally.

Per blob (layers then config, as Ollama): HEAD to skip what the registry has; a
cross-repository mount when the layer records where it came from (`from`); otherwise an
upload session (POST), sent whole (PUT ?digest=) when small or in chunks (PATCH with
Content-Range, then PUT ?digest=). Ollama's registry may answer a PATCH with a 307 to
storage: the chunk then goes there by PUT, and the commit carries Ollama's md5 `etag`.
An interrupted chunked upload resumes where the registry says it stopped (GET on the
session URL), also in a later run: the session URL is remembered under $GGTOOL_HOME/uploads.

The manifest is uploaded byte for byte, so the registry's digest equals the local model id
(Ollama re-serialises it and changes the digest; this keeps `ggtool list` ids and registry
digests the same).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ggtool.atomic import atomic_output
from ggtool.errors import GgtoolError, NetworkError, VerificationError
from ggtool.events import ProgressEvent, no_progress
from ggtool.manifest import MEDIA_TYPE_OCI_MANIFEST, Descriptor, sha256_digest
from ggtool.names import ModelName, parse_model_name
from ggtool.registry.auth import scope_for
from ggtool.registry.credentials import Credentials, ggtool_home
from ggtool.registry.pull import check_scheme, open_client
from ggtool.registry.transport import REDIRECT_STATUSES, RegistryClient, TransportOptions
from ggtool.store import Store

MONOLITHIC_MAX = 64 << 20  # blobs up to this size go in one PUT
CHUNK = 64 << 20
READ = 1 << 20


@dataclass(frozen=True)
class PushOptions:
    transport: TransportOptions = field(default_factory=TransportOptions)
    chunk_size: int = CHUNK
    monolithic_max: int = MONOLITHIC_MAX
    credentials: Credentials | None = None
    mount: bool = True


@dataclass
class PushResult:
    name: str
    digest: str
    uploaded: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    uploaded_bytes: int = 0

    def to_dict(self) -> dict:
        return {
            "status": "success",
            "name": self.name,
            "digest": self.digest,
            "uploaded": len(self.uploaded),
            "mounted": len(self.mounted),
            "skipped": len(self.skipped),
            "uploaded_bytes": self.uploaded_bytes,
        }


def push(
    name: str | ModelName,
    *,
    store: Store,
    options: PushOptions | None = None,
    progress: Callable[[ProgressEvent], None] = no_progress,
    log: Callable[[str], None] = lambda m: None,
) -> PushResult:
    options = options or PushOptions()
    parsed = name if isinstance(name, ModelName) else parse_model_name(name)
    check_scheme(parsed, options.transport)
    progress(ProgressEvent("retrieving manifest"))
    model = store.get(parsed.without_digest())
    raw = store.read_manifest_bytes(model.name)
    manifest = model.manifest
    repo = parsed.display_namespace_model()
    sources = _mount_sources(manifest.blobs(), repo) if options.mount else {}
    scope = " ".join(
        [
            scope_for(repo, "pull,push"),
            *(scope_for(r, "pull") for r in sorted(set(sources.values()))),
        ]
    )
    result = PushResult(parsed.without_digest().display_shortest(), sha256_digest(raw))
    with open_client(parsed, options.transport, options.credentials) as client:
        seen: set[str] = set()
        for desc in manifest.blobs():
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            _push_blob(
                client,
                store,
                repo,
                desc,
                sources.get(desc.digest),
                scope,
                options,
                progress,
                log,
                result,
            )
        progress(ProgressEvent("pushing manifest"))
        media_type = manifest.media_type or MEDIA_TYPE_OCI_MANIFEST
        reply = client.request(
            "PUT",
            f"/v2/{repo}/manifests/{parsed.tag}",
            scope=scope,
            what=f"push manifest {repo}:{parsed.tag}",
            headers={"Content-Type": media_type},
            body=raw,
            ok={200, 201, 202},
        )
        remote = reply.headers.get("docker-content-digest", "")
        if remote and remote != result.digest:
            raise VerificationError(
                f"the registry stored the manifest as {remote}, the local model is {result.digest}"
            )
    progress(ProgressEvent("success"))
    return result


def _mount_sources(blobs: list[Descriptor], repo: str) -> dict[str, str]:
    """digest → repository to mount from, for layers whose `from` names another model."""
    out: dict[str, str] = {}
    for d in blobs:
        if not d.from_:
            continue
        src = ModelName.parse(d.from_)
        if src.is_valid() and src.display_namespace_model() != repo:
            out[d.digest] = src.display_namespace_model()
    return out


def _push_blob(
    client: RegistryClient,
    store: Store,
    repo: str,
    desc: Descriptor,
    mount_from: str | None,
    scope: str,
    options: PushOptions,
    progress: Callable[[ProgressEvent], None],
    log: Callable[[str], None],
    result: PushResult,
) -> None:
    status = f"pushing {desc.short}"
    size = store.blob_size(desc.digest)
    if size != desc.size:
        raise VerificationError(
            f"local blob {desc.digest} is {size} bytes, the manifest says {desc.size}"
        )
    progress(ProgressEvent(status, desc.digest, desc.size, 0))
    head = client.request(
        "HEAD",
        f"/v2/{repo}/blobs/{desc.digest}",
        scope=scope,
        what=f"blob {desc.short}",
        ok={200, 404, *REDIRECT_STATUSES},
    )
    if head.status_code != 404:
        result.skipped.append(desc.digest)
        progress(ProgressEvent(status, desc.digest, desc.size, desc.size))
        return
    state = _UploadState(client.host, repo, desc.digest)
    location, offset = state.resume(client, scope)
    if location is None:
        path = f"/v2/{repo}/blobs/uploads/"
        if mount_from:
            path += f"?mount={desc.digest}&from={mount_from}"
        reply = client.request(
            "POST", path, scope=scope, what=f"start upload of {desc.short}", ok={201, 202}
        )
        if reply.status_code == 201:
            result.mounted.append(desc.digest)
            log(f"{desc.short}: mounted from {mount_from}")
            progress(ProgressEvent(status, desc.digest, desc.size, desc.size))
            return
        location = _require_location(reply.location(), desc)
        offset = 0
    if desc.size <= options.monolithic_max and offset == 0:
        _put_whole(client, store, desc, location, scope)
        sent = desc.size
    else:
        if offset:
            log(f"{desc.short}: resuming the upload at byte {offset}")
        sent = _put_chunks(
            client, store, desc, location, offset, scope, options, state, progress, status
        )
    state.clear()
    result.uploaded.append(desc.digest)
    result.uploaded_bytes += sent
    progress(ProgressEvent(status, desc.digest, desc.size, desc.size))


def _require_location(location: str | None, desc: Descriptor) -> str:
    if not location:
        raise NetworkError(f"upload of {desc.short}: the registry gave no upload location")
    return location


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(query), "")
    )


def _file_chunks(
    store: Store, digest: str, start: int, length: int
) -> Callable[[], Iterator[bytes]]:
    def gen() -> Iterator[bytes]:
        with store.open_blob(digest) as f:
            f.seek(start)
            left = length
            while left > 0:
                buf = f.read(min(READ, left))
                if not buf:
                    raise GgtoolError(f"blob {digest} changed while it was being pushed")
                left -= len(buf)
                yield buf

    return gen


def _put_whole(
    client: RegistryClient, store: Store, desc: Descriptor, location: str, scope: str
) -> None:
    reply = client.request(
        "PUT",
        _with_query(location, digest=desc.digest),
        scope=scope,
        what=f"upload of {desc.short}",
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
        body=_file_chunks(store, desc.digest, 0, desc.size),
        ok={201, 204},
    )
    _check_committed(reply.headers.get("docker-content-digest", ""), desc)


def _check_committed(remote: str, desc: Descriptor) -> None:
    if remote and remote != desc.digest:
        raise VerificationError(f"the registry stored blob {desc.short} as {remote}")


def _put_chunks(
    client: RegistryClient,
    store: Store,
    desc: Descriptor,
    location: str,
    offset: int,
    scope: str,
    options: PushOptions,
    state: _UploadState,
    progress: Callable[[ProgressEvent], None],
    status: str,
) -> int:
    """Upload from `offset` on; returns the bytes this run sent."""
    md5s: list[bytes] = []  # Ollama's etag: md5 of the concatenated part md5s
    failures = 0
    sent = 0
    while offset < desc.size:
        length = min(options.chunk_size, desc.size - offset)
        end = offset + length - 1
        state.save(location, offset)
        try:
            reply = client.request(
                "PATCH",
                location,
                scope=scope,
                what=f"upload of {desc.short}",
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{end}",
                    "X-Redirect-Uploads": "1",
                },
                body=_file_chunks(store, desc.digest, offset, length),
                ok={202, 204, 307},
            )
        except NetworkError:
            failures += 1
            if failures > client.options.max_retries:
                raise
            time.sleep(client.options.backoff(failures))
            got = _session_offset(client, location, scope)
            if got is None:
                raise
            offset = got
            continue
        if reply.status_code == 307:
            # Ollama: the chunk goes to storage by PUT (no registry credentials there)
            target = reply.headers.get("location")
            if not target:
                raise NetworkError(f"upload of {desc.short}: redirect without a location")
            client.request(
                "PUT",
                target,
                scope=scope,
                what=f"upload of {desc.short}",
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
                body=_file_chunks(store, desc.digest, offset, length),
                ok={200, 201, 204},
            )
        md5s.append(_md5(store, desc.digest, offset, length))
        sent += length
        nxt = reply.headers.get("docker-upload-location")
        location = reply.location() if nxt or reply.status_code != 307 else location
        location = _require_location(location, desc)
        offset = end + 1
        progress(ProgressEvent(status, desc.digest, desc.size, offset))
    state.save(location, offset)
    etag = f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}" if md5s else None
    params = {"digest": desc.digest, **({"etag": etag} if etag else {})}
    reply = client.request(
        "PUT",
        _with_query(location, **params),
        scope=scope,
        what=f"commit upload of {desc.short}",
        headers={"Content-Type": "application/octet-stream", "Content-Length": "0"},
        body=b"",
        ok={201, 204},
    )
    _check_committed(reply.headers.get("docker-content-digest", ""), desc)
    return sent


def _md5(store: Store, digest: str, start: int, length: int) -> bytes:
    h = hashlib.md5()
    for buf in _file_chunks(store, digest, start, length)():
        h.update(buf)
    return h.digest()


def _session_offset(client: RegistryClient, location: str, scope: str) -> int | None:
    """Where an upload session stands (GET → 204 with `Range: 0-<last>`), or None if gone."""
    try:
        reply = client.request("GET", location, scope=scope, what="upload status", ok={204})
    except GgtoolError:
        return None
    rng = reply.headers.get("range", "")
    try:
        last = int(rng.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0
    return last + 1


class _UploadState:
    """The session URL of an unfinished chunked upload, so a later run can resume it."""

    def __init__(self, host: str, repo: str, digest: str) -> None:
        key = hashlib.sha256(f"{host}/{repo}@{digest}".encode()).hexdigest()[:40]
        self.path: Path = ggtool_home() / "uploads" / f"{key}.json"

    def resume(self, client: RegistryClient, scope: str) -> tuple[str | None, int]:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None, 0
        location = doc.get("location") if isinstance(doc, dict) else None
        if not isinstance(location, str) or not client.is_registry_origin(location):
            self.clear()
            return None, 0
        offset = _session_offset(client, location, scope)
        if offset is None:
            self.clear()
            return None, 0
        return location, offset

    def save(self, location: str, offset: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with atomic_output(self.path, fsync=False) as f:
            os.fchmod(f.fileno(), 0o600)  # session URLs can carry state tokens
            f.write(json.dumps({"location": location, "offset": offset}).encode())

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
