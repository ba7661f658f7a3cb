"""An interpreter for the subset of Go's text/template that Ollama model templates use.

Ollama stores prompt templates as Go templates (`.template` layers). This module parses them
into a small tree and executes it over Python values with Go's semantics where templates can
observe them: trim markers, truthiness, `range` over slices/maps (maps in sorted key order),
variables and their scopes, `if/else if/with/range/break/continue/define/template/block`,
pipelines, parenthesised sub-pipelines and the builtin functions (and, or, not, len, index,
slice, eq, ne, lt, le, gt, ge, print, printf, println) plus Ollama's (json, currentDate,
yesterdayDate, toTypeScriptType). Nothing in a template can reach Python attributes: field
access only reads `GoStruct` fields and map keys, so templates from a registry are safe to run.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import itertools
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ggtool.errors import GgtoolError


class TemplateError(GgtoolError):
    """A template that does not parse, or fails while executing."""


# ---------------------------------------------------------------------------------------------
# Go values


class GoStruct:
    """A Go struct value: fields in declaration order, optional JSON tags and String() method.

    `json_fields` lists (go_name, json_name, omitempty); without it, json uses the Go names.
    """

    __slots__ = ("type_name", "fields", "json_fields", "stringer")

    def __init__(
        self,
        type_name: str,
        fields: dict[str, Any],
        json_fields: list[tuple[str, str, bool]] | None = None,
        stringer: Callable[[GoStruct], str] | None = None,
    ) -> None:
        self.type_name = type_name
        self.fields = fields
        self.json_fields = json_fields
        self.stringer = stringer

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoStruct) and self.fields == other.fields

    def __repr__(self) -> str:
        return f"GoStruct({self.type_name}, {self.fields!r})"


class JSONMap(dict):
    """A Go map whose String() method prints it as JSON (Ollama's templateArgs/templateProperties)."""


class OrderedMap(dict):
    """An insertion-ordered map (Ollama's ToolPropertiesMap): JSON keeps the order."""


class JSONList(list):
    """A Go slice whose String() prints JSON (Ollama's templateTools)."""


class PropertyType(list):
    """Ollama's PropertyType: a list of JSON-schema type names, printed as one name when single."""


def go_str(v: Any) -> str:
    """fmt.Sprint of one value, as text/template prints an action's result."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, PropertyType):
        return v[0] if len(v) == 1 else ("" if not v else "[" + " ".join(v) + "]")
    if isinstance(v, (JSONMap, JSONList)):
        return go_json(v)
    if isinstance(v, GoStruct):
        if v.stringer is not None:
            return v.stringer(v)
        return "{" + " ".join(_inner_str(x) for x in v.fields.values()) + "}"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{_inner_str(k)}:{_inner_str(v[k])}" for k in _sorted_keys(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_inner_str(x) for x in v) + "]"
    return str(v)


def _inner_str(v: Any) -> str:
    # nested nils print as <nil> in fmt, not <no value>
    return "<nil>" if v is None else go_str(v)


def _shortest(f: float) -> tuple[str, str, int]:
    """(sign, significant digits, decimal exponent of the first digit) of the shortest repr."""
    _sign, digits, exp = decimal.Decimal(repr(abs(f))).as_tuple()
    all_digits = "".join(map(str, digits))
    ds = all_digits.lstrip("0") or "0"
    e10 = len(all_digits) + int(exp) - 1 - (len(all_digits) - len(ds))
    return ("-" if f < 0 else ""), (ds.rstrip("0") or "0"), e10


def _format_float(f: float, exp_low: int, exp_high: int) -> str:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 and exp_low == -4 else "0"
    sign, ds, e10 = _shortest(f)
    if e10 < exp_low or e10 >= exp_high:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{sign}{mant}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}"
    if e10 < 0:
        return f"{sign}0.{'0' * (-e10 - 1)}{ds}"
    if len(ds) <= e10 + 1:
        return sign + ds + "0" * (e10 + 1 - len(ds))
    return f"{sign}{ds[: e10 + 1]}.{ds[e10 + 1 :]}"


def go_float(f: float) -> str:
    """Go's %v for float64: shortest digits, exponent form outside [1e-4, 1e21)."""
    return _format_float(f, -4, 21)


def _json_float(f: float) -> str:
    # encoding/json: plain form unless the exponent is < -6 or >= 21
    if math.isnan(f) or math.isinf(f):
        raise TemplateError("json: unsupported value: " + go_float(f))
    return _format_float(f, -6, 21)


def _json_string(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    return (
        out.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _is_empty(v: Any) -> bool:
    """encoding/json's omitempty test."""
    if v is None or v is False:
        return True
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v == 0
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) == 0
    return False


def go_json(v: Any) -> str:
    """encoding/json.Marshal: compact, HTML-escaped, map keys sorted, struct fields in order."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, str):
        return _json_string(v)
    if isinstance(v, PropertyType):
        return _json_string(v[0]) if len(v) == 1 else go_json(list(v))
    if isinstance(v, GoStruct):
        parts = []
        spec = v.json_fields or [(k, k, False) for k in v.fields]
        for go_name, json_name, omitempty in spec:
            val = v.fields.get(go_name)
            if omitempty and _is_empty(val):
                continue
            parts.append(_json_string(json_name) + ":" + go_json(val))
        return "{" + ",".join(parts) + "}"
    if isinstance(v, OrderedMap):
        return "{" + ",".join(_json_string(str(k)) + ":" + go_json(v[k]) for k in v) + "}"
    if isinstance(v, dict):
        return "{" + ",".join(_json_string(str(k)) + ":" + go_json(v[k]) for k in _sorted_keys(v)) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    raise TemplateError(f"json: unsupported type {type(v).__name__}")


def _sorted_keys(d: Mapping[Any, Any]) -> list[Any]:
    try:
        return sorted(d)
    except TypeError:
        return sorted(d, key=str)


def truth(v: Any) -> bool:
    """text/template's truth: false, 0, nil and empty strings/slices/maps are false."""
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return True


# ---------------------------------------------------------------------------------------------
# Lexing


@dataclass
class _Tok:
    kind: str  # field var ident string number char bool nil dot lparen rparen pipe comma decl assign
    value: Any
    pos: int


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(
    r"[+-]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|"
    r"(\d[\d_]*)?\.?\d[\d_]*([eE][+-]?\d+)?|\d[\d_]*\.)"
)
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   "\\": "\\", '"': '"', "'": "'"}


def _unquote(body: str, quote: str, where: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= len(body):
            raise TemplateError(f"template: bad escape at {where}")
        e = body[i]
        if e in _SIMPLE_ESCAPES and (e != "'" or quote == "'") and (e != '"' or quote == '"'):
            out.append(_SIMPLE_ESCAPES[e])
            i += 1
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            hexs = body[i + 1 : i + 1 + n]
            if len(hexs) != n or not all(h in "0123456789abcdefABCDEF" for h in hexs):
                raise TemplateError(f"template: bad escape \\{e} at {where}")
            out.append(chr(int(hexs, 16)))
            i += 1 + n
        elif e in "01234567":
            octs = body[i : i + 3]
            if len(octs) != 3 or not all(o in "01234567" for o in octs):
                raise TemplateError(f"template: bad octal escape at {where}")
            out.append(chr(int(octs, 8)))
            i += 3
        else:
            raise TemplateError(f"template: unknown escape sequence \\{e} at {where}")
    return "".join(out)


def _lex_action(src: str, start: int) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        pos = start + i
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                if src[j] == "\n":
                    raise TemplateError(f"template: unterminated quoted string at {pos}")
                j += 2 if src[j] == "\\" else 1
            if j >= n:
                raise TemplateError(f"template: unterminated quoted string at {pos}")
            toks.append(_Tok("string", _unquote(src[i + 1 : j], '"', pos), pos))
            i = j + 1
        elif c == "`":
            j = src.find("`", i + 1)
            if j < 0:
                raise TemplateError(f"template: unterminated raw quoted string at {pos}")
            toks.append(_Tok("string", src[i + 1 : j], pos))
            i = j + 1
        elif c == "'":
            j = i + 1
            while j < n and src[j] != "'":
                j += 2 if src[j] == "\\" else 1
            if j >= n:
                raise TemplateError(f"template: unterminated character constant at {pos}")
            s = _unquote(src[i + 1 : j], "'", pos)
            if len(s) != 1:
                raise TemplateError(f"template: malformed character constant at {pos}")
            toks.append(_Tok("number", ord(s), pos))
            i = j + 1
        elif c == "(":
            toks.append(_Tok("lparen", c, pos))
            i += 1
        elif c == ")":
            toks.append(_Tok("rparen", c, pos))
            i += 1
        elif c == "|":
            toks.append(_Tok("pipe", c, pos))
            i += 1
        elif c == ",":
            toks.append(_Tok("comma", c, pos))
            i += 1
        elif src.startswith(":=", i):
            toks.append(_Tok("decl", ":=", pos))
            i += 2
        elif c == "=":
            toks.append(_Tok("assign", "=", pos))
            i += 1
        elif c == "$":
            m = _IDENT_RE.match(src, i + 1)
            name = "$" + (m.group(0) if m else "")
            i = i + 1 + (len(m.group(0)) if m else 0)
            chain, i = _lex_chain(src, i)
            toks.append(_Tok("var", (name, chain), pos))
        elif c == "." and (i + 1 >= n or not src[i + 1].isdigit()):
            if i + 1 < n and (src[i + 1].isalpha() or src[i + 1] == "_"):
                chain, i = _lex_chain(src, i)
                toks.append(_Tok("field", chain, pos))
            else:
                toks.append(_Tok("dot", ".", pos))
                i += 1
        elif c.isdigit() or (c in "+-." and i + 1 < n and (src[i + 1].isdigit() or src[i + 1] == ".")):
            m = _NUMBER_RE.match(src, i)
            if not m or not m.group(0):
                raise TemplateError(f"template: bad number syntax at {pos}")
            text = m.group(0)
            toks.append(_Tok("number", _parse_number(text, pos), pos))
            i += len(text)
        elif c.isalpha() or c == "_":
            m = _IDENT_RE.match(src, i)
            assert m
            word = m.group(0)
            i += len(word)
            if word in ("true", "false"):
                toks.append(_Tok("bool", word == "true", pos))
            elif word == "nil":
                toks.append(_Tok("nil", None, pos))
            else:
                toks.append(_Tok("ident", word, pos))
        else:
            raise TemplateError(f"template: unexpected {c!r} in action at {pos}")
        # a field chain may follow a closing parenthesis: (index .X 0).Name
        if toks and toks[-1].kind == "rparen" and i < n and src[i] == "." and i + 1 < n and src[i + 1].isalpha():
            chain, i = _lex_chain(src, i)
            toks.append(_Tok("chain", chain, start + i))
    return toks


def _lex_chain(src: str, i: int) -> tuple[list[str], int]:
    chain: list[str] = []
    while i < len(src) and src[i] == ".":
        m = _IDENT_RE.match(src, i + 1)
        if not m:
            break
        chain.append(m.group(0))
        i = m.end()
    return chain, i


def _parse_number(text: str, pos: int) -> int | float:
    t = text.replace("_", "")
    try:
        if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]+", t):
            return int(t, 16)
        if re.fullmatch(r"[+-]?0[oO][0-7]+", t):
            return int(t, 8)
        if re.fullmatch(r"[+-]?0[bB][01]+", t):
            return int(t, 2)
        if re.fullmatch(r"[+-]?\d+", t):
            return int(t, 10)
        return float(t)
    except ValueError as e:
        raise TemplateError(f"template: bad number syntax {text!r} at {pos}") from e


# ---------------------------------------------------------------------------------------------
# Tree


@dataclass
class Text:
    text: str


@dataclass
class Command:
    args: list[Any]  # operands: ("field", chain) ("var", name, chain) ("dot",) ("lit", v)
    # ("ident", name) ("pipe", Pipeline, chain)


@dataclass
class Pipeline:
    decls: list[str]
    is_assign: bool
    cmds: list[Command]


@dataclass
class Action:
    pipe: Pipeline


@dataclass
class Branch:
    kind: str  # if | range | with
    pipe: Pipeline
    body: list[Any]
    else_body: list[Any] | None = None


@dataclass
class TemplateCall:
    name: str
    pipe: Pipeline | None


@dataclass
class LoopControl:
    kind: str  # break | continue


@dataclass
class _Delim:
    kind: str  # else | end
    toks: list[_Tok] = field(default_factory=list)


def _split_actions(src: str) -> Iterator[tuple[str, Any]]:
    """Yield ("text", s) and ("action", (tokens, pos)) with trim markers applied to texts."""
    pos = 0
    pending_trim = False
    n = len(src)
    while pos <= n:
        j = src.find("{{", pos)
        text = src[pos:] if j < 0 else src[pos:j]
        left_trim = j >= 0 and src.startswith("{{-", j) and j + 3 < n and src[j + 3] in " \t\r\n"
        if pending_trim:
            text = text.lstrip(" \t\r\n")
        if left_trim:
            text = text.rstrip(" \t\r\n")
        if text:
            yield "text", text
        if j < 0:
            return
        k = j + (4 if left_trim else 2)
        # comments: {{/* ... */}} with optional trim markers
        probe = k
        while probe < n and src[probe] in " \t\r\n" and left_trim:
            probe += 1
        if src.startswith("/*", probe):
            end_c = src.find("*/", probe + 2)
            if end_c < 0:
                raise TemplateError("template: unclosed comment")
            after = end_c + 2
            m = re.compile(r"[ \t\r\n]*(-?)\}\}").match(src, after)
            if not m or (m.group(1) and m.start(1) == after):
                raise TemplateError("template: comment ends before closing delimiter")
            pending_trim = bool(m.group(1))
            pos = m.end()
            continue
        end, right_trim = _find_action_end(src, k)
        body = src[k : end - (2 if right_trim else 0)] if right_trim else src[k:end]
        yield "action", (_lex_action(body, k), j)
        pending_trim = right_trim
        pos = end + 2


def _find_action_end(src: str, k: int) -> tuple[int, bool]:
    i = k
    n = len(src)
    while i < n:
        c = src[i]
        if c == '"' or c == "'":
            q = c
            i += 1
            while i < n and src[i] != q:
                if src[i] == "\n":
                    break
                i += 2 if src[i] == "\\" else 1
            i += 1
            continue
        if c == "`":
            e = src.find("`", i + 1)
            if e < 0:
                break
            i = e + 1
            continue
        if src.startswith("}}", i):
            right_trim = i - 2 >= k and src[i - 1] == "-" and src[i - 2] in " \t\r\n"
            return i, right_trim
        i += 1
    raise TemplateError("template: unclosed action")


class _Parser:
    def __init__(self, src: str) -> None:
        self.items = list(_split_actions(src))
        self.i = 0
        self.defines: dict[str, list[Any]] = {}

    def parse(self) -> list[Any]:
        body, stop = self._list()
        if stop is not None:
            raise TemplateError(f"template: unexpected {{{{{stop.kind}}}}}")
        return body

    def _list(self) -> tuple[list[Any], _Delim | None]:
        out: list[Any] = []
        while self.i < len(self.items):
            kind, val = self.items[self.i]
            self.i += 1
            if kind == "text":
                out.append(Text(val))
                continue
            toks, pos = val
            node = self._action(toks, pos)
            if isinstance(node, _Delim):
                return out, node
            if node is not None:
                out.append(node)
        return out, None

    def _action(self, toks: list[_Tok], pos: int) -> Any:
        if not toks:
            raise TemplateError(f"template: missing value for command at {pos}")
        head = toks[0]
        word = head.value if head.kind == "ident" else None
        if word == "end":
            if len(toks) > 1:
                raise TemplateError("template: unexpected token in end")
            return _Delim("end")
        if word == "else":
            return _Delim("else", toks[1:])
        if word in ("if", "with", "range"):
            return self._branch(word, toks[1:], pos)
        if word in ("break", "continue"):
            return LoopControl(word)
        if word == "define":
            if len(toks) != 2 or toks[1].kind != "string":
                raise TemplateError("template: define needs a quoted name")
            body, stop = self._list()
            if stop is None or stop.kind != "end":
                raise TemplateError("template: unexpected EOF in define")
            self.defines[toks[1].value] = body
            return None
        if word in ("template", "block"):
            if len(toks) < 2 or toks[1].kind != "string":
                raise TemplateError(f"template: {word} needs a quoted name")
            pipe = self._pipeline(toks[2:], allow_decl=False) if len(toks) > 2 else None
            if word == "block":
                body, stop = self._list()
                if stop is None or stop.kind != "end":
                    raise TemplateError("template: unexpected EOF in block")
                self.defines[toks[1].value] = body
            return TemplateCall(toks[1].value, pipe)
        return Action(self._pipeline(toks, allow_decl=True))

    def _branch(self, kind: str, toks: list[_Tok], pos: int) -> Branch:
        pipe = self._pipeline(toks, allow_decl=True, range_decl=kind == "range")
        body, stop = self._list()
        if stop is None:
            raise TemplateError(f"template: unexpected EOF in {kind}")
        node = Branch(kind, pipe, body)
        if stop.kind == "else":
            rest = stop.toks
            if rest and rest[0].kind == "ident" and rest[0].value in ("if", "with") and kind in ("if", "with"):
                # {{else if ...}} / {{else with ...}}: a nested branch that shares our {{end}}
                node.else_body = [self._branch(rest[0].value, rest[1:], pos)]
                return node
            if rest:
                raise TemplateError("template: unexpected tokens after else")
            else_body, stop2 = self._list()
            if stop2 is None or stop2.kind != "end":
                raise TemplateError(f"template: expected end after else in {kind}")
            node.else_body = else_body
        return node

    def _pipeline(self, toks: list[_Tok], *, allow_decl: bool, range_decl: bool = False) -> Pipeline:
        decls: list[str] = []
        is_assign = False
        # declarations: $x := / $x = / $i, $v :=
        if allow_decl and toks and toks[0].kind == "var" and not toks[0].value[1]:
            if len(toks) > 1 and toks[1].kind in ("decl", "assign"):
                decls = [toks[0].value[0]]
                is_assign = toks[1].kind == "assign"
                toks = toks[2:]
            elif (
                range_decl and len(toks) > 3 and toks[1].kind == "comma" and toks[2].kind == "var"
                and toks[3].kind in ("decl", "assign")
            ):
                decls = [toks[0].value[0], toks[2].value[0]]
                is_assign = toks[3].kind == "assign"
                toks = toks[4:]
        cmds, rest = self._commands(toks)
        if rest:
            raise TemplateError(f"template: unexpected {rest[0].value!r} in operand")
        if not cmds:
            raise TemplateError("template: missing value for command")
        return Pipeline(decls, is_assign, cmds)

    def _commands(self, toks: list[_Tok]) -> tuple[list[Command], list[_Tok]]:
        cmds: list[Command] = []
        args: list[Any] = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.kind == "pipe":
                if not args:
                    raise TemplateError("template: missing command before |")
                cmds.append(Command(args))
                args = []
                i += 1
                continue
            if t.kind == "rparen":
                break
            if t.kind == "lparen":
                sub, rest = self._commands(toks[i + 1 :])
                if not rest or rest[0].kind != "rparen":
                    raise TemplateError("template: unclosed left paren")
                consumed = len(toks) - i - 1 - len(rest)
                i += 1 + consumed + 1
                chain: list[str] = []
                if i < len(toks) and toks[i].kind == "chain":
                    chain = toks[i].value
                    i += 1
                if not sub:
                    raise TemplateError("template: missing value for command")
                args.append(("pipe", Pipeline([], False, sub), chain))
                continue
            if t.kind == "field":
                args.append(("field", t.value))
            elif t.kind == "var":
                args.append(("var", t.value[0], t.value[1]))
            elif t.kind == "dot":
                args.append(("dot",))
            elif t.kind in ("string", "number", "bool", "nil"):
                args.append(("lit", t.value))
            elif t.kind == "ident":
                if t.value in _KEYWORDS:
                    raise TemplateError(f"template: unexpected keyword {t.value!r} in operand")
                args.append(("ident", t.value))
            else:
                raise TemplateError(f"template: unexpected {t.value!r} in command")
            i += 1
        if args:
            cmds.append(Command(args))
        elif cmds:
            raise TemplateError("template: missing command after |")
        return cmds, toks[i:]


# ---------------------------------------------------------------------------------------------
# Execution


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_MAX_OUTPUT = 4 * 1024 * 1024  # a template that loops forever must not eat the server's memory
_MAX_STEPS = 1_000_000


class _Exec:
    def __init__(self, tmpl: Template, funcs: dict[str, Callable[..., Any]]) -> None:
        self.tmpl = tmpl
        self.funcs = funcs
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.depth = 0

    def write(self, s: str) -> None:
        self.size += len(s)
        if self.size > _MAX_OUTPUT:
            raise TemplateError("template: output too large")
        self.out.append(s)

    def tick(self) -> None:
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise TemplateError("template: execution too long")

    def run_list(self, nodes: list[Any], dot: Any, scope: list[dict[str, Any]]) -> None:
        for node in nodes:
            self.tick()
            if isinstance(node, Text):
                self.write(node.text)
            elif isinstance(node, Action):
                v = self.pipeline(node.pipe, dot, scope)
                if not node.pipe.decls:
                    self.write(go_str(v))
            elif isinstance(node, Branch):
                self.branch(node, dot, scope)
            elif isinstance(node, LoopControl):
                raise _Break() if node.kind == "break" else _Continue()
            elif isinstance(node, TemplateCall):
                body = self.tmpl.defines.get(node.name)
                if body is None:
                    raise TemplateError(f'template: no such template "{node.name}"')
                self.depth += 1
                if self.depth > 100:
                    raise TemplateError("template: exceeded maximum template depth")
                new_dot = self.pipeline(node.pipe, dot, scope) if node.pipe else None
                self.run_list(body, new_dot, [{"$": new_dot}])
                self.depth -= 1

    def branch(self, node: Branch, dot: Any, scope: list[dict[str, Any]]) -> None:
        inner = scope + [{}]
        if node.kind == "range":
            val = self.pipeline(node.pipe, dot, inner, declare=False)
            items = _range_items(val)  # lazy: `range 1000000000` must not build a list
            first = next(items, _NO_PIPE)
            if first is _NO_PIPE:
                if node.else_body is not None:
                    self.run_list(node.else_body, dot, scope + [{}])
                return
            for k, v in itertools.chain([first], items):
                self.tick()
                frame = {}
                if len(node.pipe.decls) == 1:
                    frame[node.pipe.decls[0]] = v
                elif len(node.pipe.decls) == 2:
                    frame[node.pipe.decls[0]] = k
                    frame[node.pipe.decls[1]] = v
                try:
                    if node.pipe.is_assign:
                        for name, value in frame.items():
                            _assign(inner, name, value)
                        self.run_list(node.body, v, inner)
                    else:
                        self.run_list(node.body, v, scope + [frame])
                except _Break:
                    break
                except _Continue:
                    continue
            return
        val = self.pipeline(node.pipe, dot, inner)
        if truth(val):
            self.run_list(node.body, val if node.kind == "with" else dot, inner)
        elif node.else_body is not None:
            self.run_list(node.else_body, dot, scope + [{}])

    def pipeline(
        self, pipe: Pipeline, dot: Any, scope: list[dict[str, Any]], declare: bool = True
    ) -> Any:
        val: Any = _NO_PIPE
        for cmd in pipe.cmds:
            val = self.command(cmd, dot, scope, val)
        if declare and pipe.decls:
            if pipe.is_assign:
                _assign(scope, pipe.decls[0], val)
            else:
                scope[-1][pipe.decls[0]] = val
        return val

    def command(self, cmd: Command, dot: Any, scope: list[dict[str, Any]], piped: Any) -> Any:
        first = cmd.args[0]
        if first[0] == "ident":
            name = first[1]
            if name in ("and", "or"):
                return self._and_or(name, cmd.args[1:], dot, scope, piped)
            fn = self.funcs.get(name)
            if fn is None:
                raise TemplateError(f'template: function "{name}" not defined')
            args = [self.operand(a, dot, scope) for a in cmd.args[1:]]
            if piped is not _NO_PIPE:
                args.append(piped)
            try:
                return fn(*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError) as e:
                raise TemplateError(f"template: error calling {name}: {e}") from e
        if len(cmd.args) > 1 or piped is not _NO_PIPE:
            raise TemplateError("template: can't give argument to non-function")
        return self.operand(first, dot, scope)

    def _and_or(self, name: str, args: list[Any], dot: Any, scope: list[dict[str, Any]], piped: Any) -> Any:
        thunks: list[Callable[[], Any]] = [lambda a=a: self.operand(a, dot, scope) for a in args]
        if piped is not _NO_PIPE:
            thunks.append(lambda: piped)
        if not thunks:
            raise TemplateError(f"template: wrong number of args for {name}: want at least 1 got 0")
        v: Any = None
        for t in thunks:
            v = t()
            if (name == "and" and not truth(v)) or (name == "or" and truth(v)):
                return v
        return v

    def operand(self, arg: Any, dot: Any, scope: list[dict[str, Any]]) -> Any:
        kind = arg[0]
        if kind == "lit":
            return arg[1]
        if kind == "dot":
            return dot
        if kind == "field":
            return _fields(dot, arg[1])
        if kind == "var":
            return _fields(_lookup(scope, arg[1]), arg[2])
        if kind == "pipe":
            return _fields(self.pipeline(arg[1], dot, scope), arg[2])
        if kind == "ident":
            fn = self.funcs.get(arg[1])
            if fn is None:
                raise TemplateError(f'template: function "{arg[1]}" not defined')
            return fn()
        raise TemplateError(f"template: bad operand {kind}")


class _NoPipe:
    pass


_NO_PIPE = _NoPipe()


def _assign(scope: list[dict[str, Any]], name: str, value: Any) -> None:
    for frame in reversed(scope):
        if name in frame:
            frame[name] = value
            return
    raise TemplateError(f"template: undefined variable: {name}")


def _lookup(scope: list[dict[str, Any]], name: str) -> Any:
    for frame in reversed(scope):
        if name in frame:
            return frame[name]
    raise TemplateError(f"template: undefined variable: {name}")


def _fields(v: Any, chain: list[str]) -> Any:
    for name in chain:
        v = _field(v, name)
    return v


def _field(v: Any, name: str) -> Any:
    if isinstance(v, GoStruct):
        if name not in v.fields:
            raise TemplateError(f"template: can't evaluate field {name} in type {v.type_name}")
        return v.fields[name]
    if isinstance(v, dict):
        return v.get(name)  # missingkey=zero
    if v is None:
        raise TemplateError(f"template: nil pointer evaluating interface {{}}.{name}")
    raise TemplateError(f"template: can't evaluate field {name} in type {type(v).__name__}")


def _range_items(v: Any) -> Iterator[tuple[Any, Any]]:
    if v is None:
        return
    if isinstance(v, bool):
        raise TemplateError("template: range can't iterate over bool")
    if isinstance(v, int):
        yield from ((i, i) for i in range(v))
    elif isinstance(v, OrderedMap):
        yield from v.items()
    elif isinstance(v, dict):
        yield from ((k, v[k]) for k in _sorted_keys(v))
    elif isinstance(v, (list, tuple)):
        yield from enumerate(v)
    else:
        raise TemplateError(f"template: range can't iterate over {go_str(v)}")


# ---------------------------------------------------------------------------------------------
# Builtin functions


def _f_not(v: Any) -> bool:
    return not truth(v)


def _f_len(v: Any) -> int:
    if isinstance(v, (str, list, tuple, dict)):
        return len(v.encode("utf-8")) if isinstance(v, str) else len(v)
    raise TemplateError(f"template: error calling len: len of type {type(v).__name__}")


def _f_index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k)
        elif isinstance(v, (list, tuple, str)):
            if not isinstance(k, int) or isinstance(k, bool):
                raise TemplateError("template: error calling index: cannot index slice with non-integer")
            if not 0 <= k < len(v):
                raise TemplateError(f"template: error calling index: index out of range: {k}")
            v = v[k]
        elif v is None:
            raise TemplateError("template: error calling index: index of untyped nil")
        else:
            raise TemplateError(f"template: error calling index: can't index item of type {type(v).__name__}")
    return v


