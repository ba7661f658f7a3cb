"""The Go text/template interpreter: Go's semantics on the constructs model templates use."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ggtool.server.gotemplate import (
    GoStruct,
    JSONMap,
    TemplateError,
    go_float,
    go_json,
    go_str,
    parse,
)

MSGS = [
    GoStruct("m", {"Role": "system", "Content": "sys"}),
    GoStruct("m", {"Role": "user", "Content": "hi"}),
    GoStruct("m", {"Role": "assistant", "Content": "hello"}),
]


@pytest.mark.parametrize(
    ("src", "data", "want"),
    [
        ("plain", {}, "plain"),
        ("{{ .A }}", {"A": "x"}, "x"),
        ("a  {{- .A -}}  b", {"A": "x"}, "axb"),
        ("a\n\n{{- .A }}\n", {"A": "x"}, "ax\n"),
        ("{{ .A }}\n  {{- .B }}", {"A": 1, "B": 2}, "12"),
        ("{{-3}}", {}, "-3"),  # a negative number, not a trim marker
        ("{{ if .A }}yes{{ else }}no{{ end }}", {"A": ""}, "no"),
        ("{{ if .A }}yes{{ else if .B }}b{{ else }}no{{ end }}", {"A": 0, "B": [1]}, "b"),
        ("{{ if and .A .B }}y{{ end }}", {"A": 1, "B": 0}, ""),
        ("{{ or .A .B }}", {"A": "", "B": "z"}, "z"),
        ("{{ and .A .B }}", {"A": "a", "B": "b"}, "b"),
        ("{{ not .A }}", {"A": {}}, "true"),
        ("{{ with .A }}[{{ . }}]{{ else }}none{{ end }}", {"A": "v"}, "[v]"),
        ("{{ with .A }}[{{ . }}]{{ else }}none{{ end }}", {"A": None}, "none"),
        ("{{ range .L }}{{ . }},{{ end }}", {"L": [1, 2, 3]}, "1,2,3,"),
        ("{{ range $i, $v := .L }}{{ $i }}={{ $v }} {{ end }}", {"L": ["a", "b"]}, "0=a 1=b "),
        ("{{ range $k, $v := .M }}{{ $k }}{{ $v }}{{ end }}", {"M": {"b": 2, "a": 1}}, "a1b2"),  # sorted keys
        ("{{ range .L }}x{{ else }}empty{{ end }}", {"L": []}, "empty"),
        ("{{ range .L }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }}", {"L": [1, 2, 3]}, "1"),
        ("{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}", {"L": [1, 2, 3]}, "13"),
        ("{{ range 3 }}{{ . }}{{ end }}", {}, "012"),
        ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", {}, "2"),
        ("{{ $x := .A }}{{ range .L }}{{ $x }}{{ end }}", {"A": "q", "L": [0, 0]}, "qq"),
        ("{{ range .L }}{{ $.A }}{{ end }}", {"A": "r", "L": [0]}, "r"),
        ("{{ len .L }}", {"L": [1, 2]}, "2"),
        ("{{ index .L 1 }}", {"L": ["a", "b"]}, "b"),
        ('{{ index .M "k" }}', {"M": {"k": "v"}}, "v"),
        ("{{ slice .L 1 }}", {"L": [1, 2, 3]}, "[2 3]"),
        ("{{ len (slice .L 1) }}", {"L": [1, 2, 3]}, "2"),
        ('{{ eq .A "x" "y" }}', {"A": "y"}, "true"),
        ("{{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge 1 2 }}", {}, "true true true false false"),
        ('{{ printf "%s-%d-%.1f" "a" 3 2.25 }}', {}, "a-3-2.2"),
        ('{{ print "a" 1 2 "b" }}', {}, "a1 2b"),
        ("{{ .A | printf \"<%s>\" }}", {"A": "p"}, "<p>"),
        ("{{ json .M }}", {"M": {"b": "<", "a": 1.0}}, '{"a":1,"b":"\\u003c"}'),
        ("{{ .M }}", {"M": JSONMap({"k": [1, 2]})}, '{"k":[1,2]}'),
        ("{{ .M }}", {"M": {"k": 1}}, "map[k:1]"),
        ("{{ .L }}", {"L": ["a", "b"]}, "[a b]"),
        ("{{ .Missing }}", {}, "<no value>"),
        ("{{/* a comment */}}x", {}, "x"),
        ("a {{- /* trimmed */ -}} b", {}, "ab"),
        ('{{ define "t" }}<{{ . }}>{{ end }}{{ template "t" .A }}', {"A": 5}, "<5>"),
        ('{{ "a\\tb" }} {{ `raw\\n` }}', {}, "a\tb raw\\n"),
        ("{{ 'a' }}", {}, "97"),
        ("{{ 0x10 }} {{ 1e3 }} {{ 1_000 }}", {}, "16 1000 1000"),
        ("{{ (index .L 0).Role }}", {"L": MSGS}, "system"),
    ],
)
def test_execute(src: str, data: dict, want: str) -> None:
    assert parse(src).execute(data) == want


def test_messages_loop_like_ollama_templates() -> None:
    src = (
        "{{- range $i, $_ := .Messages }}"
        "{{- $last := eq (len (slice $.Messages $i)) 1 -}}"
        "<|{{ .Role }}|>{{ .Content }}{{ if not $last }}\n{{ end }}"
        "{{- end }}"
    )
    assert parse(src).execute({"Messages": MSGS}) == "<|system|>sys\n<|user|>hi\n<|assistant|>hello"


@pytest.mark.parametrize(
    ("src", "data", "fragment"),
    [
        ("{{ .A ", {}, "unclosed action"),
        ("{{ if .A }}x", {}, "unexpected EOF"),
        ("{{ end }}", {}, "unexpected"),
        ("{{ nofunc 1 }}", {}, 'function "nofunc" not defined'),
        ('{{ template "x" }}', {}, "undefined template"),
        ("{{ .A.B }}", {"A": GoStruct("T", {"C": 1})}, "can't evaluate field B"),
        ("{{ index .L 5 }}", {"L": [1]}, "index out of range"),
        ("{{ break }}", {}, "outside range"),
        ('{{ "unterminated }}', {}, "unclosed"),
        ("{{ $y }}", {}, "undefined variable"),
        ("{{ html .A }}", {"A": 1}, "not supported"),
    ],
)
def test_errors(src: str, data: dict, fragment: str) -> None:
    with pytest.raises(TemplateError) as ei:
        parse(src).execute(data)
    assert fragment.lower() in str(ei.value).lower()


@pytest.mark.parametrize(
    ("f", "want"),
    [(1.0, "1"), (0.5, "0.5"), (1e21, "1e+21"), (1.5e-05, "1.5e-05"), (123456.789, "123456.789"),
     (1e20, "100000000000000000000"), (-2.5, "-2.5")],
)
def test_go_float(f: float, want: str) -> None:
    assert go_float(f) == want


def test_go_json_struct_fields_and_omitempty() -> None:
    s = GoStruct("T", {"A": "", "B": 2}, json_fields=[("A", "a", True), ("B", "b", False)])
    assert go_json(s) == '{"b":2}'
    assert go_str(True) == "true"


def test_identifiers_and_response_cut() -> None:
    t = parse("{{ if .System }}S{{ end }}{{ .Prompt }}<r>{{ .Response }}</r>{{ $.Tools }}")
    assert {"system", "prompt", "response", "$", "tools"} <= t.identifiers()
    cut = t.without_after_response()
    assert t.execute({"System": "", "Prompt": "p", "Response": "", "Tools": ""}, root=cut) == "p<r>"


def test_tool_call_tag() -> None:
    t = parse("{{ range .Messages }}{{ if .ToolCalls }}<tool_call>\n{{ range .ToolCalls }}{{ json . }}{{ end }}{{ end }}{{ end }}")
    assert t.first_text_after_tool_calls().startswith("<tool_call>")


def test_output_is_bounded() -> None:
    with pytest.raises(TemplateError):
        parse("{{ range 100000000 }}" + "x" * 4096 + "{{ end }}").execute({})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}.$ -|()\"'`abcIfEndRange:=,0123456789/*")), max_size=60))
def test_untrusted_templates_only_raise_template_error(src: str) -> None:
    with contextlib.suppress(TemplateError):
        parse(src).execute({"Messages": MSGS, "A": 1, "L": [1, 2]})
