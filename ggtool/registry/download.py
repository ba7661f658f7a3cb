"""One blob, downloaded in parallel ranged parts, resumable, verified while it arrives.

On-disk state is Ollama's (server/download.go), so either tool resumes the other's download:

- `blobs/sha256-<hex>-partial`: the data file, sized to the blob up front, parts written at
  their offsets;
- `blobs/sha256-<hex>-partial-<N>`: part N's record, `{"N":…,"Offset":…,"Size":…,"Completed":…}`
  plus a newline (Go's json.Encoder). A record is rewritten only after the bytes it counts
  were written, so after a crash (kill -9 included) it never claims more than is on disk.

While parts arrive, a hasher thread reads the data file from the start up to the lowest
offset below which every byte is complete, so by the time the last part lands only a short
tail is left to hash (on a restart the completed prefix is hashed again first). The final
digest check happens before the rename; a mismatch deletes the partial files. Nothing
unverified ever gets a blob name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import mmap
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ggtool.errors import AuthError, GgtoolError, NetworkError, NotFoundError, VerificationError
from ggtool.events import ProgressEvent
from ggtool.manifest import Descriptor
from ggtool.registry.transport import (
    REDIRECT_STATUSES,
    RangeReader,
    RangeStatusError,
    RegistryClient,
    StalledError,
    redact_url,
)
from ggtool.store import Lease, Store

MB = 1000 * 1000
MIN_OLLAMA_PART = 100 * MB  # Ollama's own part bounds, applied when it resumes our files too
MAX_PART = 1000 * MB
RECORD_EVERY = 16 << 20  # rewrite a part record after this many new bytes
BUFFER = 1 << 20
MAX_STALLS = 20  # per part: stalls do not use up tries (as Ollama), but a bound keeps it finite


class DiskFullError(GgtoolError):
    """The store's filesystem has no room for the download."""