def _f_slice(v: Any, *idx: Any) -> Any:
    if not isinstance(v, (list, tuple, str)):
        raise TemplateError(f"template: error calling slice: can't slice item of type {type(v).__name__}")
    if len(idx) > 3:
        raise TemplateError("template: error calling slice: too many slice indexes")
    for k in idx:
        if not isinstance(k, int) or isinstance(k, bool):
            raise TemplateError("template: error calling slice: cannot index slice with non-integer")
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else len(v)
    if not 0 <= lo <= hi <= len(v):
        raise TemplateError(f"template: error calling slice: slice index out of range: {lo}:{hi}")
    out = v[lo:hi]
    return type(v)(out) if isinstance(v, (JSONList,)) else out


def _basic(v: Any) -> Any:
    if isinstance(v, (GoStruct, list, dict)) and not isinstance(v, PropertyType):
        raise TemplateError("template: error calling eq: incompatible types for comparison")
    return v


def _f_eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise TemplateError("template: wrong number of args for eq: want at least 2 got 1")
    a = _basic(a)
    return any(a == _basic(b) for b in bs)


def _f_ne(a: Any, b: Any) -> bool:
    return _basic(a) != _basic(b)


def _cmp(op: str) -> Callable[[Any, Any], bool]:
    def f(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool) or type(a) is not type(b) and not (
            isinstance(a, (int, float)) and isinstance(b, (int, float))
        ):
            raise TemplateError(f"template: error calling {op}: incompatible types for comparison")
        if op == "lt":
            return a < b
        if op == "le":
            return a <= b
        if op == "gt":
            return a > b
        return a >= b

    return f


