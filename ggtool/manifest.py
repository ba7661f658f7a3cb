"""Manifests, layer descriptors and the model config blob, as Ollama and OCI registries use them.

Parsing is for untrusted bytes (a registry response, a file in someone's store): sizes are
bounded, every digest must be `sha256:<64 lowercase hex>`, every field is type-checked, and
anything wrong raises `InvalidManifestError` (an `InvalidFileError`) with one line saying what.

Serialisation is byte-compatible with Go's `encoding/json` as Ollama uses it
(`json.NewEncoder(f).Encode(v)`): compact, struct fields in declaration order, map keys sorted,
`<`, `>`, `&`, U+2028 and U+2029 escaped, floats in Go's shortest form, and a trailing newline.
So a manifest or config that ggtool creates is the one Ollama would have written.

Main entry points:
    parse_manifest(data)            -> Manifest   (Docker v2 schema 2 or OCI image manifest)
    parse_index(data)               -> ImageIndex (OCI image index / Docker manifest list)
    parse_manifest_or_index(data)   -> either, by media type
    build_manifest(config, layers)  -> Manifest with `raw` = the bytes Ollama would write
    ModelConfig.from_bytes / .to_bytes   the config blob (ConfigV2)
    go_json(obj)                    -> bytes of Go's json.Marshal (no newline)
    validate_digest(s)              -> s, or InvalidDigestError
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ggtool.errors import InvalidFileError

# -- media types ------------------------------------------------------------------------------
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_EMPTY = "application/vnd.oci.empty.v1+json"

_OLLAMA = "application/vnd.ollama.image."
MEDIA_TYPE_MODEL = _OLLAMA + "model"
MEDIA_TYPE_PROJECTOR = _OLLAMA + "projector"
MEDIA_TYPE_ADAPTER = _OLLAMA + "adapter"
MEDIA_TYPE_DRAFT = _OLLAMA + "draft"
MEDIA_TYPE_TEMPLATE = _OLLAMA + "template"
MEDIA_TYPE_PROMPT = _OLLAMA + "prompt"  # legacy name of .template, still read
MEDIA_TYPE_SYSTEM = _OLLAMA + "system"
MEDIA_TYPE_PARAMS = _OLLAMA + "params"
MEDIA_TYPE_MESSAGES = _OLLAMA + "messages"
MEDIA_TYPE_LICENSE = _OLLAMA + "license"
MEDIA_TYPE_EMBED = _OLLAMA + "embed"  # deprecated, ignored
MEDIA_TYPE_TENSOR = _OLLAMA + "tensor"
MEDIA_TYPE_JSON = _OLLAMA + "json"

GGUF_MEDIA_TYPES = frozenset({MEDIA_TYPE_MODEL, MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_ADAPTER, MEDIA_TYPE_DRAFT})
MANIFEST_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})

# The Accept header a pull sends: manifests first, then indexes (a registry picks the first it has).
ACCEPT_MANIFEST = ", ".join(
    [MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST]
)

# -- bounds on untrusted input -----------------------------------------------------------------
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution/registry's own manifest limit
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_LAYERS = 16384  # tensor-layer models carry one layer per tensor (hundreds to a few thousand)
MAX_BLOB_SIZE = 1 << 44  # 16 TiB: far above any model, far below int64 trouble
MAX_MEDIA_TYPE_LEN = 255  # RFC 6838 type/subtype limit
MAX_STRING_FIELD = 4096

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
# RFC 6838 restricted-name, loosely: type/subtype with the usual punctuation, optional params
_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


class InvalidManifestError(InvalidFileError):
    """A manifest, index or config that is not well-formed or breaks a bound."""


class InvalidDigestError(InvalidManifestError):
    """A digest that is not `sha256:<64 lowercase hex>`."""


def validate_digest(digest: object, what: str = "digest") -> str:
    """Return `digest` if it is exactly `sha256:<64 lowercase hex>`, else raise InvalidDigestError."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        shown = digest if isinstance(digest, str) and len(digest) <= 80 else type(digest).__name__
        if isinstance(digest, str) and ":" in digest and not digest.startswith("sha256:"):
            raise InvalidDigestError(f"invalid {what} {shown!r}: only sha256 digests are supported")
        raise InvalidDigestError(f"invalid {what} {shown!r}: expected sha256:<64 lowercase hex>")
    return digest


