"""A streaming GGUF writer.

The header (metadata and tensor infos) is written first, then each tensor's data in order,
one tensor (or one chunk of rows) at a time, so memory is bounded by the largest chunk. The
file appears under its name only when every tensor was written with its exact size.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
from gguf import GGUFValueType

from ggtool.atomic import atomic_output
from ggtool.errors import GgtoolError
from ggtool.gguf_io.model import (
    DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    NUMPY_DTYPES,
    SCALAR_FORMATS,
    KVEntry,
    tensor_nbytes,
)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A tensor to write: name, shape in ggml order (ne[0] = row length) and ggml type."""

    name: str
    ne: tuple[int, ...]
    ggml_type: int

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.ggml_type, self.ne)


def _encode_string(s: str) -> bytes:
    raw = s.encode("utf-8", errors="surrogateescape")
    return struct.pack("<Q", len(raw)) + raw


def encode_value(vtype: GGUFValueType, value: Any, subtype: GGUFValueType | None = None) -> bytes:
    """The bytes of one metadata value (without key and type)."""
    if vtype == GGUFValueType.STRING:
        return _encode_string(value)
    if vtype == GGUFValueType.ARRAY:
        if subtype is None:
            raise ValueError("array metadata needs an element type")
        head = struct.pack("<iQ", int(subtype), len(value))
        if subtype == GGUFValueType.STRING:
            return head + b"".join(_encode_string(s) for s in value)
        if subtype == GGUFValueType.ARRAY:
            raise ValueError("nested arrays are not supported")
        arr = np.asarray(value, dtype=np.dtype(NUMPY_DTYPES[subtype]))
        return head + arr.tobytes()
    return struct.pack(SCALAR_FORMATS[vtype], value)


def encode_kv(entry: KVEntry) -> bytes:
    return _encode_string(entry.key) + struct.pack("<i", int(entry.vtype)) + encode_value(
        entry.vtype, entry.value, entry.subtype
    )


def _pad(n: int, alignment: int) -> int:
    return -n % alignment


def build_header(
    kv: Sequence[KVEntry],
    tensors: Sequence[TensorSpec],
    alignment: int = DEFAULT_ALIGNMENT,
    version: int = 3,
) -> tuple[bytes, list[int]]:
    """The header bytes (padded to the data start) and each tensor's data offset."""
    parts = [GGUF_MAGIC, struct.pack("<IqQ", version, len(tensors), len(kv))]
    seen: set[str] = set()
    for e in kv:
        if e.key in seen:
            raise GgtoolError(f"duplicate metadata key {e.key!r}")
        seen.add(e.key)
        parts.append(encode_kv(e))
    offsets: list[int] = []
    offset = 0
    names: set[str] = set()
    for t in tensors:
        if t.name in names:
            raise GgtoolError(f"duplicate tensor name {t.name!r}")
        names.add(t.name)
        parts.append(_encode_string(t.name))
        parts.append(struct.pack("<I", len(t.ne)))
        parts.append(struct.pack(f"<{len(t.ne)}q", *t.ne))
        parts.append(struct.pack("<iQ", int(t.ggml_type), offset))
        offsets.append(offset)
        offset += t.nbytes + _pad(t.nbytes, alignment)
    header = b"".join(parts)
    return header + b"\0" * _pad(len(header), alignment), offsets


class GGUFStreamWriter:
    """Use as a context manager; call `write_tensor` once per tensor, in header order."""

    def __init__(
        self,
        path: str | Path,
        kv: Sequence[KVEntry],
        tensors: Sequence[TensorSpec],
        *,
        alignment: int = DEFAULT_ALIGNMENT,
        version: int = 3,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.kv = list(kv)
        self.tensors = list(tensors)
        self.alignment = alignment
        self.version = version
        self.overwrite = overwrite
        self._header, self._offsets = build_header(self.kv, self.tensors, alignment, version)
        self._next = 0
        self._ctx: contextlib.AbstractContextManager[BinaryIO] | None = None
        self._f: BinaryIO | None = None
        self.bytes_written = 0

    @property
    def total_size(self) -> int:
        last = self.tensors[-1] if self.tensors else None
        data = (self._offsets[-1] + last.nbytes + _pad(last.nbytes, self.alignment)) if last else 0
        return len(self._header) + data

    def __enter__(self) -> GGUFStreamWriter:
        if self.path.exists() and not self.overwrite:
            raise GgtoolError(f"{self.path} already exists", hint="pass --force to overwrite it")
        self._ctx = atomic_output(self.path)
        self._f = self._ctx.__enter__()
        self._f.write(self._header)
        self.bytes_written = len(self._header)
        return self

    def write_tensor(self, name: str, data: bytes | memoryview | np.ndarray | Iterable[Any]) -> None:
        """Write the next tensor's data: one buffer, or an iterable of chunks (bytes/arrays)."""
        assert self._f is not None, "use GGUFStreamWriter as a context manager"
        if self._next >= len(self.tensors):
            raise GgtoolError(f"tensor {name!r} was not declared in the header")
        spec = self.tensors[self._next]
        if spec.name != name:
            raise GgtoolError(f"tensor {name!r} written out of order (expected {spec.name!r})")
        chunks: Iterable[Any]
        chunks = [data] if isinstance(data, bytes | bytearray | memoryview | np.ndarray) else data
        n = 0
        for chunk in chunks:
            buf = memoryview(chunk.tobytes() if isinstance(chunk, np.ndarray) and not chunk.flags.c_contiguous else chunk).cast("B")
            self._f.write(buf)
            n += buf.nbytes
        if n != spec.nbytes:
            raise GgtoolError(f"tensor {name!r}: wrote {n} bytes, its type and shape need {spec.nbytes}")
        pad = _pad(n, self.alignment)
        self._f.write(b"\0" * pad)
        self.bytes_written += n + pad
        self._next += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._ctx is not None
        if exc_type is None and self._next != len(self.tensors):
            missing = self.tensors[self._next].name
            err = GgtoolError(f"GGUF output incomplete: tensor {missing!r} was never written")
            self._ctx.__exit__(type(err), err, None)
            raise err
        self._ctx.__exit__(exc_type, exc, tb)
