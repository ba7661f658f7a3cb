"""A validating, memory-mapped GGUF reader.

Everything in the header is checked before it is trusted (magic, version, counts, string and
array lengths, value types, tensor dims, types, offsets, alignment and overlaps), so a
truncated or malicious file fails with one `InvalidFileError`. Tensor data is never read
until asked for: the reader maps the file and hands out views.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from ggtool.errors import InvalidFileError, NotFoundError
from ggtool.gguf_io.model import (
    DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    MAX_DIMS,
    NUMPY_DTYPES,
    SCALAR_FORMATS,
    KVEntry,
    TensorInfo,
    tensor_nbytes,
)

_INT64_MAX = 2**63 - 1
_VALID_VALUE_TYPES = {int(t) for t in GGUFValueType}
_VALID_GGML_TYPES = {int(t) for t in GGML_QUANT_SIZES}


class _Cursor:
    """Bounds-checked little-endian reads over a buffer."""

    def __init__(self, buf: memoryview | bytes, path: str) -> None:
        self.buf = buf
        self.pos = 0
        self.size = len(buf)
        self.path = path

    def fail(self, what: str) -> InvalidFileError:
        return InvalidFileError(f"{self.path}: not a valid GGUF file: {what} (at byte {self.pos})")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"truncated while reading {what}")

    def scalar(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def u32(self, what: str) -> int:
        return int(self.scalar("<I", what))

    def i32(self, what: str) -> int:
        return int(self.scalar("<i", what))

    def u64(self, what: str) -> int:
        return int(self.scalar("<Q", what))

    def i64(self, what: str) -> int:
        return int(self.scalar("<q", what))

    def string(self, what: str) -> str:
        n = self.u64(f"{what} length")
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        # surrogateescape keeps invalid UTF-8 (seen in some vocabularies) round-trippable
        return raw.decode("utf-8", errors="surrogateescape")

    def array(self, elem_type: int, n: int, what: str) -> Any:
        if elem_type == GGUFValueType.STRING:
            # every string needs at least its 8-byte length: bound n before looping
            if n > (self.size - self.pos) // 8:
                raise self.fail(f"{what}: {n} strings cannot fit in the file")
            return [self.string(what) for _ in range(n)]
        vt = GGUFValueType(elem_type)
        dtype = np.dtype(NUMPY_DTYPES[vt])
        nbytes = n * dtype.itemsize
        self.need(nbytes, what)
        arr = np.frombuffer(self.buf, dtype=dtype, count=n, offset=self.pos).copy()
        self.pos += nbytes
        if vt == GGUFValueType.BOOL:
            arr = arr.astype(bool)
        return arr


def _parse_value(cur: _Cursor, vtype: int, key: str) -> tuple[Any, GGUFValueType | None]:
    if vtype not in _VALID_VALUE_TYPES:
        raise cur.fail(f"metadata {key!r} has unknown value type {vtype}")
    vt = GGUFValueType(vtype)
    if vt == GGUFValueType.STRING:
        return cur.string(f"metadata {key!r}"), None
    if vt == GGUFValueType.ARRAY:
        elem = cur.i32(f"metadata {key!r} array type")
        if elem not in _VALID_VALUE_TYPES:
            raise cur.fail(f"metadata {key!r} array has unknown element type {elem}")
        if elem == GGUFValueType.ARRAY:
            raise cur.fail(f"metadata {key!r}: nested arrays are not supported")
        n = cur.u64(f"metadata {key!r} array length")
        return cur.array(elem, n, f"metadata {key!r}"), GGUFValueType(elem)
    v = cur.scalar(SCALAR_FORMATS[vt], f"metadata {key!r}")
    if vt == GGUFValueType.BOOL:
        raw = cur.buf[cur.pos - 1]
        if raw not in (0, 1):
            raise cur.fail(f"metadata {key!r}: bool value {raw} is not 0 or 1")
    return v, None


class GGUFFile:
    """A parsed GGUF header over a read-only memory map of the file."""

    def __init__(
        self,
        path: Path,
        version: int,
        kv: dict[str, KVEntry],
        tensors: list[TensorInfo],
        alignment: int,
        data_offset: int,
        file_size: int,
        mm: mmap.mmap | None,
    ) -> None:
        self.path = path
        self.version = version
        self.kv = kv
        self.tensors = tensors
        self.alignment = alignment
        self.data_offset = data_offset
        self.file_size = file_size
        self._mm = mm
        self._by_name = {t.name: t for t in tensors}

    # -- metadata helpers ---------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        e = self.kv.get(key)
        return default if e is None else e.python_value()

    @property
    def architecture(self) -> str | None:
        v = self.get("general.architecture")
        return v if isinstance(v, str) else None

    def tensor(self, name: str) -> TensorInfo:
        return self._by_name[name]

    # -- tensor data --------------------------------------------------------------------
    def tensor_bytes(self, t: TensorInfo) -> memoryview:
        """A zero-copy view of a tensor's raw bytes."""
        if self._mm is None:
            raise InvalidFileError(f"{self.path}: file is closed")
        start = self.data_offset + t.offset
        return memoryview(self._mm)[start : start + t.nbytes]

    def tensor_array(self, t: TensorInfo) -> np.ndarray:
        """The tensor as a numpy array: typed for F32/F16/BF16-as-uint16/ints, else raw uint8 rows."""
        raw = self.tensor_bytes(t)
        simple = {
            GGMLQuantizationType.F32: np.float32,
            GGMLQuantizationType.F16: np.float16,
            GGMLQuantizationType.BF16: np.uint16,
            GGMLQuantizationType.F64: np.float64,
            GGMLQuantizationType.I8: np.int8,
            GGMLQuantizationType.I16: np.int16,
            GGMLQuantizationType.I32: np.int32,
            GGMLQuantizationType.I64: np.int64,
        }
        dtype = simple.get(GGMLQuantizationType(t.ggml_type))
        if dtype is not None:
            return np.frombuffer(raw, dtype=dtype).reshape(t.shape)
        rows = math.prod(t.ne[1:]) if len(t.ne) > 1 else 1
        return np.frombuffer(raw, dtype=np.uint8).reshape(rows, -1)

    def release_pages(self, t: TensorInfo) -> None:
        """Tell the kernel we are done with a tensor's pages (keeps RSS bounded when streaming)."""
        if self._mm is None or t.nbytes == 0:
            return
        page = mmap.PAGESIZE
        start = (self.data_offset + t.offset) // page * page
        end = self.data_offset + t.offset + t.nbytes
        with contextlib.suppress(AttributeError, OSError, ValueError):
            self._mm.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        if self._mm is not None:
            # BufferError: a numpy view is still alive; the map is freed with it
            with contextlib.suppress(BufferError):
                self._mm.close()
            self._mm = None

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iter_tensors(self) -> Iterator[TensorInfo]:
        return iter(self.tensors)


