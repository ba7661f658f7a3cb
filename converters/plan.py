"""What a converter hands to the writer: ordered metadata and an ordered, lazy tensor list.

The plan holds no file handle of its own beyond the source it reads from; `close()` releases
that. Encoding each chunk to its target ggml type and writing the file is the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType

from converters.lazy import DEFAULT_CHUNK_BYTES, LazyTensor


@dataclass(frozen=True, slots=True)
class MetadataEntry:
    """One GGUF key/value. Arrays of numbers are numpy arrays; arrays of strings, lists of str."""

    key: str
    vtype: GGUFValueType
    value: Any
    subtype: GGUFValueType | None = None


@dataclass(frozen=True, slots=True)
class TensorPlan:
    """One output tensor: GGUF name, ggml-order shape (ne[0] = row length), target type."""

    name: str
    ne: tuple[int, ...]
    ggml_type: GGMLQuantizationType
    data: LazyTensor

    @property
    def nbytes(self) -> int:
        block, size = GGML_QUANT_SIZES[self.ggml_type]
        return self.data.n_elements // block * size

    def chunks(self, max_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[np.ndarray]:
        """The data as float row blocks, (rows, ne[0]), in file order."""
        return self.data.chunks(max_bytes)


@dataclass
class ConversionPlan:
    architecture: str  # the GGUF architecture name, e.g. "llama"
    hf_architecture: str  # config.json's, e.g. "LlamaForCausalLM"
    file_type: LlamaFileType
    metadata: list[MetadataEntry]
    tensors: list[TensorPlan]
    default_stem: str  # llama.cpp's default output name without ".gguf"
    source_bytes: int = 0
    _close: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def output_type_name(self) -> str:
        """"F16", "BF16", "Q8_0", "F32": what llama.cpp puts in file names."""
        return "F32" if self.file_type == LlamaFileType.ALL_F32 else self.file_type.name.partition("_")[2]

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> ConversionPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
