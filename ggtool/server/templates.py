"""Prompt building: a model's chat messages → one prompt string, as Ollama builds it.

Two template languages: the Modelfile's TEMPLATE (Ollama's Go templates, run by
`gotemplate`) and the GGUF's `tokenizer.chat_template` (Hugging Face Jinja, rendered in an
immutable sandboxed Jinja2 environment like llama-cpp-python and transformers do). Selection
follows Ollama ≥0.30: the Go template when the Modelfile set one (unless the GGUF template
offers tools/thinking the Go one lacks), else the GGUF template, else `{{ .Prompt }}`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from ggtool.server import gotemplate
from ggtool.server.gotemplate import (
    GoStruct,
    JSONList,
    JSONMap,
    OrderedMap,
    PropertyType,
    TemplateError,
)

DEFAULT_GO_TEMPLATE = "{{ .Prompt }}"


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = ""
    index: int = 0


@dataclass
class Message:
    role: str
    content: str = ""
    thinking: str = ""
    images: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_name: str = ""
    tool_call_id: str = ""


@dataclass
class RenderInput:
    messages: list[Message]
    tools: list[dict[str, Any]] | None = None  # Ollama/OpenAI tool objects
    think: bool = False
    think_level: str = ""
    is_think_set: bool = False
    prompt: str = ""  # suffix (fill-in-the-middle) mode: prompt + suffix
    suffix: str = ""


class PromptTemplate:
    """Common interface of the Go and Jinja prompt templates."""

    kind = "none"
    source = ""

    def render(self, inp: RenderInput) -> str:
        raise NotImplementedError

    @property
    def capabilities(self) -> set[str]:
        return set()

    def tool_call_tag(self) -> str:
        """The text that opens a tool call in this template's outputs ("{" = bare JSON)."""
        return "{"

    def thinking_tags(self) -> tuple[str, str] | None:
        return None


# ---------------------------------------------------------------------------------------------
# Go templates (Ollama)


def collate(messages: list[Message]) -> tuple[str, list[Message]]:
    """Merge consecutive same-role messages (not tool ones) and collect the system texts."""
    system: list[str] = []
    out: list[Message] = []
    for m in messages:
        if m.role == "system":
            system.append(m.content)
        if out and out[-1].role == m.role and m.role != "tool":
            prev = out[-1]
            out[-1] = Message(
                role=prev.role,
                content=prev.content + "\n\n" + m.content,
                thinking=prev.thinking,
                images=prev.images + m.images,
                tool_calls=prev.tool_calls,
                tool_name=prev.tool_name,
                tool_call_id=prev.tool_call_id,
            )
        else:
            out.append(m)
    return "\n\n".join(system), out


def _json_stringer(v: Any) -> str:
    return gotemplate.go_json(v)


def _tool_property(p: Any) -> GoStruct:
    p = p if isinstance(p, dict) else {}
    t = p.get("type")
    types = PropertyType([t] if isinstance(t, str) else [x for x in (t or []) if isinstance(x, str)])
    props = p.get("properties")
    return GoStruct(
        "api.ToolProperty",
        {
            "AnyOf": [_tool_property(x) for x in p.get("anyOf") or []],
            "Type": types,
            "Items": p.get("items"),
            "Description": p.get("description", "") if isinstance(p.get("description"), str) else "",
            "Enum": p.get("enum") if isinstance(p.get("enum"), list) else None,
            "Properties": OrderedMap((k, _tool_property(v)) for k, v in props.items())
            if isinstance(props, dict) else None,
            "Required": p.get("required") if isinstance(p.get("required"), list) else None,
        },
        json_fields=[
            ("AnyOf", "anyOf", True),
            ("Type", "type", True),
            ("Items", "items", True),
            ("Description", "description", True),
            ("Enum", "enum", True),
            ("Properties", "properties", True),
            ("Required", "required", True),
        ],
    )


