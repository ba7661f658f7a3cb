"""The SafeTensors reader: header validation, shard indexing and order, row reads."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from converters.errors import ConversionError, ModelFolderError, SafetensorsError
from converters.source import ModelSource, SafetensorsFile, parse_header
from tests.converters.synth import save_safetensors


def _file(header: object, data: bytes = b"", *, raw_header: bytes | None = None) -> bytes:
    head = raw_header if raw_header is not None else json.dumps(header).encode()
    return len(head).to_bytes(8, "little") + head + data


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F16", "shape": [2, 2], "data_offsets": [8, 16]},
        "__metadata__": {"format": "pt"}}


def test_valid_header() -> None:
    buf = _file(GOOD, bytes(16))
    entries = parse_header(buf, len(buf))
    assert sorted(entries) == ["a", "b"]
    data_start = len(buf) - 16  # offsets in the header are relative to the data section
    assert entries["b"].shape == (2, 2) and entries["b"].start == data_start + 8


BAD_CASES = [
    ("too short", b"\x01\x02", "shorter than"),
    ("header past EOF", (10**6).to_bytes(8, "little") + b"{}", "past the end of the file"),
    ("huge header length", (2**63).to_bytes(8, "little"), "limit"),
    ("invalid json", _file(None, raw_header=b"{not json"), "not valid JSON"),
    ("invalid utf-8", _file(None, raw_header=b"\xff\xfe"), "not valid JSON"),
    ("not an object", _file([1, 2]), "not a JSON object"),
    ("entry not an object", _file({"a": 3}), "is not an object"),
    ("unknown dtype", _file({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, bytes(16)),
     "unknown dtype"),
    ("negative dim", _file({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)),
     "invalid shape"),
    ("bool dim", _file({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, bytes(4)),
     "invalid shape"),
    ("offsets reversed", _file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, bytes(4)),
     "invalid data_offsets"),
    ("out of range", _file({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)),
     "past the end"),
    ("size mismatch", _file({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)),
     "do not fit"),
    ("overlap", _file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)),
     "overlap"),
    ("bad metadata", _file({"__metadata__": [1]}), "__metadata__"),
]


@pytest.mark.parametrize(("label", "buf", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_headers(label: str, buf: bytes, message: str) -> None:
    with pytest.raises(SafetensorsError, match=message):
        parse_header(buf, len(buf))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_our_error(buf: bytes) -> None:
    with contextlib.suppress(SafetensorsError):
        parse_header(buf, len(buf))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=20,
)
_entries = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "I8", "X", 5]) | _json_values,
    "shape": st.lists(st.integers(-2, 5), max_size=3) | _json_values,
    "data_offsets": st.lists(st.integers(-4, 64), min_size=0, max_size=3) | _json_values,
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=5), _entries | _json_values, max_size=5), st.integers(0, 64))
def test_structured_headers_only_raise_our_error(header: dict, n_data: int) -> None:
    buf = _file(header, bytes(n_data))
    try:
        entries = parse_header(buf, len(buf))
    except SafetensorsError:
        return
    for e in entries.values():  # whatever is accepted is in bounds
        assert e.start >= 0 and e.start + e.nbytes <= len(buf)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rows_match_safetensors(tmp_path: Path, dtype: type) -> None:
    arr = np.arange(5 * 7, dtype=np.float32).reshape(5, 7).astype(dtype) / 3
    save_file({"w": arr, "v": arr[0].copy()}, str(tmp_path / "model.safetensors"))
    f = SafetensorsFile(tmp_path / "model.safetensors")
    src = ModelSource(tmp_path)
    t = src.tensors["w"]
    assert t.n_rows == 5 and t.row_len == 7
    np.testing.assert_array_equal(t.read_rows(1, 4), load_file(str(tmp_path / "model.safetensors"))["w"][1:4])
    assert t.read_rows(0, 5).dtype == np.dtype(dtype)
    f.close()
    src.close()


def test_bf16_reads_exactly_as_f32(tmp_path: Path) -> None:
    x = np.array([[1.0, -2.5, 3.140625, 1e-20]], dtype=np.float32)
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)
    save_safetensors(tmp_path / "model.safetensors", {"w": bits})
    with ModelSource(tmp_path) as src:
        got = src.tensors["w"].read_rows(0, 1)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), bits.astype(np.uint32) << 16)


def test_unsupported_dtype_fails_on_read(tmp_path: Path) -> None:
    save_file({"ids": np.arange(4, dtype=np.int64)}, str(tmp_path / "model.safetensors"))
    with ModelSource(tmp_path) as src, pytest.raises(SafetensorsError, match="dtype I64"):
        src.tensors["ids"].read_rows(0, 1)


def _sharded(tmp_path: Path) -> Path:
    save_file({"b.x": np.ones(2, np.float32), "a.layers.10": np.ones(2, np.float32)},
              str(tmp_path / "model-00002-of-00002.safetensors"))
    save_file({"z": np.ones(2, np.float32), "a.layers.2": np.ones(2, np.float32)},
              str(tmp_path / "model-00001-of-00002.safetensors"))
    wm = {"b.x": "model-00002-of-00002.safetensors", "a.layers.10": "model-00002-of-00002.safetensors",
          "z": "model-00001-of-00002.safetensors", "a.layers.2": "model-00001-of-00002.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    return tmp_path


def test_shard_and_name_order_follow_llama_cpp(tmp_path: Path) -> None:
    with ModelSource(_sharded(tmp_path)) as src:
        # shards in file-name order; names sorted as str inside each shard
        assert list(src.tensors) == ["a.layers.2", "z", "a.layers.10", "b.x"]


def test_index_missing_shard(tmp_path: Path) -> None:
    _sharded(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ModelFolderError, match="missing or incomplete model files"):
        ModelSource(tmp_path)


def test_index_lists_missing_tensor(tmp_path: Path) -> None:
    _sharded(tmp_path)
    idx = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    idx["weight_map"]["ghost"] = "model-00001-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(SafetensorsError, match="missing from"):
        ModelSource(tmp_path)


def test_index_escaping_path_refused(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../x.safetensors"}}))
    with pytest.raises(SafetensorsError, match="plain file name"):
        ModelSource(tmp_path)


def test_pickle_only_folder(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(ModelFolderError, match="SafeTensors only"):
        ModelSource(tmp_path)


def test_symlinked_shard_is_followed(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    save_file({"w": np.ones((2, 2), np.float32)}, str(blobs / "abc123"))
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "model.safetensors").symlink_to(blobs / "abc123")
    with ModelSource(snap) as src:
        assert src.tensors["w"].read_rows(0, 2).sum() == 4


def test_errors_are_one_family() -> None:
    assert issubclass(SafetensorsError, ConversionError)
    assert issubclass(ModelFolderError, ConversionError)
