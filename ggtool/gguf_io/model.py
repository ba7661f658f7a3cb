"""The in-memory model of a GGUF file's header: typed metadata entries and tensor infos."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME_BYTES = 63  # GGML_MAX_NAME is 64 including the NUL

# fixed-size scalar types: struct format and size
SCALAR_FORMATS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
NUMPY_DTYPES: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<u1",
    GGUFValueType.INT8: "<i1",
    GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4",
    GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4",
    GGUFValueType.BOOL: "<u1",
    GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8",
    GGUFValueType.FLOAT64: "<f8",
}


@dataclass(slots=True)
class KVEntry:
    """One metadata entry. Arrays of numbers are numpy arrays, of strings lists of str."""

    key: str
    vtype: GGUFValueType
    value: Any
    subtype: GGUFValueType | None = None  # element type when vtype is ARRAY

    def python_value(self) -> Any:
        if self.vtype == GGUFValueType.ARRAY and isinstance(self.value, np.ndarray):
            if self.subtype == GGUFValueType.BOOL:
                return [bool(x) for x in self.value]
            return self.value.tolist()
        return self.value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KVEntry):
            return NotImplemented
        return (
            self.key == other.key
            and self.vtype == other.vtype
            and self.subtype == other.subtype
            and _values_equal(self.value, other.value)
        )


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def type_block(ggml_type: int) -> tuple[int, int]:
    """(elements per block, bytes per block) of a ggml type."""
    return GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]


def tensor_nbytes(ggml_type: int, ne: tuple[int, ...]) -> int:
    block, size = type_block(ggml_type)
    n = math.prod(ne)
    return n // block * size


def type_name(ggml_type: int) -> str:
    try:
        return GGMLQuantizationType(ggml_type).name
    except ValueError:
        return f"type{ggml_type}"


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A tensor as the header describes it. `ne` is in ggml order (ne[0] = row length)."""

    name: str
    ne: tuple[int, ...]
    ggml_type: int
    offset: int  # relative to the start of the data section
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy order (the reverse of ne)."""
        return tuple(reversed(self.ne))

    @property
    def n_elements(self) -> int:
        return math.prod(self.ne)

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)
