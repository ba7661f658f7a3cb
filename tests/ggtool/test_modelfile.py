"""The Modelfile parser (cases from Ollama's parser_test.go), typing, rendering and fuzzing."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ggtool.errors import NotFoundError
from ggtool.modelfile import (
    ERR_INVALID_COMMAND,
    ERR_INVALID_ROLE,
    Command,
    CreateRequest,
    Modelfile,
    ModelfileError,
    _go_g,
    files_for_model,
    format_param,
    go_quote,
    normalize_requires,
    parameters_text,
    parse_modelfile,
    quote,
    valid_rel_path,
)

C = Command

LLAMA3_TEMPLATE = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)

PARSES = [
    ("all commands",
     f'\nFROM model1\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE """{LLAMA3_TEMPLATE}"""    \n',
     [C("model", "model1"), C("adapter", "adapter1"), C("license", "MIT"), C("param1", "value1"),
      C("param2", "value2"), C("template", LLAMA3_TEMPLATE)]),
    ("trim space",
     '\nFROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\nPARAMETER param1        value1\nTEMPLATE """   x   """    \n',
     [C("model", "     model 1"), C("adapter", "adapter3"), C("license", "MIT       "), C("param1", "value1"),
      C("template", "   x   ")]),
    ("draft", "\nFROM base\nDRAFT ./assistant\n", [C("model", "base"), C("draft", "./assistant")]),
    ("quoted from", 'FROM "FOO  BAR  "', [C("model", "FOO  BAR  ")]),
    ("from then param", 'FROM "FOO BAR"\nPARAMETER param1 value1', [C("model", "FOO BAR"), C("param1", "value1")]),
    ("spaces kept inside", "FROM     FOOO BAR    ", [C("model", "FOOO BAR")]),
    ("path with space", "FROM /what/is/the path ", [C("model", "/what/is/the path")]),
    ("tagged", "FROM llama3:7b-instruct-q4_K_M", [C("model", "llama3:7b-instruct-q4_K_M")]),
    ("param first", "PARAMETER param1 value1\nFROM foo", [C("param1", "value1"), C("model", "foo")]),
    ("values with spaces", "PARAMETER what the \nFROM lemons make lemonade ",
     [C("what", "the"), C("model", "lemons make lemonade")]),
    ("renderer parser", "\nFROM foo\nRENDERER renderer1\nPARSER parser1\n",
     [C("model", "foo"), C("renderer", "renderer1"), C("parser", "parser1")]),
    ("message", "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\n",
     [C("model", "foo"), C("message", "system: You are a file parser. Always parse things.")]),
    ("message at eof", "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.",
     [C("model", "foo"), C("message", "system: You are a file parser. Always parse things.")]),
    ("messages", "\nFROM foo\nMESSAGE system A\nMESSAGE user Hey there!\nMESSAGE assistant Hello!\n",
     [C("model", "foo"), C("message", "system: A"), C("message", "user: Hey there!"), C("message", "assistant: Hello!")]),
    ("multiline message", '\nFROM foo\nMESSAGE system """\nYou are a multiline file parser.\n"""\n\t\t\t',
     [C("model", "foo"), C("message", "system: \nYou are a multiline file parser.\n")]),
    ("triple", '\nFROM foo\nSYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t',
     [C("model", "foo"), C("system", "\nThis is a\nmultiline system.\n")]),
    ("triple close on line", '\nFROM foo\nSYSTEM """\nThis is a\nmultiline system."""\n',
     [C("model", "foo"), C("system", "\nThis is a\nmultiline system.")]),
    ("triple one line", '\nFROM foo\nSYSTEM """This is a multiline system."""\n',
     [C("model", "foo"), C("system", "This is a multiline system.")]),
    ("quotes inside triple", '\nFROM foo\nSYSTEM """\nwith "quotes".\n"""\n',
     [C("model", "foo"), C("system", '\nwith "quotes".\n')]),
    ("empty triple", '\nFROM foo\nSYSTEM """"""\n', [C("model", "foo"), C("system", "")]),
    ("empty quotes", '\nFROM foo\nSYSTEM ""\n', [C("model", "foo"), C("system", "")]),
    ("single quote char", "\nFROM foo\nSYSTEM \"'\"\n", [C("model", "foo"), C("system", "'")]),
    ("quote soup", "\nFROM foo\nSYSTEM \"\"\"''\"'\"\"'\"\"'\"'''''\"\"'\"\"'\"\"\"\n",
     [C("model", "foo"), C("system", "''\"'\"\"'\"\"'\"'''''\"\"'\"\"'")]),
    ("template at eof", '\nFROM foo\nTEMPLATE """\n{{ .Prompt }}\n"""', [C("model", "foo"), C("template", "\n{{ .Prompt }}\n")]),
    ("comment", "\n# comment\nFROM foo\n\t", [C("model", "foo")]),
    ("case insensitive", "from foo\nsYsTeM hi\nParameter seed 1", [C("model", "foo"), C("system", "hi"), C("seed", "1")]),
    ("hash inside value", "FROM foo\nSYSTEM use # freely", [C("model", "foo"), C("system", "use # freely")]),
    ("crlf", "FROM foo\r\nSYSTEM hi\r\n", [C("model", "foo"), C("system", "hi")]),
    ("non-printable dropped", "FROM foo\nSYSTEM a\x01b\u200bc", [C("model", "foo"), C("system", "abc")]),
    ("multibyte", "FROM test\n\tSYSTEM 你好👋", [C("model", "test"), C("system", "你好👋")]),
    ("requires", "FROM foo\nREQUIRES 0.14.0", [C("model", "foo"), C("requires", "0.14.0")]),
]


@pytest.mark.parametrize(("case", "text", "expected"), PARSES, ids=[p[0] for p in PARSES])
def test_parse(case: str, text: str, expected: list[Command]) -> None:
    assert parse_modelfile(text).commands == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no FROM line"),
        ("PARAMETER param1 value1", "no FROM line"),
        ("\nFROM foo\nBADCOMMAND param1 value1\n", f"(line 3): {ERR_INVALID_COMMAND}"),
        ("FROM foo\nFROM2 x", f"(line 2): {ERR_INVALID_COMMAND}"),
        ("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n", f"(line 3): {ERR_INVALID_ROLE}"),
        ("\nFROM foo\nMESSAGE User hi\n", f"(line 3): {ERR_INVALID_ROLE}"),
        ("\nFROM foo\nMESSAGE system\n", "unexpected EOF: system"),
        ("\nFROM foo\nMESSAGE system", "unexpected EOF"),
        ("\nFROM foo\nPARAMETER param1\n", "unexpected EOF: param1"),
        ("\nFROM foo\nPARAMETER bad-name 1\n", "unexpected EOF: bad"),
        ('\nFROM foo\nSYSTEM """This is a multiline system.""\n\t\t\t', "unexpected EOF"),
        ('\nFROM foo\nSYSTEM "\n\t\t\t', "unexpected EOF"),
        ("FROM", "unexpected EOF"),
    ],
)
def test_parse_errors_use_ollamas_messages(text: str, message: str) -> None:
    with pytest.raises(ModelfileError) as e:
        parse_modelfile(text)
    assert e.value.message == message


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-8-sig"])
def test_bom_encodings(encoding: str) -> None:
    text = "FROM bob\nPARAMETER param1 1\nSYSTEM You are a utf16 file 你好👋.\n"
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-8-sig": b""}[encoding]
    data = bom + text.encode(encoding)
    assert parse_modelfile(data).commands == [C("model", "bob"), C("param1", "1"), C("system", "You are a utf16 file 你好👋.")]


