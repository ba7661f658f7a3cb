"""The model store: content-addressed blobs and named manifests, in Ollama's exact layout.

```
<root>/manifests/<host>/<namespace>/<model>/<tag>   manifest JSON (model id = sha256 of the file)
<root>/blobs/sha256-<64 hex>                          content-addressed data
<root>/blobs/sha256-<hex>-partial, -partial-<N>       Ollama's resumable download files
<root>/.ggtool-locks/                                 ggtool's locks and leases (Ollama's GC deletes
                                                      unknown files in blobs/, so never there)
```

Guarantees (every ggtool process, any interleaving, Ctrl-C or kill -9 included):

* A blob appears under its final name only after its bytes hashed to that name: `BlobWriter`
  writes a temporary file in `blobs/`, hashes while writing and renames on `commit()` only when
  the digest (and size, if given) match.
* A manifest is written last, atomically (ggtool.atomic), and only when every blob it names
  is present; readers never see a half manifest.
* A blob that a running create or pull is about to reference is never deleted: such a process
  holds a `Lease` naming the digests it uses, and `rm` / `prune` / replacing a manifest skip
  leased digests. `prune` additionally spares anything modified within the grace window (1 h,
  Ollama's). All deletions and manifest writes happen under one short store lock.

Names are resolved case-insensitively to the spelling already on disk (Ollama's
getExistingName), so `Llama3` and `llama3` never become two folders. Every path built from a
name or a digest is validated and checked to stay inside the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from filelock import FileLock, Timeout

from ggtool.atomic import TEMP_MARK, atomic_output
from ggtool.errors import GgtoolError, InvalidFileError, NotFoundError, VerificationError
from ggtool.manifest import (
    MEDIA_TYPE_MODEL,
    InvalidDigestError,
    Manifest,
    digests_in,
    parse_manifest,
    validate_digest,
)
from ggtool.names import ModelName, parse_model_name

DEFAULT_GRACE_SECONDS = 3600.0  # Ollama's startup-GC grace window (v0.21.0)
LOCKS_DIRNAME = ".ggtool-locks"
CHUNK = 1 << 20

_BLOB_NAME_RE = re.compile(r"sha256-([0-9a-f]{64})")
_PARTIAL_RE = re.compile(r"sha256-([0-9a-f]{64})-partial(?:-(\d+))?")
# Ollama's NewLayer temp files: os.CreateTemp(blobs, "sha256-") -> sha256-<decimal digits>
_OLLAMA_TEMP_RE = re.compile(r"sha256-\d{1,20}")
_BLOB_TEMP_PREFIX = f"{TEMP_MARK}blob-"


class StoreError(GgtoolError):
    """The store is unusable (permissions, corrupt manifests where they matter)."""


class ModelNotFoundError(NotFoundError):
    """No manifest under that name."""


class NotAModelError(GgtoolError):
    """A manifest without a GGUF model layer (a foreign OCI artifact) where a GGUF is needed."""


_LOCKS: dict[str, FileLock] = {}


def _shared_lock(path: Path, timeout: float) -> FileLock:
    """One FileLock object per lock file in this process, so every Store of a root re-enters it."""
    key = str(path)
    lock = _LOCKS.get(key)
    if lock is None:
        lock = _LOCKS[key] = FileLock(key, timeout=timeout, preserve_lock_file=True)
    return lock


def default_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The store root: `--store`, else $GGTOOL_MODELS, else $OLLAMA_MODELS, else ~/.ollama/models.

    Environment values are trimmed of spaces and quotes, as Ollama's envconfig does.
    """
    if explicit:
        return Path(explicit).expanduser()
    for var in ("GGTOOL_MODELS", "OLLAMA_MODELS"):
        v = os.environ.get(var, "").strip().strip("\"'").strip()
        if v:
            return Path(v).expanduser()
    return Path.home() / ".ollama" / "models"


def noprune() -> bool:
    """$GGTOOL_NOPRUNE / $OLLAMA_NOPRUNE: keep a replaced manifest's now-unused blobs."""
    for var in ("GGTOOL_NOPRUNE", "OLLAMA_NOPRUNE"):
        v = os.environ.get(var, "").strip().strip("\"'").lower()
        if v in ("1", "true", "t", "yes", "on"):
            return True
    return False