def go_tools(tools: list[dict[str, Any]] | None) -> JSONList | None:
    """Ollama's templateTools: typed structs whose String() is their JSON."""
    if not tools:
        return None
    out = JSONList()
    for t in tools:
        fn = t.get("function") if isinstance(t.get("function"), dict) else {}
        params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
        props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
        parameters = GoStruct(
            "templateToolFunctionParameters",
            {
                "Type": params.get("type", "") if isinstance(params.get("type", ""), str) else "",
                "Defs": params.get("$defs"),
                "Items": params.get("items"),
                "Required": params.get("required") if isinstance(params.get("required"), list) else None,
                "Properties": JSONMap((k, _tool_property(v)) for k, v in props.items()),
            },
            json_fields=[
                ("Type", "type", False),
                ("Defs", "$defs", True),
                ("Items", "items", True),
                ("Required", "required", True),
                ("Properties", "properties", False),
            ],
            stringer=_json_stringer,
        )
        function = GoStruct(
            "templateToolFunction",
            {"Name": str(fn.get("name", "")),
             "Description": fn.get("description") if isinstance(fn.get("description"), str) else "",
             "Parameters": parameters},
            json_fields=[("Name", "name", False), ("Description", "description", False),
                         ("Parameters", "parameters", False)],
            # api.ToolFunction.String() is JSON; library templates (qwen2.5: `{{ .Function }}`)
            # rely on it
            stringer=_json_stringer,
        )
        out.append(
            GoStruct(
                "templateTool",
                {"Type": t.get("type") if isinstance(t.get("type"), str) else "function",
                 "Items": t.get("items"), "Function": function},
                json_fields=[("Type", "type", False), ("Items", "items", True), ("Function", "function", False)],
                stringer=_json_stringer,
            )
        )
    return out


def _go_message(m: Message) -> GoStruct:
    calls = [
        GoStruct(
            "templateToolCall",
            {
                "ID": c.id,
                "Function": GoStruct(
                    "templateToolCallFunction",
                    {"Index": c.index, "Name": c.name, "Arguments": JSONMap(c.arguments or {})},
                ),
            },
        )
        for c in m.tool_calls
    ]
    return GoStruct(
        "templateMessage",
        {
            "Role": m.role,
            "Content": m.content,
            "Thinking": m.thinking,
            "Images": list(m.images),
            "ToolCalls": calls or None,
            "ToolName": m.tool_name,
            "ToolCallID": m.tool_call_id,
        },
    )


class GoPromptTemplate(PromptTemplate):
    kind = "go"

    def __init__(self, source: str) -> None:
        self.source = source
        self.tmpl = gotemplate.parse(source)
        self.vars = self.tmpl.identifiers()
        if "messages" not in self.vars and "response" not in self.vars:
            # Ollama appends {{ .Response }} to templates that mention neither
            self.tmpl = gotemplate.parse(source + "{{ .Response }}")

    @property
    def capabilities(self) -> set[str]:
        caps: set[str] = set()
        if "tools" in self.vars:
            caps.add("tools")
        if "suffix" in self.vars:
            caps.add("insert")
        if self.thinking_tags() is not None:
            caps.add("thinking")
        return caps

    def tool_call_tag(self) -> str:
        text = self.tmpl.first_text_after_tool_calls()
        if text is None:
            return "{"
        tag = text.replace("\r\n", "\n").split("{", 1)[0].strip()
        return tag or "{"

    def thinking_tags(self) -> tuple[str, str] | None:
        # Ollama infers the tags from the text around .Thinking; the common pair is <think>
        if "thinking" not in self.vars:
            return None
        src = self.source
        if "<think>" in src and "</think>" in src:
            return "<think>", "</think>"
        return None

    def render(self, inp: RenderInput) -> str:
        base = {"Think": inp.think, "ThinkLevel": inp.think_level, "IsThinkSet": inp.is_think_set}
        if inp.prompt and inp.suffix:
            return self.tmpl.execute({"Prompt": inp.prompt, "Suffix": inp.suffix, "Response": "", **base})
        system, msgs = collate(inp.messages)
        if "messages" in self.vars:
            return self.tmpl.execute(
                {
                    "System": system,
                    "Messages": [_go_message(m) for m in msgs],
                    "Tools": go_tools(inp.tools),
                    "Response": "",
                    **base,
                }
            )
        return self._render_legacy(msgs, base)

    def _render_legacy(self, msgs: list[Message], base: dict[str, Any]) -> str:
        # one execution per (system, user, assistant) turn; the last is cut after .Response
        out: list[str] = []
        state = {"System": "", "Prompt": "", "Response": ""}

        def flush() -> None:
            out.append(self.tmpl.execute({**state, **base}))
            state.update(System="", Prompt="", Response="")

        for m in msgs:
            if m.role == "system":
                if state["Prompt"] or state["Response"]:
                    flush()
                state["System"] = m.content
            elif m.role == "user":
                if state["Response"]:
                    flush()
                state["Prompt"] = m.content
            elif m.role == "assistant":
                state["Response"] = m.content
        out.append(self.tmpl.execute({**state, **base}, root=self.tmpl.without_after_response()))
        return "".join(out)


