"""Generation features through a real server: structured output, tools via grammar-constrained
generation, stop strings, raw mode, load/unload requests, and errors that need a model."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.ggtool.server.serve_helpers import Server

pytestmark = pytest.mark.slow


def post(server: Server, path: str, body: dict, timeout: float = 120) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=timeout)


def test_format_json_and_schema(server: Server) -> None:
    r = post(server, "/api/generate", {"model": "smol", "prompt": "Describe a cat as JSON.", "format": "json",
                                       "stream": False, "options": {"temperature": 0, "num_predict": 60}})
    assert r.status_code == 200
    if r.json()["done_reason"] == "stop":
        json.loads(r.json()["response"])
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 99}},
              "required": ["name", "age"], "additionalProperties": False}
    r = post(server, "/api/chat", {"model": "smol", "messages": [{"role": "user", "content": "Invent a person."}],
                                   "format": schema, "stream": False, "options": {"temperature": 0, "num_predict": 60}})
    obj = json.loads(r.json()["message"]["content"])
    assert set(obj) == {"name", "age"} and isinstance(obj["age"], int)


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}]
CALL_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "parameters"],
               "properties": {"name": {"type": "string", "enum": ["get_weather"]},
                              "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                                             "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}}}}}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_from_grammar_constrained_generation(server: Server, stream: bool) -> None:
    # a 135M model will not call tools reliably; the grammar makes it emit a Llama-3 style call,
    # which the llama3.2 template's parser must turn into tool_calls
    body = {"model": "smol-tools", "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": WEATHER, "format": CALL_SCHEMA, "stream": stream, "options": {"temperature": 0, "num_predict": 40}}
    if stream:
        with httpx.stream("POST", server.url + "/api/chat", json=body, timeout=120) as r:
            lines = [json.loads(x) for x in r.iter_lines() if x]
        calls = [c for ln in lines for c in ln["message"].get("tool_calls", [])]
        content = "".join(ln["message"]["content"] for ln in lines)
        assert lines[-1]["done"]
    else:
        msg = post(server, "/api/chat", body).json()["message"]
        calls, content = msg.get("tool_calls", []), msg["content"]
    assert content == ""
    assert len(calls) == 1
    fn = calls[0]["function"]
    assert fn["name"] == "get_weather" and fn["arguments"]["city"] in ("Paris", "Rome") and fn["index"] == 0
    assert calls[0]["id"].startswith("call_")


def test_tool_calls_through_openai(server: Server) -> None:
    import openai

    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    r = oai.chat.completions.create(
        model="smol-tools", messages=[{"role": "user", "content": "Weather in Rome?"}], tools=WEATHER, temperature=0,
        max_tokens=40, response_format={"type": "json_schema", "json_schema": {"name": "call", "schema": CALL_SCHEMA}})
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Paris", "Rome")
    # the tool result goes back in; the template renders it (ipython role) and the model answers
    follow = oai.chat.completions.create(
        model="smol-tools", temperature=0, max_tokens=8, tools=WEATHER,
        messages=[{"role": "user", "content": "Weather in Rome?"}, c.message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "21 C and sunny"}])
    assert follow.choices[0].message.content is not None


def test_tools_need_a_tools_capable_template(server: Server) -> None:
    r = post(server, "/api/chat", {"model": "smol", "tools": WEATHER, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"] == '"smol" does not support tools'


def test_stop_strings_and_length(server: Server) -> None:
    base = {"model": "smol", "prompt": "Count: 1, 2, 3, 4, 5, 6, 7", "raw": True, "stream": False}
    full = post(server, "/api/generate", {**base, "options": {"temperature": 0, "num_predict": 12}}).json()
    assert full["done_reason"] == "length" and full["eval_count"] == 12 and "context" not in full
    text = full["response"]
    cut = text[2:5]
    stopped = post(server, "/api/generate", {**base, "options": {"temperature": 0, "num_predict": 12, "stop": [cut]}}).json()
    assert stopped["done_reason"] == "stop"
    assert stopped["response"] == text[: text.index(cut)]


def test_raw_mode_vs_template(server: Server) -> None:
    raw = post(server, "/api/generate", {"model": "smol", "prompt": "Hello", "raw": True, "stream": False,
                                         "options": {"num_predict": 1}}).json()
    templated = post(server, "/api/generate", {"model": "smol", "prompt": "Hello", "stream": False,
                                               "options": {"num_predict": 1}}).json()
    assert raw["prompt_eval_count"] < templated["prompt_eval_count"]
    rendered = post(server, "/api/chat", {"model": "smol", "messages": [{"role": "user", "content": "Hello"}],
                                          "_debug_render_only": True}).json()
    assert rendered["debug_info"]["rendered_template"].endswith("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")


def test_empty_prompt_loads_and_keep_alive_zero_unloads(server: Server) -> None:
    from tests.ggtool.server.serve_helpers import wait_for

    # smol, smol-fixed and smol-tools share one GGUF blob, hence one runner, listed under the
    # name of the model that loaded it (as Ollama does)
    smol_family = {"smol:latest", "smol-fixed:latest", "smol-tools:latest"}
    r = post(server, "/api/generate", {"model": "smol"}).json()
    assert r["done"] and r["done_reason"] == "load" and r["response"] == ""
    assert smol_family & {m["name"] for m in server.ps()}
    assert post(server, "/api/embed", {"model": "bert", "input": []}).json() == {"model": "bert", "embeddings": []}
    assert "bert:latest" in {m["name"] for m in server.ps()}
    # unloading does not need the model's capabilities (embedding models are stopped this way too)
    r = post(server, "/api/generate", {"model": "bert", "keep_alive": 0}).json()
    assert r["done_reason"] == "unload"
    assert wait_for(lambda: "bert:latest" not in {m["name"] for m in server.ps()})
    r = post(server, "/api/chat", {"model": "smol", "messages": [], "keep_alive": 0}).json()
    assert r["done_reason"] == "unload" and r["message"] == {"role": "assistant", "content": ""}
    assert wait_for(lambda: not smol_family & {m["name"] for m in server.ps()})


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/generate", {"model": "smol", "prompt": "x", "options": {"temperature": "hot"}}, 400,
         'option "temperature" must be of type float32'),
        ("/api/generate", {"model": "smol", "prompt": "x", "options": {"stop": 3}}, 400, 'option "stop"'),
        ("/api/generate", {"model": "smol", "prompt": "x", "think": True}, 400, '"smol" does not support thinking'),
        ("/api/generate", {"model": "smol", "prompt": "x", "suffix": "y"}, 400, '"smol" does not support insert'),
        ("/api/generate", {"model": "bert", "prompt": "x"}, 400, '"bert" does not support generate'),
        ("/api/chat", {"model": "smol", "messages": [{"role": "robot", "content": "x"}]}, 400, "invalid message role"),
        ("/api/generate", {"model": "smol", "prompt": "word " * 1500, "truncate": False, "raw": True,
                           "options": {"num_predict": 1}}, 400, "exceeds the context length"),
        ("/api/embed", {"model": "bert", "input": "word " * 600, "truncate": False}, 400, "exceeds the context length"),
    ],
)
def test_errors_with_a_model(server: Server, path: str, body: dict, status: int, error: str) -> None:
    r = post(server, path, body)
    assert r.status_code == status, r.text
    assert error in r.json()["error"]


def test_long_input_is_truncated_by_default(server: Server) -> None:
    r = post(server, "/api/generate", {"model": "smol", "prompt": "word " * 1500, "raw": True, "stream": False,
                                       "options": {"num_predict": 2}})
    assert r.status_code == 200 and r.json()["prompt_eval_count"] < 1024
    e = post(server, "/api/embed", {"model": "bert", "input": "word " * 600})
    assert e.status_code == 200 and len(e.json()["embeddings"][0]) == 64


def test_logprobs(server: Server) -> None:
    r = post(server, "/api/generate", {"model": "smol", "prompt": "The sky is", "raw": True, "stream": False,
                                       "logprobs": True, "top_logprobs": 3, "options": {"temperature": 0, "num_predict": 3}})
    lp = r.json()["logprobs"]
    assert len(lp) == 3
    for item in lp:
        assert item["logprob"] <= 0 and len(item["top_logprobs"]) == 3
        assert item["top_logprobs"][0]["logprob"] >= item["top_logprobs"][1]["logprob"]
        assert item["token"] == item["top_logprobs"][0]["token"]  # greedy picks the most likely
    assert "".join(x["token"] for x in lp) == r.json()["response"]


def test_images_are_refused_clearly(server: Server) -> None:
    r = post(server, "/api/chat", {"model": "smol", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]})
    assert r.status_code == 400 and "image" in r.json()["error"]


def test_unknown_options_are_ignored(server: Server) -> None:
    r = post(server, "/api/generate", {"model": "smol", "prompt": "x", "stream": False,
                                       "options": {"num_predict": 1, "mirostat": 2, "whatever": [1]}})
    assert r.status_code == 200
