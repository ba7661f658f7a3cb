"""Prompt building with real templates: Ollama's template library (with Ollama's own expected
outputs), Ollama library tool templates, and sandboxed Jinja chat templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggtool.server.gotemplate import TemplateError
from ggtool.server.templates import (
    GoPromptTemplate,
    JinjaPromptTemplate,
    Message,
    RenderInput,
    ToolCall,
    collate,
    select_template,
)

DATA = Path(__file__).parent / "data"
OLLAMA = json.loads((DATA / "ollama_templates.json").read_text())
LIBRARY = json.loads((DATA / "library_templates.json").read_text())

CASES = {
    "user": [Message("user", "Hello, how are you?")],
    "user-assistant-user": [
        Message("user", "Hello, how are you?"),
        Message("assistant", "I'm doing great. How can I help you today?"),
        Message("user", "I'd like to show off how chat templating works!"),
    ],
}
CASES["system-user-assistant-user"] = [Message("system", "You are a helpful assistant."), *CASES["user-assistant-user"]]
# Ollama's template_test.go trims one trailing space for these (their Jinja source differs)
TRIM_SPACE = {"chatqa", "llama2-chat", "mistral-instruct", "openchat", "vicuna"}
WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {"type": "object", "required": ["city"],
                       "properties": {"city": {"type": "string", "description": "City name"},
                                      "unit": {"type": "string", "enum": ["c", "f"]}}},
    },
}]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(OLLAMA["templates"]))
def test_ollama_template_library(name: str, case: str) -> None:
    entry = OLLAMA["templates"][name]
    got = GoPromptTemplate(entry["gotmpl"]).render(RenderInput(messages=CASES[case]))
    if name in TRIM_SPACE and got.endswith(" "):
        got = got[:-1]
    assert got == entry["expected"][case]


@pytest.mark.parametrize("name", sorted(OLLAMA["jinja"]))
def test_ollama_index_jinja_templates_render_in_the_sandbox(name: str) -> None:
    # the Hugging Face templates Ollama's index maps to its Go templates
    for src in OLLAMA["jinja"][name]:
        t = JinjaPromptTemplate(src, bos_token="<s>", eos_token="</s>")
        try:
            out = t.render(RenderInput(messages=CASES["user-assistant-user"]))
        except TemplateError as e:  # a template may refuse a role order it does not support
            assert "chat template error" in str(e)
            continue
        assert "Hello, how are you?" in out


def test_llama32_library_template_tools_and_tool_calls() -> None:
    t = GoPromptTemplate(LIBRARY["llama3.2"])
    assert "tools" in t.capabilities
    assert t.tool_call_tag() == "{"
    msgs = [
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
        Message("tool", "18C", tool_name="get_weather"),
        Message("user", "Thanks"),
    ]
    out = t.render(RenderInput(messages=msgs, tools=WEATHER))
    assert '{"name": "get_weather", "parameters": {"city":"Paris"}}<|eot_id|>' in out
    assert "<|start_header_id|>ipython<|end_header_id|>\n\n18C<|eot_id|>" in out
    # tools are listed (as Ollama's JSON of the tool) before the last user message only
    tool_json = ('{"type":"function","function":{"name":"get_weather","description":"Get the weather",'
                 '"parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string",'
                 '"description":"City name"},"unit":{"type":"string","enum":["c","f"]}}}}}')
    assert out.count(tool_json) == 1
    assert out.index(tool_json) > out.index("18C")
    assert out.endswith("Thanks<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_qwen25_library_template_hermes_tool_calls() -> None:
    t = GoPromptTemplate(LIBRARY["qwen2.5"])
    assert t.tool_call_tag() == "<tool_call>"
    msgs = [Message("system", "Be brief."), Message("user", "Weather in Paris?"),
            Message("assistant", "", tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
            Message("tool", "18C")]
    out = t.render(RenderInput(messages=msgs, tools=WEATHER))
    assert '{"type": "function", "function": {"name":"get_weather","description":"Get the weather",' in out
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call>' in out
    assert out.endswith("<tool_response>\n18C\n</tool_response><|im_end|>\n<|im_start|>assistant\n")
    # legacy (.Prompt/.Response) branch of the same template
    legacy = t.render(RenderInput(messages=[Message("user", "hi")]))
    assert legacy == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_legacy_template_runs_once_per_turn_and_cuts_at_response() -> None:
    t = GoPromptTemplate("{{ if .System }}[S]{{ .System }}{{ end }}[U]{{ .Prompt }}[A]{{ .Response }}[/A]")
    msgs = [Message("system", "s"), Message("user", "u1"), Message("assistant", "a1"), Message("user", "u2")]
    assert t.render(RenderInput(messages=msgs)) == "[S]s[U]u1[A]a1[/A][U]u2[A]"


def test_response_is_appended_when_template_mentions_neither() -> None:
    t = GoPromptTemplate("<<{{ .Prompt }}>>")
    assert t.render(RenderInput(messages=[Message("user", "x")])) == "<<x>>"


def test_suffix_mode() -> None:
    t = GoPromptTemplate("{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{- else }}{{ .Prompt }}{{- end }}")
    assert "insert" in t.capabilities
    assert t.render(RenderInput(messages=[], prompt="def add(", suffix="return x")) == "<PRE> def add( <SUF>return x <MID>"


def test_collate_merges_consecutive_roles_except_tool() -> None:
    system, msgs = collate([Message("system", "a"), Message("user", "1"), Message("user", "2"),
                            Message("tool", "x"), Message("tool", "y"), Message("system", "b")])
    assert system == "a\n\nb"
    assert [(m.role, m.content) for m in msgs] == [("system", "a"), ("user", "1\n\n2"), ("tool", "x"),
                                                   ("tool", "y"), ("system", "b")]


SMOLLM2_JINJA = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_jinja_gguf_template() -> None:
    t = JinjaPromptTemplate(SMOLLM2_JINJA)
    out = t.render(RenderInput(messages=[Message("user", "hi")]))
    assert out.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert out.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize(
    "src",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__ }}{{ cycler.__init__.__globals__ }}",
        "{% for m in messages %}{{ m.pop() }}{% endfor %}",  # immutable sandbox: no mutation
        "{{ raise_exception('nope') }}",
        "{% for x in range(10**9) %}{% endfor %}",
    ],
)
def test_jinja_is_sandboxed(src: str) -> None:
    with pytest.raises(TemplateError):
        JinjaPromptTemplate(src).render(RenderInput(messages=[Message("user", "hi")]))


def test_selection_prefers_go_unless_gguf_template_has_more_capabilities() -> None:
    go = "{{ range .Messages }}{{ .Content }}{{ end }}"
    jinja_tools = "{% for m in messages %}{{ m.content }}{% endfor %}{% if tools %}tools{% endif %}"
    assert select_template(go, SMOLLM2_JINJA).kind == "go"
    assert select_template(go, jinja_tools).kind == "jinja"
    assert select_template(go, jinja_tools, prefer_go=True).kind == "go"
    assert select_template(None, SMOLLM2_JINJA).kind == "jinja"
    assert select_template(None, None).source == "{{ .Prompt }}"