def digest_hex(digest: str) -> str:
    """64 hex of a digest given as `sha256:<hex>` or `sha256-<hex>` (validated)."""
    if isinstance(digest, str) and digest.startswith("sha256-"):
        digest = "sha256:" + digest[7:]
    return validate_digest(digest).split(":", 1)[1]


# -- results ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    created: bool  # False when an identical blob was already there

    @property
    def status(self) -> str:
        """Ollama's create status line for this layer."""
        return f"{'creating new layer' if self.created else 'using existing layer'} {self.digest}"


@dataclass(frozen=True, slots=True)
class StoredModel:
    """One named manifest in the store."""

    name: ModelName
    path: Path
    manifest: Manifest
    modified: float  # manifest mtime (Ollama's modified_at)

    @property
    def model_id(self) -> str:
        """hex sha256 of the manifest file (Ollama's `digest` in /api/tags)."""
        return self.manifest.model_id

    @property
    def short_id(self) -> str:
        return self.model_id[:12]

    @property
    def size(self) -> int:
        return self.manifest.size

    @property
    def display(self) -> str:
        return self.name.display_shortest()

    @property
    def is_model(self) -> bool:
        """True when there is a GGUF weights layer (not a foreign artifact)."""
        return self.manifest.model_layer is not None


@dataclass(frozen=True, slots=True)
class RemoveResult:
    name: ModelName
    model_id: str
    removed_blobs: tuple[str, ...]
    kept_blobs: tuple[str, ...]  # still referenced by another manifest or a running process


@dataclass(frozen=True, slots=True)
class PruneItem:
    path: Path
    size: int
    kind: str  # "blob" (unreferenced), "partial", "temp"
    age: float  # seconds since last modification


@dataclass(slots=True)
class PruneResult:
    items: list[PruneItem] = field(default_factory=list)
    dry_run: bool = False
    skipped_young: int = 0  # unreferenced files spared by the grace window

    @property
    def total_size(self) -> int:
        return sum(i.size for i in self.items)


