"""`ggtool pull`, `push`, `login`, `logout`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ggtool.cli.options import JsonOpt, QuietOpt, StoreOpt
from ggtool.cli.output import get_output, human_size

PlainHttpOpt = Annotated[
    bool,
    typer.Option(
        "--plain-http",
        "--insecure",
        help="Talk plain HTTP to the registry (Ollama's --insecure). TLS checks are unaffected.",
    ),
]
SkipVerifyOpt = Annotated[
    bool,
    typer.Option("--insecure-skip-tls-verify", help="Accept any TLS certificate (dangerous)."),
]
CaFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-file", help="PEM bundle of CA certificates to trust for the registry.", dir_okay=False
    ),
]


def _transport(plain_http: bool, skip_verify: bool, ca_file: Path | None):
    from ggtool.registry.transport import TransportOptions

    return TransportOptions(
        plain_http=plain_http, insecure_skip_tls_verify=skip_verify, ca_file=ca_file
    )


def pull(
    name: Annotated[
        str, typer.Argument(help="Model to pull, e.g. smollm2:135m or localhost:5000/ns/model:tag.")
    ],
    store: StoreOpt = None,
    plain_http: PlainHttpOpt = False,
    skip_verify: SkipVerifyOpt = False,
    ca_file: CaFileOpt = None,
    connections: Annotated[
        int | None,
        typer.Option(
            "--connections", min=1, max=64, help="Parallel connections per blob (default 4)."
        ),
    ] = None,
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pull a model from a registry (parallel, resumable, verified)."""
    from ggtool.registry.pull import PullOptions
    from ggtool.registry.pull import pull as do_pull
    from ggtool.store import Store

    out = get_output(json_flag, quiet)
    kw = {"connections": connections} if connections else {}
    opts = PullOptions(transport=_transport(plain_http, skip_verify, ca_file), **kw)
    result = do_pull(name, store=Store(store), options=opts, progress=out.progress, log=out.log)
    data = result.to_dict()
    if out.json_mode:
        return  # the NDJSON stream already ended with {"status":"success"}
    # the progress stream already said "success"; add only what it did not show
    human = ""
    if result.resumed_bytes:
        human = f"resumed {human_size(result.resumed_bytes)}, downloaded {human_size(result.downloaded_bytes)}"
    out.result(data, human)


def push(
    name: Annotated[
        str, typer.Argument(help="Model to push, named for its registry (host/ns/model:tag).")
    ],
    store: StoreOpt = None,
    plain_http: PlainHttpOpt = False,
    skip_verify: SkipVerifyOpt = False,
    ca_file: CaFileOpt = None,
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Push a model to a registry; the manifest goes as the exact stored bytes."""
    from ggtool.registry.push import PushOptions
    from ggtool.registry.push import push as do_push
    from ggtool.store import Store

    out = get_output(json_flag, quiet)
    opts = PushOptions(transport=_transport(plain_http, skip_verify, ca_file))
    result = do_push(name, store=Store(store), options=opts, progress=out.progress, log=out.log)
    if out.json_mode:
        return
    out.result(
        result.to_dict(),
        f"success: {result.digest} ({len(result.uploaded)} uploaded, {len(result.mounted)} mounted, "
        f"{len(result.skipped)} already there)",
    )


def login(
    registry: Annotated[str, typer.Argument(help="Registry host, e.g. localhost:5000 or ghcr.io.")],
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="User name (prompted if missing).")
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password (or token) from standard input."),
    ] = False,
    plain_http: PlainHttpOpt = False,
    skip_verify: SkipVerifyOpt = False,
    ca_file: CaFileOpt = None,
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check credentials with the registry and store them (0600) for pull and push."""
    from ggtool.errors import UsageError
    from ggtool.registry.login import login as do_login

    out = get_output(json_flag, quiet)
    interactive = sys.stdin.isatty()
    if not username:
        if not interactive:
            raise UsageError("--username is required when standard input is not a terminal")
        username = typer.prompt("Username")
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif interactive:
        import getpass

        password = getpass.getpass("Password: ")
    else:
        raise UsageError("give the password with --password-stdin")
    if not password:
        raise UsageError("the password is empty")
    path = do_login(
        registry, username, password, transport=_transport(plain_http, skip_verify, ca_file)
    )
    out.result(
        {"status": "login succeeded", "registry": registry, "credentials": str(path)},
        "Login Succeeded",
    )


def logout(
    registry: Annotated[str, typer.Argument(help="Registry host to forget.")],
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove the stored credentials of a registry."""
    from ggtool.errors import NotFoundError
    from ggtool.registry.login import logout as do_logout

    out = get_output(json_flag, quiet)
    if not do_logout(registry):
        raise NotFoundError(f"not logged in to {registry}")
    out.result(
        {"status": "removed", "registry": registry}, f"Removed login credentials for {registry}"
    )


def register(app: typer.Typer) -> None:
    app.command("pull")(pull)
    app.command("push")(push)
    app.command("login")(login)
    app.command("logout")(logout)