def is_valid_digest(digest: object) -> bool:
    return isinstance(digest, str) and _DIGEST_RE.fullmatch(digest) is not None


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- Go encoding/json -------------------------------------------------------------------------
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class GoFloat32(float):
    """A float that Go holds as float32 (api.FormatParams): encoded with 32-bit shortest digits."""


def _go_string(s: str) -> str:
    # Go replaces invalid UTF-8 with U+FFFD; a Python str's only equivalent is a lone surrogate.
    s = _SURROGATE_RE.sub("\ufffd", s)
    out = json.dumps(s, ensure_ascii=False)  # escapes " \ \b \f \n \r \t and other C0 as \u00xx, like Go
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group()], out)


def go_float(value: float, bits: int = 64) -> str:
    """Go's encoding/json float format: 'f' in [1e-6, 1e21), else 'e' with a short exponent."""
    f = float(value)
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {f}")
    import numpy as np  # lazily: most commands (pull, push, list) never format a float

    typed: np.floating = np.float32(f) if bits == 32 else np.float64(f)
    a = abs(float(typed))
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = np.format_float_scientific(typed, unique=True, trim="-", exp_digits=2)
        # Go writes 1e-07 as 1e-7 (two-digit negative exponents with a leading 0 only)
        s = re.sub(r"e-0(\d)$", r"e-\1", s)
        return s
    return np.format_float_positional(typed, unique=True, trim="-")


def _go_encode(obj: Any, parts: list[str]) -> None:
    if obj is None:
        parts.append("null")
    elif obj is True:
        parts.append("true")
    elif obj is False:
        parts.append("false")
    elif isinstance(obj, str):
        parts.append(_go_string(obj))
    elif isinstance(obj, GoFloat32):
        parts.append(go_float(obj, 32))
    elif isinstance(obj, numbers.Integral):
        parts.append(str(int(obj)))
    elif isinstance(obj, numbers.Real):
        parts.append(go_float(float(obj), 64))
    elif isinstance(obj, Mapping):
        parts.append("{")
        for i, (k, v) in enumerate(obj.items()):
            if i:
                parts.append(",")
            parts.append(_go_string(str(k)))
            parts.append(":")
            _go_encode(v, parts)
        parts.append("}")
    elif isinstance(obj, list | tuple):
        parts.append("[")
        for i, v in enumerate(obj):
            if i:
                parts.append(",")
            _go_encode(v, parts)
        parts.append("]")
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def go_json(obj: Any) -> bytes:
    """Go's json.Marshal: dicts keep their order (structs); sort map keys before calling (go_map)."""
    parts: list[str] = []
    _go_encode(obj, parts)
    return "".join(parts).encode("utf-8")


def go_json_line(obj: Any) -> bytes:
    """Go's json.NewEncoder(w).Encode(v): json.Marshal plus a trailing newline."""
    return go_json(obj) + b"\n"


def go_map(d: Mapping[str, Any]) -> dict[str, Any]:
    """A dict ordered the way Go encodes a map (keys sorted bytewise; code point order is the same)."""
    return {k: d[k] for k in sorted(d)}


