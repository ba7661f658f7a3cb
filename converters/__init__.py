"""Hugging Face checkpoints -> a GGUF plan (metadata + a lazy tensor stream). Writes no file.

Dispatch is by config.json's `architectures[0]`; the family module is imported only when a
model of that family is converted. Adding an architecture = one module with a `CONVERTERS`
dict + one line in ARCHITECTURES (+ one row in the test table).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from converters.errors import ConversionError, ModelFolderError, UnsupportedArchitectureError

if TYPE_CHECKING:
    from converters.base import Converter
    from converters.plan import ConversionPlan

# Hugging Face architecture name -> module under converters/
ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen",
    "Qwen3ForCausalLM": "qwen",
    "Gemma2ForCausalLM": "gemma",
    "Gemma3ForCausalLM": "gemma",
    "Phi3ForCausalLM": "phi3",
    "BertModel": "bert",
}

__all__ = ["ARCHITECTURES", "ConversionError", "converter_for", "plan_conversion", "supported"]


def supported() -> list[str]:
    return sorted(ARCHITECTURES)


def converter_class(hf_arch: str) -> type[Converter]:
    module = ARCHITECTURES.get(hf_arch)
    if module is None:
        raise UnsupportedArchitectureError(
            f"architecture {hf_arch!r} is not supported; supported: {', '.join(supported())}"
        )
    return importlib.import_module(f"converters.{module}").CONVERTERS[hf_arch]


def converter_for(model_dir: str | Path) -> Converter:
    """The converter for a folder, chosen from config.json before any tensor is read."""
    from converters.base import load_config

    path = Path(model_dir)
    config = load_config(path)
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise ModelFolderError(
            f"{path / 'config.json'}: no 'architectures' list; supported: {', '.join(supported())}"
        )
    cls = converter_class(archs[0])
    try:
        return cls(path, config, archs[0])
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise ModelFolderError(f"{path / 'config.json'}: incomplete or invalid config ({e})") from None


def plan_conversion(
    model_dir: str | Path,
    outtype: str = "auto",
    *,
    model_name: str | None = None,
    metadata_override: str | Path | None = None,
) -> ConversionPlan:
    """Index the checkpoint and build the plan; the caller closes it (context manager)."""
    conv = converter_for(model_dir)
    override = Path(metadata_override) if metadata_override is not None else None
    if override is not None and not override.is_file():
        raise ModelFolderError(f"{override}: metadata override file not found")
    return conv.plan(outtype, model_name=model_name, metadata_override=override)
