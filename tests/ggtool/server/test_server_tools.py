"""Tool-call and thinking parsers on model outputs in the formats real templates produce,
fed whole and split at every position (streaming)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ggtool.server.tools import ThinkingParser, ToolCallParser

TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
         for n in ("get_weather", "get_time", "say_hello")]

# (tag, model output, expected calls [(name, args)], expected content)
CASES = [
    # Qwen2.5 / Hermes
    ("<tool_call>", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     [("get_weather", {"city": "Paris"})], ""),
    ("<tool_call>", 'Let me check. <tool_call>{"name": "get_time", "arguments": {"tz": "UTC"}}</tool_call>',
     [("get_time", {"tz": "UTC"})], "Let me check. "),
    ("<tool_call>",
     '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
     '<tool_call>\n{"name": "say_hello", "arguments": {}}\n</tool_call>',
     [("get_weather", {"city": "Paris"}), ("say_hello", {})], ""),
    ("<tool_call>", "The weather is nice today.", [], "The weather is nice today."),
    ("<tool_call>", '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}</tool_call>',
     [("get_weather", {"city": "Oslo"})], ""),
    # Llama 3.x JSON (tag inferred as "{")
    ("{", '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "c"}}',
     [("get_weather", {"city": "Paris", "unit": "c"})], ""),
    ("{", '<|python_tag|>{"name": "get_time", "parameters": {}}', [("get_time", {})], ""),
    ("{", '  {"name": "get_weather", "parameters": {"city": "a}b{"}}', [("get_weather", {"city": "a}b{"})], ""),
    ("{", 'I think {"name": "get_weather", "parameters": {}}', [], 'I think {"name": "get_weather", "parameters": {}}'),
    ("{", '{"answer": 42}', [], '{"answer": 42}'),  # JSON that names no tool is the answer
    ("{", ' {"answer": 42} and then more text', [], ' {"answer": 42} and then more text'),
    ("{", '{"name": "unknown_tool", "parameters": {}}', [], '{"name": "unknown_tool", "parameters": {}}'),
    ("{", '{"name": "get_weather", "parameters": {"city": "Rome"}}; {"name": "get_time", "parameters": {}}',
     [("get_weather", {"city": "Rome"}), ("get_time", {})], ""),
    # Mistral
    ("[TOOL_CALLS]", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "London"}}, '
     '{"name": "get_time", "arguments": {"tz": "GMT"}}]',
     [("get_weather", {"city": "London"}), ("get_time", {"tz": "GMT"})], ""),
    # a list as the bare form
    ("[", '[{"name": "say_hello", "arguments": {}}]', [("say_hello", {})], ""),
    # Command-R style tag
    ("Action: ```json\n[", 'Action: ```json\n[\n    {\n        "tool_name": "get_time",\n        "parameters": {"tz": "CET"}\n    }\n]```',
     [("get_time", {"tz": "CET"})], ""),
]


def _run(tag: str, pieces: list[str]) -> tuple[list[tuple[str, dict]], str]:
    p = ToolCallParser(tag, TOOLS)
    calls, content = [], []
    for piece in pieces:
        c, t = p.add(piece)
        calls += c
        content.append(t)
    c, t = p.finish()
    calls += c
    content.append(t)
    ids = [x.id for x in calls]
    assert all(re.fullmatch(r"call_[a-z0-9]{8}", i) for i in ids) and len(set(ids)) == len(ids)
    assert [x.index for x in calls] == list(range(len(calls)))
    return [(x.name, x.arguments) for x in calls], "".join(content)


@pytest.mark.parametrize(("tag", "output", "calls", "content"), CASES)
def test_whole_output(tag: str, output: str, calls: list, content: str) -> None:
    assert _run(tag, [output]) == (calls, content)


@pytest.mark.parametrize(("tag", "output", "calls", "content"), CASES)
def test_streamed_split_everywhere(tag: str, output: str, calls: list, content: str) -> None:
    for i in range(1, len(output)):
        assert _run(tag, [output[:i], output[i:]]) == (calls, content), i
    assert _run(tag, list(output)) == (calls, content)


def test_content_is_not_held_back_without_a_tag() -> None:
    p = ToolCallParser("<tool_call>", TOOLS)
    assert p.add("Hello ") == ([], "Hello ")
    assert p.add("world <tool") == ([], "world ")  # only the possible tag start is held


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list('{}[]":,\\ abnmeg_<>/toolcal|py') + ["<tool_call>", '"name"', "get_time"]),
                max_size=40).map("".join),
       st.sampled_from(["{", "[", "<tool_call>", "[TOOL_CALLS]"]))
def test_any_output_is_handled(text: str, tag: str) -> None:
    calls, content = _run(tag, list(text))
    if not calls:
        assert content == text or tag not in ("{", "[")


@pytest.mark.parametrize(
    ("pieces", "started", "thinking", "content"),
    [
        (["<think>", "hmm", "</think>", "Answer"], False, "hmm", "Answer"),
        (["  <thi", "nk>a</th", "ink>\n\nB"], False, "a", "B"),
        (["reasoning</think>done"], True, "reasoning", "done"),
        (["No thinking here"], False, "", "No thinking here"),
        (["<think>unfinished"], False, "unfinished", ""),
    ],
)
def test_thinking_parser(pieces: list[str], started: bool, thinking: str, content: str) -> None:
    p = ThinkingParser("<think>", "</think>", started=started)
    th, co = [], []
    for piece in pieces:
        a, b = p.add(piece)
        th.append(a)
        co.append(b)
    a, b = p.finish()
    assert ("".join(th) + a, "".join(co) + b) == (thinking, content)
