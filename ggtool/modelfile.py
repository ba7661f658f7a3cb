"""Ollama's Modelfile: parse (parser/parser.go, rune by rune), render, and turn into a create request.

Grammar: one instruction per line, `#` comments, instruction names case-insensitive:
FROM (required), PARAMETER <name> <value> (typed; `stop` may repeat), TEMPLATE, SYSTEM,
ADAPTER, LICENSE (repeatable), MESSAGE <system|user|assistant> <text>, REQUIRES <semver>,
DRAFT, RENDERER, PARSER. A value runs to the end of the line; `"…"` and triple-quoted values may
span lines (a value ends at a newline once its quotes balance). Errors carry Ollama's messages.

    mf = parse_modelfile(text_or_bytes)          -> Modelfile (list of Command)
    req = mf.to_create_request(base_dir)         -> CreateRequest (Ollama's /api/create fields)
    mf.render()                                  -> text that parses back to the same commands
"""

from __future__ import annotations

import codecs
import decimal
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggtool.errors import InvalidFileError, NotFoundError, UsageError
from ggtool.manifest import validate_digest

COMMANDS = (
    "from", "license", "template", "system", "adapter", "draft", "renderer", "parser",
    "parameter", "message", "requires",
)
MESSAGE_ROLES = ("system", "user", "assistant")
ERR_MISSING_FROM = "no FROM line"
ERR_INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'
ERR_INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
ERR_UNEXPECTED_EOF = "unexpected EOF"
ERR_REQUIRES = "requires must be a valid semver (e.g. 0.14.0)"

# api.Options fields by JSON name, with their Go kinds (api/types.go Options + Runner)
PARAMETER_TYPES: dict[str, str] = {
    "num_ctx": "int", "num_batch": "int", "num_gpu": "int", "main_gpu": "int",
    "use_mmap": "bool", "num_thread": "int", "draft_num_predict": "int",
    "num_keep": "int", "seed": "int", "num_predict": "int", "top_k": "int",
    "top_p": "float", "min_p": "float", "typical_p": "float", "repeat_last_n": "int",
    "temperature": "float", "repeat_penalty": "float", "presence_penalty": "float",
    "frequency_penalty": "float", "stop": "list",
}
# accepted with a warning and dropped (parser.go deprecatedParameters)
DEPRECATED_PARAMETERS = (
    "penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
    "mirostat", "mirostat_tau", "mirostat_eta",
)


class ModelfileError(InvalidFileError):
    """A Modelfile that does not parse, or names something invalid."""


# -- commands ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Command:
    """One instruction as Ollama stores it: name `model` for FROM, lower-case instruction names,
    the parameter's own name for PARAMETER, `message` with args `"<role>: <text>"`."""

    name: str
    args: str

    def render(self) -> str:
        if self.name == "model":
            return f"FROM {quote(self.args)}"
        if self.name in ("license", "template", "system", "adapter", "renderer", "parser", "requires", "draft"):
            return f"{self.name.upper()} {quote(self.args)}"
        if self.name == "message":
            role, _, text = self.args.partition(": ")
            return f"MESSAGE {role} {quote(text)}"
        return f"PARAMETER {self.name} {quote(self.args)}"


@dataclass(slots=True)
class Modelfile:
    commands: list[Command] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def render(self) -> str:
        """One line (or quoted block) per command, newline-terminated, like Modelfile.String()."""
        return "".join(c.render() + "\n" for c in self.commands)

    def to_create_request(self, base_dir: str | os.PathLike[str] | None = None) -> CreateRequest:
        """Ollama's Modelfile.CreateRequest(relativeDir), evaluated on this machine.

        FROM/ADAPTER/DRAFT paths are expanded (`~`, relative to `base_dir`); an existing path
        becomes local files (`local_files` name -> path; the digests are computed when the
        files are imported), anything else is a model name (`from_`).
        """
        return _create_request(self, Path(base_dir) if base_dir is not None else Path.cwd())


# -- quoting ----------------------------------------------------------------------------------
def _ollama_quote(s: str) -> str:
    # parser.go quote(): the serializer Ollama uses
    if "\n" in s or s.startswith(" ") or s.endswith(" "):
        return f'"""{s}"""' if '"' in s else f'"{s}"'
    return s


