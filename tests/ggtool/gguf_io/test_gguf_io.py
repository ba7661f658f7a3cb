"""The GGUF reader and writer: round trips, agreement with gguf-py, and hostile input."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggtool.errors import GgtoolError, InvalidFileError, NotFoundError
from ggtool.gguf_io import GGUFStreamWriter, KVEntry, TensorSpec, read_gguf
from ggtool.gguf_io.reader import parse_gguf_header


def _sample_kv() -> list[KVEntry]:
    return [
        KVEntry("general.architecture", V.STRING, "llama"),
        KVEntry("general.name", V.STRING, "tiny ü 模型"),
        KVEntry("llama.block_count", V.UINT32, 2),
        KVEntry("llama.rope.freq_base", V.FLOAT32, 10000.0),
        KVEntry("x.i64", V.INT64, -(2**40)),
        KVEntry("x.f64", V.FLOAT64, 0.1),
        KVEntry("x.bool", V.BOOL, True),
        KVEntry("x.u8", V.UINT8, 255),
        KVEntry("tokenizer.ggml.tokens", V.ARRAY, ["<s>", "a", "", "\u2581b"], V.STRING),
        KVEntry("tokenizer.ggml.scores", V.ARRAY, np.array([0.0, -1.5, 2.0, 3.0], np.float32), V.FLOAT32),
        KVEntry("tokenizer.ggml.token_type", V.ARRAY, np.array([3, 1, 1, 1], np.int32), V.INT32),
        KVEntry("x.empty", V.ARRAY, [], V.STRING),
    ]


def _sample_tensors() -> list[tuple[TensorSpec, np.ndarray]]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 64)).astype(np.float32)
    b = rng.standard_normal((64,)).astype(np.float16)
    c = rng.integers(0, 255, size=(2, 34), dtype=np.uint8)  # 2 rows of one Q8_0 block (32 values)
    return [
        (TensorSpec("blk.0.attn_q.weight", (64, 3), T.F32), a),
        (TensorSpec("blk.0.attn_norm.weight", (64,), T.F16), b),
        (TensorSpec("output.weight", (32, 2), T.Q8_0), c),
    ]


def _write_sample(path: Path, alignment: int = 32) -> list[tuple[TensorSpec, np.ndarray]]:
    tensors = _sample_tensors()
    kv = _sample_kv()
    if alignment != 32:
        kv.append(KVEntry("general.alignment", V.UINT32, alignment))
    with GGUFStreamWriter(path, kv, [t for t, _ in tensors], alignment=alignment) as w:
        for spec, data in tensors:
            w.write_tensor(spec.name, data)
    return tensors


@pytest.mark.parametrize("alignment", [32, 64])
def test_roundtrip(tmp_path: Path, alignment: int) -> None:
    p = tmp_path / "m.gguf"
    tensors = _write_sample(p, alignment)
    with read_gguf(p) as g:
        assert g.version == 3 and g.alignment == alignment
        expected = _sample_kv()
        for e in expected:
            assert g.kv[e.key] == e, e.key
        assert [t.name for t in g.tensors] == [s.name for s, _ in tensors]
        for (spec, data), info in zip(tensors, g.tensors, strict=True):
            assert info.ne == spec.ne and info.ggml_type == spec.ggml_type
            assert info.offset % alignment == 0
            assert bytes(g.tensor_bytes(info)) == data.tobytes()


def test_gguf_py_reads_our_file(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    tensors = _write_sample(p)
    r = gguf.GGUFReader(p)
    assert r.fields["general.name"].contents() == "tiny ü 模型"
    assert r.fields["tokenizer.ggml.tokens"].contents() == ["<s>", "a", "", "\u2581b"]
    for (spec, data), rt in zip(tensors, r.tensors, strict=True):
        assert rt.name == spec.name
        assert bytes(np.asarray(rt.data).tobytes()) == data.tobytes()


def test_we_read_gguf_py_file_and_match_its_bytes(tmp_path: Path) -> None:
    """A file written by gguf-py's GGUFWriter, re-written by us from what we read, is identical."""
    src = tmp_path / "src.gguf"
    w = gguf.GGUFWriter(src, "llama")
    w.add_block_count(2)
    w.add_token_list(["a", "b"])
    w.add_tensor("t", np.arange(64, dtype=np.float32).reshape(2, 32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    dst = tmp_path / "dst.gguf"
    with read_gguf(src) as g:
        specs = [TensorSpec(t.name, t.ne, t.ggml_type) for t in g.tensors]
        with GGUFStreamWriter(dst, list(g.kv.values()), specs) as out:
            for t in g.tensors:
                out.write_tensor(t.name, g.tensor_bytes(t))
    assert dst.read_bytes() == src.read_bytes()


def test_writer_failure_leaves_no_file(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    specs = [t for t, _ in _sample_tensors()]
    with pytest.raises(GgtoolError, match="wrote 3 bytes"), GGUFStreamWriter(p, _sample_kv(), specs) as w:
        w.write_tensor(specs[0].name, b"abc")
    assert list(tmp_path.iterdir()) == []


def test_writer_incomplete_leaves_no_file(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    tensors = _sample_tensors()
    with pytest.raises(GgtoolError, match="never written"), GGUFStreamWriter(
        p, _sample_kv(), [t for t, _ in tensors]
    ) as w:
        w.write_tensor(tensors[0][0].name, tensors[0][1])
    assert list(tmp_path.iterdir()) == []


def test_writer_interrupt_leaves_no_file_and_keeps_existing(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    p.write_bytes(b"old")
    tensors = _sample_tensors()
    with pytest.raises(KeyboardInterrupt), GGUFStreamWriter(
        p, _sample_kv(), [t for t, _ in tensors], overwrite=True
    ):
        raise KeyboardInterrupt
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["m.gguf"]


def test_writer_refuses_overwrite(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    p.write_bytes(b"old")
    with pytest.raises(GgtoolError, match="--force"), GGUFStreamWriter(p, _sample_kv(), []):
        pass


def test_missing_file() -> None:
    with pytest.raises(NotFoundError):
        read_gguf("/nonexistent/x.gguf")


def _valid_bytes(tmp_path: Path) -> bytes:
    p = tmp_path / "v.gguf"
    _write_sample(p)
    return p.read_bytes()


def _header(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<Iqq", version, n_tensors, n_kv)


def _s(x: str) -> bytes:
    return struct.pack("<Q", len(x)) + x.encode()


MALFORMED = [
    ("empty", b"", "empty"),
    ("magic", b"GGML" + b"\0" * 20, "bad magic"),
    ("v1", _header(0, 0, 1), "version 1"),
    ("v4", _header(0, 0, 4), "unsupported GGUF version"),
    ("big endian", b"GGUF" + struct.pack(">I", 3) + b"\0" * 16, "big-endian"),
    ("huge kv count", _header(0, 2**40), "metadata count"),
    ("negative tensors", _header(-1, 0), "tensor count"),
    ("string past end", _header(0, 1) + struct.pack("<Q", 2**50) + b"\0" * 16, "truncated"),
    ("unknown value type", _header(0, 1) + _s("k") + struct.pack("<i", 99), "unknown value type"),
    ("nested array", _header(0, 1) + _s("k") + struct.pack("<iiQ", 9, 9, 1), "nested"),
    ("array past end", _header(0, 1) + _s("k") + struct.pack("<iiQ", 9, 4, 2**40), "truncated"),
    ("string array count", _header(0, 1) + _s("k") + struct.pack("<iiQ", 9, 8, 2**40), "cannot fit"),
    ("bad bool", _header(0, 1) + _s("k") + struct.pack("<iB", 7, 2), "bool"),
    ("dup key", _header(0, 2) + (_s("k") + struct.pack("<iI", 4, 1)) * 2, "duplicate metadata key"),
    (
        "bad alignment",
        _header(0, 1) + _s("general.alignment") + struct.pack("<iI", 4, 3),
        "power of two",
    ),
    (
        "alignment type",
        _header(0, 1) + _s("general.alignment") + struct.pack("<ii", 5, 32),
        "uint32",
    ),
    ("zero dims", _header(1, 0) + _s("t") + struct.pack("<I", 0) + b"\0" * 32, "dimensions"),
    ("5 dims", _header(1, 0) + _s("t") + struct.pack("<I", 5) + b"\0" * 60, "dimensions"),
    ("neg dim", _header(1, 0) + _s("t") + struct.pack("<Iq", 1, -4) + b"\0" * 32, "negative"),
    ("bad type", _header(1, 0) + _s("t") + struct.pack("<IqiQ", 1, 32, 77, 0) + b"\0" * 32, "unknown ggml type"),
    ("block size", _header(1, 0) + _s("t") + struct.pack("<IqiQ", 1, 31, 8, 0) + b"\0" * 64, "block size"),
    ("unaligned", _header(1, 0) + _s("t") + struct.pack("<IqiQ", 1, 8, 0, 4) + b"\0" * 64, "not aligned"),
    ("data past end", _header(1, 0) + _s("t") + struct.pack("<IqiQ", 1, 1024, 0, 0) + b"\0" * 64, "past the end"),
    (
        "overlap",
        _header(2, 0)
        + _s("a") + struct.pack("<IqiQ", 1, 16, 0, 0)
        + _s("b") + struct.pack("<IqiQ", 1, 8, 0, 32)
        + b"\0" * 200,
        "overlap",
    ),
    ("dup tensor", _header(2, 0) + (_s("a") + struct.pack("<IqiQ", 1, 8, 0, 0)) * 2 + b"\0" * 64, "duplicate tensor"),
    ("long name", _header(1, 0) + _s("n" * 64) + struct.pack("<IqiQ", 1, 8, 0, 0) + b"\0" * 64, "longer than 63"),
]


@pytest.mark.parametrize(("case", "data", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed(tmp_path: Path, case: str, data: bytes, message: str) -> None:
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    with pytest.raises(InvalidFileError, match=message):
        read_gguf(p)


def test_every_truncation_is_a_clear_error(tmp_path: Path) -> None:
    data = _valid_bytes(tmp_path)
    with read_gguf(tmp_path / "v.gguf") as g:
        header_end = g.data_offset
        last = g.tensors[-1]
        data_end = g.data_offset + last.offset + last.nbytes
    assert len(data) >= data_end
    for n in [*range(0, header_end + 1), data_end - 1]:
        if n == header_end:
            continue  # a header with all tensor data cut is checked below
        with pytest.raises(InvalidFileError):
            parse_gguf_header(data[:n])
    with pytest.raises(InvalidFileError, match="past the end"):
        parse_gguf_header(data[:header_end])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(InvalidFileError):
        parse_gguf_header(b"GGUF" + data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutated_valid_file(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    base = bytearray(_VALID)
    n = data.draw(st.integers(1, 8))
    for _ in range(n):
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(base)))
    with contextlib.suppress(InvalidFileError):
        parse_gguf_header(bytes(base[:cut]))


def _make_valid() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "v.gguf"
        _write_sample(p)
        return p.read_bytes()


_VALID = _make_valid()
