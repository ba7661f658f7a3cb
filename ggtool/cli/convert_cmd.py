"""`ggtool convert DIR`: a Hugging Face SafeTensors folder -> one GGUF file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ggtool.cli.options import ForceOpt, JsonOpt, OutputFileOpt, QuietOpt, ThreadsOpt
from ggtool.cli.output import get_output, human_size


class OutType(StrEnum):
    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    q8_0 = "q8_0"
    auto = "auto"


def convert(
    model_dir: Annotated[Path, typer.Argument(help="A Hugging Face model folder (config.json, *.safetensors, tokenizer).")],
    output: OutputFileOpt = None,
    outtype: Annotated[
        OutType | None, typer.Option("--outtype", case_sensitive=False,
                              help="Tensor type: f32, f16, bf16, q8_0, or auto (bf16 stays bf16, else f16).")
    ] = None,
    quantize: Annotated[
        str | None, typer.Option("--quantize", metavar="TYPE",
                                 help="Quantize on the way (Q4_K_M, Q6_K, ...): one pass, same bytes as "
                                 "--outtype f32 followed by `ggtool quantize`.")
    ] = None,
    model_name: Annotated[str | None, typer.Option("--model-name", help="general.name (and the default file name).")] = None,
    metadata: Annotated[
        Path | None, typer.Option("--metadata", help="JSON file overriding general.* metadata (llama.cpp's keys).",
                                  dir_okay=False)
    ] = None,
    threads: ThreadsOpt = None,
    force: ForceOpt = False,
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Convert a Hugging Face checkpoint to GGUF (default name: <model>-<TYPE>.gguf here)."""
    from ggtool.convert import convert as run_convert
    from ggtool.errors import UsageError

    out = get_output(json_flag, quiet)
    if quantize is not None and outtype is not None:
        raise UsageError("give either --outtype or --quantize, not both",
                         hint="--outtype keeps llama.cpp converter's types; --quantize TYPE makes a K-quant file")
    result = run_convert(
        model_dir, output, outtype=(outtype or OutType.auto).value, model_name=model_name,
        metadata=metadata, threads=threads, force=force, quantize=quantize, progress=out.progress,
    )
    data = result.to_dict()
    out.result(
        data,
        f"wrote {result.path} ({human_size(result.size)}, {result.architecture}, {result.file_type}, "
        f"{result.tensors} tensors) in {result.seconds:.1f}s\nsha256 {result.sha256}",
    )


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
