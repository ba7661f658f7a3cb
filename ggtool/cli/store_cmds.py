"""`ggtool list|ls`, `show`, `cp`, `rm`, `prune`: the model store."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from ggtool.cli.options import JsonOpt, QuietOpt, StoreOpt
from ggtool.cli.output import get_output, human_size


def _store(store: Any) -> Any:
    from ggtool.store import Store

    return Store(store)


def _ago(ts: float) -> str:
    d = max(0.0, time.time() - ts)
    for unit, secs in (("year", 31536000), ("month", 2592000), ("week", 604800), ("day", 86400),
                       ("hour", 3600), ("minute", 60)):
        if d >= secs:
            n = int(d // secs)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Less than a minute ago" if d >= 1 else "Less than a second ago"


def list_models(store: StoreOpt = None, json_flag: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List the models in the store, newest first."""
    from ggtool.show import model_parts

    out = get_output(json_flag, quiet)
    s = _store(store)
    models = s.list_models(on_error=lambda p, e: out.warn(f"skipping {p}: {e}"))
    rows = []
    for m in models:
        cfg = model_parts(s, m).config
        rows.append({
            "name": m.display,
            "model": m.display,
            "modified_at": _iso(m.modified),
            "size": m.size,
            "digest": m.model_id,
            "details": {
                "parent_model": (m.manifest.model_layer.from_ if m.manifest.model_layer else ""),
                "format": cfg.model_format,
                "family": cfg.model_family,
                "families": cfg.model_families,
                "parameter_size": cfg.model_type,
                "quantization_level": cfg.file_type,
            },
            **({} if m.is_model else {"artifact": True}),
        })
    table = [("NAME", "ID", "SIZE", "MODIFIED")]
    table += [(m.display, m.short_id, human_size(m.size), _ago(m.modified)) for m in models]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    human = "\n".join("    ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table)
    out.result({"models": rows}, human)


def _iso(ts: float) -> str:
    from ggtool.show import go_time

    return go_time(ts)


def show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    modelfile: Annotated[bool, typer.Option("--modelfile", help="Show the Modelfile.")] = False,
    parameters: Annotated[bool, typer.Option("--parameters", help="Show the parameters.")] = False,
    template: Annotated[bool, typer.Option("--template", help="Show the template.")] = False,
    system: Annotated[bool, typer.Option("--system", help="Show the system prompt.")] = False,
    license_: Annotated[bool, typer.Option("--license", help="Show the license.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Long metadata arrays in full.")] = False,
    store: StoreOpt = None,
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show a model: details, parameters, template, system prompt, license, Modelfile, metadata."""
    from ggtool.errors import UsageError
    from ggtool.show import show_model

    out = get_output(json_flag, quiet)
    picked = [k for k, v in (("modelfile", modelfile), ("parameters", parameters), ("template", template),
                             ("system", system), ("license", license_)) if v]
    if len(picked) > 1:
        raise UsageError("only one of --modelfile, --parameters, --template, --system, --license can be given")
    info = show_model(_store(store), name, verbose=verbose)
    if picked:
        key = picked[0]
        text = info.get(key, "")
        out.result({key: text}, text if text.endswith("\n") or not text else text)
        return
    out.result(info, _render_show(info))


def _render_show(info: dict[str, Any]) -> str:
    d = info["details"]
    mi = info.get("model_info", {})
    arch = d.get("family") or mi.get("general.architecture", "")
    lines = ["  Model"]
    rows = [
        ("architecture", arch),
        ("parameters", d.get("parameter_size", "")),
        ("context length", mi.get(f"{arch}.context_length", "")),
        ("embedding length", mi.get(f"{arch}.embedding_length", "")),
        ("quantization", d.get("quantization_level", "")),
    ]
    lines += [f"    {k:<20}{v}" for k, v in rows if v not in ("", None)]
    if "artifact" in info:
        lines += ["", "  Artifact (no GGUF model layer)"]
        lines += [f"    {la['mediaType']:<50}{human_size(la['size'])}" for la in info["artifact"]["layers"]]
    if info.get("capabilities"):
        lines += ["", "  Capabilities"] + [f"    {c}" for c in info["capabilities"]]
    if info.get("parameters"):
        lines += ["", "  Parameters"] + [f"    {p}" for p in info["parameters"].splitlines()]
    if info.get("system"):
        lines += ["", "  System"] + [f"    {p}" for p in info["system"].splitlines()[:10]]
    if info.get("license"):
        lines += ["", "  License"] + [f"    {p}" for p in info["license"].splitlines()[:5]]
    return "\n".join(lines) + "\n"


def cp(
    source: Annotated[str, typer.Argument(help="Existing model.")],
    destination: Annotated[str, typer.Argument(help="New name.")],
    store: StoreOpt = None,
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Copy a model to a new name (same manifest, same id; no data copied)."""
    out = get_output(json_flag, quiet)
    s = _store(store)
    src = s.get(source)
    dst = s.copy(source, destination)
    out.result(
        {"status": "success", "source": src.display, "destination": dst.display, "digest": dst.model_id},
        f"copied '{src.display}' to '{dst.display}'",
    )


def rm(
    names: Annotated[list[str], typer.Argument(help="Models to delete.")],
    store: StoreOpt = None,
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete models; blobs another model still uses are kept."""
    out = get_output(json_flag, quiet)
    s = _store(store)
    done = []
    lines = []
    for n in names:
        r = s.remove(n)
        done.append({"name": r.name.display_shortest(), "digest": r.model_id,
                     "removed_blobs": list(r.removed_blobs), "kept_blobs": list(r.kept_blobs)})
        lines.append(f"deleted '{r.name.display_shortest()}'")
    out.result({"status": "success", "deleted": done}, "\n".join(lines))


def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="List what would be removed.")] = False,
    grace: Annotated[float, typer.Option("--grace", min=0, help="Keep files modified this recently (seconds).")] = 3600.0,
    store: StoreOpt = None,
    json_flag: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove unreferenced blobs and stale partial downloads (older than the grace window)."""
    out = get_output(json_flag, quiet)
    r = _store(store).prune(dry_run=dry_run, grace=grace)
    verb = "would remove" if dry_run else "removed"
    items = [{"path": str(i.path), "size": i.size, "kind": i.kind, "age_seconds": round(i.age)} for i in r.items]
    lines = [f"{verb} {i.kind:<8} {human_size(i.size):>10}  {i.path.name}" for i in r.items]
    lines.append(f"{verb} {len(r.items)} files, {human_size(r.total_size)}"
                 + (f" ({r.skipped_young} newer than the grace window kept)" if r.skipped_young else ""))
    out.result({"dry_run": dry_run, "items": items, "total_size": r.total_size, "kept_recent": r.skipped_young},
               "\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("list")(list_models)
    app.command("ls", hidden=True)(list_models)
    app.command("show")(show)
    app.command("cp")(cp)
    app.command("rm")(rm)
    app.command("prune")(prune)
