"""The ggml type table against gguf-py's, and the size helpers."""

from __future__ import annotations

import ctypes

import pytest
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from quant import (
    TYPE_TRAITS,
    GGMLType,
    ShapeError,
    UnsupportedTypeError,
    as_type,
    row_nbytes,
    tensor_nbytes,
    traits,
)

# gguf-py 0.19.0 still sizes Q8_1 with f32 d/s (40 bytes); ggml's block_q8_1 has two fp16 (36).
GGUF_DIFFERS = {GGMLType.Q8_1: (32, 40)}


def test_every_gguf_type_is_in_the_table_with_the_same_numbers():
    for gtype, (block, size) in GGML_QUANT_SIZES.items():
        ours = TYPE_TRAITS[GGMLType(int(gtype))]
        assert ours.type.name == gtype.name
        expected = (ours.block_size, ours.type_size)
        assert GGUF_DIFFERS.get(ours.type, expected) == (block, size)


def test_the_table_equals_ggml_itself(ggml):
    lib = ggml.lib
    lib.ggml_type_size.restype = ctypes.c_size_t
    lib.ggml_blck_size.restype = ctypes.c_int64
    lib.ggml_type_name.restype = ctypes.c_char_p
    for t, tr in TYPE_TRAITS.items():
        got = (
            lib.ggml_blck_size(int(t)),
            lib.ggml_type_size(int(t)),
            lib.ggml_type_name(int(t)).decode(),
        )
        assert got == (tr.block_size, tr.type_size, tr.ggml_name), t


def test_types_gguf_lacks_are_only_newer_ones():
    missing = {t for t in GGMLType if int(t) not in {int(g) for g in GGMLQuantizationType}}
    assert missing <= {GGMLType.Q2_0}  # added to ggml after gguf-py 0.19.0
    assert (traits(GGMLType.Q2_0).block_size, traits(GGMLType.Q2_0).type_size) == (64, 18)


@pytest.mark.parametrize(
    ("name", "ggml_name"),
    [("Q4_K", "q4_K"), ("F16", "f16"), ("BF16", "bf16"), ("Q8_0", "q8_0"), ("IQ2_XXS", "iq2_xxs")],
)
def test_ggml_names(name, ggml_name):
    assert traits(name).ggml_name == ggml_name


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("q4_k", GGMLType.Q4_K),
        (" Q6_K ", GGMLType.Q6_K),
        (14, GGMLType.Q6_K),
        (GGMLType.F16, GGMLType.F16),
    ],
)
def test_as_type(spelling, expected):
    assert as_type(spelling) is expected


@pytest.mark.parametrize("bad", ["q4_2", "", 4, 99])
def test_as_type_rejects_unknown(bad):
    with pytest.raises(UnsupportedTypeError):
        as_type(bad)


@pytest.mark.parametrize(
    ("qtype", "ne", "nbytes"),
    [
        ("Q4_K", (4096, 4096), 4096 * 16 * 144),
        ("Q8_0", (320, 3), 3 * 10 * 34),
        ("F32", (7,), 28),
        ("BF16", (5, 2, 3), 60),
        ("Q6_K", (256, 1, 1), 210),
    ],
)
def test_tensor_nbytes(qtype, ne, nbytes):
    assert tensor_nbytes(qtype, ne) == nbytes


def test_row_nbytes_rejects_partial_blocks():
    with pytest.raises(ShapeError, match="multiple of the Q4_K block size 256"):
        row_nbytes("Q4_K", 320)