# -- parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "typed"),
    [
        ("num_ctx", "4096", 4096), ("seed", "-1", -1), ("top_k", "+5", 5), ("main_gpu", "0", 0),
        ("temperature", "0.7", 0.7), ("top_p", "1", 1.0), ("min_p", "1e-3", 0.001), ("typical_p", ".5", 0.5),
        ("temperature", "0.123456789", 0.12345679),  # parsed as float32, like Go's ParseFloat(s, 32)
        ("use_mmap", "true", True), ("use_mmap", "F", False), ("use_mmap", "1", True),
        ("stop", "<|im_end|>", ["<|im_end|>"]),
    ],
)
def test_format_param(name: str, value: str, typed: object) -> None:
    got = format_param(name, value)
    assert got == typed and type(got) is type(typed)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("num_ctx", "4k", "invalid int value [4k]"), ("num_ctx", "1.5", "invalid int value [1.5]"),
        ("num_ctx", "1_000", "invalid int value [1_000]"), ("seed", str(2**63), f"invalid int value [{2**63}]"),
        ("temperature", "hot", "invalid float value [hot]"), ("temperature", "1e39", "invalid float value [1e39]"),
        ("temperature", "nan", "invalid float value [nan]"), ("use_mmap", "yes", "invalid bool value [yes]"),
        ("Temperature", "1", "unknown parameter 'Temperature'"), ("numa", "true", "unknown parameter 'numa'"),
    ],
)
def test_format_param_errors(name: str, value: str, message: str) -> None:
    with pytest.raises(ModelfileError) as e:
        format_param(name, value)
    assert e.value.message == message