def parse_gguf_header(buf: memoryview | bytes, path: str = "<bytes>") -> tuple[
    int, dict[str, KVEntry], list[TensorInfo], int, int
]:
    """Parse and validate a GGUF header from a buffer holding the whole file.

    Returns (version, kv, tensors, alignment, data_offset).
    """
    cur = _Cursor(buf, path)
    cur.need(4, "magic")
    magic = bytes(buf[0:4])
    if magic != GGUF_MAGIC:
        raise cur.fail(f"bad magic {magic!r}, expected b'GGUF'")
    cur.pos = 4
    version = cur.u32("version")
    if version in (0x02000000, 0x03000000):
        raise cur.fail("big-endian GGUF files are not supported")
    if version == 1:
        raise cur.fail("GGUF version 1 is obsolete; reconvert the model")
    if version not in (2, 3):
        raise cur.fail(f"unsupported GGUF version {version}")
    n_tensors = cur.i64("tensor count")
    n_kv = cur.i64("metadata count")
    remaining = cur.size - cur.pos
    # each kv needs >= 8+4 bytes, each tensor info >= 8+4+8+4+8 bytes
    if n_kv < 0 or n_kv * 12 > remaining:
        raise cur.fail(f"metadata count {n_kv} is impossible for the file size")
    if n_tensors < 0 or n_tensors * 32 > remaining:
        raise cur.fail(f"tensor count {n_tensors} is impossible for the file size")

    kv: dict[str, KVEntry] = {}
    for _ in range(n_kv):
        key = cur.string("metadata key")
        if key in kv:
            raise cur.fail(f"duplicate metadata key {key!r}")
        vtype = cur.i32(f"metadata {key!r} type")
        value, sub = _parse_value(cur, vtype, key)
        kv[key] = KVEntry(key, GGUFValueType(vtype), value, sub)

    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in kv:
        e = kv["general.alignment"]
        if e.vtype != GGUFValueType.UINT32:
            raise cur.fail("general.alignment must be a uint32")
        alignment = int(e.value)
        if alignment <= 0 or alignment & (alignment - 1):
            raise cur.fail(f"general.alignment {alignment} is not a power of two")

    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    names: set[str] = set()
    for _ in range(n_tensors):
        name = cur.string("tensor name")
        if name in names:
            raise cur.fail(f"duplicate tensor name {name!r}")
        if len(name.encode("utf-8", errors="surrogateescape")) > 63:
            raise cur.fail(f"tensor name {name[:40]!r}... is longer than 63 bytes")
        names.add(name)
        n_dims = cur.u32(f"tensor {name!r} dims")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"tensor {name!r} has {n_dims} dimensions (1..{MAX_DIMS} allowed)")
        ne = tuple(cur.i64(f"tensor {name!r} shape") for _ in range(n_dims))
        if any(d < 0 for d in ne):
            raise cur.fail(f"tensor {name!r} has a negative dimension {ne}")
        n_el = 1
        for d in ne:
            n_el *= d
            if n_el > _INT64_MAX:
                raise cur.fail(f"tensor {name!r} shape {ne} overflows")
        ggml_type = cur.i32(f"tensor {name!r} type")
        if ggml_type not in _VALID_GGML_TYPES:
            raise cur.fail(f"tensor {name!r} has unknown ggml type {ggml_type}")
        block, _ = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        if ne[0] % block:
            raise cur.fail(
                f"tensor {name!r} row length {ne[0]} is not a multiple of its type's block size {block}"
            )
        offset = cur.u64(f"tensor {name!r} offset")
        if offset % alignment:
            raise cur.fail(f"tensor {name!r} offset {offset} is not aligned to {alignment}")
        infos.append((name, ne, ggml_type, offset))

    data_offset = cur.pos + (-cur.pos % alignment)
    if n_tensors and data_offset > cur.size:
        raise cur.fail("truncated before the tensor data")
    data_size = max(0, cur.size - data_offset)
    tensors: list[TensorInfo] = []
    for name, ne, ggml_type, offset in infos:
        nbytes = tensor_nbytes(ggml_type, ne)
        if offset + nbytes > data_size:
            raise InvalidFileError(
                f"{path}: not a valid GGUF file: tensor {name!r} data ends past the end of the file "
                "(truncated download?)"
            )
        tensors.append(TensorInfo(name, ne, ggml_type, offset, nbytes))
    by_offset = sorted((t for t in tensors if t.nbytes), key=lambda t: t.offset)
    for a, b in zip(by_offset, by_offset[1:], strict=False):
        if a.offset + a.nbytes > b.offset:
            raise InvalidFileError(
                f"{path}: not a valid GGUF file: tensors {a.name!r} and {b.name!r} overlap"
            )
    return version, kv, tensors, alignment, data_offset


def read_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Open and validate a GGUF file without reading its tensor data."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        raise NotFoundError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise InvalidFileError(f"{p}: is a directory, expected a .gguf file") from None
    except PermissionError:
        raise InvalidFileError(f"{p}: permission denied") from None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise InvalidFileError(f"{p}: not a valid GGUF file: the file is empty")
        try:
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise InvalidFileError(f"{p}: cannot map the file: {e}") from None
    finally:
        os.close(fd)
    try:
        view = memoryview(mm)
        try:
            version, kv, tensors, alignment, data_offset = parse_gguf_header(view, str(p))
        finally:
            view.release()
    except BaseException:
        mm.close()
        raise
    return GGUFFile(p, version, kv, tensors, alignment, data_offset, size, mm)
