"""The error family of the `converters` package.

`converters` may not import `ggtool`, so it has its own base class; the CLI treats
`ConversionError` as part of ggtool's error family (exit 1, one line on stderr).
Every message names the file or tensor at fault and, where there is one, what to do.
"""

from __future__ import annotations


class ConversionError(Exception):
    """Base of every error `converters` raises on purpose."""


class ModelFolderError(ConversionError):
    """The input folder lacks a file the conversion needs (config.json, weights, tokenizer)."""


class UnsupportedArchitectureError(ConversionError):
    """config.json names an architecture no converter module handles."""


class SafetensorsError(ConversionError):
    """A .safetensors file (or its index) is truncated, corrupt or inconsistent."""


class TensorMismatchError(ConversionError):
    """Tensors missing, unexpected, or shaped differently from what config.json implies."""


class TokenizerError(ConversionError):
    """A tokenizer that cannot be converted to a llama.cpp vocabulary."""
