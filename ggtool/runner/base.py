"""The runner interface: what the scheduler and the API handlers need from an inference backend.

Like Ollama's LlamaServer: load, ping, completion as a stream of chunks, tokenize/detokenize,
embedding, close, the memory it holds and its process id. The server only ever talks to this
interface; `ggtool.runner.llamacpp` is the first implementation (a llama-cpp-python subprocess
per loaded model).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from ggtool.errors import GgtoolError


class RunnerError(GgtoolError):
    """The runner failed a request (bad input it could not handle, or a native error)."""


class RunnerDied(RunnerError):
    """The runner process exited (crash, SIGKILL, out of memory) while serving."""


class ContextLengthError(RunnerError):
    """The input does not fit the context and truncation is off."""


PROMPT_CACHE_MODES = ("exact", "prefix")  # the first is the default


@dataclass(frozen=True)
class LoadOptions:
    """Runner options: changing any of them means reloading the model (Ollama's needsReload)."""

    num_ctx: int = 4096
    num_batch: int = 512
    num_thread: int = 0  # 0 = runner's choice
    use_mmap: bool = True
    num_gpu: int = -1
    main_gpu: int = 0
    num_parallel: int = 1
    embedding_only: bool = False
    flash_attn: bool = False
    kv_cache_type: str = "f16"
    # "exact": reuse a cached prompt prefix only in whole num_batch chunks, so reuse never
    # changes an output; "prefix": reuse the longest common prefix (as Ollama and llama-server
    # do; faster for chats, but a different batching can flip a near-tie token)
    prompt_cache: str = PROMPT_CACHE_MODES[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SamplingOptions:
    """Predict options of one request (Ollama's names and defaults)."""

    num_keep: int = 4
    seed: int = -1
    num_predict: int = -1
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    temperature: float = 0.8
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: list[str] = field(default_factory=list)


@dataclass
class CompletionRequest:
    prompt: str
    options: SamplingOptions = field(default_factory=SamplingOptions)
    grammar: str | None = None  # GBNF, root rule "root"
    add_special: bool = True  # let the tokenizer add BOS as the vocabulary asks
    truncate: bool = True
    shift: bool = True
    logprobs: bool = False
    top_logprobs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CompletionChunk:
    """A piece of generated text; the last chunk has done=True and the metrics."""

    text: str = ""
    done: bool = False
    done_reason: str = ""  # stop | length
    prompt_eval_count: int = 0  # the whole prompt, cached part included
    prompt_cached: int = 0  # leading prompt tokens whose KV cache was reused
    prompt_eval_duration: int = 0  # ns
    eval_count: int = 0
    eval_duration: int = 0  # ns
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass
class EmbeddingResult:
    embeddings: list[list[float]]
    prompt_eval_count: int


@dataclass
class ModelFacts:
    """What the runner learned about the model when it loaded it."""

    n_ctx_train: int = 0
    n_ctx: int = 0  # per sequence
    n_embd: int = 0
    n_vocab: int = 0
    add_bos: bool = False
    bos_token: str = ""
    eos_token: str = ""
    chat_template: str | None = None
    pooling: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Runner(abc.ABC):
    """One loaded model."""

    facts: ModelFacts

    @abc.abstractmethod
    async def load(self) -> None:
        """Start and load the model; raises RunnerError on failure."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise RunnerDied unless the runner answers."""

    @abc.abstractmethod
    def completion(self, req: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        """Stream a completion; closing the iterator early cancels generation."""

    @abc.abstractmethod
    async def tokenize(self, text: str, *, add_special: bool = True) -> list[int]: ...

    @abc.abstractmethod
    async def detokenize(self, tokens: list[int]) -> str: ...

    @abc.abstractmethod
    async def embedding(self, inputs: list[str], *, truncate: bool = True) -> EmbeddingResult: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop the runner and release its memory."""

    @property
    @abc.abstractmethod
    def memory_size(self) -> int:
        """Bytes the runner holds (model weights + KV cache), as estimated or measured."""

    @property
    @abc.abstractmethod
    def pid(self) -> int | None: ...

    @property
    @abc.abstractmethod
    def alive(self) -> bool: ...
