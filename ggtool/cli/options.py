"""Option types declared once and reused by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (JSON / NDJSON events).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")]
OutputFileOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Output file.", dir_okay=False)
]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", "-t", min=1, help="Worker threads (default: all cores).")
]
StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Model store root (default: $GGTOOL_MODELS, $OLLAMA_MODELS, ~/.ollama/models)."),
]