def quote(s: str) -> str:
    """The shortest quoting of `s` that parses back to exactly `s`.

    Tries bare, `"…"`, `\"\"\"…\"\"\"` in that order and checks each against the parser (Ollama's
    own quote() breaks values that start with a quote or have a quote at a line end). Values
    that no quoting can carry (non-printable characters, which the parser drops) get Ollama's
    quoting.
    """
    for cand in (s, f'"{s}"', f'"""{s}"""'):
        if cand == s and (not s or s[0] in " \t\"" or s[-1] in " \t" or "\n" in s or "\r" in s):
            continue
        if _value_roundtrips(cand, s):
            return cand
    return _ollama_quote(s)


def _value_roundtrips(rendered: str, value: str) -> bool:
    try:
        mf = parse_modelfile(f"FROM x\nSYSTEM {rendered}\n")
    except ModelfileError:
        return False
    return len(mf.commands) == 2 and mf.commands[1].args == value


# -- parsing ----------------------------------------------------------------------------------
_NIL, _NAME, _VALUE, _PARAMETER, _MESSAGE, _COMMENT = range(6)


def _is_alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_space(c: str) -> bool:
    return c in " \t"


def _is_newline(c: str) -> bool:
    return c in "\r\n"


def _is_print(c: str) -> bool:
    # Go's strconv.IsPrint: categories L, M, N, P, S and the ASCII space — Python's isprintable()
    return c.isprintable()


def _unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        if len(s) >= 6 and s.endswith('"""'):
            return s[3:-3], True
        return "", False
    if s.startswith('"'):
        if len(s) >= 2 and s.endswith('"'):
            return s[1:-1], True
        return "", False
    return s, True


def _trim(s: str) -> str:
    # strings.TrimSpace; the buffer only ever holds printable runes, spaces, tabs and newlines
    return s.strip(" \t\r\n")


def decode_modelfile(data: bytes) -> str:
    """Bytes to text the way Ollama reads them: BOM override (UTF-8 / UTF-16), else UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith(codecs.BOM_UTF16_LE):
        return data[2:].decode("utf-16-le", errors="replace")
    if data.startswith(codecs.BOM_UTF16_BE):
        return data[2:].decode("utf-16-be", errors="replace")
    return data.decode("utf-8", errors="replace")


def _line_error(line: int, msg: str) -> ModelfileError:
    return ModelfileError(f"(line {line}): {msg}" if line > 0 else msg)


def parse_modelfile(source: str | bytes) -> Modelfile:
    """Parse a Modelfile exactly as Ollama's parser.ParseFile does."""
    text = decode_modelfile(source) if isinstance(source, bytes | bytearray) else source
    commands: list[Command] = []
    name = ""
    state = _NIL
    line = 1
    buf: list[str] = []
    role = ""

    for r in text:
        if _is_newline(r):
            line += 1
        nxt, keep = _next_state(r, state, buf, line)
        if nxt != state:
            if state == _NAME:
                word = "".join(buf)
                if word.lower() not in COMMANDS:
                    raise _line_error(line, ERR_INVALID_COMMAND)
                low = word.lower()
                if low == "from":
                    name = "model"
                elif low == "parameter":
                    nxt = _PARAMETER
                elif low == "message":
                    nxt = _MESSAGE
                    name = low
                else:
                    name = low
            elif state == _PARAMETER:
                name = "".join(buf)
            elif state == _MESSAGE:
                word = "".join(buf)
                if word not in MESSAGE_ROLES:
                    raise _line_error(line, ERR_INVALID_ROLE)
                role = word
            elif state == _VALUE:
                value, ok = _unquote(_trim("".join(buf)))
                if not ok or _is_space(r):
                    buf.append(r)  # still inside the value (spaces, or a newline in open quotes)
                    continue
                if role:
                    value = f"{role}: {value}"
                    role = ""
                commands.append(Command(name, value))
            buf.clear()
            state = nxt
        if keep and _is_print(r):
            buf.append(r)

    if state == _VALUE:
        value, ok = _unquote(_trim("".join(buf)))
        if not ok:
            raise ModelfileError(ERR_UNEXPECTED_EOF, hint="a quoted value is never closed")
        if role:
            value = f"{role}: {value}"
        commands.append(Command(name, value))
    elif state not in (_NIL, _COMMENT):
        raise ModelfileError(ERR_UNEXPECTED_EOF, hint="the last instruction has no value")

    if not any(c.name == "model" for c in commands):
        raise ModelfileError(ERR_MISSING_FROM)
    return Modelfile(commands)