def _f_print(*args: Any) -> str:
    out = []
    for i, a in enumerate(args):
        # fmt.Sprint adds a space between operands when neither is a string
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_inner_str(a))
    return "".join(out)


def _f_println(*args: Any) -> str:
    return " ".join(_inner_str(a) for a in args) + "\n"


_VERB_RE = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*))?([a-zA-Z%])")


def _f_printf(fmt: str, *args: Any) -> str:
    it = iter(args)
    out: list[str] = []
    pos = 0
    for m in _VERB_RE.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        try:
            a = next(it)
        except StopIteration:
            out.append(f"%!{verb}(MISSING)")
            continue
        spec = flags + (width or "") + (f".{prec}" if prec else "")
        if verb in ("v", "s"):
            s = _inner_str(a)
            out.append(("%" + spec + "s") % s)
        elif verb == "q":
            out.append(json.dumps(str(a), ensure_ascii=False))
        elif verb == "d" and isinstance(a, int):
            out.append(("%" + spec + "d") % a)
        elif verb in "feEgG" and isinstance(a, (int, float)):
            out.append(("%" + spec + verb) % a)
        elif verb in "xX" and isinstance(a, (int, str)):
            out.append(("%" + spec + verb) % a if isinstance(a, int) else a.encode().hex())
        elif verb == "t" and isinstance(a, bool):
            out.append("true" if a else "false")
        elif verb == "T":
            out.append(type(a).__name__)
        else:
            out.append(f"%!{verb}({_inner_str(a)})")
    out.append(fmt[pos:])
    extra = list(it)
    if extra:
        out.append("%!(EXTRA " + ", ".join(_inner_str(e) for e in extra) + ")")
    return "".join(out)


