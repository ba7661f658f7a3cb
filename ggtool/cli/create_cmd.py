"""`ggtool create NAME -f Modelfile [--quantize TYPE]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ggtool.cli.options import JsonOpt, StoreOpt
from ggtool.cli.output import get_output


def create(
    name: Annotated[str, typer.Argument(help="Name of the new model, e.g. smollm2:135m.")],
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Modelfile (default: ./Modelfile, else FROM .).", dir_okay=False),
    ] = None,
    quantize: Annotated[
        str | None, typer.Option("--quantize", "-q", help="Quantize the model layer (e.g. q4_K_M) on the way in.")
    ] = None,
    store: StoreOpt = None,
    json_flag: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> None:
    """Create a model from a Modelfile: a GGUF, a Hugging Face folder or a model in the store."""
    from ggtool.create import create_model
    from ggtool.errors import NotFoundError
    from ggtool.modelfile import parse_modelfile
    from ggtool.names import parse_model_name
    from ggtool.store import Store

    out = get_output(json_flag, quiet)
    parse_model_name(name)  # fail fast on a bad name, before reading anything
    if file is None:
        file = Path("Modelfile")
        source: bytes = file.read_bytes() if file.is_file() else b"FROM .\n"
    else:
        try:
            source = file.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{file}: no such Modelfile") from None
    from ggtool.events import ProgressEvent

    out.progress(ProgressEvent("gathering model components"))
    req = parse_modelfile(source).to_create_request(file.parent if str(file.parent) else Path("."))
    for w in req.warnings:
        out.warn(w)
    req.model = name
    if quantize:
        req.quantize = quantize
    st = Store(store)

    def pull_missing(base, progress) -> None:  # noqa: ANN001 - FROM a model not here: pull it, like Ollama
        from ggtool.registry import pull

        pull(base, store=st, progress=progress)

    result = create_model(req, store=st, progress=out.progress, pull=pull_missing)
    m = result.model
    out.result(result.to_dict(), f"created {m.display} ({m.short_id}, {_size(m.size)})")


def _size(n: int) -> str:
    from ggtool.cli.output import human_size

    return human_size(n)


def register(app: typer.Typer) -> None:
    app.command("create")(create)
