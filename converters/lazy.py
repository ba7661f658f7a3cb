"""Lazy tensors: a shape, a dtype and a function that produces any range of rows.

The transforms llama.cpp's converter applies (the Q/K row permutation, Gemma's `+1` on norms,
cutting out-of-vocabulary embedding rows) are all row-local, so they compose as lazy wrappers
and a tensor is only ever materialised one chunk of rows at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

RowReader = Callable[[int, int], np.ndarray]

DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LazyTensor:
    """`shape` is numpy order; rows are the tensor viewed as 2-D (n_rows, shape[-1])."""

    shape: tuple[int, ...]
    dtype: np.dtype  # float32 or float16: what the rows come out as
    read: RowReader  # read(start, stop) -> (stop - start, row_len) array
    source_dtype: str = "F32"  # the checkpoint's dtype (drives --outtype auto)

    @property
    def n_rows(self) -> int:
        return math.prod(self.shape[:-1]) if len(self.shape) > 1 else 1

    @property
    def row_len(self) -> int:
        return self.shape[-1] if self.shape else 1

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.read(start, stop)

    def materialize(self) -> np.ndarray:
        return self.read(0, self.n_rows).reshape(self.shape)

    def chunk_rows(self, max_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
        row_bytes = max(1, self.row_len * 4)
        return max(1, min(self.n_rows, max_bytes // row_bytes))

    def chunks(self, max_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[np.ndarray]:
        """Consecutive row blocks of at most ~max_bytes (as float32) each."""
        step = self.chunk_rows(max_bytes)
        for a in range(0, self.n_rows, step):
            yield self.read(a, min(a + step, self.n_rows))

    # -- transforms ---------------------------------------------------------------------
    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> LazyTensor:
        """Apply an elementwise function to every chunk (computed in the tensor's dtype)."""
        src = self.read
        return LazyTensor(self.shape, self.dtype, lambda a, b: fn(src(a, b)), self.source_dtype)

    def take_rows(self, index: np.ndarray) -> LazyTensor:
        """Output row i is input row index[i] (a permutation or a selection)."""
        src = self.read
        index = np.asarray(index, dtype=np.int64)

        def read(a: int, b: int) -> np.ndarray:
            idx = index[a:b]
            if len(idx) == 0:
                return src(0, 0)
            lo, hi = int(idx.min()), int(idx.max()) + 1
            return src(lo, hi)[idx - lo]

        shape = (len(index), *self.shape[1:]) if len(self.shape) > 1 else (len(index),)
        return LazyTensor(shape, self.dtype, read, self.source_dtype)

    def head_rows(self, n: int) -> LazyTensor:
        """The first n rows (n <= n_rows)."""
        n = min(n, self.shape[0])
        if len(self.shape) != 2:
            raise ValueError("head_rows needs a 2-D tensor")
        return LazyTensor((n, self.shape[1]), self.dtype, self.read, self.source_dtype)


def from_array(arr: np.ndarray, source_dtype: str = "F32") -> LazyTensor:
    """A lazy view of an in-memory array (generated tensors such as rope_freqs)."""
    arr = np.ascontiguousarray(arr)
    flat = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr.reshape(1, -1)
    return LazyTensor(tuple(arr.shape), arr.dtype, lambda a, b: flat[a:b], source_dtype)


def permute_qk_index(n_rows: int, n_head: int) -> np.ndarray:
    """Row order of llama.cpp's `permute(w, n_head)` for interleaved-pair ("normal") RoPE.

    `w.reshape(n_head, 2, rows // n_head // 2, ...).swapaxes(1, 2).reshape(w.shape)` moves rows
    only; this returns, for every output row, the input row it comes from.
    """
    half = n_rows // n_head // 2
    return np.arange(n_rows).reshape(n_head, 2, half).swapaxes(1, 2).reshape(-1)
