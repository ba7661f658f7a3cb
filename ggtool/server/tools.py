"""Tool-call and thinking parsers for streamed model output.

A model asked with `tools` answers either with text or with tool calls in its template's
format. The parser is fed the generated text piece by piece and splits it into user-visible
content and structured calls, holding back only what may still turn into a call:

- tagged formats: Hermes/Qwen `<tool_call>{"name": …, "arguments": {…}}</tool_call>`,
  Mistral `[TOOL_CALLS] [{…}, …]`, Command-R `Action: ```json [...]`, any tag a Go template
  writes before its tool calls (the first text inside `{{ if .ToolCalls }}`, as Ollama infers it);
- bare JSON (tag `{` or `[`): Llama-3 `{"name": …, "parameters": {…}}` (optionally after
  `<|python_tag|>`), and lists of such objects. Only output that *starts* with JSON is a
  candidate; a JSON object naming no known tool is content.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from typing import Any

_ID_ALPHABET = string.ascii_lowercase + string.digits
PYTHON_TAG = "<|python_tag|>"


def new_call_id() -> str:
    """Ollama's tool call id: call_ + 8 of [a-z0-9]."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


@dataclass
class ParsedCall:
    name: str
    arguments: dict[str, Any]
    index: int
    id: str


def _scan_json_value(buf: str, start: int) -> int | None:
    """End index (exclusive) of the balanced {...} or [...] starting at `start`, None if open."""
    opener = buf[start]
    closer = "}" if opener == "{" else "]"
    depth = 0
    in_str = False
    esc = False
    stack: list[str] = []
    for i in range(start, len(buf)):
        c = buf[i]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
            continue
        if c == '"':
            in_str = True
        elif c in "{[":
            stack.append("}" if c == "{" else "]")
            depth += 1
        elif c in "}]":
            if not stack or stack[-1] != c:
                return -1  # mismatched: not JSON
            stack.pop()
            depth -= 1
            if depth == 0:
                return i + 1 if c == closer else -1
    return None


