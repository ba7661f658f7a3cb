"""Inference backends behind one small interface (`ggtool.runner.base.Runner`)."""

from ggtool.runner.base import (
    CompletionChunk,
    CompletionRequest,
    ContextLengthError,
    EmbeddingResult,
    LoadOptions,
    ModelFacts,
    Runner,
    RunnerDied,
    RunnerError,
    SamplingOptions,
)

__all__ = [
    "CompletionChunk",
    "CompletionRequest",
    "ContextLengthError",
    "EmbeddingResult",
    "LoadOptions",
    "ModelFacts",
    "Runner",
    "RunnerDied",
    "RunnerError",
    "SamplingOptions",
]
