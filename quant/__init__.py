"""GGML block formats and llama.cpp's quantization recipes, in Python.

    quant.quantize(array, "q4_k") -> bytes        # == ggml_quantize_chunk, byte for byte
    quant.dequantize(data, "q4_k", shape) -> float32 array
    quant.iter_quantize(row_chunks, "q6_k")      # bounded memory: bytes pieces
    quant.recipes.parse_file_type("Q4_K_M"), quant.recipes.plan_tensor_types(...)

Imports only numpy and numba (layer rule: nothing from ggtool or converters).
"""

from __future__ import annotations

from .codec import (
    CHUNK_VALUES,
    dequantize,
    fast_available,
    iter_quantize,
    quantize,
    validate,
)
from .errors import (
    FileTypeNotSupportedError,
    InvalidDataError,
    NonFiniteError,
    QuantError,
    RecipeError,
    ShapeError,
    UnknownFileTypeError,
    UnsupportedTypeError,
)
from .formats import (
    QK_K,
    SUPPORTED_TYPES,
    TYPE_TRAITS,
    GGMLType,
    TypeTraits,
    as_type,
    row_nbytes,
    tensor_nbytes,
    traits,
)

__all__ = [
    "CHUNK_VALUES",
    "QK_K",
    "SUPPORTED_TYPES",
    "TYPE_TRAITS",
    "FileTypeNotSupportedError",
    "GGMLType",
    "InvalidDataError",
    "NonFiniteError",
    "QuantError",
    "RecipeError",
    "ShapeError",
    "TypeTraits",
    "UnknownFileTypeError",
    "UnsupportedTypeError",
    "as_type",
    "dequantize",
    "fast_available",
    "iter_quantize",
    "quantize",
    "row_nbytes",
    "tensor_nbytes",
    "traits",
    "validate",
]
