"""`ggtool serve`, `ggtool run NAME [PROMPT]`, `ggtool ps`, `ggtool stop NAME`.

`serve` runs the Ollama/OpenAI-compatible server in the foreground. The other three are
clients of the server at OLLAMA_HOST (GGTOOL_HOST overrides), like Ollama's CLI: `run` starts
a server in the background when none answers and pulls the model when it is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ggtool.cli.options import JsonOpt, QuietOpt, StoreOpt
from ggtool.cli.output import get_output, human_size
from ggtool.errors import GgtoolError, NetworkError, NotFoundError, UsageError

SERVE_REQUIREMENTS = {  # import name -> pip requirement (the `serve` extra)
    "llama_cpp": "llama-cpp-python==0.3.36",
    "fastapi": "fastapi>=0.110",
    "uvicorn": "uvicorn>=0.29",
}
START_TIMEOUT = 60.0


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install counts as missing
        return False


def missing_serve_requirements() -> list[str]:
    return [req for mod, req in SERVE_REQUIREMENTS.items() if not _importable(mod)]


def require_serve_extra() -> None:
    missing = missing_serve_requirements()
    if missing:
        quoted = " ".join(f"'{m}'" for m in missing)
        raise UsageError(
            f"ggtool serve needs {', '.join(m.split('=')[0].split('>')[0] for m in missing)}, which are not installed",
            hint=f"install them with: pip install 'ggtool[serve]'  (or: pip install {quoted})",
        )


# -- serve -----------------------------------------------------------------------------------
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Bind address [scheme://]host[:port] (default $OLLAMA_HOST or 127.0.0.1:11434).")] = None,
    store: StoreOpt = None,
) -> None:
    """Serve Ollama's and OpenAI's HTTP APIs for the models in the store.

    Environment: OLLAMA_HOST, OLLAMA_MODELS, OLLAMA_KEEP_ALIVE, OLLAMA_MAX_LOADED_MODELS,
    OLLAMA_NUM_PARALLEL, OLLAMA_MAX_QUEUE, OLLAMA_CONTEXT_LENGTH, OLLAMA_ORIGINS,
    GGTOOL_MAX_MEMORY, GGTOOL_NUM_THREAD (GGTOOL_* overrides OLLAMA_*).
    """
    require_serve_extra()
    from ggtool.server.app import serve as run_server
    from ggtool.server.config import ServerConfig, parse_host
    from ggtool.store import Store

    cfg = ServerConfig()
    if host:
        cfg.host = parse_host(host)
    st = Store(store)
    st.ensure_dirs()
    get_output().log(f"ggtool serve: listening on {cfg.host.url}, store {st.root}")
    run_server(cfg, store=st)


# -- client helpers --------------------------------------------------------------------------
def _base_url() -> str:
    from ggtool.server.config import env, parse_host

    return parse_host(env("OLLAMA_HOST")).client_url


def _client(timeout: float | None = None) -> Any:
    import httpx

    return httpx.Client(base_url=_base_url(), timeout=httpx.Timeout(timeout, connect=5.0), trust_env=False)


def _answers() -> bool:
    import httpx

    try:
        with _client(2.0) as c:
            return c.get("/api/version").status_code == 200
    except httpx.HTTPError:
        return False


def _not_running() -> NetworkError:
    return NetworkError(f"could not connect to a ggtool server at {_base_url()}", hint="start one with `ggtool serve`")


def _error_of(resp: Any) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    except ValueError:
        pass
    return f"HTTP {resp.status_code}"


def _raise_for(resp: Any) -> None:
    if resp.status_code < 400:
        return
    msg = _error_of(resp)
    if resp.status_code == 404:
        raise NotFoundError(msg)
    if resp.status_code < 500:
        raise UsageError(msg)
    raise GgtoolError(msg)


def start_background_server(store: Path | None = None) -> Path:
    """Start `ggtool serve` detached; wait until it answers. Returns its log file."""
    require_serve_extra()
    log = Path(tempfile.gettempdir()) / f"ggtool-serve-{os.getuid()}.log"
    cmd = [sys.executable, "-m", "ggtool.cli.app", "serve"]
    if store is not None:
        cmd += ["--store", str(store)]
    with open(log, "ab") as f:
        subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _answers():
            return log
        time.sleep(0.2)
    raise NetworkError(f"the background server did not start within {START_TIMEOUT:.0f}s", hint=f"see {log}")


def _stream_lines(c: Any, method: str, path: str, body: dict[str, Any]) -> Any:
    with c.stream(method, path, json=body) as resp:
        if resp.status_code >= 400:
            resp.read()
            _raise_for(resp)
        for line in resp.iter_lines():
            if not line.strip():
                continue
            obj = json.loads(line)
            if isinstance(obj, dict) and "error" in obj:
                raise GgtoolError(str(obj["error"]))
            yield obj


def _pull(c: Any, name: str, out: Any) -> None:
    from ggtool.events import ProgressEvent

    for obj in _stream_lines(c, "POST", "/api/pull", {"model": name}):
        out.progress(ProgressEvent(obj.get("status", ""), obj.get("digest"), obj.get("total"), obj.get("completed")))


# -- run -------------------------------------------------------------------------------------
def run(
    name: Annotated[str, typer.Argument(help="Model name.")],
    prompt: Annotated[list[str] | None, typer.Argument(help="Prompt (else read stdin, or chat interactively).")] = None,
    format_: Annotated[str | None, typer.Option("--format", help="Response format: json.")] = None,
    keepalive: Annotated[str | None, typer.Option("--keepalive", help="How long to keep the model loaded (e.g. 5m, 0, -1).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show timings after each answer.")] = False,
    store: StoreOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Chat with a model through the server (starting one and pulling the model if needed)."""
    out = get_output(False, quiet)
    if not _answers():
        log = start_background_server(store)
        out.log(f"started a ggtool server in the background (log: {log})")
    with _client(None) as c:
        r = c.post("/api/show", json={"model": name})
        if r.status_code == 404:
            _pull(c, name, out)
        else:
            _raise_for(r)
        extra: dict[str, Any] = {}
        if format_:
            extra["format"] = format_
        if keepalive is not None:
            extra["keep_alive"] = keepalive
        text = " ".join(prompt or [])
        if not text and not sys.stdin.isatty():
            text = sys.stdin.read()
        if text:
            _chat_once(c, name, [{"role": "user", "content": text}], extra, verbose, out)
            return
        _interactive(c, name, extra, verbose, out)


