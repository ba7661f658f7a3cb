"""`convert`: a Hugging Face SafeTensors folder -> one GGUF file.

The converter package builds the plan (ordered metadata, lazy tensors); this module picks the
output name, checks the target and the free space, encodes each chunk of rows to its ggml type
and streams it through `GGUFStreamWriter`, which publishes the file only when it is complete.
Chunks are read and encoded by a small thread pool, a bounded window ahead of the writer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType as QT

from ggtool.errors import GgtoolError, UsageError
from ggtool.events import ProgressCallback, ProgressEvent, no_progress
from ggtool.gguf_io import GGUFStreamWriter, KVEntry, TensorSpec

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "auto")
CHUNK_BYTES = 8 * 1024 * 1024  # float32 bytes per chunk of rows
DISK_MARGIN = 64 * 1024 * 1024  # free space kept beyond the file itself


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    sha256: str
    size: int
    architecture: str
    file_type: str
    tensors: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "size": self.size,
                "architecture": self.architecture, "file_type": self.file_type,
                "tensors": self.tensors, "seconds": round(self.seconds, 3)}


def encode(chunk: np.ndarray, ggml_type: QT, threads: int = 1) -> bytes | np.ndarray:
    """Rows of floats -> the bytes of `ggml_type` (F16 as numpy casts it, like llama.cpp's converter)."""
    if ggml_type == QT.F32:
        return np.ascontiguousarray(chunk, dtype=np.float32)
    if ggml_type == QT.F16:
        return np.ascontiguousarray(chunk, dtype=np.float16)
    if ggml_type == QT.BF16:
        return to_bf16(chunk)
    import quant

    return quant.quantize(np.ascontiguousarray(chunk, dtype=np.float32), int(ggml_type), threads=threads)


def to_bf16(chunk: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits: round to nearest even, NaNs made quiet (ggml's and gguf-py's rule)."""
    u = np.ascontiguousarray(chunk, dtype=np.float32).view(np.uint32)
    out = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    if nan.any():
        out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def output_path(plan_stem: str, output: str | os.PathLike[str] | None, cwd: Path | None = None) -> Path:
    """`-o FILE`, `-o DIR` (default name inside), or the default name in the current folder."""
    default = f"{plan_stem}.gguf"
    if output is None:
        return (cwd or Path.cwd()) / default
    out = Path(output)
    if out.is_dir():
        return out / default
    return out


def check_free_space(target: Path, need: int) -> None:
    try:
        free = shutil.disk_usage(target.parent).free
    except OSError as e:
        raise GgtoolError(f"{target.parent}: cannot check free space ({e.strerror})") from None
    if free < need + DISK_MARGIN:
        raise GgtoolError(
            f"not enough disk space in {target.parent}: the output needs {need / 1e6:.1f} MB, "
            f"{free / 1e6:.1f} MB free",
            hint="free some space or choose another folder with --output",
        )


def _kv(plan_metadata: list[Any]) -> list[KVEntry]:
    return [KVEntry(e.key, e.vtype, e.value, e.subtype) for e in plan_metadata]


def _jobs(plan: Any) -> Iterator[tuple[int, int, int]]:
    """(tensor index, first row, end row) for every chunk, in file order (>= 1 per tensor)."""
    for i, t in enumerate(plan.tensors):
        n = t.data.n_rows
        step = t.data.chunk_rows(CHUNK_BYTES)
        for a in range(0, max(n, 1), step):
            yield i, a, min(a + step, n)


def _write_tensors(plan: Any, w: GGUFStreamWriter, threads: int, progress: ProgressCallback) -> None:
    """Read+encode chunks on a pool, a bounded window ahead; write them in order as they finish."""
    total = plan.tensor_bytes
    done = 0
    workers = max(1, threads)

    def work(i: int, a: int, b: int) -> bytes | np.ndarray:
        t = plan.tensors[i]
        return encode(t.data.rows(a, b), t.ggml_type, 1)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convert") as pool:
        pending: deque[tuple[int, Future[bytes | np.ndarray]]] = deque()
        jobs = _jobs(plan)

        def fill() -> None:
            while len(pending) <= workers:
                job = next(jobs, None)
                if job is None:
                    return
                pending.append((job[0], pool.submit(work, *job)))

        def chunks_of(i: int) -> Iterator[bytes | np.ndarray]:
            nonlocal done
            while True:
                fill()
                if not pending or pending[0][0] != i:
                    return
                data = pending.popleft()[1].result()
                done += data.nbytes if isinstance(data, np.ndarray) else len(data)
                progress(ProgressEvent("converting", total=total, completed=min(done, total)))
                yield data

        try:
            for i, t in enumerate(plan.tensors):
                w.write_tensor(t.name, chunks_of(i))
        finally:
            for _, fut in pending:
                fut.cancel()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * 1024 * 1024):
            h.update(block)
    return h.hexdigest()


def convert(
    model_dir: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    outtype: str = "auto",
    model_name: str | None = None,
    metadata: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    force: bool = False,
    quantize: str | None = None,
    progress: ProgressCallback = no_progress,
    cwd: Path | None = None,
) -> ConvertResult:
    """Convert a Hugging Face checkpoint folder to GGUF; returns the written file's facts.

    With `quantize` (a llama.cpp file type such as "q4_k_m") the converter's float32 tensor
    stream goes straight through the quantizer in one pass, and the file equals
    `convert --outtype f32` followed by `quantize TYPE`, byte for byte.
    """
    from converters import plan_conversion

    if quantize is not None:
        return _convert_quantized(model_dir, output, quantize, model_name=model_name,
                                  metadata=metadata, threads=threads, force=force,
                                  progress=progress, cwd=cwd)
    if outtype not in OUTTYPES:
        raise UsageError(f"unknown --outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    start = time.monotonic()
    src = Path(model_dir)
    with plan_conversion(src, outtype, model_name=model_name, metadata_override=metadata) as plan:
        target = output_path(plan.default_stem, output, cwd)
        if target.exists() and not force:
            raise GgtoolError(f"{target} already exists", hint="pass --force to overwrite it")
        if not target.parent.is_dir():
            raise GgtoolError(f"{target.parent}: no such folder")
        kv = _kv(plan.metadata)
        specs = [TensorSpec(t.name, t.ne, int(t.ggml_type)) for t in plan.tensors]
        writer = GGUFStreamWriter(target, kv, specs, overwrite=force)
        check_free_space(target, writer.total_size)
        progress(ProgressEvent(f"converting {src.name} ({plan.hf_architecture}) to {target.name}"))
        with writer as w:
            _write_tensors(plan, w, threads or os.cpu_count() or 1, progress)
        digest = sha256_file(target)
        result = ConvertResult(
            path=target.resolve(), sha256=digest, size=target.stat().st_size,
            architecture=plan.architecture, file_type=plan.output_type_name,
            tensors=len(plan.tensors), seconds=time.monotonic() - start,
        )
    progress(ProgressEvent("success"))
    return result


def _convert_quantized(
    model_dir: str | os.PathLike[str],
    output: str | os.PathLike[str] | None,
    file_type: str,
    *,
    model_name: str | None,
    metadata: str | os.PathLike[str] | None,
    threads: int | None,
    force: bool,
    progress: ProgressCallback,
    cwd: Path | None,
) -> ConvertResult:
    """HF folder -> llama-quantize's file in one streaming pass (no intermediate F32/F16 file)."""
    from converters import plan_conversion
    from ggtool.quantize import QuantizeOptions, plan_quantization, plan_source, write_quantized

    start = time.monotonic()
    src = Path(model_dir)
    with plan_conversion(src, "f32", model_name=model_name, metadata_override=metadata) as plan:
        source = plan_source(plan)
        qplan = plan_quantization(source, QuantizeOptions(file_type, threads=threads))
        stem = plan.default_stem.removesuffix("-" + plan.output_type_name)
        target = output_path(f"{stem}-{qplan.file_type}", output, cwd)
        if target.exists() and not force:
            raise GgtoolError(f"{target} already exists", hint="pass --force to overwrite it")
        if not target.parent.is_dir():
            raise GgtoolError(f"{target.parent}: no such folder")
        check_free_space(target, qplan.output_size)
        progress(ProgressEvent(f"converting {src.name} ({plan.hf_architecture}) to {target.name}"))
        res = write_quantized(source, qplan, target, overwrite=force, threads=threads,
                              progress=progress)
        return ConvertResult(
            path=target.resolve(), sha256=res.sha256, size=res.size,
            architecture=plan.architecture, file_type=qplan.file_type,
            tensors=len(qplan.tensors), seconds=time.monotonic() - start,
        )