def _to_typescript(v: Any) -> str:
    if not isinstance(v, GoStruct) or "Type" not in v.fields:
        return "any"
    any_of = v.fields.get("AnyOf") or []
    if any_of:
        return " | ".join(_to_typescript(x) for x in any_of)
    types = v.fields.get("Type") or []
    if not types:
        return "any"
    return " | ".join(_ts_name(t) for t in types)


def _ts_name(t: str) -> str:
    return {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
            "array": "any[]", "object": "Record<string, any>", "null": "null"}.get(t, "any")


def _today(offset_days: int = 0) -> str:
    return (_dt.date.today() + _dt.timedelta(days=offset_days)).isoformat()


BUILTINS: dict[str, Callable[..., Any]] = {
    "not": _f_not,
    "len": _f_len,
    "index": _f_index,
    "slice": _f_slice,
    "eq": _f_eq,
    "ne": _f_ne,
    "lt": _cmp("lt"),
    "le": _cmp("le"),
    "gt": _cmp("gt"),
    "ge": _cmp("ge"),
    "print": _f_print,
    "printf": _f_printf,
    "println": _f_println,
    "json": go_json,
    "currentDate": lambda *_a: _today(),
    "yesterdayDate": lambda *_a: _today(-1),
    "toTypeScriptType": _to_typescript,
}
_KNOWN_FUNCS = set(BUILTINS) | {"and", "or", "html", "js", "urlquery", "call"}


