"""Helpers of the quant tests: ggml itself through ctypes, and the data kinds.

The oracle is `ggml_quantize_chunk` from the libggml-base that llama-cpp-python 0.3.36
ships (an x86-64 build without FMA contraction, so the reference is well defined).
"""

from __future__ import annotations

import ctypes
import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quant import GGMLType, row_nbytes
from quant.recipes import ModelHParams


def ggml_base_path() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        lib = Path(folder) / "lib" / "libggml-base.so"
        if lib.exists():
            return lib
    return None


class GGML:
    """The few ggml-base entry points the tests compare with."""

    def __init__(self, path: Path) -> None:
        self.lib = ctypes.CDLL(str(path))
        q = self.lib.ggml_quantize_chunk
        q.restype = ctypes.c_size_t
        q.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
        ]
        self.lib.ggml_validate_row_data.restype = ctypes.c_bool
        self.lib.ggml_validate_row_data.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]

    def quantize(self, x: np.ndarray, qtype: GGMLType) -> bytes:
        x = np.ascontiguousarray(x, dtype=np.float32)
        nrows, n_per_row = (1, x.size) if x.ndim == 1 else (int(np.prod(x.shape[:-1])), x.shape[-1])
        out = np.zeros(nrows * row_nbytes(qtype, n_per_row), dtype=np.uint8)
        n = self.lib.ggml_quantize_chunk(
            int(qtype), x.ctypes.data, out.ctypes.data, 0, nrows, n_per_row, None
        )
        assert n == out.size
        return out.tobytes()

    def dequantize(self, data: bytes, qtype: GGMLType, n: int) -> np.ndarray:
        fn = getattr(
            self.lib,
            f"dequantize_row_{qtype.name.lower()[:-2] + '_K' if qtype.name.endswith('_K') else qtype.name.lower()}",
        )
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        src = np.frombuffer(data, dtype=np.uint8).copy()
        out = np.zeros(n, dtype=np.float32)
        fn(src.ctypes.data, out.ctypes.data, n)
        return out

    def validate(self, data: bytes, qtype: GGMLType) -> bool:
        buf = np.frombuffer(data, dtype=np.uint8).copy()
        return bool(self.lib.ggml_validate_row_data(int(qtype), buf.ctypes.data, buf.size))


# ---------------------------------------------------------------- data kinds


def _bf16_round(x: np.ndarray) -> np.ndarray:
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)


