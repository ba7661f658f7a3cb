"""The ggml type table: ids, block sizes, bytes per block, row and tensor sizes.

Numbers from ggml (ggml.h `enum ggml_type`, ggml.c `type_traits`, ggml-common.h block
structs) at llama.cpp 0c1e57098. A test checks them against gguf-py's GGML_QUANT_SIZES.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ShapeError, UnsupportedTypeError

QK_K = 256  # super-block size of the K-quants


class GGMLType(enum.IntEnum):
    """ggml_type ids as stored in a GGUF tensor info (values 4, 5, 31-33, 36-38 are retired)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41
    Q2_0 = 42


@dataclass(frozen=True)
class TypeTraits:
    type: GGMLType
    block_size: int  # values per block
    type_size: int  # bytes per block
    is_quantized: bool

    @property
    def ggml_name(self) -> str:
        """ggml's own spelling (`ggml_type_name`): "q4_K", "f16", "bf16", "iq2_xxs"."""
        name = self.type.name.lower()
        return name[:-2] + "_K" if name.endswith("_k") else name


def _t(t: GGMLType, block: int, size: int, quantized: bool = True) -> TypeTraits:
    return TypeTraits(t, block, size, quantized)


T = GGMLType
TYPE_TRAITS: dict[GGMLType, TypeTraits] = {
    tr.type: tr
    for tr in (
        _t(T.F32, 1, 4, False),
        _t(T.F16, 1, 2, False),
        _t(T.Q4_0, 32, 2 + 16),  # d | qs[16]
        _t(T.Q4_1, 32, 2 + 2 + 16),  # d | m | qs[16]
        _t(T.Q5_0, 32, 2 + 4 + 16),  # d | qh[4] | qs[16]
        _t(T.Q5_1, 32, 2 + 2 + 4 + 16),  # d | m | qh[4] | qs[16]
        _t(T.Q8_0, 32, 2 + 32),  # d | qs[32]
        _t(T.Q8_1, 32, 2 + 2 + 32),  # d | s | qs[32]
        _t(T.Q2_K, QK_K, 16 + 64 + 2 + 2),  # scales | qs | d | dmin
        _t(T.Q3_K, QK_K, 32 + 64 + 12 + 2),  # hmask | qs | scales | d
        _t(T.Q4_K, QK_K, 2 + 2 + 12 + 128),  # d | dmin | scales | qs
        _t(T.Q5_K, QK_K, 2 + 2 + 12 + 32 + 128),  # d | dmin | scales | qh | qs
        _t(T.Q6_K, QK_K, 128 + 64 + 16 + 2),  # ql | qh | scales | d
        _t(T.Q8_K, QK_K, 4 + 256 + 32),  # d (f32) | qs | bsums (i16)
        _t(T.IQ2_XXS, QK_K, 2 + 64),
        _t(T.IQ2_XS, QK_K, 2 + 64 + 8),
        _t(T.IQ3_XXS, QK_K, 2 + 96),
        _t(T.IQ1_S, QK_K, 2 + 32 + 16),
        _t(T.IQ4_NL, 32, 2 + 16),
        _t(T.IQ3_S, QK_K, 2 + 64 + 8 + 32 + 4),
        _t(T.IQ2_S, QK_K, 2 + 64 + 8 + 8),
        _t(T.IQ4_XS, QK_K, 2 + 2 + 4 + 128),
        _t(T.I8, 1, 1, False),
        _t(T.I16, 1, 2, False),
        _t(T.I32, 1, 4, False),
        _t(T.I64, 1, 8, False),
        _t(T.F64, 1, 8, False),
        _t(T.IQ1_M, QK_K, 32 + 16 + 8),
        _t(T.BF16, 1, 2, False),
        _t(T.TQ1_0, QK_K, 48 + 4 + 2),
        _t(T.TQ2_0, QK_K, 64 + 2),
        _t(T.MXFP4, 32, 1 + 16),  # e (e8m0) | qs[16]
        _t(T.NVFP4, 64, 4 + 32),  # 4 e4m3 scales | qs[32]
        _t(T.Q1_0, 128, 2 + 16),
        _t(T.Q2_0, 64, 2 + 16),
    )
}
del T

# Types `quant.quantize` / `quant.dequantize` implement.
SUPPORTED_TYPES: frozenset[GGMLType] = frozenset(
    GGMLType[n]
    for n in (
        [
            "F32",
            "F16",
            "BF16",
            "Q4_0",
            "Q4_1",
            "Q5_0",
            "Q5_1",
            "Q8_0",
            "Q2_K",
            "Q3_K",
            "Q4_K",
            "Q5_K",
            "Q6_K",
        ]
    )
)


def as_type(qtype: GGMLType | int | str) -> GGMLType:
    """A GGMLType from a GGMLType, its integer id, or a case-insensitive name ("q4_k")."""
    if isinstance(qtype, GGMLType):
        return qtype
    if isinstance(qtype, str):
        try:
            return GGMLType[qtype.strip().upper()]
        except KeyError:
            valid = ", ".join(t.name for t in TYPE_TRAITS)
            raise UnsupportedTypeError(f"unknown ggml type {qtype!r}; valid: {valid}") from None
    try:
        return GGMLType(int(qtype))
    except ValueError:
        raise UnsupportedTypeError(f"unknown ggml type id {qtype!r}") from None


def traits(qtype: GGMLType | int | str) -> TypeTraits:
    return TYPE_TRAITS[as_type(qtype)]


def require_supported(qtype: GGMLType | int | str) -> GGMLType:
    t = as_type(qtype)
    if t not in SUPPORTED_TYPES:
        names = ", ".join(s.name for s in sorted(SUPPORTED_TYPES))
        raise UnsupportedTypeError(f"ggml type {t.name} is not implemented (supported: {names})")
    return t


def row_nbytes(qtype: GGMLType | int | str, ne0: int) -> int:
    """Bytes of one row of `ne0` values (`ggml_row_size`); ne0 must be a multiple of the block."""
    tr = traits(qtype)
    if ne0 < 0 or ne0 % tr.block_size:
        raise ShapeError(
            f"row length {ne0} is not a multiple of the {tr.type.name} block size {tr.block_size}"
        )
    return ne0 // tr.block_size * tr.type_size


def tensor_nbytes(qtype: GGMLType | int | str, ne: Sequence[int]) -> int:
    """Bytes of a tensor with ggml dims `ne` (ne[0] = row length; the reverse of a numpy shape)."""
    if not ne:
        ne = (1,)
    rows = 1
    for n in ne[1:]:
        rows *= int(n)
    return rows * row_nbytes(qtype, int(ne[0]))


def divides(qtype: GGMLType | int | str, ne0: int) -> bool:
    """Whether a row of `ne0` values can be stored as `qtype`."""
    return ne0 % traits(qtype).block_size == 0