def _next_state(r: str, state: int, buf: list[str], line: int) -> tuple[int, bool]:
    """parseRuneForState: the next state, and whether the rune is kept (Go returns rune 0 otherwise)."""
    if state == _NIL:
        if r == "#":
            return _COMMENT, False
        if _is_space(r) or _is_newline(r):
            return _NIL, False
        return _NAME, True
    if state == _NAME:
        if _is_alpha(r):
            return _NAME, True
        if _is_space(r):
            return _VALUE, False
        raise _line_error(line, ERR_INVALID_COMMAND)
    if state == _VALUE:
        if _is_newline(r) or _is_space(r):
            return _NIL, True
        return _VALUE, True
    if state == _PARAMETER:
        if _is_alpha(r) or ("0" <= r <= "9") or r == "_":
            return _PARAMETER, True
        if _is_space(r):
            return _VALUE, False
        raise ModelfileError(f"{ERR_UNEXPECTED_EOF}: {''.join(buf)}")
    if state == _MESSAGE:
        if _is_alpha(r):
            return _MESSAGE, True
        if _is_space(r):
            return _VALUE, False
        raise ModelfileError(f"{ERR_UNEXPECTED_EOF}: {''.join(buf)}")
    # comment
    if _is_newline(r):
        return _NIL, False
    return _COMMENT, False


# -- parameters -------------------------------------------------------------------------------
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)
_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_FLOAT32_MAX = 3.4028234663852886e38


def format_param(name: str, value: str) -> Any:
    """api.FormatParams for one value: the typed option, or ModelfileError with Ollama's message."""
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        raise ModelfileError(f"unknown parameter '{name}'")
    if kind == "int":
        if not _INT_RE.fullmatch(value) or not -(2**63) <= int(value) < 2**63:
            raise ModelfileError(f"invalid int value [{value}]")
        return int(value)
    if kind == "float":
        if not _FLOAT_RE.fullmatch(value):
            raise ModelfileError(f"invalid float value [{value}]")
        f = float(value)
        # ParseFloat(s, 32) fails on overflow; NaN/Inf could not be sent as JSON anyway
        if f != f or abs(f) > _FLOAT32_MAX:
            raise ModelfileError(f"invalid float value [{value}]")
        # float32 as Go parses it; the server then holds it as the float64 of its shortest digits
        return float(_f32_shortest(f))
    if kind == "bool":
        if value not in _GO_BOOLS:
            raise ModelfileError(f"invalid bool value [{value}]")
        return _GO_BOOLS[value]
    return [value]


def _f32_shortest(f: float) -> str:
    import numpy as np

    return np.format_float_positional(np.float32(f), unique=True, trim="-")


def param_to_text(name: str, value: Any) -> list[str]:
    """A stored option back to PARAMETER value strings (one per element for lists)."""
    if isinstance(value, list):
        return [param_to_text(name, v)[0] for v in value]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    kind = PARAMETER_TYPES.get(name)
    if isinstance(value, float) and (kind == "int" or (kind is None and value.is_integer())) and value.is_integer():
        return [str(int(value))]
    if isinstance(value, float):
        return [_go_g(value)]
    return [str(value)]


