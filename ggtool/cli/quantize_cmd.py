"""`ggtool quantize MODEL TYPE`: a GGUF file (or, when no such file exists, a store model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ggtool.cli.options import ForceOpt, JsonOpt, OutputFileOpt, QuietOpt, ThreadsOpt
from ggtool.cli.output import get_output, human_size


def quantize(
    model: Annotated[str, typer.Argument(help="Input .gguf file (F32/F16/BF16), or a model name in the store.")],
    file_type: Annotated[str, typer.Argument(metavar="TYPE", help="Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, ... (case-insensitive).")],
    output: OutputFileOpt = None,
    threads: ThreadsOpt = None,
    force: ForceOpt = False,
    output_tensor_type: Annotated[str | None, typer.Option("--output-tensor-type", help="ggml type for output.weight.")] = None,
    token_embedding_type: Annotated[str | None, typer.Option("--token-embedding-type", help="ggml type for token_embd.weight.")] = None,
    pure: Annotated[bool, typer.Option("--pure", help="The file type's default type for every quantizable tensor (no mixtures).")] = False,
    allow_requantize: Annotated[bool, typer.Option("--allow-requantize", help="Accept an already quantized input.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the per-tensor plan and the resulting size; write nothing.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="For a store model: the new model's name (default: NAME's tag + '-<type>').")] = None,
    store: Annotated[Path | None, typer.Option("--store", help="Model store root (for a store model).")] = None,
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Quantize a model with llama.cpp's per-tensor recipes; the same bytes llama-quantize writes."""
    from ggtool.quantize import QuantizeOptions, QuantizePlan, quantize_file

    out = get_output(json_flag, quiet)
    opts = QuantizeOptions(file_type, output_tensor_type, token_embedding_type, pure, allow_requantize, threads)
    path = Path(model)
    if not path.exists() and not model.endswith(".gguf"):
        # not a file: a model in the store (an existing file path wins, as in Ollama)
        from ggtool.store_quantize import quantize_store_model

        res = quantize_store_model(model, file_type, new_name=name, store_root=store, options=opts,
                                   progress=out.progress)
        out.result(res.to_dict(), f"created {res.name} ({res.sha256[:12]}, {human_size(res.size)})")
        return
    res = quantize_file(path, file_type, output, options=opts, overwrite=force, dry_run=dry_run,
                        progress=out.progress)
    if isinstance(res, QuantizePlan):
        lines = [f"{t.name:<40} {t.to_dict()['input_type']:>6} -> {t.to_dict()['type']:<6} "
                 f"{'x'.join(map(str, t.ne)):<16} {t.output_bytes:>12,}" for t in res.tensors]
        s = res.summary()
        lines.append(f"{s['tensors']} tensors, {human_size(s['size'])} ({s['size']:,} bytes)")
        out.result({**s, "plan": [t.to_dict() for t in res.tensors]}, "\n".join(lines))
        return
    out.result(res.to_dict(), f"wrote {res.path} ({res.file_type}, {human_size(res.size)}, sha256 {res.sha256})")


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)
