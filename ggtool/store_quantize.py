"""`ggtool quantize NAME TYPE`: quantize a model in the store into a new model.

The new model reuses every layer of NAME except the weights, which are re-encoded with
`ggtool.quantize` (through `create`, so the store rules for leases, verified blobs and
manifests apply). Its default name is NAME with `-<type>` appended to the tag, e.g.
`smollm2:135m` → `smollm2:135m-q4_k_m`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ggtool.events import ProgressCallback, no_progress
from ggtool.names import parse_model_name
from ggtool.quantize import QuantizeOptions


@dataclass(frozen=True)
class StoreQuantizeResult:
    name: str
    sha256: str  # the new model's id (sha256 of its manifest)
    size: int
    file_type: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": "success", "model": self.name, "digest": self.sha256,
                "size": self.size, "file_type": self.file_type}


def quantize_store_model(
    model: str,
    file_type: str,
    *,
    new_name: str | None = None,
    store_root: Path | None = None,
    options: QuantizeOptions | None = None,
    progress: ProgressCallback = no_progress,
) -> StoreQuantizeResult:
    from ggtool.create import create_model
    from ggtool.errors import UsageError
    from ggtool.modelfile import CreateRequest
    from ggtool.store import Store
    from quant import recipes

    if options is not None and (options.output_tensor_type or options.token_embedding_type
                                or options.pure or options.allow_requantize):
        raise UsageError("per-tensor options apply to GGUF files only",
                         hint="quantize the model's file, then `ggtool create` from it")
    ft = recipes.parse_file_type(file_type)
    store = Store(store_root)
    src = store.get(parse_model_name(model))
    store.require_model_layer(src)
    target = (parse_model_name(new_name) if new_name
              else replace(src.name, tag=f"{src.name.tag}-{ft.name.lower()}"))
    request = CreateRequest(model=str(target), from_=str(src.name), quantize=ft.name)
    result = create_model(request, store=store, progress=progress)
    m = result.model
    return StoreQuantizeResult(m.display, m.model_id, m.size, ft.name)
