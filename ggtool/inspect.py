"""`inspect`: a GGUF file's header, metadata, tensor table and totals, as plain data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFValueType, LlamaFileType

from ggtool.gguf_io import read_gguf
from ggtool.gguf_io.model import KVEntry

ARRAY_PREVIEW = 8  # elements shown of long arrays unless all=True


def file_type_name(value: Any) -> str | None:
    """general.file_type as llama.cpp names it (e.g. MOSTLY_Q4_K_M -> Q4_K_M)."""
    try:
        name = LlamaFileType(int(value)).name
    except (ValueError, TypeError):
        return None
    return name.removeprefix("MOSTLY_") if name != "ALL_F32" else "F32"


def _json_value(e: KVEntry, full: bool) -> Any:
    v = e.python_value()
    if e.vtype != GGUFValueType.ARRAY:
        return v
    if full or len(v) <= ARRAY_PREVIEW:
        return v
    return {"type": "array", "element_type": e.subtype.name if e.subtype else None,
            "length": len(v), "head": v[:ARRAY_PREVIEW]}


def inspect_gguf(path: str | os.PathLike[str], *, all_values: bool = False) -> dict[str, Any]:
    """Everything `ggtool inspect` shows; long arrays are elided unless `all_values`."""
    p = Path(path)
    with read_gguf(p) as g:
        metadata = {k: _json_value(e, all_values) for k, e in g.kv.items()}
        types = {k: (e.vtype.name if e.vtype != GGUFValueType.ARRAY
                     else f"ARRAY[{e.subtype.name if e.subtype else '?'}]") for k, e in g.kv.items()}
        tensors = [
            {"name": t.name, "type": t.type_name, "shape": list(t.ne), "offset": t.offset,
             "bytes": t.nbytes}
            for t in g.tensors
        ]
        n_params = int(sum(t.n_elements for t in g.tensors))
        tensor_bytes = int(sum(t.nbytes for t in g.tensors))
        ft = g.get("general.file_type")
        by_type: dict[str, int] = {}
        for t in g.tensors:
            by_type[t.type_name] = by_type.get(t.type_name, 0) + 1
        return {
            "path": str(p),
            "version": g.version,
            "architecture": g.architecture,
            "alignment": g.alignment,
            "file_size": g.file_size,
            "data_offset": g.data_offset,
            "tensor_count": len(g.tensors),
            "metadata_count": len(g.kv),
            "parameters": n_params,
            "tensor_bytes": tensor_bytes,
            "file_type": file_type_name(ft) if ft is not None else None,
            "tensor_types": by_type,
            "metadata": metadata,
            "metadata_types": types,
            "tensors": tensors,
        }


def _fmt_value(v: Any) -> str:
    if isinstance(v, dict) and v.get("type") == "array":
        head = ", ".join(repr(x) for x in v["head"])
        return f"[{head}, ...] ({v['length']} {v['element_type']})"
    if isinstance(v, np.ndarray):
        v = v.tolist()
    s = repr(v) if isinstance(v, str) else str(v)
    return s if len(s) <= 200 else s[:200] + f"... ({len(s)} chars)"


def render_inspect(info: dict[str, Any]) -> str:
    from ggtool.cli.output import human_size

    lines = [
        f"file          {info['path']}",
        f"gguf version  {info['version']}",
        f"architecture  {info['architecture']}",
        f"file type     {info['file_type']}",
        f"parameters    {info['parameters']:,}",
        f"size          {human_size(info['file_size'])} ({info['file_size']:,} bytes)",
        f"alignment     {info['alignment']}",
        f"tensors       {info['tensor_count']} ("
        + ", ".join(f"{n} {k}" for k, n in sorted(info["tensor_types"].items())) + ")",
        "",
        f"metadata ({info['metadata_count']} keys)",
    ]
    width = max((len(k) for k in info["metadata"]), default=0)
    for k, v in info["metadata"].items():
        lines.append(f"  {k.ljust(width)}  {_fmt_value(v)}")
    lines += ["", "tensors"]
    nw = max((len(t["name"]) for t in info["tensors"]), default=4)
    for t in info["tensors"]:
        shape = "×".join(str(d) for d in t["shape"])
        lines.append(f"  {t['name'].ljust(nw)}  {t['type']:<6} {shape:<18} {t['bytes']:>12,}")
    return "\n".join(lines)