# ---------------------------------------------------------------------------------------------
# Public API


class Template:
    """A parsed Go template."""

    def __init__(self, source: str) -> None:
        self.source = source
        parser = _Parser(source)
        self.root = parser.parse()
        self.defines = parser.defines
        _check_funcs(self.root, self.defines)

    def execute(self, data: Any, root: list[Any] | None = None) -> str:
        ex = _Exec(self, BUILTINS)
        try:
            ex.run_list(self.root if root is None else root, data, [{"$": data}])
        except (_Break, _Continue) as e:
            raise TemplateError("template: break or continue outside range") from e
        except RecursionError as e:
            raise TemplateError("template: nesting too deep") from e
        return "".join(ex.out)

    def identifiers(self) -> set[str]:
        """Lower-cased field and variable identifiers (Ollama's Template.Vars)."""
        found: set[str] = set()
        for node in _walk(self.root, self.defines):
            pipes = [node.pipe] if isinstance(node, (Action, Branch)) else []
            if isinstance(node, TemplateCall) and node.pipe:
                pipes.append(node.pipe)
            for p in pipes:
                for ident in _pipe_idents(p):
                    found.add(ident.lower())
        return found

    def contains_field(self, name: str) -> bool:
        return name.lower() in self.identifiers()

    def without_after_response(self) -> list[Any]:
        """The tree cut after the first `.Response` field (Ollama's legacy generation prompt)."""
        state = {"cut": False}
        return _cut_after_response(self.root, state)

    def first_text_after_tool_calls(self) -> str | None:
        """The first non-blank text inside the first `if` on .ToolCalls (the tool-call tag)."""
        node = _find_tool_calls_if(self.root)
        if node is None:
            return None
        return _first_text(node.body)