@dataclass
class Part:
    n: int
    offset: int
    size: int
    completed: int = 0
    recorded: int = 0  # what the record on disk says

    @property
    def start(self) -> int:
        return self.offset + self.completed

    @property
    def stop(self) -> int:
        return self.offset + self.size

    def record_bytes(self) -> bytes:
        doc = {"N": self.n, "Offset": self.offset, "Size": self.size, "Completed": self.completed}
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def plan_parts(total: int, part_size: int | None = None) -> list[Part]:
    """Consecutive parts covering [0, total). Default size: total/64 within [32 MiB, 1000 MB].

    Smaller parts than Ollama's 100 MB keep the hash frontier close behind the downloads
    (a short tail to hash at the end); Ollama resumes any layout from the records.
    """
    if part_size is None:
        part_size = min(max(-(-total // 64), 32 << 20), MAX_PART)
    part_size = max(1, part_size)
    parts, offset = [], 0
    while offset < total:
        size = min(part_size, total - offset)
        parts.append(Part(len(parts), offset, size))
        offset += size
    if total == 0:
        parts.append(Part(0, 0, 0))
    return parts


def load_parts(paths: list[Path], total: int) -> list[Part] | None:
    """Parts from existing records, or None if they do not describe this blob exactly."""
    parts: list[Part] = []
    for p in paths:
        try:
            doc = json.loads(p.read_bytes()[:4096])
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict):
            return None
        vals = [doc.get(k) for k in ("N", "Offset", "Size", "Completed")]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vals):
            return None
        n, offset, size, completed = vals
        if completed > size:
            return None
        parts.append(Part(n, offset, size, completed, completed))
    parts.sort(key=lambda x: x.offset)
    expect = 0
    for part in parts:
        if part.offset != expect:
            return None
        expect += part.size
    if expect != total or sorted(p.n for p in parts) != list(range(len(parts))):
        return None
    return parts or None


@dataclass
class BlobOutcome:
    digest: str
    size: int
    downloaded: int = 0  # bytes fetched from the network this run
    resumed: int = 0  # bytes kept from an earlier, interrupted download
    attempts: int = 1  # whole-blob attempts (a digest mismatch starts over once)
    stalls: int = 0
    retries: int = 0


@dataclass
class _Shared:
    """State the part workers share."""

    registry_url: str
    direct_url: str | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    failure: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def fail(self, e: BaseException) -> None:
        with self.lock:
            if self.failure is None:
                self.failure = e
        self.stop.set()


class BlobDownload:
    """Download `desc` from `client` into `store` (the caller holds the blob lock and a lease)."""

    def __init__(
        self,
        client: RegistryClient,
        store: Store,
        repository: str,
        desc: Descriptor,
        *,
        scope: str,
        lease: Lease,
        connections: int = 4,
        part_size: int | None = None,
        progress: Callable[[ProgressEvent], None] = lambda e: None,
        log: Callable[[str], None] = lambda m: None,
    ) -> None:
        self.client = client
        self.store = store
        self.desc = desc
        self.scope = scope
        self.lease = lease
        self.connections = max(1, connections)
        self.part_size = part_size
        self.progress = progress
        self.log = log
        self.blob_url = client.url(f"/v2/{repository}/blobs/{desc.digest}")
        self.partial = store.partial_path(desc.digest)
        self.status = f"pulling {desc.short}"

    # -- the whole blob ------------------------------------------------------------------
    def run(self, verify_retries: int = 1) -> BlobOutcome:
        outcome = BlobOutcome(self.desc.digest, self.desc.size)
        while True:
            try:
                self._attempt(outcome)
                return outcome
            except VerificationError:
                self.discard()  # nothing unverified stays behind
                if outcome.attempts > verify_retries:
                    raise
                outcome.attempts += 1
                self.log(f"{self.desc.short}: digest mismatch, downloading again")

    def _attempt(self, outcome: BlobOutcome) -> None:
        total = self.desc.size
        direct = self._head()
        parts = self._prepare(total)
        resumed = sum(p.completed for p in parts)
        outcome.resumed += resumed
        if resumed:
            self.log(f"{self.desc.short}: resuming, {resumed} of {total} bytes already here")
        fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
        threads: list[threading.Thread] = []
        shared = _Shared(self.blob_url, direct)
        hasher: _FrontierHasher | None = None
        try:
            self._reserve(fd, total)
            hasher = _FrontierHasher(fd, parts, total, shared.stop)
            threads.append(threading.Thread(target=hasher.run, name="ggtool-hash", daemon=True))
            threads[0].start()
            queue = [p for p in parts if p.completed < p.size]
            qlock = threading.Lock()
            per_worker: list[dict[str, int]] = []  # one counter dict per thread: no shared +=

            def worker() -> None:
                stats = {"downloaded": 0, "stalls": 0, "retries": 0}
                with qlock:
                    per_worker.append(stats)
                reader = RangeReader(self.client.options, self.client.ssl_context())
                try:
                    while not shared.stop.is_set():
                        with qlock:
                            if not queue:
                                return
                            part = queue.pop(0)
                        self._download_part(reader, fd, part, shared, stats)
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    shared.fail(e)
                finally:
                    reader.close()

            workers = [
                threading.Thread(target=worker, name=f"ggtool-part-{i}", daemon=True)
                for i in range(min(self.connections, max(1, len(queue))))
            ]
            threads += workers
            for w in workers:
                w.start()
            try:
                while alive := [w for w in workers if w.is_alive()]:
                    alive[0].join(timeout=0.1)
                    self._emit(parts)
            finally:
                for p in parts:  # whatever happened, keep what was written
                    self._record(p)
                for stats in per_worker:
                    outcome.downloaded += stats["downloaded"]
                    outcome.stalls += stats["stalls"]
                    outcome.retries += stats["retries"]
            if shared.failure is not None:
                raise shared.failure
            self._emit(parts)
            self.progress(ProgressEvent("verifying sha256 digest"))
            threads[0].join()
            got = hasher.finish()
        except BaseException as e:  # Ctrl-C included: stop every thread before the fd goes
            shared.fail(e)
            raise
        finally:
            deadline = time.monotonic() + 3.0
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))
            if not any(t.is_alive() for t in threads):
                if hasher is not None:
                    hasher.close()
                os.close(fd)
            # else: a thread is stuck in a read; leave the fd open rather than let a later
            # open() reuse its number under a thread that still writes to it
        self._finish(got)

    def _emit(self, parts: list[Part]) -> None:
        done = sum(p.completed for p in parts)
        self.progress(ProgressEvent(self.status, self.desc.digest, self.desc.size, done))

    def _finish(self, got: str) -> None:
        if got != self.desc.digest:
            self.discard()
            raise VerificationError(
                f"digest mismatch, file must be downloaded again: want {self.desc.digest}, got {got}"
            )
        # the hash was read back from the file itself, so these exact bytes are verified
        self.store.install_blob_file(
            self.partial, self.desc.digest, verified=True, lease=self.lease
        )
        for p in self.store.partial_part_paths(self.desc.digest):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def discard(self) -> None:
        """Delete the partial data and records of this digest."""
        for p in [self.partial, *self.store.partial_part_paths(self.desc.digest)]:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    # -- set-up --------------------------------------------------------------------------
    def _head(self) -> str | None:
        """HEAD the blob: its size must match; a redirect gives the direct (CDN) URL."""
        reply = self.client.request(
            "HEAD",
            self.blob_url,
            scope=self.scope,
            what=f"blob {self.desc.short}",
            ok={200, *REDIRECT_STATUSES},
        )
        if reply.status_code in REDIRECT_STATUSES:
            return reply.location()
        length = reply.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) != self.desc.size:
            raise VerificationError(
                f"the registry says blob {self.desc.digest} is {length} bytes, the manifest says {self.desc.size}"
            )
        return None

    def _prepare(self, total: int) -> list[Part]:
        paths = self.store.partial_part_paths(self.desc.digest)
        if paths and self.partial.exists():
            parts = load_parts(paths, total)
            if parts is not None:
                return parts
            self.log(f"{self.desc.short}: unusable partial download records, starting over")
        self.discard()
        parts = plan_parts(total, self.part_size)
        self.store.ensure_dirs()
        for p in parts:
            self._record(p, force=True)
        return parts

    def _reserve(self, fd: int, total: int) -> None:
        """Size the data file; reserve the space so a full disk fails now, not at 97%."""
        have = os.fstat(fd).st_size
        if have > total:
            os.ftruncate(fd, total)
        try:
            if total:
                os.posix_fallocate(fd, 0, total)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise self._disk_full() from None
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            os.ftruncate(fd, total)  # filesystems without fallocate: a sparse file, as Ollama

    def _disk_full(self) -> DiskFullError:
        free = _free_bytes(self.store.blobs_dir)
        return DiskFullError(
            f"not enough disk space in {self.store.blobs_dir} for blob {self.desc.short} "
            f"({self.desc.size} bytes, {free} free)",
            hint="free some space (ggtool prune, ggtool rm) and pull again; finished parts are kept",
        )

    def _record(self, part: Part, force: bool = False) -> None:
        if not force and part.recorded == part.completed:
            return
        path = self.store.partial_part_path(self.desc.digest, part.n)
        # temp + rename: a reader (Ollama or us after kill -9) sees the old or new record, whole.
        # The temp name starts with "." so Ollama's `<blob>-partial-*` glob never picks it up.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        data = part.record_bytes()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            if e.errno == errno.ENOSPC:
                raise self._disk_full() from None
            raise
        part.recorded = part.completed

    # -- one part --------------------------------------------------------------------------
    def _download_part(
        self, reader: RangeReader, fd: int, part: Part, shared: _Shared, stats: dict[str, int]
    ) -> None:
        opts = self.client.options
        tries = stalls = redirects = auths = 0
        buf = bytearray(BUFFER)
        view = memoryview(buf)
        while part.completed < part.size and not shared.stop.is_set():
            with shared.lock:
                url = shared.direct_url or shared.registry_url
            headers = (
                self.client.auth.headers(self.scope) if self.client.is_registry_origin(url) else {}
            )
            try:
                resp = reader.get(url, part.start, part.stop, self.desc.size, headers)
                skip = part.start - resp.start  # >0 only when a server ignored Range
                while part.completed < part.size:
                    if shared.stop.is_set():
                        return
                    if resp.can_splice and not skip:
                        n = resp.splice_to(fd, part.start, min(BUFFER, part.size - part.completed))
                        part.completed += n
                        stats["downloaded"] += n
                        if part.completed - part.recorded >= RECORD_EVERY:
                            self._record(part)
                        tries = 0
                        continue
                    n = resp.readinto(view)
                    chunk = view[:n]
                    if skip:
                        drop = min(skip, n)
                        chunk, skip = chunk[drop:], skip - drop
                        if not len(chunk):
                            continue
                    chunk = chunk[: part.size - part.completed]
                    _pwrite_all(fd, chunk, part.start)
                    part.completed += len(chunk)
                    stats["downloaded"] += len(chunk)
                    if part.completed - part.recorded >= RECORD_EVERY:
                        self._record(part)
                    tries = 0  # progress resets the failure count
                self._record(part)
            except RangeStatusError as e:
                if e.status in REDIRECT_STATUSES:
                    location = e.headers.get("Location") if e.headers else None
                    redirects += 1
                    if not location or redirects > 10:
                        raise NetworkError(
                            f"blob {self.desc.short}: bad redirect from {redact_url(url)}"
                        ) from None
                    with shared.lock:
                        shared.direct_url = urllib.parse.urljoin(url, location)
                    continue
                if e.status == 401 and self.client.is_registry_origin(url) and auths < 2:
                    auths += 1
                    challenges = e.headers.get_all("WWW-Authenticate") if e.headers else None
                    if self.client.auth.on_challenge(challenges or [], self.scope, url):
                        continue
                if url != shared.registry_url and e.status in (401, 403, 404, 410):
                    # an expired presigned URL: ask the registry for a fresh redirect
                    with shared.lock:
                        shared.direct_url = None
                    tries += 1
                elif e.status in (404,):
                    raise NotFoundError(
                        f"blob {self.desc.digest} not found in the registry"
                    ) from None
                elif e.status in (401, 403):
                    raise AuthError(f"blob {self.desc.short}: {e.status} {e}") from None
                elif e.status < 500 and e.status not in (408, 429):
                    raise NetworkError(f"blob {self.desc.short}: {e.status} {e}") from None
                else:
                    tries += 1
                if tries > opts.max_retries:
                    raise NetworkError(
                        f"blob {self.desc.short} part {part.n}: {e.status} {e}, giving up after {tries} tries"
                    ) from None
                stats["retries"] += 1
                self._record(part)
                shared.stop.wait(opts.backoff(tries))
            except StalledError:
                stalls += 1
                stats["stalls"] += 1
                self._record(part)
                self.log(f"{self.desc.short} part {part.n} stalled; retrying")
                if stalls > MAX_STALLS:
                    raise NetworkError(
                        f"blob {self.desc.short}: part {part.n} stalled {stalls} times; giving up",
                        hint="the connection keeps stopping; pull again later (finished parts are kept)",
                    ) from None
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise self._disk_full() from None
                if isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError):
                    raise
                tries = self._retry(part, tries, e, stats)
            except http.client.HTTPException as e:
                tries = self._retry(part, tries, e, stats)

    def _retry(self, part: Part, tries: int, e: BaseException, stats: dict[str, int]) -> int:
        tries += 1
        stats["retries"] += 1
        self._record(part)
        if tries > self.client.options.max_retries:
            raise NetworkError(
                f"blob {self.desc.short} part {part.n}: {type(e).__name__} {e}, giving up after {tries} tries"
            ) from None
        time.sleep(self.client.options.backoff(tries))
        return tries


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _free_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