@pytest.mark.parametrize(("raw", "norm"), [("0.14.0", "0.14.0"), ("v0.14.0", "0.14.0"), ("1", "1"), ("1.2", "1.2"),
                                           ("1.2.3-rc.1+build.5", "1.2.3-rc.1+build.5")])
def test_requires(raw: str, norm: str) -> None:
    assert normalize_requires(raw) == norm


@pytest.mark.parametrize("raw", ["01.2.3", "1.2.3.4", "abc", "1.2-rc", "", "v"])
def test_requires_invalid(raw: str) -> None:
    with pytest.raises(ModelfileError, match="requires must be a valid semver"):
        normalize_requires(raw)


# -- create request --------------------------------------------------------------------------
def test_create_request_like_ollamas(tmp_path: Path) -> None:
    mf = parse_modelfile(
        "FROM test\nPARAMETER temperature 0.5\nPARAMETER top_k 1\nSYSTEM You are a bot.\nLICENSE license1\n"
        "LICENSE license2\nMESSAGE user Hello there!\nMESSAGE assistant Hi! How are you?\n"
        "PARAMETER stop a\nPARAMETER stop b\nPARAMETER mirostat 1\nREQUIRES v0.9.1\n"
    )
    req = mf.to_create_request(tmp_path)
    assert req.from_ == "test" and not req.local_files
    assert req.system == "You are a bot." and req.license == ["license1", "license2"]
    assert req.parameters == {"temperature": 0.5, "top_k": 1, "stop": ["a", "b"]}
    assert req.messages == [{"role": "user", "content": "Hello there!"}, {"role": "assistant", "content": "Hi! How are you?"}]
    assert req.requires == "0.9.1"
    assert req.warnings == ["parameter mirostat is deprecated"]
    assert req.to_api() == {
        "model": "", "from": "test", "license": ["license1", "license2"], "system": "You are a bot.",
        "parameters": {"temperature": 0.5, "top_k": 1, "stop": ["a", "b"]},
        "messages": req.messages, "requires": "0.9.1",
    }


def test_create_request_paths(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "sub" / "config.json").write_text("{}")
    req = parse_modelfile("FROM ./m.gguf\nADAPTER sub/a.gguf").to_create_request(tmp_path)
    assert req.local_files == {"m.gguf": tmp_path / "m.gguf"} and req.from_ == ""
    assert req.local_adapters == {"a.gguf": tmp_path / "sub" / "a.gguf"}
    req = parse_modelfile("FROM sub").to_create_request(tmp_path)
    assert set(req.local_files) == {"a.gguf", "config.json"}
    with pytest.raises(ModelfileError, match="DRAFT must not reference the same local path as FROM"):
        parse_modelfile("FROM ./m.gguf\nDRAFT m.gguf").to_create_request(tmp_path)
    with pytest.raises(NotFoundError):
        parse_modelfile("FROM x\nADAPTER missing.gguf").to_create_request(tmp_path)


def test_files_for_model_prefers_safetensors(tmp_path: Path) -> None:
    for n in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "x.gguf", "config.json",
              "tokenizer.json", "tokenizer.model", "chat_template.jinja", "README.md"):
        (tmp_path / n).write_bytes(b"x")
    assert sorted(files_for_model(tmp_path)) == [
        "chat_template.jinja", "config.json", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors", "tokenizer.json", "tokenizer.model"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no Modelfile or safetensors files found"):
        files_for_model(tmp_path / "empty")


def test_create_request_from_api() -> None:
    d = "sha256:" + "a" * 64
    req = CreateRequest.from_api({"name": "m", "files": {"x.gguf": d}, "license": "MIT", "quantization": "q4_K_M",
                                  "messages": [{"role": "USER", "content": "hi"}]})
    assert req.model == "m" and req.files == {"x.gguf": d} and req.license == ["MIT"] and req.quantize == "q4_K_M"
    assert req.messages == [{"role": "user", "content": "hi"}]
    from ggtool.errors import UsageError

    for bad, msg in [({"files": {"../x": d}}, "file path must be relative"), ({"files": {"/x": d}}, "relative"),
                     ({"files": {"x": ""}}, "invalid digest format"), ({"files": {"x": "sha256:zz"}}, "invalid digest"),
                     ({"license": 3}, "license"), ({"parameters": []}, "parameters"), ([], "JSON object")]:
        with pytest.raises(UsageError, match=msg):
            CreateRequest.from_api(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("path", "ok"), [("a", True), ("a/b.gguf", True), (".", True), ("", False), ("/a", False),
                                          ("a/../b", False), ("a//b", False), ("./a", False), ("a\\b", False)])