# ---------------------------------------------------------------------------------------------
# Jinja templates (GGUF tokenizer.chat_template)


def _jinja_env() -> Any:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _GenerationTag(jinja2.ext.Extension):
        # transformers' {% generation %} marks assistant spans for training masks: pass through
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
               separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env.filters["tojson"] = tojson
    return env


_ENV: Any = None


class JinjaPromptTemplate(PromptTemplate):
    kind = "jinja"

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        import jinja2

        global _ENV
        if _ENV is None:
            _ENV = _jinja_env()
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self.tmpl = _ENV.from_string(source)
        except jinja2.TemplateError as e:
            raise TemplateError(f"chat template error: {e}") from e

    @property
    def capabilities(self) -> set[str]:
        caps: set[str] = set()
        if "tools" in self.source or "tool_call" in self.source:
            caps.add("tools")
        if "<think>" in self.source and "</think>" in self.source:
            caps.add("thinking")
        return caps

    def tool_call_tag(self) -> str:
        if "<tool_call>" in self.source:
            return "<tool_call>"
        if "[TOOL_CALLS]" in self.source:
            return "[TOOL_CALLS]"
        if "<|python_tag|>" in self.source:
            return "{"
        return "{"

    def thinking_tags(self) -> tuple[str, str] | None:
        return ("<think>", "</think>") if "thinking" in self.capabilities else None

    def render(self, inp: RenderInput) -> str:
        import jinja2

        def raise_exception(message: str) -> None:
            raise TemplateError(f"chat template error: {message}")

        messages = [_jinja_message(m) for m in inp.messages]
        if inp.prompt and inp.suffix:
            messages = [{"role": "user", "content": inp.prompt}]
        kwargs: dict[str, Any] = {
            "messages": messages,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "add_generation_prompt": not (messages and messages[-1]["role"] == "assistant"),
            "raise_exception": raise_exception,
            "strftime_now": lambda f: _dt.datetime.now().strftime(f),
            "tools": inp.tools or None,
        }
        if inp.is_think_set:
            kwargs["enable_thinking"] = inp.think
        try:
            return self.tmpl.render(**kwargs)
        except TemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError,
                ZeroDivisionError, OverflowError, RecursionError) as e:
            raise TemplateError(f"chat template error: {type(e).__name__}: {e}") from e


def _jinja_message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.thinking:
        out["reasoning_content"] = m.thinking
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_name:
        out["name"] = m.tool_name
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    return out


# ---------------------------------------------------------------------------------------------
# Selection


def select_template(
    go_source: str | None,
    gguf_chat_template: str | None,
    *,
    bos_token: str = "",
    eos_token: str = "",
    prefer_go: bool | None = None,
) -> PromptTemplate:
    """The template a model renders with (Ollama ≥0.30 rules; `prefer_go` = OLLAMA_GO_TEMPLATE).

    Compiled templates are cached by source: prompt building costs no parsing per request."""
    go = compile_go(go_source) if go_source else None
    jinja = None
    if gguf_chat_template:
        try:
            jinja = compile_jinja(gguf_chat_template, bos_token, eos_token)
        except TemplateError:
            jinja = None
    if go is not None and jinja is not None:
        if prefer_go is False:
            return jinja
        if prefer_go is None and not jinja.capabilities <= go.capabilities:
            return jinja
        return go
    if go is not None:
        return go
    if jinja is not None:
        return jinja
    return compile_go(DEFAULT_GO_TEMPLATE)


@functools.lru_cache(maxsize=128)
def compile_go(source: str) -> GoPromptTemplate:
    return GoPromptTemplate(source)


@functools.lru_cache(maxsize=64)
def compile_jinja(source: str, bos_token: str = "", eos_token: str = "") -> JinjaPromptTemplate:
    return JinjaPromptTemplate(source, bos_token=bos_token, eos_token=eos_token)


def render_raw_template(source: str, inp: RenderInput) -> str:
    """A request's own `template` field (generate): always a Go template."""
    return compile_go(source).render(inp)