class _FrontierHasher:
    """SHA-256 of the data file, read up to the lowest incomplete offset as parts arrive."""

    def __init__(self, fd: int, parts: list[Part], total: int, stop: threading.Event) -> None:
        self.fd = fd
        self.parts = parts  # sorted by offset
        self.total = total
        self.stop = stop
        self.hashed = 0
        self.h = hashlib.sha256()
        self.error: BaseException | None = None
        # Hash straight from the page cache through a read-only mapping (no copy into a
        # buffer: ~13% less CPU than preadv); the file is already sized to `total`.
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._buf: bytearray | None = None
        if total > 0 and os.fstat(fd).st_size >= total:
            try:
                self._map = mmap.mmap(fd, total, prot=mmap.PROT_READ)
                self._map.madvise(mmap.MADV_SEQUENTIAL)
                self._view = memoryview(self._map)
            except (OSError, ValueError, AttributeError):
                self._map = None
        if self._view is None:
            self._buf = bytearray(8 << 20)

    def close(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._map is not None:
            self._map.close()
            self._map = None

    def frontier(self) -> int:
        for p in self.parts:
            if p.completed < p.size:
                return p.offset + p.completed
        return self.total

    def _step(self, upto: int) -> None:
        if self._view is not None:
            while self.hashed < upto:
                end = min(upto, self.hashed + (8 << 20))
                self.h.update(self._view[self.hashed : end])
                self.hashed = end
            return
        assert self._buf is not None
        view = memoryview(self._buf)
        while self.hashed < upto:
            want = min(len(view), upto - self.hashed)
            n = os.preadv(self.fd, [view[:want]], self.hashed)
            if n <= 0:
                raise VerificationError("the partial file is shorter than its records say")
            self.h.update(view[:n])
            self.hashed += n

    def run(self) -> None:
        try:
            while self.hashed < self.total and not self.stop.is_set():
                f = self.frontier()
                if f > self.hashed:
                    self._step(f)
                else:
                    time.sleep(0.005)
        except BaseException as e:  # noqa: BLE001 - reported by finish()
            self.error = e

    def finish(self) -> str:
        """Hash whatever is left (the caller knows every part is complete)."""
        if self.error is not None:
            raise self.error
        self._step(self.total)
        return "sha256:" + self.h.hexdigest()