def test_valid_rel_path(path: str, ok: bool) -> None:
    assert valid_rel_path(path) is ok


# -- rendering -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    ["plain", "", " lead", "trail ", "multi\nline", 'has "quotes"', '"starts quoted', 'ends with quote"',
     'line ends "\nnext', "tab\tinside", "\ttab lead", '"""', 'x""', "# not a comment", "a\r\nb", "你好"],
)
def test_quote_roundtrips(value: str) -> None:
    assert parse_modelfile(f"FROM x\nSYSTEM {quote(value)}\n").commands[1].args == value


def test_render_roundtrip_of_ollama_cases() -> None:
    for text in [
        "\nFROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nTEMPLATE template1\n"
        "MESSAGE system You are a file parser.\nMESSAGE user Hey there!\n",
        '\nFROM foo\nLICENSE """\nVery long.\n"Oh look, a quote!"\n"""\n\nMESSAGE system """\nRespond with "Hello!".\n"""\n',
        '\nFROM foo\nSYSTEM ""\n',
    ]:
        mf = parse_modelfile(text)
        assert parse_modelfile(mf.render()).commands == mf.commands


def test_parameters_text_like_go() -> None:
    text = parameters_text({"stop": ["<|im_end|>", 'say "hi"'], "temperature": 0.7, "num_ctx": 4096.0, "use_mmap": True})
    assert text.splitlines() == [
        f"{'num_ctx':<30} 4096",
        f"{'stop':<30} \"<|im_end|>\"",
        f"{'stop':<30} \"say \\\"hi\\\"\"",
        f"{'temperature':<30} 0.7",
        f"{'use_mmap':<30} true",
    ]


@pytest.mark.parametrize(("v", "s"), [(1e6, "1e+06"), (123456.0, "123456"), (1234567.0, "1.234567e+06"),
                                      (0.0001, "0.0001"), (1e-05, "1e-05"), (-2.5, "-2.5"), (0.0, "0")])
def test_go_percent_v_float(v: float, s: str) -> None:
    assert _go_g(v) == s


def test_go_quote() -> None:
    assert go_quote('a"\\\n\x01é\x7f') == '"a\\"\\\\\\n\\x01é\\x7f"'


# -- fuzz ------------------------------------------------------------------------------------
_chars = st.sampled_from(list('FROMSYTEPARMLICNfromsystemparam "\n\t#:_01x"""\r') + ["\x00", "é", "\u2028"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.text(alphabet=_chars, max_size=120), st.binary(max_size=200)))
def test_fuzz_parser_only_raises_modelfile_errors(src: str | bytes) -> None:
    try:
        mf = parse_modelfile(src)
    except ModelfileError:
        return
    # whatever parses renders to text that parses back to the same commands, unless a value
    # holds something no quoting can carry (Ollama's own serializer has the same limit)
    again = parse_modelfile(mf.render()) if _renderable(mf) else None
    if again is not None:
        assert again.commands == mf.commands


def _renderable(mf: Modelfile) -> bool:
    for c in mf.commands:
        for form in (c.args, f'"{c.args}"', f'"""{c.args}"""'):
            try:
                if parse_modelfile(f"FROM x\nSYSTEM {form}\n").commands[1].args == c.args:
                    break
            except ModelfileError:
                continue
        else:
            return False
    return all(c.name.isidentifier() or c.name == "" for c in mf.commands) and all(c.name for c in mf.commands)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf", "Co", "Cn", "Zs"),
                                      whitelist_characters=' \n\t"'), max_size=60))
def test_fuzz_values_roundtrip_through_quote(value: str) -> None:
    rendered = quote(value)
    try:
        got = parse_modelfile(f"FROM x\nSYSTEM {rendered}\n").commands[1].args
    except ModelfileError:
        got = None
    if got != value:
        # only values with a quote run at a line end (inside the value) cannot be carried
        lines = value.replace("\r", "\n").split("\n")[:-1]
        assert any(line.rstrip(" \t").endswith('"') for line in lines), (value, rendered)
