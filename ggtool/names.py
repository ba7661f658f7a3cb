"""Model names, following Ollama's grammar exactly (types/model/name.go).

A name is `[scheme://][host/][namespace/]model[:tag]`, parsed right to left without regular
expressions, with the defaults registry.ollama.ai / library / latest. ggtool adds one
extension: a trailing `@sha256:<64 hex>` pins the manifest digest (for reproducible pulls).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from ggtool.errors import InvalidNameError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"
MISSING_PART = "!MISSING!"

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")

# part -> (max length, characters allowed after the first one besides [A-Za-z0-9_])
_PART_RULES: dict[str, tuple[int, str]] = {
    "host": (350, "-_.:"),
    "namespace": (80, "-_"),
    "model": (80, "-_."),
    "tag": (80, "-_."),
}


def _is_alnum_(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c == "_"


def is_valid_part(kind: str, s: str) -> bool:
    """Ollama's isValidPart: length first, then the first and later characters."""
    max_len, extra = _PART_RULES[kind]
    if not 1 <= len(s) <= max_len:
        return False
    for i, c in enumerate(s):
        if _is_alnum_(c):
            continue
        if i == 0 or c not in extra:
            return False
    return True


def _cut_last(s: str, sep: str) -> tuple[str, str, bool]:
    """Cut at the last `sep`; an empty side of a present separator is MISSING (cutPromised)."""
    i = s.rfind(sep)
    if i < 0:
        return "", s, False
    left, right = s[:i], s[i + len(sep) :]
    return (left or MISSING_PART), (right or MISSING_PART), True


@dataclass(frozen=True, slots=True)
class ModelName:
    host: str = ""
    namespace: str = ""
    model: str = ""
    tag: str = ""
    scheme: str = ""
    digest: str = ""  # ggtool extension: "sha256:<hex>" or ""

    # -- parsing -----------------------------------------------------------------------
    @classmethod
    def parse_bare(cls, s: str) -> ModelName:
        """ParseNameBare: split without defaults."""
        digest = ""
        at = s.rfind("@")
        if at >= 0 and _DIGEST_RE.fullmatch(s[at + 1 :]):
            s, digest = s[:at], s[at + 1 :]
        host = namespace = tag = scheme = ""
        if s.rfind(":") > s.rfind("/"):
            s, tag, _ = _cut_last(s, ":")
        s, model, found = _cut_last(s, "/")
        if not found:
            return cls(model=model, tag=tag, digest=digest)
        s, namespace, found = _cut_last(s, "/")
        if not found:
            return cls(namespace=namespace, model=model, tag=tag, digest=digest)
        rest = s
        i = rest.find("://")
        if i >= 0:
            scheme, host = rest[:i], rest[i + 3 :]
            scheme = scheme or MISSING_PART
            host = host or MISSING_PART
        else:
            host = rest
        return cls(host=host, namespace=namespace, model=model, tag=tag, scheme=scheme, digest=digest)

    @classmethod
    def parse(cls, s: str) -> ModelName:
        """ParseName: parse_bare merged with the defaults (may be invalid; see is_valid)."""
        return cls.parse_bare(s).merge(DEFAULT_NAME)

    def merge(self, other: ModelName) -> ModelName:
        """Fill empty host/namespace/tag/scheme from `other`; the model is never defaulted."""
        return replace(
            self,
            host=self.host or other.host,
            namespace=self.namespace or other.namespace,
            tag=self.tag or other.tag,
            scheme=self.scheme or other.scheme,
        )

    # -- validity ----------------------------------------------------------------------
    def is_valid(self) -> bool:
        """IsValid == IsFullyQualified: every part present and valid (scheme not checked)."""
        return (
            is_valid_part("host", self.host)
            and is_valid_part("namespace", self.namespace)
            and is_valid_part("model", self.model)
            and is_valid_part("tag", self.tag)
        )

    # -- rendering ---------------------------------------------------------------------
    def __str__(self) -> str:
        out = "/".join(p for p in (self.host, self.namespace, self.model) if p)
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def display_shortest(self) -> str:
        """DisplayShortest: drop the default host, then the default namespace; keep the tag."""
        if self.host.lower() != DEFAULT_HOST:
            base = f"{self.host}/{self.namespace}/{self.model}"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            base = f"{self.namespace}/{self.model}"
        else:
            base = self.model
        return f"{base}:{self.tag}"

    def display_namespace_model(self) -> str:
        """The registry repository path."""
        return f"{self.namespace}/{self.model}"

    def base_url(self) -> str:
        return f"{self.scheme or DEFAULT_SCHEME}://{self.host}"

    def filepath(self) -> PurePosixPath:
        """The 4-level relative path of the manifest in the store."""
        if not self.is_valid():
            raise InvalidNameError(f"invalid model name {str(self)!r}")
        return PurePosixPath(self.host, self.namespace, self.model, self.tag)

    @classmethod
    def from_filepath(cls, path: PurePosixPath | str) -> ModelName:
        """ParseNameFromFilepath: reverse of filepath(); invalid if not exactly 4 valid parts."""
        parts = PurePosixPath(path).parts
        if len(parts) != 4:
            return cls()
        name = cls(host=parts[0], namespace=parts[1], model=parts[2], tag=parts[3])
        return name if name.is_valid() else cls()

    def equal_fold(self, other: ModelName) -> bool:
        """Case-insensitive equality of the four parts (Ollama's EqualFold)."""
        return self.key() == other.key()

    def key(self) -> tuple[str, str, str, str]:
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def without_digest(self) -> ModelName:
        return replace(self, digest="")


DEFAULT_NAME = ModelName(
    host=DEFAULT_HOST, namespace=DEFAULT_NAMESPACE, tag=DEFAULT_TAG, scheme=DEFAULT_SCHEME
)


def parse_model_name(s: str) -> ModelName:
    """Parse and validate; raise InvalidNameError with Ollama's message otherwise."""
    name = ModelName.parse(s)
    if not name.is_valid():
        raise InvalidNameError(
            f"invalid model name {s!r}",
            hint="expected [host/][namespace/]model[:tag], e.g. 'library/smollm2:135m'",
        )
    return name
