"""`ggtool inspect FILE.gguf`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ggtool.cli.options import JsonOpt, QuietOpt
from ggtool.cli.output import get_output


def inspect(
    file: Annotated[Path, typer.Argument(help="A .gguf file.")],
    all_values: Annotated[bool, typer.Option("--all", help="Show long arrays in full.")] = False,
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show a GGUF file's header, metadata, tensors and totals."""
    from ggtool.inspect import inspect_gguf, render_inspect

    out = get_output(json_flag, quiet)
    info = inspect_gguf(file, all_values=all_values)
    out.result(info, render_inspect(info))


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
