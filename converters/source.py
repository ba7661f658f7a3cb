"""Lazy SafeTensors reading over one or many shards.

The header of every shard is parsed and validated up front (so a corrupt file fails before a
single tensor is converted); tensor data is read only when asked for, with `os.pread` into a
fresh buffer. Nothing is memory-mapped, so resident memory stays at the chunk being converted
and the kernel's page cache (which `/usr/bin/time` does not count) holds the rest.

Tensor order follows llama.cpp's converter: shards in sorted file-name order, and inside each
shard the tensors sorted by name (plain `str` order, so `layers.10` comes before `layers.2`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ModelFolderError, SafetensorsError

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
INDEX_NAME = "model.safetensors.index.json"

# bytes per element of every dtype the safetensors format defines
DTYPE_SIZES: dict[str, float] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
    "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75,
}
# the dtypes we can turn into float arrays (what llama.cpp's converter meets in practice)
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor as a shard's header describes it. Offsets are absolute file offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    nbytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


def _fail(path: str, what: str) -> SafetensorsError:
    return SafetensorsError(f"{path}: not a valid SafeTensors file: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_header(head: bytes, file_size: int, path: str = "<bytes>") -> dict[str, TensorEntry]:
    """Validate a shard's header. `head` holds (at least) the first 8 + header-length bytes.

    Raises SafetensorsError for anything that is not a well-formed, in-bounds, non-overlapping
    tensor table; never anything else.
    """
    if len(head) < 8 or file_size < 8:
        raise _fail(path, "shorter than the 8-byte header length")
    n = int.from_bytes(head[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise _fail(path, f"header length {n} is larger than the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > file_size or 8 + n > len(head):
        raise _fail(path, f"header length {n} runs past the end of the file (truncated download?)")
    try:
        meta = json.loads(bytes(head[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _fail(path, f"header is not valid JSON ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise _fail(path, "header is not a JSON object")
    data_start = 8 + n
    data_size = file_size - data_start
    entries: dict[str, TensorEntry] = {}
    for name, info in meta.items():
        if name == "__metadata__":
            if info is not None and not isinstance(info, dict):
                raise _fail(path, "__metadata__ is not an object")
            continue
        shown = name[:60]
        if not isinstance(info, dict):
            raise _fail(path, f"entry {shown!r} is not an object")
        dtype = info.get("dtype")
        shape = info.get("shape")
        offsets = info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise _fail(path, f"tensor {shown!r} has unknown dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise _fail(path, f"tensor {shown!r} has an invalid shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise _fail(path, f"tensor {shown!r} has invalid data_offsets")
        start, end = offsets
        if end > data_size:
            raise _fail(path, f"tensor {shown!r} data ends past the end of the file (truncated?)")
        want = math.prod(shape) * DTYPE_SIZES[dtype]
        if want != end - start:
            raise _fail(
                path, f"tensor {shown!r}: {end - start} data bytes do not fit {dtype} shape {shape}"
            )
        entries[name] = TensorEntry(name, dtype, tuple(shape), data_start + start, end - start)
    spans = sorted((e.start, e.start + e.nbytes, e.name) for e in entries.values() if e.nbytes)
    for (_, a_end, a), (b_start, _, b) in zip(spans, spans[1:], strict=False):
        if b_start < a_end:
            raise _fail(path, f"tensors {a[:60]!r} and {b[:60]!r} overlap")
    return entries


class SafetensorsFile:
    """One shard: its validated header, and `pread` access to its data."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        try:
            fd = os.open(path, os.O_RDONLY)  # follows symlinks (Hugging Face cache snapshots)
        except FileNotFoundError:
            raise ModelFolderError(f"{path}: no such file") from None
        except OSError as e:
            raise SafetensorsError(f"{path}: cannot open: {e.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            first = os.pread(fd, 8, 0)
            n = int.from_bytes(first, "little") if len(first) == 8 else 0
            head = first + (os.pread(fd, n, 8) if 0 < n <= min(MAX_HEADER_BYTES, size) else b"")
            self.tensors = parse_header(head, size, str(path))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.size = size

    def read(self, start: int, nbytes: int) -> np.ndarray:
        """`nbytes` raw bytes from absolute offset `start`, as a fresh uint8 array."""
        if self._fd is None:
            raise SafetensorsError(f"{self.path}: file is closed")
        buf = np.empty(nbytes, dtype=np.uint8)
        view = memoryview(buf)
        done = 0
        while done < nbytes:
            got = os.preadv(self._fd, [view[done:]], start + done)
            if got <= 0:
                raise SafetensorsError(f"{self.path}: file shrank while reading (truncated?)")
            done += got
        return buf

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True, slots=True)
class SourceTensor:
    """A tensor in a checkpoint: where it lives, and row-wise readers for its data."""

    entry: TensorEntry
    file: SafetensorsFile

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def dtype(self) -> str:
        return self.entry.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.entry.shape

    @property
    def n_rows(self) -> int:
        """Rows of the tensor viewed as 2-D (leading dims flattened; 1-D = one row)."""
        return math.prod(self.shape[:-1]) if len(self.shape) > 1 else 1

    @property
    def row_len(self) -> int:
        return self.shape[-1] if self.shape else 1

    def float_dtype(self) -> np.dtype:
        """The dtype llama.cpp's converter computes in: f16 stays f16, everything else f32."""
        if self.dtype not in FLOAT_DTYPES:
            raise SafetensorsError(
                f"{self.file.path}: tensor {self.name!r} has dtype {self.dtype}; only "
                f"{', '.join(FLOAT_DTYPES)} weights can be converted"
            )
        return np.dtype(np.float16 if self.dtype == "F16" else np.float32)

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a 2-D float array (f16 for F16 tensors, else exact f32)."""
        out_dtype = self.float_dtype()
        item = int(DTYPE_SIZES[self.dtype])
        row_bytes = self.row_len * item
        raw = self.file.read(self.entry.start + start * row_bytes, (stop - start) * row_bytes)
        if self.dtype == "BF16":
            # bf16 -> f32 is exact: the bf16 bits are the top half of the f32 bits
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif self.dtype == "F64":
            arr = raw.view("<f8").astype(np.float32)
        else:
            arr = raw.view("<f2" if self.dtype == "F16" else "<f4").astype(out_dtype, copy=False)
        return arr.reshape(stop - start, self.row_len)


def _is_plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def part_names(model_dir: Path) -> tuple[list[str], dict[str, str] | None]:
    """The safetensors shards to read, in llama.cpp's order, and the index's weight map if any."""
    index_path = model_dir / INDEX_NAME
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise SafetensorsError(f"{index_path}: not valid JSON ({e})") from None
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
        ):
            raise SafetensorsError(f"{index_path}: has no valid 'weight_map' object")
        parts = sorted(set(weight_map.values()))
        bad = [p for p in parts if not _is_plain_name(p)]
        if bad:
            raise SafetensorsError(f"{index_path}: shard name {bad[0]!r} is not a plain file name")
        missing = [p for p in parts if not (model_dir / p).is_file()]
        if missing:
            raise ModelFolderError(
                f"{model_dir}: missing or incomplete model files: {', '.join(missing)}"
            )
        return parts, weight_map
    parts = sorted(
        f for f in os.listdir(model_dir) if f.startswith("model") and f.endswith(".safetensors")
    )
    if not parts:
        if any(f.startswith("pytorch_model") and f.endswith(".bin") for f in os.listdir(model_dir)):
            raise ModelFolderError(
                f"{model_dir}: only pytorch_model*.bin weights found; ggtool reads SafeTensors only "
                "(pickle files can run code). Convert them with "
                "`transformers` save_pretrained(safe_serialization=True) first"
            )
        raise ModelFolderError(f"{model_dir}: no model*.safetensors weights found")
    return parts, None


class ModelSource:
    """Every tensor of a checkpoint folder, indexed but not read."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.files: list[SafetensorsFile] = []
        self.tensors: dict[str, SourceTensor] = {}
        parts, weight_map = part_names(model_dir)
        try:
            for part in parts:
                f = SafetensorsFile(model_dir / part)
                self.files.append(f)
                for name in sorted(f.tensors):
                    if name in self.tensors:
                        raise SafetensorsError(
                            f"{model_dir}: tensor {name!r} is in both "
                            f"{self.tensors[name].file.path.name} and {part}"
                        )
                    self.tensors[name] = SourceTensor(f.tensors[name], f)
            if weight_map is not None:
                self._check_index(weight_map)
        except BaseException:
            self.close()
            raise

    def _check_index(self, weight_map: dict[str, str]) -> None:
        missing = sorted(set(weight_map) - set(self.tensors))
        extra = sorted(set(self.tensors) - set(weight_map))
        if missing or extra:
            parts = []
            if missing:
                files = sorted({weight_map[n] for n in missing})
                parts.append(f"{len(missing)} tensor(s) listed in the index are missing from "
                             f"{', '.join(files)} (first: {missing[0]!r})")
            if extra:
                parts.append(f"{len(extra)} tensor(s) are not in the index (first: {extra[0]!r})")
            raise SafetensorsError(f"{self.model_dir / INDEX_NAME}: " + "; ".join(parts))

    def __iter__(self) -> Iterator[SourceTensor]:
        return iter(self.tensors.values())

    @property
    def total_bytes(self) -> int:
        return sum(t.entry.nbytes for t in self.tensors.values())

    def close(self) -> None:
        for f in self.files:
            f.close()

    def __enter__(self) -> ModelSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
