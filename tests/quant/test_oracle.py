"""Byte equality with ggml_quantize_chunk on ≥ 1M values per data kind and type (slow tier).

Both implementations are checked: the numba fast path (what `quant.quantize` uses) and the
NumPy specification.
"""

from __future__ import annotations

import numpy as np
import pytest

import quant
from quant import GGMLType
from tests.quant.quant_testlib import DATA_KINDS, make_data

pytestmark = pytest.mark.slow

N = 1 << 20  # values per (kind, type)
QUANTIZED = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# row lengths: 4096 (a typical hidden size), plus rows that are not a multiple of 256
# (legacy types only: the fallback targets of llama-quantize) and odd multiples of 256
ROWS = {t: 4096 for t in QUANTIZED} | {
    "Q4_0": 320,
    "Q5_0": 96,
    "Q5_1": 288,
    "Q8_0": 576,
    "Q3_K": 768,
}


def _first_difference(a: bytes, b: bytes, type_size: int) -> str:
    ra = np.frombuffer(a, np.uint8).reshape(-1, type_size)
    rb = np.frombuffer(b, np.uint8).reshape(-1, type_size)
    bad = np.flatnonzero((ra != rb).any(axis=1))
    return (
        f"{bad.size} of {ra.shape[0]} blocks differ, first at block {bad[0] if bad.size else None}"
    )


@pytest.fixture(scope="module")
def data():
    return {kind: make_data(kind, N, seed=11) for kind in DATA_KINDS}


@pytest.mark.parametrize("kind", DATA_KINDS)
@pytest.mark.parametrize("qtype", [*QUANTIZED, "F16", "BF16"])
def test_million_values_equal_ggml(ggml, data, qtype, kind):
    t = GGMLType[qtype]
    row = ROWS.get(qtype, 4096)
    x = data[kind][: N // row * row].reshape(-1, row)
    assert x.size >= 1_000_000
    ref = ggml.quantize(x, t)
    fast = quant.quantize(x, t, check_finite=False)
    assert fast == ref, _first_difference(fast, ref, quant.traits(t).type_size)
    spec = quant.quantize(x, t, backend="numpy", check_finite=False)
    assert spec == ref, _first_difference(spec, ref, quant.traits(t).type_size)


@pytest.mark.parametrize("qtype", QUANTIZED)
def test_million_values_dequantize_equals_ggml(ggml, data, qtype):
    t = GGMLType[qtype]
    x = data["heavy_tailed"].reshape(-1, 4096)
    q = quant.quantize(x, t)
    ours = quant.dequantize(q, t, x.shape).reshape(-1)
    assert np.array_equal(ours.view(np.uint32), ggml.dequantize(q, t, x.size).view(np.uint32))


def test_fp16_and_bf16_of_every_bit_pattern_class(ggml):
    """Random float32 bit patterns (NaN payloads, subnormals, infinities) convert like ggml."""
    bits = np.random.default_rng(1).integers(0, 2**32, N, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    for t in (GGMLType.F16, GGMLType.BF16):
        assert quant.quantize(x, t, check_finite=False) == ggml.quantize(x, t)
