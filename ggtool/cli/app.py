"""The `ggtool` command: a typer app that mounts one module per command group.

Each module in COMMAND_MODULES defines `register(app)`. Modules import heavy libraries inside
their command functions, so `ggtool --help` stays fast.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from typing import Annotated

# httpx imports its own command-line tool (click, rich, pygments: ~45 ms) whenever those happen
# to be installed; this process never runs it, and a None entry makes httpx skip it
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import typer  # noqa: E402

from ggtool import LLAMA_CPP_COMMIT, LLAMA_CPP_PYTHON_VERSION, __version__  # noqa: E402
from ggtool.cli import output  # noqa: E402
from ggtool.errors import exit_code_for, is_user_error  # noqa: E402

COMMAND_MODULES = [
    "ggtool.cli.inspect_cmd",
    "ggtool.cli.convert_cmd",
    "ggtool.cli.quantize_cmd",
    "ggtool.cli.store_cmds",
    "ggtool.cli.create_cmd",
    "ggtool.cli.registry_cmds",
    "ggtool.cli.serve_cmds",
]

app = typer.Typer(
    name="ggtool",
    help="Convert, quantize, store, move and serve local models (GGUF, Ollama, OCI).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_info() -> dict[str, str]:
    from importlib.metadata import version

    import gguf  # noqa: F401  (the version we match is the installed one)

    return {
        "version": __version__,
        "llama_cpp_commit": LLAMA_CPP_COMMIT,
        "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION,
        "gguf": version("gguf"),
        "python": sys.version.split()[0],
    }


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Show versions and exit.")] = False,
    json_flag: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    settings = output.global_settings()
    settings.json, settings.quiet, settings.debug = json_flag, quiet, debug
    if version:
        info = version_info()
        if json_flag:
            print(json.dumps(info))
        else:
            print(
                f"ggtool {info['version']} (llama.cpp {info['llama_cpp_commit']}, "
                f"llama-cpp-python {info['llama_cpp_python']}, gguf {info['gguf']})"
            )
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _mount() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_mount()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map every outcome to one exit code."""
    output.reset()
    try:
        rv = app(args=argv, prog_name="ggtool", standalone_mode=False)
        # typer turns KeyboardInterrupt into Exit(130) and returns exit codes in this mode
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        if code == 130:
            output.current_output().error("interrupted")
        return code
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        output.current_output().error("interrupted")
        return 130
    except typer.TyperException as e:
        # usage errors: the parser's own message plus the usage line
        show = getattr(e, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:
            print(f"Error: {e.format_message()}", file=sys.stderr)
        return e.exit_code if e.exit_code else 2
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - the one place that formats every error
        out = output.current_output()
        if output.global_settings().debug:
            traceback.print_exc()
        if is_user_error(e):
            out.error(str(e))
        else:
            out.error(f"internal error: {type(e).__name__}: {e} (rerun with --debug and report it)")
        return exit_code_for(e)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