# -- descriptors and manifests ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Descriptor:
    """One content descriptor: a layer or the config.

    `from_` and `name` are Ollama's extra Layer fields (`from`: the model or file a layer came
    from, drives cross-repository mounts; `name`: tensor/file name in tensor-layer models).
    `annotations` and `artifact_type` are OCI fields, kept for display only.
    """

    media_type: str
    digest: str
    size: int
    from_: str = ""
    name: str = ""
    annotations: Mapping[str, str] | None = None
    artifact_type: str = ""

    @property
    def hex(self) -> str:
        """The 64 hex characters of the digest."""
        return self.digest.split(":", 1)[1]

    @property
    def short(self) -> str:
        """The first 12 hex characters (what Ollama prints: `pulling 8eeb52dfb3bb`)."""
        return self.hex[:12]

    def to_go(self) -> dict[str, Any]:
        """Ollama's manifest.Layer field order: mediaType, digest, size, from?, name?."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.from_:
            out["from"] = self.from_
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """A Docker v2 schema 2 or OCI image manifest.

    `raw` holds the exact bytes it was parsed from (or built as); the model id is their sha256.
    """

    schema_version: int
    media_type: str  # "" when an OCI manifest leaves it out
    config: Descriptor
    layers: tuple[Descriptor, ...]
    raw: bytes = b""
    artifact_type: str = ""
    annotations: Mapping[str, str] | None = None

    # -- identity ----------------------------------------------------------------------
    @property
    def digest(self) -> str:
        """`sha256:<hex>` of the raw bytes (the registry's manifest digest)."""
        return sha256_digest(self.raw)

    @property
    def model_id(self) -> str:
        """Ollama's model id: the hex sha256 of the manifest file."""
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def is_oci(self) -> bool:
        return self.media_type != MEDIA_TYPE_DOCKER_MANIFEST

    # -- content -----------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Ollama's Manifest.Size(): layers plus config."""
        return sum(d.size for d in self.layers) + self.config.size

    def blobs(self) -> list[Descriptor]:
        """Layers then config: the order Ollama pulls and pushes them in."""
        return [*self.layers, self.config]

    def digests(self) -> set[str]:
        return {d.digest for d in self.blobs()}

    def layers_of(self, *media_types: str) -> list[Descriptor]:
        return [d for d in self.layers if d.media_type in media_types]

    @property
    def model_layer(self) -> Descriptor | None:
        """The GGUF weights layer, or None for a foreign artifact."""
        found = self.layers_of(MEDIA_TYPE_MODEL)
        return found[0] if found else None

    @property
    def has_tensor_layers(self) -> bool:
        return any(d.media_type == MEDIA_TYPE_TENSOR for d in self.layers)

    def to_go(self) -> dict[str, Any]:
        return {
            "schemaVersion": self.schema_version,
            "mediaType": self.media_type,
            "config": self.config.to_go(),
            "layers": [d.to_go() for d in self.layers],
        }

    def to_bytes(self) -> bytes:
        """The bytes Ollama's WriteManifest writes for this manifest."""
        return go_json_line(self.to_go())


def build_manifest(config: Descriptor, layers: Sequence[Descriptor]) -> Manifest:
    """A new Ollama-style manifest (Docker v2 schema 2); `raw` is exactly what Ollama would write."""
    for d in (config, *layers):
        validate_digest(d.digest, "layer digest")
    m = Manifest(2, MEDIA_TYPE_DOCKER_MANIFEST, config, tuple(layers))
    return Manifest(2, MEDIA_TYPE_DOCKER_MANIFEST, config, tuple(layers), raw=m.to_bytes())


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One manifest referenced by an image index, with its optional platform."""

    descriptor: Descriptor
    platform: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """An OCI image index or Docker manifest list: a pull picks one entry and fetches it."""

    schema_version: int
    media_type: str
    manifests: tuple[IndexEntry, ...]
    raw: bytes = b""

    def pick(self, os_name: str = "linux", arch: str = "amd64") -> IndexEntry | None:
        """The entry for this platform, else the first entry that is a manifest, else None."""
        for e in self.manifests:
            p = e.platform or {}
            if p.get("os") == os_name and p.get("architecture") == arch:
                return e
        for e in self.manifests:
            if e.descriptor.media_type in MANIFEST_MEDIA_TYPES:
                return e
        return None


# -- parsing ----------------------------------------------------------------------------------
def _load_json(data: bytes, what: str, limit: int) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidManifestError(f"{what}: expected bytes")
    data = bytes(data)
    if len(data) > limit:
        raise InvalidManifestError(f"{what} is {len(data)} bytes, more than the {limit} allowed")
    if data.startswith(b"\xef\xbb\xbf"):
        raise InvalidManifestError(f"{what} is not valid JSON (starts with a byte order mark)")
    try:
        text = data.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InvalidManifestError(f"{what} is not valid JSON: {_short(e)}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _short(e: BaseException) -> str:
    s = str(e)
    return s if len(s) <= 120 else s[:117] + "..."


def _str(obj: Mapping[str, Any], key: str, what: str, *, required: bool = False, limit: int = MAX_STRING_FIELD) -> str:
    v = obj.get(key)
    if v is None:
        if required:
            raise InvalidManifestError(f"{what}: missing {key!r}")
        return ""
    if not isinstance(v, str):
        raise InvalidManifestError(f"{what}: {key!r} must be a string")
    if len(v) > limit:
        raise InvalidManifestError(f"{what}: {key!r} is longer than {limit} characters")
    return v


def _media_type(v: str, what: str) -> str:
    if len(v) > MAX_MEDIA_TYPE_LEN or not _MEDIA_TYPE_RE.fullmatch(v):
        raise InvalidManifestError(f"{what}: invalid media type {v[:80]!r}")
    return v


def _annotations(obj: Mapping[str, Any], what: str) -> Mapping[str, str] | None:
    v = obj.get("annotations")
    if v is None:
        return None
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise InvalidManifestError(f"{what}: 'annotations' must map strings to strings")
    return dict(v)


def parse_descriptor(obj: Any, what: str = "descriptor") -> Descriptor:
    """Validate one descriptor object from untrusted JSON."""
    if not isinstance(obj, dict):
        raise InvalidManifestError(f"{what} must be a JSON object")
    media_type = _media_type(_str(obj, "mediaType", what, required=True), what)
    digest = validate_digest(obj.get("digest"), f"{what} digest")
    size = obj.get("size")
    if isinstance(size, bool) or not isinstance(size, int):
        raise InvalidManifestError(f"{what}: 'size' must be an integer")
    if not 0 <= size <= MAX_BLOB_SIZE:
        raise InvalidManifestError(f"{what}: size {size} is out of range")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        from_=_str(obj, "from", what),
        name=_str(obj, "name", what),
        annotations=_annotations(obj, what),
        artifact_type=_str(obj, "artifactType", what, limit=MAX_MEDIA_TYPE_LEN),
    )


def _top(data: bytes, what: str) -> dict[str, Any]:
    doc = _load_json(data, what, MAX_MANIFEST_BYTES)
    if not isinstance(doc, dict):
        raise InvalidManifestError(f"{what} must be a JSON object")
    sv = doc.get("schemaVersion")
    if isinstance(sv, bool) or sv != 2:
        raise InvalidManifestError(f"{what}: unsupported schemaVersion {sv!r} (only 2 is supported)")
    return doc


def _kind(doc: Mapping[str, Any], content_type: str | None) -> str:
    """The document's media type: its own field, else the Content-Type, else by shape."""
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    ct = (content_type or "").split(";", 1)[0].strip()
    if ct in MANIFEST_MEDIA_TYPES or ct in INDEX_MEDIA_TYPES:
        return ct
    # OCI allows leaving mediaType out: a document with `manifests` is an index
    return MEDIA_TYPE_OCI_INDEX if "manifests" in doc and "layers" not in doc else MEDIA_TYPE_OCI_MANIFEST


def parse_manifest(data: bytes, *, content_type: str | None = None, what: str = "manifest") -> Manifest:
    """Parse and validate an image manifest (Docker v2 schema 2 or OCI); keeps the raw bytes."""
    doc = _top(data, what)
    kind = _kind(doc, content_type)
    if kind in INDEX_MEDIA_TYPES:
        raise InvalidManifestError(f"{what} is an image index ({kind}), not a manifest")
    if kind not in MANIFEST_MEDIA_TYPES:
        raise InvalidManifestError(f"{what}: unsupported media type {kind[:80]!r}")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidManifestError(f"{what}: 'mediaType' must be a string")
    config = parse_descriptor(doc.get("config"), f"{what} config")
    layers_raw = doc.get("layers")
    if layers_raw is None:
        layers_raw = []
    if not isinstance(layers_raw, list):
        raise InvalidManifestError(f"{what}: 'layers' must be a list")
    if len(layers_raw) > MAX_LAYERS:
        raise InvalidManifestError(f"{what} has {len(layers_raw)} layers, more than {MAX_LAYERS}")
    layers = tuple(parse_descriptor(x, f"{what} layer {i}") for i, x in enumerate(layers_raw))
    return Manifest(
        schema_version=2,
        media_type=declared or "",
        config=config,
        layers=layers,
        raw=bytes(data),
        artifact_type=_str(doc, "artifactType", what, limit=MAX_MEDIA_TYPE_LEN),
        annotations=_annotations(doc, what),
    )


def parse_index(data: bytes, *, content_type: str | None = None, what: str = "image index") -> ImageIndex:
    """Parse and validate an OCI image index or a Docker manifest list."""
    doc = _top(data, what)
    kind = _kind(doc, content_type)
    if kind not in INDEX_MEDIA_TYPES:
        raise InvalidManifestError(f"{what}: media type {kind[:80]!r} is not an image index")
    entries_raw = doc.get("manifests")
    if not isinstance(entries_raw, list):
        raise InvalidManifestError(f"{what}: 'manifests' must be a list")
    if len(entries_raw) > MAX_LAYERS:
        raise InvalidManifestError(f"{what} lists {len(entries_raw)} manifests, more than {MAX_LAYERS}")
    entries = []
    for i, e in enumerate(entries_raw):
        d = parse_descriptor(e, f"{what} entry {i}")
        platform = e.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise InvalidManifestError(f"{what} entry {i}: 'platform' must be an object")
        entries.append(IndexEntry(d, platform))
    mt = doc.get("mediaType") if isinstance(doc.get("mediaType"), str) else ""
    return ImageIndex(2, mt, tuple(entries), bytes(data))


def parse_manifest_or_index(data: bytes, *, content_type: str | None = None) -> Manifest | ImageIndex:
    """A registry's answer to GET /v2/<repo>/manifests/<ref>: a manifest or an index."""
    doc = _top(data, "manifest")
    if _kind(doc, content_type) in INDEX_MEDIA_TYPES:
        return parse_index(data, content_type=content_type)
    return parse_manifest(data, content_type=content_type)


def digests_in(data: bytes) -> set[str] | None:
    """Every valid digest a manifest file references, leniently (for garbage collection).

    Returns None if the bytes are not a JSON object at all (a corrupt manifest). A layer with
    a malformed digest is skipped rather than failing, so one odd entry cannot make its
    neighbours look unreferenced.
    """
    try:
        doc = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    found: set[str] = set()
    items: list[Any] = [doc.get("config")]
    for key in ("layers", "manifests"):
        if isinstance(doc.get(key), list):
            items.extend(doc[key])
    for it in items:
        if isinstance(it, dict) and is_valid_digest(it.get("digest")):
            found.add(it["digest"])
    return found


# -- the config blob (types/model/config.go ConfigV2) ----------------------------------------
@dataclass(slots=True)
class DraftConfig:
    model_format: str = ""
    architecture: str = ""
    tensor_prefix: str = ""
    config: str = ""

    def to_go(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in ("model_format", "architecture", "tensor_prefix", "config"):
            v = getattr(self, k)
            if v:
                out[k] = v
        return out


# (json key, omitempty) in ConfigV2 declaration order
_CONFIG_FIELDS: tuple[tuple[str, bool], ...] = (
    ("model_format", False),
    ("model_family", False),
    ("model_families", False),
    ("model_type", False),
    ("file_type", False),
    ("renderer", True),
    ("parser", True),
    ("requires", True),
    ("remote_host", True),
    ("remote_model", True),
    ("capabilities", True),
    ("context_length", True),
    ("embedding_length", True),
    ("base_name", True),
    ("draft", True),
    ("architecture", False),
    ("os", False),
)
_STR_FIELDS = {
    "model_format", "model_family", "model_type", "file_type", "renderer", "parser", "requires",
    "remote_host", "remote_model", "base_name", "architecture", "os",
}


@dataclass(slots=True)
class ModelConfig:
    """Ollama's ConfigV2 config blob. Unknown keys (e.g. the older `rootfs`) land in `extra`."""

    model_format: str = ""
    model_family: str = ""
    model_families: list[str] | None = None
    model_type: str = ""
    file_type: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    remote_host: str = ""
    remote_model: str = ""
    capabilities: list[str] | None = None
    context_length: int = 0
    embedding_length: int = 0
    base_name: str = ""
    draft: DraftConfig | None = None
    architecture: str = "amd64"
    os: str = "linux"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_go(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, omitempty in _CONFIG_FIELDS:
            v = getattr(self, key)
            if key == "draft":
                v = v.to_go() if v is not None else None
            if key in ("model_families", "capabilities") and v is not None and len(v) == 0:
                v = [] if not omitempty else None
            if omitempty and (v is None or v == "" or v == 0):
                continue
            out[key] = v
        return out

    def to_bytes(self) -> bytes:
        """The config blob Ollama's createConfigLayer writes (json.Encoder: trailing newline)."""
        return go_json_line(self.to_go())

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelConfig:
        """Parse a config blob leniently: wrong-typed or unknown keys go to `extra`.

        Raises InvalidManifestError only if it is not a JSON object (foreign artifacts may have
        any config; callers that only display it can catch that).
        """
        doc = _load_json(data, "model config", MAX_CONFIG_BYTES)
        if not isinstance(doc, dict):
            raise InvalidManifestError("model config must be a JSON object")
        cfg = cls(architecture="", os="")
        for k, v in doc.items():
            if _config_value_ok(k, v):
                setattr(cfg, k, v)
            elif k == "draft" and isinstance(v, dict):
                cfg.draft = DraftConfig(**{f: v[f] for f in ("model_format", "architecture", "tensor_prefix", "config") if isinstance(v.get(f), str)})
            else:
                cfg.extra[k] = v
        return cfg


def _config_value_ok(k: str, v: Any) -> bool:
    if k in _STR_FIELDS:
        return isinstance(v, str)
    if k in ("model_families", "capabilities"):
        return v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v))
    if k in ("context_length", "embedding_length"):
        return isinstance(v, int) and not isinstance(v, bool)
    return False


def config_descriptor(data: bytes) -> Descriptor:
    """The config layer descriptor for a config blob's bytes."""
    return Descriptor(MEDIA_TYPE_DOCKER_CONFIG, sha256_digest(data), len(data))


def layer_descriptor(media_type: str, data: bytes, *, from_: str = "") -> Descriptor:
    """A layer descriptor for in-memory content (template, system, params …)."""
    return Descriptor(media_type, sha256_digest(data), len(data), from_=from_)


def _as_go_json_number(v: Any) -> Any:
    # /api/create decodes `parameters` into map[string]any, so every number is a float64
    if isinstance(v, bool) or not isinstance(v, int | float | list):
        return v
    if isinstance(v, list):
        return [_as_go_json_number(x) for x in v]
    return float(v)


def params_bytes(params: Mapping[str, Any]) -> bytes:
    """A `.params` layer as Ollama's server writes it: map[string]any decoded from the request
    JSON (numbers are float64) and re-encoded (sorted keys, Go float format, newline)."""
    return go_json_line(go_map({k: _as_go_json_number(v) for k, v in params.items()}))


_MESSAGE_FIELDS = ("role", "content", "thinking", "images", "tool_calls", "tool_name", "tool_call_id")


def messages_bytes(messages: Iterable[Mapping[str, Any]]) -> bytes:
    """A `.messages` layer: []api.Message as Go encodes it (role, content, then omitempty fields)."""
    out = []
    for m in messages:
        d: dict[str, Any] = {"role": str(m.get("role", "")).lower(), "content": str(m.get("content", ""))}
        for k in _MESSAGE_FIELDS[2:]:
            if m.get(k):
                d[k] = m[k]
        out.append(d)
    return go_json_line(out)