def _chat_once(c: Any, name: str, messages: list[dict[str, Any]], extra: dict[str, Any], verbose: bool, out: Any) -> str:
    parts: list[str] = []
    final: dict[str, Any] = {}
    for obj in _stream_lines(c, "POST", "/api/chat", {"model": name, "messages": messages, **extra}):
        msg = obj.get("message") or {}
        piece = msg.get("content", "")
        if piece:
            parts.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        for call in msg.get("tool_calls") or []:
            fn = call.get("function", {})
            sys.stdout.write(f"\n[tool call] {fn.get('name')}({json.dumps(fn.get('arguments', {}))})")
        if obj.get("done"):
            final = obj
    sys.stdout.write("\n")
    sys.stdout.flush()
    if verbose and final:
        ev_ns = final.get("eval_duration") or 1
        out.log(
            f"total duration: {final.get('total_duration', 0) / 1e9:.2f}s  "
            f"load: {final.get('load_duration', 0) / 1e9:.2f}s  "
            f"prompt eval: {final.get('prompt_eval_count', 0)} tokens  "
            f"eval: {final.get('eval_count', 0)} tokens, {final.get('eval_count', 0) / (ev_ns / 1e9):.1f} tokens/s"
        )
    return "".join(parts)


def _interactive(c: Any, name: str, extra: dict[str, Any], verbose: bool, out: Any) -> None:
    history: list[dict[str, Any]] = []
    out.log("Send a message (/bye to exit, /clear to forget the conversation)")
    while True:
        try:
            line = input(">>> ")
        except (EOFError, KeyboardInterrupt):
            sys.stdout.write("\n")
            return
        s = line.strip()
        if not s:
            continue
        if s in ("/bye", "/exit", "/quit"):
            return
        if s == "/clear":
            history.clear()
            continue
        history.append({"role": "user", "content": line})
        try:
            answer = _chat_once(c, name, history, extra, verbose, out)
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            history.pop()
            continue
        history.append({"role": "assistant", "content": answer})


# -- ps / stop -------------------------------------------------------------------------------
def _until(expires_at: str) -> str:
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return expires_at
    secs = (t - dt.datetime.now(dt.UTC)).total_seconds()
    if secs > 100 * 365 * 86400:
        return "Forever"
    if secs <= 0:
        return "Stopping..."
    for unit, n in (("hours", 3600), ("minutes", 60)):
        if secs >= n:
            return f"{int(secs // n)} {unit} from now"
    return f"{int(secs)} seconds from now"


def ps(json_flag: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List the models the server has loaded."""
    import httpx

    out = get_output(json_flag, quiet)
    try:
        with _client(10.0) as c:
            r = c.get("/api/ps")
    except httpx.HTTPError:
        raise _not_running() from None
    _raise_for(r)
    data = r.json()
    rows = [("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL")]
    for m in data.get("models", []):
        rows.append((m.get("name", ""), str(m.get("digest", ""))[:12], human_size(m.get("size", 0)),
                     "100% CPU" if not m.get("size_vram") else "100% GPU", str(m.get("context_length", "")),
                     _until(m.get("expires_at", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    human = "\n".join("    ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    out.result(data, human)


def stop(name: Annotated[str, typer.Argument(help="Model name.")], json_flag: JsonOpt = False,
         quiet: QuietOpt = False) -> None:
    """Unload a running model now."""
    import httpx

    out = get_output(json_flag, quiet)
    try:
        with _client(60.0) as c:
            loaded = c.get("/api/ps")
            _raise_for(loaded)
            from ggtool.names import ModelName

            want = ModelName.parse(name)
            if not any(ModelName.parse(m.get("name", "")).equal_fold(want) for m in loaded.json().get("models", [])):
                raise NotFoundError(f'couldn\'t find model "{name}" to stop')
            r = c.post("/api/generate", json={"model": name, "keep_alive": 0})
    except httpx.HTTPError:
        raise _not_running() from None
    _raise_for(r)
    out.result({"status": "stopped", "model": name}, "")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("run")(run)
    app.command("ps")(ps)
    app.command("stop")(stop)