# -- semver (golang.org/x/mod/semver.IsValid, with the "v" Ollama adds) ------------------------
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER_RE = re.compile(
    rf"v{_NUM}(?:\.{_NUM}(?:\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)


def normalize_requires(value: str) -> str:
    v = value if value.startswith("v") else "v" + value
    if not _SEMVER_RE.fullmatch(v):
        raise ModelfileError(ERR_REQUIRES)
    return v[1:]


# -- the create request -----------------------------------------------------------------------
@dataclass(slots=True)
class CreateRequest:
    """Ollama's api.CreateRequest (the JSON body of POST /api/create), plus local file paths.

    `files` / `adapters` / `draft_files` map a relative file name to the digest of a blob that
    is already in the store (what the server receives after /api/blobs uploads).
    `local_files` / `local_adapters` / `local_draft_files` map the same kind of name to a path
    on this machine (what the CLI has): create imports them itself, hashing while copying, and
    converts a SafeTensors folder in place without copying the weights.
    """

    model: str = ""
    from_: str = ""
    files: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    draft_files: dict[str, str] = field(default_factory=dict)
    template: str = ""
    system: str = ""
    license: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    quantize: str = ""
    draft_quantize: str = ""
    remote_host: str = ""
    info: dict[str, Any] | None = None
    local_files: dict[str, Path] = field(default_factory=dict)
    local_adapters: dict[str, Path] = field(default_factory=dict)
    local_draft_files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        """The JSON object Ollama's client sends (omitempty fields left out)."""
        out: dict[str, Any] = {"model": self.model}
        pairs: list[tuple[str, Any]] = [
            ("quantize", self.quantize), ("draft_quantize", self.draft_quantize), ("from", self.from_),
            ("remote_host", self.remote_host), ("files", self.files), ("draft_files", self.draft_files),
            ("adapters", self.adapters), ("template", self.template), ("license", self.license),
            ("system", self.system), ("parameters", self.parameters), ("messages", self.messages),
            ("renderer", self.renderer), ("parser", self.parser), ("requires", self.requires),
            ("info", self.info),
        ]
        for k, v in pairs:
            if v:
                out[k] = v
        return out

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> CreateRequest:
        """Validate an /api/create body (untrusted) into a request; UsageError (HTTP 400) if bad."""
        if not isinstance(body, Mapping):
            raise UsageError("invalid request body: expected a JSON object")

        def s(key: str) -> str:
            v = body.get(key)
            if v is None:
                return ""
            if not isinstance(v, str):
                raise UsageError(f"invalid request: {key!r} must be a string")
            return v

        def files(key: str) -> dict[str, str]:
            v = body.get(key)
            if v is None:
                return {}
            if not isinstance(v, Mapping):
                raise UsageError(f"invalid request: {key!r} must be an object")
            out = {}
            for name, digest in v.items():
                if not isinstance(name, str) or not valid_rel_path(name):
                    raise UsageError("file path must be relative")
                if not isinstance(digest, str) or not digest:
                    raise UsageError("invalid digest format")
                try:
                    out[name] = validate_digest(digest.replace("sha256-", "sha256:", 1))
                except InvalidFileError:
                    raise UsageError("invalid digest format") from None
            return out

        lic = body.get("license")
        if lic is None or lic == "":
            licenses: list[str] = []
        elif isinstance(lic, str):
            licenses = [lic]
        elif isinstance(lic, list) and all(isinstance(x, str) for x in lic):
            licenses = list(lic)
        else:
            raise UsageError("invalid request: 'license' must be a string or a list of strings")
        params = body.get("parameters")
        params = {} if params is None else params
        if not isinstance(params, Mapping):
            raise UsageError("invalid request: 'parameters' must be an object")
        msgs = body.get("messages")
        msgs = [] if msgs is None else msgs
        if not isinstance(msgs, list) or not all(isinstance(m, Mapping) for m in msgs):
            raise UsageError("invalid request: 'messages' must be a list of objects")
        messages = []
        for m in msgs:
            role, content = m.get("role", ""), m.get("content", "")
            if not isinstance(role, str) or not isinstance(content, str):
                raise UsageError("invalid request: message role and content must be strings")
            messages.append({**m, "role": role.lower(), "content": content})
        info = body.get("info")
        if info is not None and not isinstance(info, Mapping):
            raise UsageError("invalid request: 'info' must be an object")
        return cls(
            model=s("model") or s("name"),
            from_=s("from"),
            files=files("files"),
            adapters=files("adapters"),
            draft_files=files("draft_files"),
            template=s("template"),
            system=s("system"),
            license=licenses,
            parameters=dict(params),
            messages=messages,
            renderer=s("renderer"),
            parser=s("parser"),
            requires=s("requires"),
            quantize=s("quantize") or s("quantization"),
            draft_quantize=s("draft_quantize"),
            remote_host=s("remote_host"),
            info=dict(info) if info is not None else None,
        )


def valid_rel_path(name: str) -> bool:
    """Go's fs.ValidPath: unrooted, slash-separated, no empty, '.' or '..' elements."""
    if name == ".":
        return True
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    return all(p not in ("", ".", "..") for p in name.split("/"))


def expand_path(arg: str, base_dir: Path) -> Path:
    """parser.go expandPath: absolute as is, `~` / `~user` home, else relative to base_dir."""
    if arg.startswith("/") or arg.startswith("\\") or os.path.isabs(arg):
        return Path(os.path.abspath(arg))
    if arg.startswith("~"):
        if arg == "~" or arg.startswith("~/"):
            return Path(os.path.abspath(os.path.expanduser(arg)))
        user, _, rest = arg[1:].partition("/")
        home = os.path.expanduser("~" + user)
        if home.startswith("~"):
            raise ModelfileError(f"failed to find user '{user}': unknown user {user}")
        return Path(os.path.abspath(os.path.join(home, rest)))
    return Path(os.path.abspath(base_dir / arg))


# Ollama's filesForModel, in its order of preference (Go's `**` in a glob is just `*`)
_WEIGHT_GLOBS = (
    ("model*.safetensors", "*/model*.safetensors"),
    ("consolidated*.safetensors",),
    ("pytorch_model*.bin",),
    ("consolidated*.pth",),
    ("*.gguf",),
    ("*.bin",),
)


def files_for_model(folder: Path) -> dict[str, Path]:
    """The files `FROM <folder>` picks: weights of the first kind found, plus config/tokenizer files.

    Names are relative to the folder (Ollama keys `files` by them). Symlinks are followed
    (Hugging Face cache snapshots are symlink farms); the converter reads them in place.
    """
    picked: list[Path] = []
    for globs in _WEIGHT_GLOBS:
        found = sorted(p for g in globs[:1] for p in folder.glob(g) if p.is_file())
        if found:
            picked += found
            for g in globs[1:]:
                picked += sorted(p for p in folder.glob(g) if p.is_file())
            break
    else:
        raise NotFoundError(f"{folder}: no Modelfile or safetensors files found")
    for g in ("*.json", "*/*.json", "chat_template.jinja"):
        picked += sorted(p for p in folder.glob(g) if p.is_file())
    tok = sorted(folder.glob("tokenizer.model")) or sorted(folder.glob("*/tokenizer.model"))
    picked += [p for p in tok if p.is_file()]
    out: dict[str, Path] = {}
    for p in picked:
        out.setdefault(p.relative_to(folder).as_posix(), p)
    return out


def _local_files(path: Path) -> dict[str, Path]:
    """fileDigestMap without the digests: a file is itself (keyed by its base name), a folder is
    files_for_model (keyed relative to the folder)."""
    if path.is_dir():
        return files_for_model(path)
    return {path.name: path}


def _create_request(mf: Modelfile, base_dir: Path) -> CreateRequest:
    req = CreateRequest()
    req.warnings.extend(mf.warnings)
    params: dict[str, Any] = {}
    model_paths: list[Path] = []
    draft_paths: list[Path] = []
    for c in mf.commands:
        if c.name == "model":
            path = expand_path(c.args, base_dir)
            if not path.exists():
                if _looks_like_path(c.args):
                    # Ollama would go on to fail with "invalid model name"; say what is wrong
                    raise NotFoundError(f"FROM {c.args}: {path}: no such file or directory")
                req.from_ = c.args
                continue
            if any(_same_path(path, d) for d in draft_paths):
                raise ModelfileError(f"DRAFT must not reference the same local path as FROM: {path}")
            model_paths.append(path)
            req.local_files.update(_local_files(path))
        elif c.name == "draft":
            path = expand_path(c.args, base_dir)
            if not path.exists():
                raise NotFoundError(f"DRAFT {c.args}: no such file or directory")
            if any(_same_path(path, m) for m in model_paths):
                raise ModelfileError(f"DRAFT must not reference the same local path as FROM: {path}")
            draft_paths.append(path)
            req.local_draft_files.update(_local_files(path))
        elif c.name == "adapter":
            path = expand_path(c.args, base_dir)
            if not path.exists():
                raise NotFoundError(f"ADAPTER {c.args}: no such file or directory")
            req.local_adapters = _local_files(path)
        elif c.name == "template":
            req.template = c.args
        elif c.name == "system":
            req.system = c.args
        elif c.name == "license":
            req.license.append(c.args)
        elif c.name == "renderer":
            req.renderer = c.args
        elif c.name == "parser":
            req.parser = c.args
        elif c.name == "requires":
            req.requires = normalize_requires(c.args)
        elif c.name == "message":
            role, _, content = c.args.partition(": ")
            req.messages.append({"role": role, "content": content})
        elif c.name in DEPRECATED_PARAMETERS:
            req.warnings.append(f"parameter {c.name} is deprecated")
        else:
            v = format_param(c.name, c.args)
            if isinstance(v, list) and isinstance(params.get(c.name), list):
                params[c.name] = params[c.name] + v
            else:
                params[c.name] = v
    req.parameters = params
    return req


def _looks_like_path(arg: str) -> bool:
    return arg.startswith(("./", "../", "/", "~", ".\\")) or arg.endswith((".gguf", ".safetensors", ".bin"))


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# -- rendering a stored model -----------------------------------------------------------------
def model_commands(
    *,
    model_path: str,
    adapters: list[str] = (),  # type: ignore[assignment]
    draft: str = "",
    projectors: list[str] = (),  # type: ignore[assignment]
    template: str | None = None,
    system: str = "",
    renderer: str = "",
    parser: str = "",
    requires: str = "",
    parameters: Mapping[str, Any] | None = None,
    licenses: list[str] = (),  # type: ignore[assignment]
    messages: list[Mapping[str, Any]] = (),  # type: ignore[assignment]
) -> Modelfile:
    """The commands Ollama's Model.String() emits for a stored model (parameters sorted, plus
    REQUIRES, which Ollama leaves out but a round trip needs)."""
    cmds = [Command("model", model_path)]
    cmds += [Command("adapter", a) for a in adapters]
    if draft:
        cmds.append(Command("draft", draft))
    cmds += [Command("model", p) for p in projectors]
    if template is not None:
        cmds.append(Command("template", template))
    if system:
        cmds.append(Command("system", system))
    if renderer:
        cmds.append(Command("renderer", renderer))
    if parser:
        cmds.append(Command("parser", parser))
    if requires:
        cmds.append(Command("requires", requires))
    for k in sorted(parameters or {}):
        for text in param_to_text(k, (parameters or {})[k]):
            cmds.append(Command(k, text))
    cmds += [Command("license", lic) for lic in licenses]
    cmds += [Command("message", f"{m.get('role', '')}: {m.get('content', '')}") for m in messages]
    return Modelfile(cmds)


def show_modelfile(short_name: str, mf: Modelfile) -> str:
    """`show --modelfile` text: Ollama's header, then the commands."""
    return (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        f"# FROM {short_name}\n\n" + mf.render()
    )


def go_quote(s: str) -> str:
    """Go's strconv.Quote (what `%#v` prints for a string in show's parameters)."""
    out = ['"']
    for c in s:
        o = ord(c)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\a":
            out.append("\\a")
        elif c == "\b":
            out.append("\\b")
        elif c == "\f":
            out.append("\\f")
        elif c == "\v":
            out.append("\\v")
        elif c.isprintable() and not (0xD800 <= o <= 0xDFFF):
            out.append(c)
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def go_sharp_v(v: Any) -> str:
    """Go's `%#v` for a JSON-decoded option value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return go_quote(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_g(v)
    return json.dumps(v)


def _go_g(f: float) -> str:
    """Go's `%v` / `%#v` of a float64: strconv 'g' with the shortest digits, so an exponent when
    the decimal exponent is < -4 or >= 6 (ftoa.go: "use precision 6 for this decision")."""
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if math.isnan(f):
        return "NaN"
    sign, digits_t, exponent = decimal.Decimal(repr(abs(f))).as_tuple()
    digits = "".join(map(str, digits_t)).rstrip("0") or "0"
    lead = len("".join(map(str, digits_t))) - len("".join(map(str, digits_t)).lstrip("0"))
    digits = digits[lead:] if lead < len(digits) else digits
    nd = len(digits)
    dp = len(digits_t) - lead + int(exponent)
    exp = dp - 1
    neg = "-" if f < 0 else ""
    if exp < -4 or exp >= 6:
        mant = digits[0] + ("." + digits[1:] if nd > 1 else "")
        return f"{neg}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{digits}"
    if dp >= nd:
        return f"{neg}{digits}{'0' * (dp - nd)}"
    return f"{neg}{digits[:dp]}.{digits[dp:]}"


def parameters_text(parameters: Mapping[str, Any]) -> str:
    """`show --parameters`: `%-30s %#v` lines (lists one line per element), keys sorted."""
    lines = []
    for k in sorted(parameters):
        v = parameters[k]
        for item in v if isinstance(v, list) else [v]:
            lines.append(f"{k:<30} {go_sharp_v(item)}")
    return "\n".join(lines)
