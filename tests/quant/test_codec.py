"""quantize / dequantize: byte equality with ggml (small fast-tier sets), API behaviour.

The ≥1M-values-per-kind comparisons are in test_oracle.py (slow tier).
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import quants as gguf_quants
from gguf.constants import GGMLQuantizationType
from hypothesis import given, settings
from hypothesis import strategies as st

import quant
from quant import GGMLType, NonFiniteError, QuantError, ShapeError, UnsupportedTypeError, codec
from tests.quant.quant_testlib import DATA_KINDS, make_data

QUANTIZED = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
ALL = ["F32", "F16", "BF16", *QUANTIZED]


@pytest.mark.parametrize("kind", DATA_KINDS)
@pytest.mark.parametrize("qtype", ALL)
def test_small_sets_equal_ggml_on_both_paths(ggml, qtype, kind):
    x = make_data(kind, 8192, seed=7).reshape(8, 1024)
    ref = ggml.quantize(x, GGMLType[qtype])
    assert quant.quantize(x, qtype, backend="numba") == ref
    assert quant.quantize(x, qtype, backend="numpy") == ref


@pytest.mark.parametrize("qtype", ALL)
def test_dequantize_equals_gguf_py_and_ggml(ggml, qtype):
    x = make_data("normal", 4096, seed=3).reshape(4, 1024)
    data = quant.quantize(x, qtype)
    ours = quant.dequantize(data, qtype, x.shape)
    theirs = gguf_quants.dequantize(
        np.frombuffer(data, np.uint8).reshape(4, -1), GGMLQuantizationType[qtype]
    )
    assert ours.dtype == np.float32 and ours.shape == x.shape
    assert np.array_equal(ours.view(np.uint32), theirs.astype(np.float32).view(np.uint32))
    if qtype in QUANTIZED:
        assert np.array_equal(
            ours.reshape(-1).view(np.uint32),
            ggml.dequantize(data, GGMLType[qtype], x.size).view(np.uint32),
        )


@pytest.mark.parametrize("qtype", QUANTIZED)
def test_round_trip_error_is_small(qtype):
    x = np.random.default_rng(0).standard_normal((2, 1024)).astype(np.float32)
    y = quant.dequantize(quant.quantize(x, qtype), qtype, x.shape)
    rel = float(np.sqrt(np.mean((y - x) ** 2)) / np.sqrt(np.mean(x**2)))
    assert rel < 0.35  # Q2_K is the coarsest (~0.3); Q8_0 ~0.004


def test_nd_input_uses_the_last_axis_as_row():
    x = make_data("normal", 3 * 2 * 512).reshape(3, 2, 512)
    assert quant.quantize(x, "Q4_K") == quant.quantize(x.reshape(6, 512), "Q4_K")
    assert quant.dequantize(quant.quantize(x, "Q8_0"), "Q8_0", x.shape).shape == (3, 2, 512)


def test_float64_and_float16_inputs_are_converted_to_float32():
    x = make_data("normal", 1024)
    assert quant.quantize(x.astype(np.float64), "Q6_K") == quant.quantize(x, "Q6_K")
    h = x.astype(np.float16)
    assert quant.quantize(h, "Q4_0") == quant.quantize(h.astype(np.float32), "Q4_0")
    assert quant.quantize(h, "F16") == h.astype("<f2").tobytes()


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_threads_do_not_change_bytes(threads):
    x = make_data("heavy_tailed", 256 * 300).reshape(-1, 256 * 3)
    assert quant.quantize(x, "Q5_K", threads=threads) == quant.quantize(x, "Q5_K", threads=1)


def test_chunking_does_not_change_bytes(monkeypatch):
    x = make_data("outliers", 256 * 64).reshape(16, 1024)
    whole = quant.quantize(x, "Q3_K")
    monkeypatch.setattr(codec, "CHUNK_VALUES", 1000)  # < one row of 1024: 1-row pieces
    pieces = list(quant.iter_quantize([x[:5], x[5:]], "Q3_K"))
    assert len(pieces) == 16
    assert b"".join(pieces) == whole


def test_iter_quantize_streams_chunks():
    x = make_data("normal", 4096).reshape(8, 512)
    chunks = (x[i : i + 3] for i in range(0, 8, 3))
    assert b"".join(quant.iter_quantize(chunks, "Q4_1")) == quant.quantize(x, "Q4_1")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_with_the_tensor_name(bad):
    x = np.zeros((2, 256), np.float32)
    x[1, 7] = bad
    with pytest.raises(NonFiniteError, match="blk.3.ffn_up.weight") as exc:
        quant.quantize(x, "Q4_K", name="blk.3.ffn_up.weight")
    assert exc.value.tensor_name == "blk.3.ffn_up.weight" and exc.value.count == 1
    assert isinstance(exc.value, QuantError)
    assert len(quant.quantize(x, "Q4_K", check_finite=False)) == 2 * 144


@pytest.mark.parametrize(("qtype", "ne0"), [("Q4_K", 320), ("Q4_0", 48), ("Q6_K", 32)])
def test_partial_blocks_are_a_shape_error(qtype, ne0):
    with pytest.raises(ShapeError, match="multiple"):
        quant.quantize(np.zeros((2, ne0), np.float32), qtype)


@pytest.mark.parametrize("qtype", ["IQ2_XXS", "Q8_K", "TQ1_0", "I32"])
def test_unsupported_types(qtype):
    with pytest.raises(UnsupportedTypeError, match="not implemented"):
        quant.quantize(np.zeros(256, np.float32), qtype)


def test_dequantize_checks_the_byte_count():
    with pytest.raises(ShapeError, match="must be 144 bytes"):
        quant.dequantize(b"\0" * 143, "Q4_K", (256,))


def test_empty_input():
    assert quant.quantize(np.zeros((0, 256), np.float32), "Q4_K") == b""
    assert quant.dequantize(b"", "Q4_K", (0, 256)).shape == (0, 256)


def test_validate_matches_ggml(ggml):
    good = quant.quantize(make_data("normal", 512), "Q4_K")
    quant.validate(good, "Q4_K")
    bad = bytearray(good)
    bad[0:2] = b"\x00\x7c"  # d = +inf
    assert not ggml.validate(bytes(bad), GGMLType.Q4_K)
    with pytest.raises(quant.InvalidDataError, match="t.w"):
        quant.validate(bytes(bad), "Q4_K", name="t.w")
    big = np.full(32, 1e5, np.float32)  # overflows F16 -> what llama-quantize's check rejects
    assert not ggml.validate(quant.quantize(big, "F16"), GGMLType.F16)
    with pytest.raises(quant.InvalidDataError):
        quant.validate(quant.quantize(big, "F16"), "F16")


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=600),
    qtype=st.sampled_from(ALL + ["IQ2_XXS", "Q8_1"]),
    rows=st.integers(0, 3),
    ne0=st.sampled_from([0, 1, 32, 256, 300]),
)
def test_dequantize_untrusted_bytes_only_raises_quant_errors(data, qtype, rows, ne0):
    try:
        out = quant.dequantize(data, qtype, (rows, ne0))
    except QuantError:
        return
    assert out.shape == (rows, ne0)


def test_memory_stays_bounded_by_the_chunk_size():
    import tracemalloc

    x = np.ones((4096, 4096), np.float16)  # 32 MiB; 64 MiB as float32
    quant.quantize(x[:1], "Q4_K")  # JIT/cache load outside the measurement
    tracemalloc.start()
    try:
        total = sum(len(p) for p in quant.iter_quantize([x], "Q4_K", threads=2))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 4096 * 16 * 144
    chunk_bytes = codec.CHUNK_VALUES * 4
    assert peak < 2.5 * chunk_bytes, f"peak {peak / 2**20:.0f} MiB"
