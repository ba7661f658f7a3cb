"""Request bodies, mirroring Ollama's api types (api/types.go) and OpenAI's request objects.

Strict typing as Go's encoding/json decodes: a number where a string belongs is a 400, not
coerced. Unknown fields are ignored. `options` stays a free-form object: `options.py` checks
each known key's type with Ollama's messages and ignores the rest.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

JSONValue = Any


class _Req(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)


# -- Ollama ---------------------------------------------------------------------------------------
class ToolCallFunctionIn(_Req):
    index: int | None = None
    name: str = ""
    arguments: dict[str, Any] | str | None = None


class ToolCallIn(_Req):
    id: str | None = None
    type: str | None = None
    function: ToolCallFunctionIn


class MessageIn(_Req):
    role: str
    content: str | None = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class GenerateRequest(_Req):
    model: str = ""
    prompt: str = ""
    suffix: str = ""
    system: str = ""
    template: str = ""
    context: list[int] | None = None
    stream: bool | None = None
    raw: bool = False
    format: JSONValue = None
    images: list[str] | None = None
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None
    think: bool | str | None = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    debug_render_only: bool = Field(False, alias="_debug_render_only")


class ChatRequest(_Req):
    model: str = ""
    messages: list[MessageIn] | None = None
    tools: list[dict[str, Any]] | None = None
    format: JSONValue = None
    options: dict[str, Any] | None = None
    stream: bool | None = None
    keep_alive: float | str | None = None
    think: bool | str | None = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    debug_render_only: bool = Field(False, alias="_debug_render_only")


class EmbedRequest(_Req):
    model: str = ""
    input: str | list[str] | None = None
    truncate: bool | None = None
    dimensions: int | None = None
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None


class EmbeddingsRequest(_Req):
    model: str = ""
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None


class ShowRequest(_Req):
    model: str = ""
    name: str = ""
    verbose: bool = False
    system: str = ""
    options: dict[str, Any] | None = None


class CopyRequest(_Req):
    source: str = ""
    destination: str = ""


class DeleteRequest(_Req):
    model: str = ""
    name: str = ""


class PullRequest(_Req):
    model: str = ""
    name: str = ""
    insecure: bool = False
    stream: bool | None = None
    username: str = ""
    password: str = ""


class PushRequest(PullRequest):
    pass


class CreateRequestBody(_Req):
    """Declared for the OpenAPI document; the handler validates the raw body with
    ggtool.modelfile.CreateRequest.from_api, which owns the create semantics."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)
    model: str = ""
    name: str = ""
    from_: str = Field("", alias="from")
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str = ""
    system: str = ""
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    quantize: str = ""
    stream: bool | None = None


# -- OpenAI ---------------------------------------------------------------------------------------
class OAIFunctionCall(_Req):
    name: str = ""
    arguments: str | dict[str, Any] | None = None


class OAIToolCall(_Req):
    id: str | None = None
    type: str | None = "function"
    index: int | None = None
    function: OAIFunctionCall


class OAIMessage(_Req):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[OAIToolCall] | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None


class OAIStreamOptions(_Req):
    include_usage: bool = False


class OAIChatRequest(_Req):
    model: str = ""
    messages: list[OAIMessage] = Field(default_factory=list)
    stream: bool = False
    stream_options: OAIStreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    n: int | None = None


class OAICompletionRequest(_Req):
    model: str = ""
    prompt: str | list[str] = ""
    suffix: str | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stream: bool = False
    stream_options: OAIStreamOptions | None = None
    logprobs: int | None = None
    echo: bool = False
    n: int | None = None


class OAIEmbeddingRequest(_Req):
    model: str = ""
    input: str | list[str] | None = None
    dimensions: int | None = None
    encoding_format: str | None = None