def make_data(kind: str, n: int, seed: int = 0) -> np.ndarray:
    """`n` float32 values (a multiple of 256) of one of the DATA_KINDS."""
    rng = np.random.default_rng(zlib.crc32(kind.encode()) + seed)
    if kind == "normal":
        x = rng.standard_normal(n) * rng.choice([1e-3, 0.02, 1.0, 30.0], size=n // 256).repeat(256)
    elif kind == "heavy_tailed":
        x = rng.standard_t(2.0, n) * 0.05
    elif kind == "bf16_rounded":
        x = _bf16_round((rng.standard_normal(n) * 0.03).astype(np.float32))
    elif kind == "f16_rounded":
        x = (rng.standard_normal(n) * 0.05).astype(np.float16).astype(np.float32)
    elif kind == "zero_blocks":
        x = rng.standard_normal(n).astype(np.float32)
        zero = rng.random(n // 32) < 0.3
        x.reshape(-1, 32)[zero] = 0.0
        negz = rng.random(n // 32) < 0.5
        x.reshape(-1, 32)[zero & negz, 0] = -0.0  # all-zero blocks that start with -0.0
        x.reshape(-1, 256)[rng.random(n // 256) < 0.1] = 0.0  # whole super-blocks
    elif kind == "signed_zeros":
        x = np.where(rng.random(n) < 0.5, 0.0, -0.0).astype(np.float32)
        sparse = rng.random(n) < 0.02
        x[sparse] = rng.standard_normal(int(sparse.sum()))
    elif kind == "tiny":
        x = rng.standard_normal(n) * 1e-20
        sub = rng.random(n // 256) < 0.2
        x.reshape(-1, 256)[sub] *= 1e-19  # down into the float32 subnormals
    elif kind == "outliers":
        x = rng.standard_normal(n) * 0.02
        idx = rng.choice(n, size=n // 200, replace=False)
        x[idx] *= rng.choice([50.0, 1e3, 1e5], size=idx.size)
    elif kind == "huge":
        # magnitudes whose squares and sums overflow float32 inside the K-quant searches
        x = rng.standard_normal(n) * rng.choice([1e10, 1e19, 1e30, 1e37], size=n // 256).repeat(256)
    elif kind == "ramps":
        # many exact ties for the rounding steps (x*id + 0.5 lands on integers)
        x = (rng.integers(-64, 64, n) / 8.0).astype(np.float32)
    else:
        raise ValueError(kind)
    return np.asarray(x, dtype=np.float32)


DATA_KINDS = [
    "normal",
    "heavy_tailed",
    "bf16_rounded",
    "f16_rounded",
    "zero_blocks",
    "signed_zeros",
    "tiny",
    "outliers",
    "huge",
    "ramps",
]


# ---------------------------------------------------------------- tiny GGUF models


@dataclass(frozen=True)
class TinyModel:
    """A small GGUF whose shapes exercise one recipe situation; llama.cpp can quantize it."""

    name: str
    n_layer: int = 8
    n_embd: int = 256
    n_ff: int = 512
    n_head: int = 8
    n_head_kv: int = 8
    n_vocab: int = 300
    tied: bool = False
    dtype: str = "f16"  # input type of the 2-D weights: f16 | f32 | bf16
    n_expert: int = 0
    arch: str = "llama"

    def hparams(self) -> ModelHParams:
        return ModelHParams(self.arch, self.n_layer, self.n_head, self.n_head_kv, self.n_expert)


TINY_MODELS = [
    TinyModel("dense"),
    TinyModel("dense_tied", n_layer=16, tied=True, dtype="f32"),
    TinyModel("gqa", n_layer=12, n_head_kv=2, dtype="bf16"),
    TinyModel("ffn_fallback", n_ff=320),  # ffn_down rows of 320: K -> Q5_0/Q5_1/Q8_0/Q4_0
    TinyModel(
        "odd_rows", n_embd=288, n_ff=328, n_head=9, n_head_kv=3, tied=True
    ),  # 288 % 256, 328 % 32 -> F16
    TinyModel("moe", n_layer=4, n_ff=256, n_expert=4),
    TinyModel("moe8", n_layer=2, n_ff=256, n_expert=8, n_head_kv=2),
    TinyModel("seventy_b", n_layer=80, n_embd=32, n_ff=64, n_head=4, n_head_kv=2, n_vocab=64),
    TinyModel("falcon", arch="falcon", n_layer=4, n_head_kv=1),
]


def _tensors(m: TinyModel) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, numpy shape, is a 2-D+ weight) in converter-like order (not llama's)."""
    e, f, v = m.n_embd, m.n_ff, m.n_vocab
    kv = e // m.n_head * m.n_head_kv
    out = [("token_embd.weight", (v, e), True)]
    for i in range(m.n_layer):
        b = f"blk.{i}."
        out.append((b + "attn_norm.weight", (e,), False))
        if m.arch == "falcon":
            out += [
                (b + "attn_norm.bias", (e,), False),
                (b + "attn_qkv.weight", (e + 2 * kv, e), True),
            ]
        else:
            out += [
                (b + "attn_q.weight", (e, e), True),
                (b + "attn_k.weight", (kv, e), True),
                (b + "attn_v.weight", (kv, e), True),
            ]
        out.append((b + "attn_output.weight", (e, e), True))
        if m.arch != "falcon":
            out.append((b + "ffn_norm.weight", (e,), False))
        if m.n_expert:
            n = m.n_expert
            out += [
                (b + "ffn_gate_inp.weight", (n, e), True),
                (b + "ffn_gate_exps.weight", (n, f, e), True),
                (b + "ffn_up_exps.weight", (n, f, e), True),
                (b + "ffn_down_exps.weight", (n, e, f), True),
            ]
        else:
            if m.arch != "falcon":
                out.append((b + "ffn_gate.weight", (f, e), True))
            out += [(b + "ffn_up.weight", (f, e), True), (b + "ffn_down.weight", (e, f), True)]
    out.append(("output_norm.weight", (e,), False))
    if m.arch == "falcon":
        out.append(("output_norm.bias", (e,), False))
    if not m.tied:
        out.append(("output.weight", (v, e), True))
    return out


def build_tiny_gguf(path: Path, m: TinyModel, seed: int = 0) -> Path:
    import gguf

    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), m.arch)
    w.add_context_length(256)
    w.add_embedding_length(m.n_embd)
    w.add_block_count(m.n_layer)
    w.add_feed_forward_length(m.n_ff)
    w.add_head_count(m.n_head)
    w.add_head_count_kv(m.n_head_kv)
    if m.arch == "falcon":
        w.add_layer_norm_eps(1e-5)
    else:
        w.add_layer_norm_rms_eps(1e-5)
    if m.n_expert:
        w.add_expert_count(m.n_expert)
        w.add_expert_used_count(2)
    w.add_file_type({"f32": 0, "f16": 1, "bf16": 32}[m.dtype])
    for name, shape, is_weight in _tensors(m):
        x = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        if not is_weight or m.dtype == "f32" or name.endswith("ffn_gate_inp.weight"):
            w.add_tensor(name, x)
        elif m.dtype == "f16":
            w.add_tensor(name, x.astype(np.float16))
        else:
            bits = gguf.quants.quantize(x, gguf.GGMLQuantizationType.BF16)
            w.add_tensor(name, bits, raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


_RUNNER = r"""
import json, sys, llama_cpp
jobs = json.loads(sys.argv[1])
for job in jobs:
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = job["ftype"]
    p.nthread = 2
    for key, value in job.get("params", {}).items():
        setattr(p, key, value)
    rc = llama_cpp.llama_model_quantize(job["src"].encode(), job["dst"].encode(), p)
    print(json.dumps({"dst": job["dst"], "rc": rc}), flush=True)
"""


def llama_quantize_many(jobs: list[dict]) -> dict[str, int]:
    """Run llama.cpp's llama_model_quantize for each job {src, dst, ftype, params} in one
    subprocess (a GGML_ABORT must not take the test process with it); -> {dst: rc}."""
    import json
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    done = {}
    for line in res.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            done[rec["dst"]] = rec["rc"]
    for job in jobs:
        if job["dst"] not in done:
            raise RuntimeError(f"llama_model_quantize died on {job}: {res.stderr[-2000:]}")
    return done


# ---------------------------------------------------------------- llama-quantize reference results

RECIPE_FILE_TYPES = [
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
    "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "F16", "BF16", "F32",
]  # fmt: skip
# llama_model_quantize_params overrides (ggml type ids for the *_type fields)
OPTION_CASES: dict[str, dict] = {
    "pure": {"pure": True},
    "output_q8_0": {"output_tensor_type": int(GGMLType.Q8_0)},
    "token_embd_q4_k": {"token_embedding_type": int(GGMLType.Q4_K)},
    "both_q5_0": {
        "output_tensor_type": int(GGMLType.Q5_0),
        "token_embedding_type": int(GGMLType.Q5_0),
    },
    "leave_output": {"quantize_output_tensor": False},
}
OPTION_MODELS = ["dense", "dense_tied", "odd_rows"]
OPTION_FILE_TYPES = ["Q4_K_M", "Q2_K", "Q8_0", "Q4_0"]
REFERENCE_KEY = "quant-llama-quantize-v1"


def reference_job_id(model: str, file_type: str, option: str | None = None) -> str:
    return f"{model}-{file_type}-{option}" if option else f"{model}-{file_type}"


def _build_reference(tmp: Path) -> None:
    import hashlib
    import json

    import gguf

    from quant.recipes import parse_file_type

    jobs, ids = [], {}
    for m in TINY_MODELS:
        src = build_tiny_gguf(tmp / f"{m.name}.gguf", m)
        cases = [(ft, None) for ft in RECIPE_FILE_TYPES]
        if m.name in OPTION_MODELS:
            cases += [(ft, opt) for ft in OPTION_FILE_TYPES for opt in OPTION_CASES]
        for ft, opt in cases:
            job_id = reference_job_id(m.name, ft, opt)
            dst = tmp / f"out-{job_id}.gguf"
            ids[str(dst)] = job_id
            params = OPTION_CASES[opt] if opt else {}
            jobs.append(
                {
                    "src": str(src),
                    "dst": str(dst),
                    "ftype": int(parse_file_type(ft).ftype),
                    "params": params,
                }
            )
    rcs = llama_quantize_many(jobs)
    results = {}
    for dst, rc in rcs.items():
        entry: dict = {"rc": rc}
        path = Path(dst)
        if rc == 0:
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            entry["types"] = {
                t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors
            }
            path.unlink()
        results[ids[dst]] = entry
    (tmp / "llama_results.json").write_text(json.dumps(results, indent=1, sort_keys=True))


def llama_reference() -> Path:
    """Folder (shared fixtures cache) with the tiny input GGUFs and llama_results.json:
    {job id: {rc, sha256 of llama_model_quantize's output, tensor name -> type name}}."""
    from fixtures.cache import cached_dir

    return cached_dir(REFERENCE_KEY, _build_reference)


def read_specs(path: Path):
    """(TensorSpecs, ModelHParams) of a GGUF file, via gguf-py's reader."""
    import gguf

    from quant.recipes import TensorSpec

    r = gguf.GGUFReader(str(path))

    def kv(key, default=None):
        f = r.get_field(key)
        return default if f is None else f.contents()

    arch = kv("general.architecture")
    hp = ModelHParams(
        arch,
        kv(f"{arch}.block_count"),
        kv(f"{arch}.attention.head_count", 0),
        kv(f"{arch}.attention.head_count_kv"),
        kv(f"{arch}.expert_count", 0),
    )
    specs = [
        TensorSpec(t.name, tuple(int(s) for s in t.shape), GGMLType(int(t.tensor_type)))
        for t in r.tensors
    ]
    return specs, hp
