"""The error family of the `quant` package.

`quant` may not import `ggtool`, so it has its own base class; the CLI treats
`QuantError` as part of ggtool's error family (exit 1, one line).
"""

from __future__ import annotations


class QuantError(Exception):
    """Base of every error `quant` raises on purpose."""


class UnsupportedTypeError(QuantError):
    """A ggml type that exists but that this package cannot encode or decode."""


class ShapeError(QuantError):
    """An array or byte string whose size does not fit the requested type."""


class NonFiniteError(QuantError):
    """NaN or Inf in the values to quantize (llama.cpp refuses these too)."""

    def __init__(self, tensor_name: str | None, count: int) -> None:
        self.tensor_name = tensor_name
        self.count = count
        what = f"tensor '{tensor_name}'" if tensor_name else "the input"
        super().__init__(
            f"{what} contains {count} NaN or infinite value(s); refusing to quantize it"
        )


class InvalidDataError(QuantError):
    """Encoded data whose scales are NaN/Inf (what ggml_validate_row_data rejects)."""


class UnknownFileTypeError(QuantError):
    """A file-type name that llama.cpp does not know either."""


class FileTypeNotSupportedError(QuantError):
    """A file type llama.cpp knows but this package does not implement (IQ*, TQ*, ...)."""


class RecipeError(QuantError):
    """The type recipe cannot be applied to the given tensors (bad layer index, ...)."""
