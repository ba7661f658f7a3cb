"""Options, keep-alive, durations and OLLAMA_HOST parsing with Ollama's rules."""

from __future__ import annotations

import math

import pytest

from ggtool.server.config import (
    ServerConfig,
    parse_go_duration,
    parse_host,
    parse_keep_alive_env,
    parse_size,
)
from ggtool.server.inference import HTTPError, format_grammar, parse_keep_alive
from ggtool.server.options import OptionError, load_options, merge_options, validate_options


@pytest.mark.parametrize(
    ("options", "want"),
    [
        ({"temperature": 0, "top_k": 10.0, "stop": ["a"]}, {"temperature": 0.0, "top_k": 10, "stop": ["a"]}),
        ({"num_predict": 5.9}, {"num_predict": 5}),  # float64 truncated like Go
        ({"unknown": 1, "mirostat": 2, "tfs_z": 1}, {}),  # unknown and removed keys ignored
        ({"use_mmap": False}, {"use_mmap": False}),
        ({"stop": "x"}, {"stop": ["x"]}),
        ({"seed": None}, {}),
    ],
)
def test_validate(options: dict, want: dict) -> None:
    assert validate_options(options) == want


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
        ({"top_k": True}, 'option "top_k" must be of type integer'),
        ({"use_mmap": 1}, 'option "use_mmap" must be of type boolean'),
        ({"stop": [1]}, 'option "stop" must be of type array of strings'),
        ({"num_ctx": float("inf")}, 'option "num_ctx" must be of type integer'),
        ({"num_ctx": 2**70}, 'option "num_ctx" must be of type integer'),
    ],
)
def test_wrong_types(options: dict, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        validate_options(options)


def test_precedence_defaults_model_request() -> None:
    eff = merge_options({"temperature": 0.2, "top_k": 5, "num_ctx": 1024, "stop": ["<|im_end|>"]},
                        {"temperature": 0.7, "bogus": True}, default_num_ctx=4096)
    s = eff.sampling
    assert (s.temperature, s.top_k, s.top_p, s.stop) == (0.7, 5, 0.9, ["<|im_end|>"])
    assert eff.runner["num_ctx"] == 1024
    assert merge_options(None, None, default_num_ctx=2048).runner["num_ctx"] == 2048


def test_bad_model_params_do_not_break_the_model() -> None:
    eff = merge_options({"temperature": "x", "top_k": 3}, None, default_num_ctx=4096)
    assert eff.sampling.top_k == 3 and eff.sampling.temperature == 0.8


def test_load_options_clamp_to_training_context() -> None:
    lo = load_options({"num_ctx": 100000}, n_ctx_train=8192, num_parallel=4, embedding_only=False,
                      default_threads=2, flash_attn=False, kv_cache_type="f16")
    assert (lo.num_ctx, lo.num_parallel, lo.num_thread) == (8192, 4, 2)
    emb = load_options({"num_ctx": 1}, n_ctx_train=512, num_parallel=4, embedding_only=True,
                       default_threads=1, flash_attn=False, kv_cache_type="f16")
    assert (emb.num_ctx, emb.num_parallel) == (4, 1)


@pytest.mark.parametrize(
    ("value", "want"),
    [(None, None), (0, 0.0), (30, 30.0), (1.5, 1.5), ("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3),
     ("0", 0.0), ("-1m", math.inf), (-1, math.inf), ("10", 10.0)],
)
def test_keep_alive(value: object, want: float | None) -> None:
    assert parse_keep_alive(value) == want


@pytest.mark.parametrize("value", ["5 minutes", "m5", True, [], {}])
def test_keep_alive_invalid(value: object) -> None:
    with pytest.raises(HTTPError) as ei:
        parse_keep_alive(value)
    assert ei.value.status == 400


@pytest.mark.parametrize(("s", "want"), [("5m", 300.0), ("2h", 7200.0), ("1.5s", 1.5), ("-3s", -3.0), ("1m30s", 90.0)])
def test_go_duration(s: str, want: float) -> None:
    assert parse_go_duration(s) == want


@pytest.mark.parametrize(("s", "want"), [("5m", 300.0), ("600", 600.0), ("-1", math.inf), ("junk", 300.0)])
def test_keep_alive_env(s: str, want: float) -> None:
    assert parse_keep_alive_env(s) == want


@pytest.mark.parametrize(
    ("value", "url", "client"),
    [
        (None, "http://127.0.0.1:11434", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://0.0.0.0:11434", "http://127.0.0.1:11434"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://example.com", "http://example.com:80", "http://example.com:80"),
        ("https://example.com", "https://example.com:443", "https://example.com:443"),
        ("[::1]:9000", "http://[::1]:9000", "http://[::1]:9000"),
        ('"localhost:11434"', "http://localhost:11434", "http://localhost:11434"),
        ("example.com:1234/path/", "http://example.com:1234/path", "http://example.com:1234/path"),
    ],
)
def test_parse_host(value: str | None, url: str, client: str) -> None:
    h = parse_host(value)
    assert (h.url, h.client_url) == (url, client)


@pytest.mark.parametrize(("s", "want"), [("1024", 1024), ("8G", 8 << 30), ("8GiB", 8 << 30), ("512MB", 512 * 10**6)])
def test_parse_size(s: str, want: int) -> None:
    assert parse_size(s) == want


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MAX_LOADED_MODELS", "2")
    monkeypatch.setenv("GGTOOL_MAX_LOADED_MODELS", "5")
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "-1")
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", " '4' ")
    monkeypatch.setenv("GGTOOL_MAX_MEMORY", "2G")
    c = ServerConfig()
    assert (c.max_loaded_models, c.keep_alive, c.num_parallel, c.max_memory) == (5, math.inf, 4, 2 << 30)


@pytest.mark.parametrize(("value", "want"), [(None, "exact"), ("exact", "exact"), (" Prefix ", "prefix")])
def test_prompt_cache_setting(monkeypatch: pytest.MonkeyPatch, value: str | None, want: str) -> None:
    if value is None:
        monkeypatch.delenv("GGTOOL_PROMPT_CACHE", raising=False)
    else:
        monkeypatch.setenv("GGTOOL_PROMPT_CACHE", value)
    assert ServerConfig().prompt_cache == want
    lo = load_options({}, n_ctx_train=0, num_parallel=1, embedding_only=False, default_threads=1,
                      flash_attn=False, kv_cache_type="f16", prompt_cache=want)
    assert lo.prompt_cache == want


def test_prompt_cache_setting_rejects_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    from ggtool.errors import UsageError

    monkeypatch.setenv("GGTOOL_PROMPT_CACHE", "always")
    with pytest.raises(UsageError, match="GGTOOL_PROMPT_CACHE='always' is not one of: exact, prefix"):
        ServerConfig()


def test_format_grammar() -> None:
    assert format_grammar(None) is None and format_grammar("") is None
    assert "root" in format_grammar("json")
    g = format_grammar({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    assert "root" in g and '\\"a\\"' in g
    for bad in ("xml", 5, ["json"]):
        with pytest.raises(HTTPError) as ei:
            format_grammar(bad)
        assert ei.value.status == 400 and "invalid format" in str(ei.value)
