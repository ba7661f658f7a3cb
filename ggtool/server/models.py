"""What the server needs to know about a stored model before it runs it.

`ModelCatalog.resolve(name)` reads the manifest and small layers through `ggtool.store` and
`ggtool.show`, and the GGUF header (once per blob, cached) for the facts scheduling needs:
training context, KV-cache geometry (for the memory estimate), pooling (embedding model) and
the chat template. Capabilities follow Ollama's Model.Capabilities().
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggtool.errors import GgtoolError, InvalidNameError, NotFoundError
from ggtool.names import ModelName, parse_model_name
from ggtool.server.templates import PromptTemplate, select_template


class ModelNotFound(NotFoundError):
    pass


class InvalidModelName(InvalidNameError):
    pass


@dataclass(frozen=True)
class GGUFFacts:
    architecture: str = ""
    n_ctx_train: int = 0
    n_layer: int = 0
    n_embd: int = 0
    n_head: int = 0
    n_head_kv: int = 0
    key_length: int = 0
    value_length: int = 0
    pooling: bool = False
    chat_template: str = ""
    file_size: int = 0
    vision: bool = False

    def kv_bytes(self, num_ctx: int, num_parallel: int, bytes_per: float = 2.0) -> int:
        """KV cache size: K and V for every layer, head and position (f16 by default)."""
        if self.pooling:  # encoder/embedding models keep no KV cache worth counting
            return 0
        heads = self.n_head_kv or self.n_head
        k = self.key_length or (self.n_embd // max(1, self.n_head))
        v = self.value_length or k
        return int(self.n_layer * num_ctx * num_parallel * heads * (k + v) * bytes_per)


def _first_int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, (list, tuple)) and v:
        return max(int(x) for x in v)
    try:
        import numpy as np

        if isinstance(v, np.ndarray) and v.size:
            return int(v.max())
    except ImportError:
        pass
    return 0


def read_gguf_facts(path: Path) -> GGUFFacts:
    from ggtool.gguf_io import read_gguf

    with read_gguf(path) as g:
        arch = g.architecture or ""

        def get(key: str) -> Any:
            return g.get(f"{arch}.{key}")

        return GGUFFacts(
            architecture=arch,
            n_ctx_train=_first_int(get("context_length")),
            n_layer=_first_int(get("block_count")),
            n_embd=_first_int(get("embedding_length")),
            n_head=_first_int(get("attention.head_count")),
            n_head_kv=_first_int(get("attention.head_count_kv")),
            key_length=_first_int(get("attention.key_length")),
            value_length=_first_int(get("attention.value_length")),
            pooling=f"{arch}.pooling_type" in g.kv,
            chat_template=g.get("tokenizer.chat_template") or "",
            file_size=g.file_size,
            vision=f"{arch}.vision.block_count" in g.kv,
        )


@dataclass
class ServedModel:
    """A stored model resolved for serving."""

    name: ModelName
    short: str  # display_shortest(): "smollm2:latest"
    model_id: str  # manifest sha256 hex (Ollama's digest)
    path: Path  # the GGUF weights blob
    go_template: str | None
    system: str
    parameters: dict[str, Any]
    messages: list[dict[str, Any]]
    details: dict[str, Any]
    size: int
    modified: float
    facts: GGUFFacts
    config_capabilities: list[str] = field(default_factory=list)
    projectors: list[Path] = field(default_factory=list)
    adapters: list[Path] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Runner key: the weights blob plus anything else that changes what is loaded."""
        return f"{self.path}|{','.join(map(str, self.adapters))}"

    def template(self, *, bos_token: str = "", eos_token: str = "", prefer_go: bool | None = None) -> PromptTemplate:
        return select_template(
            self.go_template, self.facts.chat_template or None,
            bos_token=bos_token, eos_token=eos_token, prefer_go=prefer_go,
        )

    @property
    def capabilities(self) -> list[str]:
        caps: list[str] = list(self.config_capabilities)

        def add(c: str) -> None:
            if c not in caps:
                caps.append(c)

        add("embedding" if self.facts.pooling else "completion")
        if self.facts.vision or self.projectors:
            add("vision")
        try:
            for c in sorted(self.template().capabilities):
                add(c)
        except GgtoolError:
            pass
        return caps


class ModelCatalog:
    """Resolves names against one store; caches GGUF facts per blob."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._facts: dict[tuple[str, float, int], GGUFFacts] = {}
        self._lock = threading.Lock()

    def parse(self, name: str) -> ModelName:
        if not isinstance(name, str) or not name.strip():
            raise InvalidModelName("model is required")
        try:
            return parse_model_name(name)
        except InvalidNameError:
            raise InvalidModelName(f'name "{name}" is invalid') from None

    def facts_for(self, path: Path) -> GGUFFacts:
        st = path.stat()
        key = (str(path), st.st_mtime, st.st_size)
        with self._lock:
            f = self._facts.get(key)
        if f is None:
            f = read_gguf_facts(path)
            with self._lock:
                self._facts[key] = f
        return f

    def resolve(self, name: str) -> ServedModel:
        """The model for a request's `model` field (blocking: call from a thread)."""
        from ggtool.show import model_parts

        parsed = self.parse(name)
        try:
            stored = self.store.get(parsed)
        except NotFoundError:
            raise ModelNotFound(f"model '{name}' not found") from None
        parts = model_parts(self.store, stored)
        if parts.model_path is None:
            raise ModelNotFound(f"model '{name}' not found")
        if not parts.model_path.is_file():
            raise ModelNotFound(f'model "{name}" not found, try pulling it first')
        facts = self.facts_for(parts.model_path)
        cfg = parts.config
        details = {
            "parent_model": parts.parent_model,
            "format": cfg.model_format or "gguf",
            "family": cfg.model_family,
            "families": cfg.model_families,
            "parameter_size": cfg.model_type,
            "quantization_level": cfg.file_type,
        }
        return ServedModel(
            name=stored.name,
            short=stored.name.display_shortest(),
            model_id=stored.model_id,
            path=parts.model_path,
            go_template=parts.template,
            system=parts.system,
            parameters=dict(parts.parameters),
            messages=list(parts.messages),
            details=details,
            size=stored.size,
            modified=stored.modified,
            facts=facts,
            config_capabilities=list(cfg.capabilities or []),
            projectors=list(parts.projector_paths),
            adapters=list(parts.adapter_paths),
        )