def _args_of(v: Any) -> dict[str, Any] | None:
    if isinstance(v, dict):
        return v
    if isinstance(v, str):
        try:
            parsed = json.loads(v)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def extract_calls(obj: Any, tool_names: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Tool calls inside one parsed JSON value (object, list, or a wrapper around them)."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(obj, list):
        for item in obj:
            found.extend(extract_calls(item, tool_names))
        return found
    if not isinstance(obj, dict):
        return found
    name = obj.get("name", obj.get("tool_name"))
    if isinstance(name, str) and (not tool_names or name in tool_names):
        args = None
        for key in ("arguments", "parameters", "args", "input"):
            if key in obj:
                args = _args_of(obj[key])
                break
        else:
            args = {}
        if args is not None:
            return [(name, args)]
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI-shaped echo
        return extract_calls(obj["function"], tool_names)
    for tname in tool_names:  # {"get_weather": {...}}
        if tname in obj and (args := _args_of(obj[tname])) is not None and len(obj) == 1:
            return [(tname, args)]
    for v in obj.values():
        if isinstance(v, (dict, list)):
            inner = extract_calls(v, tool_names)
            if inner:
                found.extend(inner)
    return found


class ToolCallParser:
    """Incremental splitter of model output into content and tool calls."""

    def __init__(self, tag: str, tools: list[dict[str, Any]] | None) -> None:
        self.tag = tag or "{"
        self.names = {
            (t.get("function") or {}).get("name")
            for t in (tools or [])
            if isinstance((t.get("function") or {}).get("name"), str)
        }
        self.names.discard(None)
        self.buffer = ""
        self.state = "looking"  # looking | calling | done
        self.n_calls = 0
        self._bare = self.tag in ("{", "[")
        self._lead = ""  # whitespace / <|python_tag|> before a bare-JSON candidate

    def add(self, text: str) -> tuple[list[ParsedCall], str]:
        """Feed generated text; return calls completed so far and content safe to show."""
        if self.state == "done":
            return [], text
        self.buffer += text
        content = ""
        if self.state == "looking":
            content = self._look()
            if self.state != "calling":
                return [], content
        calls = self._parse_calls(final=False)
        if self.state == "done":  # the candidate was not a call: it is content, in order
            flushed = self.buffer if self.n_calls else self._lead + self.buffer
            self.buffer = self._lead = ""
            return calls, content + flushed
        return calls, content

    def finish(self) -> tuple[list[ParsedCall], str]:
        """End of generation: flush what is left."""
        if self.state == "done":
            out = self.buffer if self.n_calls else self._lead + self.buffer
            self.buffer = self._lead = ""
            return [], out
        if self.state == "looking":
            out, self.buffer = self.buffer, ""
            self.state = "done"
            return [], out
        calls = self._parse_calls(final=True)
        rest = self.buffer
        self.buffer = ""
        self.state = "done"
        # a bare-JSON candidate that named no tool is the model's answer
        if self.n_calls == 0 and (self._bare or not calls):
            return calls, self._lead + rest if self._bare else ""
        return calls, ""

    # -- internals -------------------------------------------------------------------------
    def _look(self) -> str:
        if self._bare:
            stripped = self.buffer.lstrip()
            if stripped.startswith(PYTHON_TAG):
                stripped = stripped[len(PYTHON_TAG):].lstrip()
            if not stripped:
                return ""  # only whitespace so far: wait
            if PYTHON_TAG.startswith(stripped):
                return ""
            if stripped[0] in "{[":
                self.state = "calling"
                self._lead = self.buffer[: len(self.buffer) - len(stripped)]
                self.buffer = stripped
                return ""
            self.state = "done"
            out, self.buffer = self.buffer, ""
            return out
        i = self.buffer.find(self.tag)
        if i >= 0:
            content = self.buffer[:i]
            self.buffer = self.buffer[i + len(self.tag):]
            self.state = "calling"
            return content
        # hold back a suffix that may be the start of the tag
        for k in range(min(len(self.tag) - 1, len(self.buffer)), 0, -1):
            if self.tag.startswith(self.buffer[-k:]):
                content = self.buffer[:-k]
                self.buffer = self.buffer[-k:]
                return content
        content, self.buffer = self.buffer, ""
        return content

    def _parse_calls(self, *, final: bool) -> list[ParsedCall]:
        calls: list[ParsedCall] = []
        while True:
            starts = [i for i in (self.buffer.find("{"), self.buffer.find("[")) if i >= 0]
            if not starts:
                if not self._bare:
                    # drop closing tags / separators between calls, keep a possible next tag start
                    self.buffer = self.buffer[-len(self.tag):] if self.tag in self.buffer else ""
                return calls
            start = min(starts)
            end = _scan_json_value(self.buffer, start)
            if end is None:
                return calls  # incomplete: wait for more text
            if end < 0:
                if self._bare:
                    self.state = "done"
                    return calls
                self.buffer = self.buffer[start + 1:]
                continue
            try:
                obj = json.loads(self.buffer[start:end])
            except ValueError:
                if self._bare:
                    self.state = "done"
                    return calls
                self.buffer = self.buffer[start + 1:]
                continue
            found = extract_calls(obj, self.names)
            if not found:
                if self._bare:
                    # JSON that is not a call: it is the answer (Ollama: content)
                    self.state = "done"
                    return calls
                self.buffer = self.buffer[end:]
                continue
            for name, args in found:
                calls.append(ParsedCall(name=name, arguments=args, index=self.n_calls, id=new_call_id()))
                self.n_calls += 1
            self.buffer = self.buffer[end:]
            if self._bare:
                rest = self.buffer.strip()
                if not rest:
                    self.buffer = ""
                    return calls
                if rest[0] not in "{[;,":
                    self.buffer = ""
                    self.state = "done"
                    return calls


class ThinkingParser:
    """Splits `<think>…</think>` at the start of the output into thinking and content."""

    def __init__(self, open_tag: str, close_tag: str, *, started: bool = False) -> None:
        self.open_tag = open_tag
        self.close_tag = close_tag
        self.state = "thinking" if started else "start"
        self.buffer = ""

    def add(self, text: str) -> tuple[str, str]:
        """Return (thinking, content) safe to emit."""
        self.buffer += text
        thinking = content = ""
        if self.state == "start":
            stripped = self.buffer.lstrip()
            if not stripped:
                return "", ""
            if stripped.startswith(self.open_tag):
                self.buffer = stripped[len(self.open_tag):].lstrip()
                self.state = "thinking"
            elif self.open_tag.startswith(stripped):
                return "", ""
            else:
                self.state = "content"
        if self.state == "thinking":
            i = self.buffer.find(self.close_tag)
            if i >= 0:
                thinking = self.buffer[:i]
                self.buffer = self.buffer[i + len(self.close_tag):].lstrip()
                self.state = "content"
            else:
                keep = 0
                for k in range(min(len(self.close_tag) - 1, len(self.buffer)), 0, -1):
                    if self.close_tag.startswith(self.buffer[-k:]):
                        keep = k
                        break
                thinking = self.buffer[: len(self.buffer) - keep]
                self.buffer = self.buffer[len(self.buffer) - keep:]
                return thinking, ""
        if self.state == "content":
            content, self.buffer = self.buffer, ""
        return thinking, content

    def finish(self) -> tuple[str, str]:
        rest, self.buffer = self.buffer, ""
        if self.state == "thinking":
            return rest, ""
        return "", rest