def _check_funcs(nodes: list[Any], defines: dict[str, list[Any]]) -> None:
    # Go rejects unknown functions at parse time
    for node in _walk(nodes, defines):
        pipes = [node.pipe] if isinstance(node, (Action, Branch)) else []
        if isinstance(node, TemplateCall):
            if node.pipe is None and node.name not in defines:
                raise TemplateError("undefined template specified")
            if node.pipe:
                pipes.append(node.pipe)
        for p in pipes:
            for name in _pipe_funcs(p):
                if name not in _KNOWN_FUNCS:
                    raise TemplateError(f'template: function "{name}" not defined')
                if name in ("html", "js", "urlquery", "call"):
                    raise TemplateError(f'template: function "{name}" is not supported')


def _walk(nodes: list[Any], defines: dict[str, list[Any]] | None = None) -> Iterator[Any]:
    for n in nodes:
        yield n
        if isinstance(n, Branch):
            yield from _walk(n.body)
            if n.else_body:
                yield from _walk(n.else_body)
    if defines:
        for body in defines.values():
            yield from _walk(body)


def _pipe_idents(p: Pipeline) -> Iterator[str]:
    for cmd in p.cmds:
        for a in cmd.args:
            if a[0] == "field":
                yield from a[1]
            elif a[0] == "var":
                yield a[1]
                yield from a[2]
            elif a[0] == "pipe":
                yield from _pipe_idents(a[1])
                yield from a[2]