# -- blob writing -----------------------------------------------------------------------------
class BlobWriter:
    """Write one blob from streamed chunks; it becomes visible only if its digest matches.

        with store.blob_writer(expected_digest="sha256:...", lease=lease) as w:
            for chunk in stream:
                w.write(chunk)
            info = w.commit()          # raises VerificationError on mismatch; temp removed

    Leaving the block without `commit()` (or with an exception) deletes the temporary file.
    Without `expected_digest` the blob is named by whatever the bytes hash to.
    """

    def __init__(
        self,
        store: Store,
        *,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.store = store
        self.expected_digest = validate_digest(expected_digest) if expected_digest else None
        self.expected_size = expected_size
        self.lease = lease
        self._hash = hashlib.sha256()
        self.size = 0
        store.ensure_dirs()
        self.temp_path = store.blobs_dir / f"{_BLOB_TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        self._f: BinaryIO | None = open(self.temp_path, "xb")  # noqa: SIM115 - closed in commit/abort
        self.result: BlobInfo | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._f is None:
            raise StoreError("blob writer is closed")
        n = self._f.write(data)
        self._hash.update(data)
        self.size += n
        if self.expected_size is not None and self.size > self.expected_size:
            self.abort()
            raise VerificationError(
                f"blob {self.expected_digest or ''} is larger than the {self.expected_size} bytes expected"
            )
        return n

    def write_from(self, f: BinaryIO, chunk: int = CHUNK, progress: Callable[[int], None] | None = None) -> None:
        """Copy a whole readable file object into the blob."""
        while True:
            buf = f.read(chunk)
            if not buf:
                return
            self.write(buf)
            if progress:
                progress(self.size)

    @property
    def digest(self) -> str:
        """The sha256 of what was written so far."""
        return "sha256:" + self._hash.hexdigest()

    def commit(self) -> BlobInfo:
        """Verify, then rename into place (or drop the temp file if the blob already exists)."""
        if self.result is not None:
            return self.result
        if self._f is None:
            raise StoreError("blob writer was aborted")
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        finally:
            self._f.close()
            self._f = None
        digest = self.digest
        try:
            if self.expected_size is not None and self.size != self.expected_size:
                raise VerificationError(
                    f"size mismatch for {self.expected_digest or digest}: expected {self.expected_size} bytes, got {self.size}"
                )
            if self.expected_digest and digest != self.expected_digest:
                raise VerificationError(
                    f"digest mismatch, expected {self.expected_digest!r}, got {digest!r}"
                )
            self.result = self.store._install(self.temp_path, digest, self.size, self.lease)
            return self.result
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.temp_path.unlink()

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        with contextlib.suppress(FileNotFoundError):
            self.temp_path.unlink()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.result is None:
            self.abort()


# -- leases -----------------------------------------------------------------------------------
class Lease:
    """The digests a running create/pull uses but no manifest references yet.

    `rm`, `prune` and manifest replacement never delete a leased digest (nor its partial
    download files). A lease lives in `<root>/.ggtool-locks/leases/` and is held by a file lock
    for the life of the process, so a crashed process's lease is recognised as stale.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.id = f"{os.getpid()}-{secrets.token_hex(6)}"
        store.ensure_dirs()
        self._lock = FileLock(str(store.leases_dir / f"{self.id}.lock"))
        self._lock.acquire()
        self.path = store.leases_dir / f"{self.id}.json"
        self.digests: set[str] = set()
        self._write()

    def _write(self) -> None:
        with atomic_output(self.path, fsync=False) as f:
            f.write(json.dumps(sorted(self.digests)).encode())

    def add(self, *digests: str) -> None:
        """Protect digests from deletion (call before checking that a blob exists and reusing it)."""
        new = {validate_digest(d) for d in digests} - self.digests
        if new:
            with self.store.lock():
                self.digests |= new
                self._write()

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._lock.is_locked:
            self._lock.release()
        with contextlib.suppress(FileNotFoundError):
            Path(self._lock.lock_file).unlink()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- the store --------------------------------------------------------------------------------
class Store:
    """One store root. Cheap to construct; creates its folders on first write."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = default_root(root).absolute()
        self.manifests_dir = self.root / "manifests"
        self.blobs_dir = self.root / "blobs"
        self.locks_dir = self.root / LOCKS_DIRNAME
        self.leases_dir = self.locks_dir / "leases"
        self._store_lock: FileLock | None = None

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def ensure_dirs(self) -> None:
        try:
            for d in (self.manifests_dir, self.blobs_dir, self.leases_dir):
                d.mkdir(parents=True, exist_ok=True, mode=0o755)
        except OSError as e:
            raise StoreError(f"cannot create the store at {self.root}: {e.strerror or e}: ensure path elements are traversable") from None

    # -- locks -------------------------------------------------------------------------
    def lock(self, timeout: float = 600.0) -> FileLock:
        """The store lock (reentrant): held for manifest writes, rm, prune and lease updates.

        Held only for short metadata work, never while downloading or hashing.
        """
        if self._store_lock is None:
            self.ensure_dirs()
            self._store_lock = _shared_lock(self.locks_dir / "store.lock", timeout)
        return self._store_lock

    def blob_lock(self, digest: str, timeout: float = -1) -> FileLock:
        """A per-digest lock for whoever downloads or uploads that blob (one process at a time)."""
        self.ensure_dirs()
        return FileLock(str(self.locks_dir / f"blob-sha256-{digest_hex(digest)}.lock"), timeout=timeout)

    def lease(self) -> Lease:
        """A new Lease (use as a context manager)."""
        return Lease(self)

    def leased_digests(self) -> set[str]:
        """Digests held by live leases; stale leases (their process is gone) are removed."""
        found: set[str] = set()
        if not self.leases_dir.is_dir():
            return found
        for p in self.leases_dir.glob("*.json"):
            lock = FileLock(str(p.with_suffix(".lock")), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                try:
                    data = json.loads(p.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(data, list):
                    found.update(d for d in data if isinstance(d, str))
                continue
            try:  # nobody holds it: its process died
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            finally:
                lock.release()
                with contextlib.suppress(FileNotFoundError):
                    Path(lock.lock_file).unlink()
        return found

    # -- paths -------------------------------------------------------------------------
    def _inside(self, path: Path, base: Path) -> Path:
        # defence in depth: validation already excludes '/', '..' and absolute parts
        resolved = Path(os.path.normpath(path))
        if not resolved.is_relative_to(base):
            raise InvalidFileError(f"path {path} would leave the store")
        return resolved

    def blob_path(self, digest: str) -> Path:
        """`blobs/sha256-<hex>` for a `sha256:<hex>` (or `sha256-<hex>`) digest; validated."""
        return self._inside(self.blobs_dir / f"sha256-{digest_hex(digest)}", self.blobs_dir)

    def partial_path(self, digest: str) -> Path:
        """Ollama's in-progress download data file: `blobs/sha256-<hex>-partial`."""
        return self._inside(self.blobs_dir / f"sha256-{digest_hex(digest)}-partial", self.blobs_dir)

    def partial_part_path(self, digest: str, n: int) -> Path:
        """Ollama's JSON state of download part N: `blobs/sha256-<hex>-partial-<N>`."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"invalid part number {n!r}")
        return self._inside(self.blobs_dir / f"sha256-{digest_hex(digest)}-partial-{n}", self.blobs_dir)

    def partial_part_paths(self, digest: str) -> list[Path]:
        """Existing `-partial-<N>` files of a digest, sorted by N."""
        h = digest_hex(digest)
        found = []
        if self.blobs_dir.is_dir():
            for p in self.blobs_dir.glob(f"sha256-{h}-partial-*"):
                m = _PARTIAL_RE.fullmatch(p.name)
                if m and m.group(2) is not None:
                    found.append((int(m.group(2)), p))
        return [p for _, p in sorted(found)]

    def manifest_path(self, name: ModelName | str) -> Path:
        """`manifests/<host>/<namespace>/<model>/<tag>` for a valid name (as spelled)."""
        n = parse_model_name(name) if isinstance(name, str) else name
        rel = n.filepath()  # raises InvalidNameError unless every part is valid
        return self._inside(self.manifests_dir.joinpath(*rel.parts), self.manifests_dir)

    # -- blobs -------------------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} not found") from None

    def open_blob(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")  # noqa: SIM115 - caller closes
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} not found in {self.root}") from None

    def read_blob(self, digest: str, limit: int | None = None) -> bytes:
        """A small blob's bytes (config, template, params …); `limit` bounds what is read."""
        with self.open_blob(digest) as f:
            if limit is None:
                return f.read()
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InvalidFileError(f"blob {digest} is larger than the {limit} bytes expected")
        return data

    def touch_blob(self, digest: str) -> None:
        """Refresh a blob's mtime (Ollama's touchLayer: protects it from the GC grace window)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.blob_path(digest))

    def blob_writer(
        self, *, expected_digest: str | None = None, expected_size: int | None = None, lease: Lease | None = None
    ) -> BlobWriter:
        """A BlobWriter for streamed chunks (the registry client feeds downloads into it)."""
        return BlobWriter(self, expected_digest=expected_digest, expected_size=expected_size, lease=lease)

    def put_bytes(self, data: bytes, *, lease: Lease | None = None) -> BlobInfo:
        with self.blob_writer(lease=lease) as w:
            w.write(data)
            return w.commit()

    def put_stream(
        self,
        chunks: Iterable[bytes],
        *,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        lease: Lease | None = None,
    ) -> BlobInfo:
        with self.blob_writer(expected_digest=expected_digest, expected_size=expected_size, lease=lease) as w:
            for c in chunks:
                w.write(c)
            return w.commit()

    def put_file(
        self,
        path: str | os.PathLike[str],
        *,
        expected_digest: str | None = None,
        lease: Lease | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> BlobInfo:
        """Copy a file into the store as a blob, hashing while copying."""
        p = Path(path)
        try:
            f = open(p, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise NotFoundError(f"{p}: no such file") from None
        with f, self.blob_writer(expected_digest=expected_digest, expected_size=os.fstat(f.fileno()).st_size, lease=lease) as w:
            w.write_from(f, progress=progress)
            return w.commit()

    def install_blob_file(
        self, src: str | os.PathLike[str], digest: str, *, verified: bool = False, lease: Lease | None = None
    ) -> BlobInfo:
        """Move a complete file (e.g. a finished `-partial`) into place as blob `digest`.

        Unless the caller says it already hashed the exact bytes (`verified=True`), the file is
        hashed first; a mismatch deletes it and raises VerificationError. `src` must be on the
        store's filesystem (the partial files are in blobs/).
        """
        src = Path(src)
        validate_digest(digest)
        size = src.stat().st_size
        if not verified:
            h = hashlib.sha256()
            with open(src, "rb") as f:
                while buf := f.read(CHUNK):
                    h.update(buf)
            got = "sha256:" + h.hexdigest()
            if got != digest:
                with contextlib.suppress(FileNotFoundError):
                    src.unlink()
                raise VerificationError(
                    f"digest mismatch, file must be downloaded again: want {digest}, got {got}"
                )
        try:
            return self._install(src, digest, size, lease)
        finally:
            with contextlib.suppress(FileNotFoundError):
                src.unlink()

    def _install(self, src: Path, digest: str, size: int, lease: Lease | None) -> BlobInfo:
        target = self.blob_path(digest)
        with self.lock():
            if lease is not None:
                lease.add(digest)
            created = not target.exists()
            if created:
                os.chmod(src, 0o644)
                os.replace(src, target)
            os.utime(target)
        return BlobInfo(digest, size, created)

    def reuse_blob(self, digest: str, lease: Lease | None = None) -> BlobInfo:
        """Reference an existing blob (Ollama's NewLayerFromLayer): lease it, touch it, stat it."""
        with self.lock():
            if lease is not None:
                lease.add(digest)
            path = self.blob_path(digest)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise NotFoundError(f"blob {digest} not found in {self.root}") from None
            os.utime(path)
        return BlobInfo(digest, size, False)

    # -- names -------------------------------------------------------------------------
    def resolve(self, name: ModelName | str) -> ModelName:
        """The name with each part replaced by its on-disk spelling where one matches (ignoring case).

        Like Ollama's getExistingName, but walking the folder tree level by level, so the
        spelling comes from the folder that would actually hold the manifest.
        """
        n = parse_model_name(name) if isinstance(name, str) else name
        if not n.is_valid():
            n.filepath()  # raises the invalid-name error
        parts = [n.host, n.namespace, n.model, n.tag]
        cur = self.manifests_dir
        for i, part in enumerate(parts):
            if not cur.is_dir():
                break
            try:
                entries = sorted(e.name for e in os.scandir(cur))
            except OSError:
                break
            if part not in entries:
                folded = [e for e in entries if e.lower() == part.lower()]
                if folded:
                    parts[i] = folded[0]
            cur = cur / parts[i]
        return ModelName(host=parts[0], namespace=parts[1], model=parts[2], tag=parts[3], scheme=n.scheme)

    # -- manifests ---------------------------------------------------------------------
    def iter_manifest_files(self) -> Iterator[tuple[ModelName, Path]]:
        """Every `manifests/*/*/*/*` file whose path is a valid name (Ollama's Manifests glob)."""
        if not self.manifests_dir.is_dir():
            return
        for p in sorted(self.manifests_dir.glob("*/*/*/*")):
            if not p.is_file():
                continue
            rel = PurePosixPath(*p.relative_to(self.manifests_dir).parts)
            n = ModelName.from_filepath(rel)
            if n.is_valid():
                yield n, p

    def _load(self, name: ModelName, path: Path) -> StoredModel:
        try:
            with open(path, "rb") as f:
                data = f.read(8 * 1024 * 1024 + 1)
                mtime = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            raise ModelNotFoundError(f"model '{name.display_shortest()}' not found") from None
        m = parse_manifest(data, what=f"manifest of {name.display_shortest()}")
        return StoredModel(name, path, m, mtime)

    def get(self, name: ModelName | str) -> StoredModel:
        """The stored model for a name (resolved case-insensitively); ModelNotFoundError if absent."""
        parsed = parse_model_name(name) if isinstance(name, str) else name
        n = self.resolve(parsed)
        try:
            model = self._load(n, self.manifest_path(n))
        except ModelNotFoundError:
            # the name as the user spelled it, like Ollama's "model 'x' not found"
            raise ModelNotFoundError(f"model '{parsed.display_shortest()}' not found") from None
        if parsed.digest and model.manifest.digest != parsed.digest:
            raise ModelNotFoundError(
                f"model '{n.display_shortest()}' is {model.manifest.digest}, not the pinned {parsed.digest}"
            )
        return model

    def exists(self, name: ModelName | str) -> bool:
        return self.manifest_path(self.resolve(name)).is_file()

    def read_manifest_bytes(self, name: ModelName | str) -> bytes:
        """The exact manifest file bytes (push uploads these, so remote digest = model id)."""
        return self.get(name).manifest.raw

    def require_model_layer(self, model: StoredModel) -> Path:
        """The GGUF weights blob's path, or NotAModelError for a foreign artifact."""
        layer = model.manifest.model_layer
        if layer is None:
            kinds = ", ".join(sorted({d.media_type for d in model.manifest.layers})) or "no layers"
            raise NotAModelError(
                f"{model.display} is not a GGUF model: its manifest has no {MEDIA_TYPE_MODEL} layer ({kinds})"
            )
        path = self.blob_path(layer.digest)
        if not path.is_file():
            raise NotFoundError(f"{model.display}: model blob {layer.digest} is missing from the store")
        return path

    def list_models(self, on_error: Callable[[Path, Exception], None] | None = None) -> list[StoredModel]:
        """All models, newest first (Ollama's /api/tags order). Unreadable manifests are skipped."""
        out = []
        for n, p in self.iter_manifest_files():
            try:
                out.append(self._load(n, p))
            except (InvalidFileError, OSError) as e:
                if on_error:
                    on_error(p, e)
        out.sort(key=lambda m: (-m.modified, str(m.name)))
        return out

    def _referenced(self, exclude: Path | None = None) -> tuple[set[str], list[Path]]:
        """Digests referenced by every manifest file (lenient), and the corrupt ones found."""
        refs: set[str] = set()
        corrupt: list[Path] = []
        for _, p in self.iter_manifest_files():
            if exclude is not None and p == exclude:
                continue
            try:
                data = p.read_bytes()
            except OSError:
                corrupt.append(p)
                continue
            d = digests_in(data)
            if d is None:
                corrupt.append(p)
            else:
                refs |= d
        return refs, corrupt

    def referenced_digests(self) -> set[str]:
        """Every digest any manifest references or a live lease holds."""
        with self.lock():
            refs, _ = self._referenced()
            return refs | self.leased_digests()

    def write_manifest(
        self, name: ModelName | str, manifest: Manifest | bytes, *, prune_old: bool = True
    ) -> tuple[StoredModel, list[str]]:
        """Write a manifest under `name` (resolved), atomically, after checking its blobs exist.

        `manifest` is a parsed Manifest (its `raw` bytes are written) or raw bytes (validated
        first; pulled manifests are stored byte for byte). When it replaces an older manifest,
        the old one's blobs that nothing references any more are deleted (as Ollama does after
        pull and create) unless `prune_old` is False or $OLLAMA_NOPRUNE is set.
        Returns the stored model and the digests removed.
        """
        m = manifest if isinstance(manifest, Manifest) else parse_manifest(bytes(manifest))
        if not m.raw:
            raise StoreError("manifest has no bytes to write (build it with build_manifest)")
        n = self.resolve(name)
        path = self.manifest_path(n)
        removed: list[str] = []
        with self.lock():
            missing = [d.digest for d in m.blobs() if not self.blob_path(d.digest).is_file()]
            if missing:
                raise StoreError(
                    f"cannot write manifest {n.display_shortest()}: blob {missing[0]} is not in the store"
                )
            old: set[str] | None = None
            if path.is_file():
                with contextlib.suppress(OSError):
                    old = digests_in(path.read_bytes())
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                with atomic_output(path) as f:
                    f.write(m.raw)
                os.chmod(path, 0o644)
            except OSError as e:
                raise StoreError(f"cannot write manifest {path}: {e.strerror or e}") from None
            if old and prune_old and not noprune():
                removed = self._delete_unreferenced(old - m.digests())
            stat = path.stat()
        return StoredModel(n, path, m, stat.st_mtime), removed

    def _delete_unreferenced(self, candidates: Iterable[str]) -> list[str]:
        """Delete candidate blobs no manifest and no lease references. Caller holds the lock."""
        candidates = set(candidates)
        if not candidates:
            return []
        refs, _ = self._referenced()
        keep = refs | self.leased_digests()
        removed = []
        for d in sorted(candidates - keep):
            try:
                self.blob_path(d).unlink()
                removed.append(d)
            except FileNotFoundError:
                pass
            except InvalidDigestError:
                continue
        return removed

    def remove(self, name: ModelName | str) -> RemoveResult:
        """Delete a model: the manifest first, then only blobs nothing else references."""
        n = self.resolve(name)
        path = self.manifest_path(n)
        with self.lock():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                shown = name if isinstance(name, ModelName) else parse_model_name(name)
                raise ModelNotFoundError(f"model '{shown.display_shortest()}' not found") from None
            mine = digests_in(data) or set()
            path.unlink()
            self._prune_dirs(self.manifests_dir)
            removed = self._delete_unreferenced(mine)
        model_id = hashlib.sha256(data).hexdigest()
        return RemoveResult(n, model_id, tuple(removed), tuple(sorted(mine - set(removed))))

    def copy(self, src: ModelName | str, dst: ModelName | str) -> StoredModel:
        """Copy a manifest to a new name (same bytes, same model id; no blob work)."""
        s = self.get(src)
        d = self.resolve(dst)
        if self.manifest_path(d) == s.path:
            return s
        stored, _ = self.write_manifest(d, s.manifest, prune_old=True)
        return stored

    def _prune_dirs(self, top: Path) -> None:
        """Remove empty folders under `top` (Ollama's PruneDirectory), keeping `top`."""
        if not top.is_dir():
            return
        for dirpath, _dirnames, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
            p = Path(dirpath)
            if p == top or p.is_symlink():
                continue
            with contextlib.suppress(OSError):
                p.rmdir()  # fails unless empty

    def prune(
        self, *, dry_run: bool = False, grace: float = DEFAULT_GRACE_SECONDS, now: float | None = None
    ) -> PruneResult:
        """Remove unreferenced blobs, stale partial downloads and temp files older than `grace`.

        Refuses (StoreError) if any manifest is unreadable: its blobs would look unreferenced.
        Leased digests and digests whose download lock is held are always kept.
        """
        result = PruneResult(dry_run=dry_run)
        if not self.blobs_dir.is_dir():
            return result
        with self.lock():
            refs, corrupt = self._referenced()
            if corrupt:
                raise StoreError(
                    f"corrupt manifest {corrupt[0]}: not pruning (its blobs would look unreferenced)",
                    hint="fix or remove that file, then run prune again",
                )
            keep = refs | self.leased_digests()
            t = time.time() if now is None else now
            for entry in sorted(os.scandir(self.blobs_dir), key=lambda e: e.name):
                if not entry.is_file(follow_symlinks=False):
                    continue
                kind = self._prune_kind(entry.name, keep)
                if kind is None:
                    continue
                st = entry.stat(follow_symlinks=False)
                age = t - st.st_mtime
                if age < grace:
                    result.skipped_young += 1
                    continue
                item = PruneItem(Path(entry.path), st.st_size, kind, age)
                if not dry_run:
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        continue
                result.items.append(item)
            # scratch folders of creates that were killed (`.ggtool-create-*` in the root)
            for entry in sorted(self.root.glob(".ggtool-create-*")):
                if not entry.is_dir() or entry.is_symlink():
                    continue
                age = t - entry.stat().st_mtime
                if age < grace:
                    result.skipped_young += 1
                    continue
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
                result.items.append(PruneItem(entry, size, "temp", age))
                if not dry_run:
                    shutil.rmtree(entry, ignore_errors=True)
            if not dry_run:
                self._prune_dirs(self.manifests_dir)
        return result

    def _prune_kind(self, filename: str, keep: set[str]) -> str | None:
        m = _BLOB_NAME_RE.fullmatch(filename)
        if m:
            return None if f"sha256:{m.group(1)}" in keep else "blob"
        m = _PARTIAL_RE.fullmatch(filename)
        if m:
            digest = f"sha256:{m.group(1)}"
            if digest in keep or self._download_active(digest):
                return None
            return "partial"
        if filename.startswith(_BLOB_TEMP_PREFIX) or _OLLAMA_TEMP_RE.fullmatch(filename):
            return "temp"
        return None

    def _download_active(self, digest: str) -> bool:
        lock = self.blob_lock(digest, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return True
        lock.release()
        return False