def _pipe_funcs(p: Pipeline) -> Iterator[str]:
    for cmd in p.cmds:
        for a in cmd.args:
            if a[0] == "ident":
                yield a[1]
            elif a[0] == "pipe":
                yield from _pipe_funcs(a[1])


def _cut_after_response(nodes: list[Any], state: dict[str, bool]) -> list[Any]:
    out: list[Any] = []
    for n in nodes:
        if state["cut"]:
            continue
        if isinstance(n, Action):
            cmds = []
            for cmd in n.pipe.cmds:
                args = []
                for a in cmd.args:
                    if state["cut"]:
                        continue
                    args.append(a)
                    if a[0] == "field" and "Response" in a[1]:
                        state["cut"] = True
                if args:
                    cmds.append(Command(args))
            if cmds:
                out.append(Action(Pipeline(n.pipe.decls, n.pipe.is_assign, cmds)))
        elif isinstance(n, Branch):
            body = _cut_after_response(n.body, state)
            else_body = _cut_after_response(n.else_body, state) if n.else_body is not None else None
            out.append(Branch(n.kind, n.pipe, body, else_body))
        else:
            out.append(n)
    return out


def _find_tool_calls_if(nodes: list[Any]) -> Branch | None:
    for n in nodes:
        if not isinstance(n, Branch):
            continue
        if n.kind == "if" and any(
            a[0] == "field" and "ToolCalls" in a[1] for cmd in n.pipe.cmds for a in cmd.args
        ):
            return n
        found = _find_tool_calls_if(n.body) or (_find_tool_calls_if(n.else_body) if n.else_body else None)
        if found:
            return found
    return None


def _first_text(nodes: list[Any]) -> str | None:
    for n in nodes:
        if isinstance(n, Text):
            if n.text.strip():
                return n.text
            continue
        if isinstance(n, Action):
            return None
        if isinstance(n, Branch):
            t = _first_text(n.body) or (_first_text(n.else_body) if n.else_body else None)
            return t
    return None


def parse(source: str) -> Template:
    """Parse a Go template; raises TemplateError with Go-like messages."""
    if len(source) > 1024 * 1024:
        raise TemplateError("template: too large")
    try:
        return Template(source)
    except RecursionError as e:
        raise TemplateError("template: nesting too deep") from e
