"""llama.cpp file types (Q4_K_M, ...) and the per-tensor type each one picks.

A port of `src/llama-quant.cpp` at llama.cpp 0c1e57098: `tensor_allows_quantization`,
`llama_tensor_get_type` / `_impl` (only the branches the supported file types can reach),
`tensor_type_fallback`, and the `weight_name_comparer` order in which its per-layer counters
advance. Tensors are described by name, ggml dims `ne` (ne[0] = row length) and type.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import FileTypeNotSupportedError, RecipeError, UnknownFileTypeError
from .formats import GGMLType, traits

T = GGMLType


class LlamaFType(enum.IntEnum):
    """`enum llama_ftype` (include/llama.h); the value written to general.file_type."""

    ALL_F32 = 0
    MOSTLY_F16 = 1
    MOSTLY_Q4_0 = 2
    MOSTLY_Q4_1 = 3
    MOSTLY_Q8_0 = 7
    MOSTLY_Q5_0 = 8
    MOSTLY_Q5_1 = 9
    MOSTLY_Q2_K = 10
    MOSTLY_Q3_K_S = 11
    MOSTLY_Q3_K_M = 12
    MOSTLY_Q3_K_L = 13
    MOSTLY_Q4_K_S = 14
    MOSTLY_Q4_K_M = 15
    MOSTLY_Q5_K_S = 16
    MOSTLY_Q5_K_M = 17
    MOSTLY_Q6_K = 18
    MOSTLY_IQ2_XXS = 19
    MOSTLY_IQ2_XS = 20
    MOSTLY_Q2_K_S = 21
    MOSTLY_IQ3_XS = 22
    MOSTLY_IQ3_XXS = 23
    MOSTLY_IQ1_S = 24
    MOSTLY_IQ4_NL = 25
    MOSTLY_IQ3_S = 26
    MOSTLY_IQ3_M = 27
    MOSTLY_IQ2_S = 28
    MOSTLY_IQ2_M = 29
    MOSTLY_IQ4_XS = 30
    MOSTLY_IQ1_M = 31
    MOSTLY_BF16 = 32
    MOSTLY_TQ1_0 = 36
    MOSTLY_TQ2_0 = 37
    MOSTLY_MXFP4_MOE = 38
    MOSTLY_NVFP4 = 39
    MOSTLY_Q1_0 = 40
    MOSTLY_Q2_0 = 41


@dataclass(frozen=True)
class FileType:
    name: str  # llama-quantize's spelling, e.g. "Q4_K_M"
    ftype: LlamaFType  # general.file_type
    default_type: GGMLType  # llama_ftype_get_default_type
    description: str  # llama_ftype_name, e.g. "Q4_K - Medium"

    @property
    def is_quantized(self) -> bool:
        return traits(self.default_type).is_quantized


F = LlamaFType
FILE_TYPES: dict[str, FileType] = {
    ft.name: ft
    for ft in (
        FileType("Q4_0", F.MOSTLY_Q4_0, T.Q4_0, "Q4_0"),
        FileType("Q4_1", F.MOSTLY_Q4_1, T.Q4_1, "Q4_1"),
        FileType("Q5_0", F.MOSTLY_Q5_0, T.Q5_0, "Q5_0"),
        FileType("Q5_1", F.MOSTLY_Q5_1, T.Q5_1, "Q5_1"),
        FileType("Q8_0", F.MOSTLY_Q8_0, T.Q8_0, "Q8_0"),
        FileType("Q2_K", F.MOSTLY_Q2_K, T.Q2_K, "Q2_K - Medium"),
        FileType("Q3_K_S", F.MOSTLY_Q3_K_S, T.Q3_K, "Q3_K - Small"),
        FileType("Q3_K_M", F.MOSTLY_Q3_K_M, T.Q3_K, "Q3_K - Medium"),
        FileType("Q3_K_L", F.MOSTLY_Q3_K_L, T.Q3_K, "Q3_K - Large"),
        FileType("Q4_K_S", F.MOSTLY_Q4_K_S, T.Q4_K, "Q4_K - Small"),
        FileType("Q4_K_M", F.MOSTLY_Q4_K_M, T.Q4_K, "Q4_K - Medium"),
        FileType("Q5_K_S", F.MOSTLY_Q5_K_S, T.Q5_K, "Q5_K - Small"),
        FileType("Q5_K_M", F.MOSTLY_Q5_K_M, T.Q5_K, "Q5_K - Medium"),
        FileType("Q6_K", F.MOSTLY_Q6_K, T.Q6_K, "Q6_K"),
        FileType("F16", F.MOSTLY_F16, T.F16, "F16"),
        FileType("BF16", F.MOSTLY_BF16, T.BF16, "BF16"),
        FileType("F32", F.ALL_F32, T.F32, "all F32"),
    )
}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}  # quantize.cpp QUANT_OPTIONS

_IMATRIX = "needs an importance matrix (imatrix), which ggtool does not support yet"
_NOT_IMPL = "is not implemented in ggtool yet"
KNOWN_UNSUPPORTED: dict[str, tuple[LlamaFType | None, str]] = {
    "IQ2_XXS": (F.MOSTLY_IQ2_XXS, _IMATRIX),
    "IQ2_XS": (F.MOSTLY_IQ2_XS, _IMATRIX),
    "IQ2_S": (F.MOSTLY_IQ2_S, _IMATRIX),
    "IQ2_M": (F.MOSTLY_IQ2_M, _IMATRIX),
    "IQ1_S": (F.MOSTLY_IQ1_S, _IMATRIX),
    "IQ1_M": (F.MOSTLY_IQ1_M, _IMATRIX),
    "IQ3_XXS": (F.MOSTLY_IQ3_XXS, _IMATRIX),
    "Q2_K_S": (F.MOSTLY_Q2_K_S, _IMATRIX),
    "IQ3_XS": (F.MOSTLY_IQ3_XS, _NOT_IMPL),
    "IQ3_S": (F.MOSTLY_IQ3_S, _NOT_IMPL),
    "IQ3_M": (F.MOSTLY_IQ3_M, _NOT_IMPL),
    "IQ4_NL": (F.MOSTLY_IQ4_NL, _NOT_IMPL),
    "IQ4_XS": (F.MOSTLY_IQ4_XS, _NOT_IMPL),
    "TQ1_0": (F.MOSTLY_TQ1_0, _NOT_IMPL),
    "TQ2_0": (F.MOSTLY_TQ2_0, _NOT_IMPL),
    "MXFP4_MOE": (F.MOSTLY_MXFP4_MOE, _NOT_IMPL),
    "Q1_0": (F.MOSTLY_Q1_0, _NOT_IMPL),
    "Q2_0": (F.MOSTLY_Q2_0, _NOT_IMPL),
    "COPY": (None, _NOT_IMPL),
}
del F


def valid_names() -> list[str]:
    return list(FILE_TYPES) + list(ALIASES)


def parse_file_type(name: str | int) -> FileType:
    """A file type by llama-quantize name (case-insensitive, aliases Q3_K/Q4_K/Q5_K) or number."""
    key = str(name).strip().upper()
    key = ALIASES.get(key, key)
    if key in FILE_TYPES:
        return FILE_TYPES[key]
    if key in KNOWN_UNSUPPORTED:
        raise FileTypeNotSupportedError(f"file type {key} {KNOWN_UNSUPPORTED[key][1]}")
    if key.isascii() and key.isdigit():  # str.isdigit accepts "²", which int() does not
        for ft in FILE_TYPES.values():
            if int(ft.ftype) == int(key):
                return ft
        for uname, (uft, why) in KNOWN_UNSUPPORTED.items():
            if uft is not None and int(uft) == int(key):
                raise FileTypeNotSupportedError(f"file type {uname} ({key}) {why}")
    raise UnknownFileTypeError(f"unknown file type {name!r}; valid: {', '.join(valid_names())}")


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class TensorSpec:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length (the reverse of a numpy shape)
    type: GGMLType  # the input type

    @property
    def n_dims(self) -> int:
        """`ggml_n_dims`: trailing 1-sized dims do not count (minimum 1)."""
        n = len(self.ne)
        while n > 1 and self.ne[n - 1] == 1:
            n -= 1
        return max(1, n)


@dataclass(frozen=True)
class ModelHParams:
    arch: str  # general.architecture
    n_layer: int  # {arch}.block_count (llama.cpp's n_layer_all)
    n_head: int = 0  # {arch}.attention.head_count (of layer 0)
    n_head_kv: int | None = None  # {arch}.attention.head_count_kv; defaults to n_head
    n_expert: int = 0  # {arch}.expert_count
    n_layer_nextn: int = 0  # {arch}.nextn_predict_layers

    @property
    def n_gqa(self) -> int:
        kv = self.n_head if self.n_head_kv is None else self.n_head_kv
        return self.n_head // kv if kv else 0

    @property
    def is_70b(self) -> bool:
        """Whether llama.cpp classifies the model as LLM_TYPE_70B (the attn_v bump)."""
        n = self.n_layer - self.n_layer_nextn
        kv = self.n_head if self.n_head_kv is None else self.n_head_kv
        if self.arch == "llama":
            return self.n_expert != 8 and n == 80 and self.n_head != kv
        return (self.arch in ("qwen2", "deci", "olmo") and n == 80) or (
            self.arch == "jais2" and n == 68
        )


@dataclass(frozen=True)
class QuantOptions:
    output_tensor_type: GGMLType | None = None  # --output-tensor-type
    token_embedding_type: GGMLType | None = None  # --token-embedding-type
    pure: bool = False  # --pure: no per-tensor mixtures
    quantize_output_tensor: bool = True  # False = --leave-output-tensor


@dataclass(frozen=True)
class TensorPlan:
    spec: TensorSpec
    target: GGMLType
    fallback: bool = False  # the recipe's type did not fit ne[0] and was replaced

    @property
    def converts(self) -> bool:
        """False when the tensor is copied byte for byte (same type)."""
        return self.target != self.spec.type


# ---------------------------------------------------------------- order


_LAYER = re.compile(r"blk\.\s*([+-]?\d+)")


def layer_of(name: str) -> int | None:
    """`sscanf(name, "blk.%d.", &i) == 1` (the trailing '.' is not needed for a match)."""
    m = _LAYER.match(name)
    return int(m.group(1)) if m else None


def llama_sort_key(name: str) -> tuple[int, bytes]:
    """`weight_name_comparer`: layer number (-1 outside blocks), then strcmp."""
    layer = layer_of(name)
    return (-1 if layer is None else layer, name.encode("utf-8"))


def llama_tensor_order(names: Sequence[str]) -> list[int]:
    """Indexes of `names` in the order llama-quantize writes (and counts) them."""
    return sorted(range(len(names)), key=lambda i: llama_sort_key(names[i]))


# ---------------------------------------------------------------- rules

_NOT_QUANTIZED_PARTS = (
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    *(
        f"time_mix_{p}.weight"
        for p in [
            "first",
            "w0",
            "w1",
            "w2",
            "v0",
            "v1",
            "v2",
            "a0",
            "a1",
            "a2",
            "g1",
            "g2",
            "decay_w1",
            "decay_w2",
            "lerp_fused",
        ]
    ),
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
)
_GLM5_NEXT_PARTS = (
    "hc_",
    "indexer.attn_q_b",
    "indexer.attn_k",
    "indexer.proj",
    "indexer_compressor_gate",
    "indexer_compressor_ape",
    "ssm_f_a.weight",
    "ssm_f_b.weight",
    "ssm_g_a.weight",
    "ssm_g_b.weight",
    "ssm_beta.weight",
    "attn_kv_a_mqa.weight",
    "attn_k_b.weight",
    "attn_v_b.weight",
)


def allows_quantization(
    spec: TensorSpec, arch: str, options: QuantOptions = QuantOptions()
) -> bool:
    """`tensor_allows_quantization`: False = the tensor keeps its input type, byte for byte."""
    if spec.n_dims < 2:
        return False
    name = spec.name
    # C: name.rfind("weight") == name.size() - 6 — also true for a 5-character name (npos)
    if not (name.endswith("weight") or len(name) == 5):
        return False
    if not options.quantize_output_tensor and name == "output.weight":
        return False
    if name in ("position_embd.weight", "token_types.weight"):
        return False
    if any(p in name for p in _NOT_QUANTIZED_PARTS):
        return False
    return not (arch == "glm5-next" and any(p in name for p in _GLM5_NEXT_PARTS))


class Category(enum.Enum):
    TOKEN_EMBD = "token_embd"
    ATTENTION_Q = "attn_q"
    ATTENTION_V = "attn_v"
    ATTENTION_K = "attn_k"
    ATTENTION_QKV = "attn_qkv"
    ATTENTION_KV_B = "attn_kv_b"
    ATTENTION_OUTPUT = "attn_output"
    FFN_UP = "ffn_up"
    FFN_GATE = "ffn_gate"
    FFN_DOWN = "ffn_down"
    OUTPUT = "output"
    OTHER = "other"


_CATEGORY_PARTS = (
    ("attn_qkv.weight", Category.ATTENTION_QKV),
    ("attn_kv_b.weight", Category.ATTENTION_KV_B),
    ("attn_v.weight", Category.ATTENTION_V),
    ("attn_k.weight", Category.ATTENTION_K),
    ("attn_q.weight", Category.ATTENTION_Q),
    ("attn_output.weight", Category.ATTENTION_OUTPUT),
    ("ffn_up", Category.FFN_UP),
    ("ffn_gate", Category.FFN_GATE),
    ("ffn_down", Category.FFN_DOWN),
)
_ATTN_V = (Category.ATTENTION_V, Category.ATTENTION_QKV, Category.ATTENTION_KV_B)


def category(name: str) -> Category:
    """`tensor_get_category`: substring tests in llama.cpp's order."""
    if name == "output.weight":
        return Category.OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return Category.TOKEN_EMBD
    for part, cat in _CATEGORY_PARTS:
        if part in name:
            return cat
    return Category.OTHER


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    # C integer division and modulo; (i - n/8) can be negative only when i < n/8 (short-circuited)
    return (
        i_layer < n_layers // 8
        or i_layer >= 7 * n_layers // 8
        or (i_layer - n_layers // 8) % 3 == 2
    )


FALLBACK = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}
FALLBACK.update(
    {
        t: T.IQ4_NL
        for t in (T.IQ1_S, T.IQ1_M, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ4_XS)
    }
)
FALLBACK.update({T.TQ1_0: T.Q4_0, T.TQ2_0: T.Q4_0, T.Q2_0: T.Q4_0})


def fallback_type(target: GGMLType, ne0: int) -> tuple[GGMLType, bool]:
    """`tensor_type_fallback`: (type, whether a fallback happened) for a row of ne0 values."""
    qk = traits(target).block_size
    if ne0 % qk == 0:
        return target, False
    if target in FALLBACK:
        new = FALLBACK[target]
    elif qk <= 32:
        new = target
    else:
        raise RecipeError(f"no tensor type fallback is defined for type {target.name}")
    if ne0 % traits(new).block_size:
        new = T.F16
    return new, True


@dataclass
class _State:
    """quantize_state_impl: counters that advance in llama's tensor order."""

    n_attention_wv: int = 0
    i_attention_wv: int = 0
    n_ffn: int = 0  # n_ffn_down = n_ffn_gate = n_ffn_up = n_layer_all
    i_ffn_down: int = 0
    i_ffn_gate: int = 0
    i_ffn_up: int = 0
    has_tied_embeddings: bool = True


def _layer_info(i_layer: int, n_layer: int, name: str, hp: ModelHParams) -> tuple[int, int]:
    if max(1, hp.n_expert) > 1:
        layer = layer_of(name)
        if layer is None:
            raise RecipeError(f"failed to determine the layer of tensor {name}")
        if not 0 <= layer < n_layer:
            raise RecipeError(f"bad layer {layer} for tensor {name}: must be in [0, {n_layer})")
        return layer, n_layer
    return i_layer, n_layer


def _mixture_type(
    qs: _State,
    new: GGMLType,
    spec: TensorSpec,
    ft: FileType,
    cat: Category,
    hp: ModelHParams,
    opts: QuantOptions,
) -> GGMLType:
    """`llama_tensor_get_type_impl`, restricted to the file types in FILE_TYPES."""
    name, f = spec.name, ft.name
    falcon = hp.arch == "falcon"
    glm5_q = hp.arch == "glm5-next" and any(
        p in name for p in ("attn_q_a", "attn_q_b", "nextn.eh_proj")
    )
    if glm5_q and new not in (T.F32, T.BF16, T.F16):
        return T.Q8_0
    if cat == Category.OUTPUT or (qs.has_tied_embeddings and cat == Category.TOKEN_EMBD):
        if opts.output_tensor_type is not None:
            return opts.output_tensor_type
        if falcon or spec.ne[0] % traits(new).block_size:
            return T.Q8_0
        return new if new == T.Q8_0 else T.Q6_K
    if cat == Category.TOKEN_EMBD:
        return new  # untied; only IQ file types change it
    if cat in _ATTN_V:
        i, n = qs.i_attention_wv, qs.n_attention_wv
        if f == "Q2_K":
            new = T.Q4_K if hp.n_gqa >= 4 else T.Q3_K
        elif f == "Q3_K_M":
            new = T.Q5_K if i < 2 else T.Q4_K
        elif f == "Q3_K_L":
            new = T.Q5_K
        elif f in ("Q4_K_M", "Q5_K_M") and use_more_bits(i, n):
            new = T.Q6_K
        elif f == "Q4_K_S" and i < 4:
            new = T.Q5_K
        if hp.is_70b and new in (T.Q3_K, T.Q4_K):
            new = T.Q5_K
        if hp.n_expert == 8:
            new = T.Q8_0
        qs.i_attention_wv += 1
        return new
    if cat == Category.ATTENTION_K:
        return T.Q8_0 if hp.n_expert == 8 else new
    if cat == Category.FFN_DOWN:
        i, n = _layer_info(qs.i_ffn_down, qs.n_ffn, name, hp)
        if f == "Q2_K":
            new = T.Q3_K
        elif f == "Q3_K_M":
            new = (
                T.Q5_K if i < n // 16 else (T.Q4_K if not falcon or use_more_bits(i, n) else T.Q3_K)
            )
        elif f == "Q3_K_L":
            new = T.Q4_K if falcon else T.Q5_K
        elif f == "Q4_K_M":
            if falcon:
                new = T.Q6_K if i < n // 16 else (T.Q5_K if use_more_bits(i, n) else T.Q4_K)
            elif use_more_bits(i, n):
                new = T.Q6_K
        elif f == "Q5_K_M" and use_more_bits(i, n):
            new = T.Q6_K
        elif f == "Q4_K_S" and not falcon and i < n // 8:
            new = T.Q5_K
        qs.i_ffn_down += 1
        return new
    if cat == Category.ATTENTION_OUTPUT:
        if not falcon:
            if hp.n_expert == 8:
                if f in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"):
                    new = T.Q5_K
            elif f == "Q2_K":
                new = T.Q3_K
            elif f == "Q3_K_M":
                new = T.Q4_K
            elif f == "Q3_K_L":
                new = T.Q5_K
        elif f == "Q3_K_L":
            new = T.Q4_K
        return new
    if cat == Category.FFN_GATE:
        _layer_info(qs.i_ffn_gate, qs.n_ffn, name, hp)  # only IQ3_XS uses it, but it validates
        qs.i_ffn_gate += 1
        return new
    if cat == Category.FFN_UP:
        _layer_info(qs.i_ffn_up, qs.n_ffn, name, hp)
        qs.i_ffn_up += 1
        return new
    return new


def plan_tensors(
    tensors: Sequence[TensorSpec],
    file_type: FileType | str,
    hparams: ModelHParams,
    options: QuantOptions = QuantOptions(),
) -> list[TensorPlan]:
    """The target type of every tensor (in the given order), as llama_model_quantize decides.

    The counters advance in llama's sorted order whatever order `tensors` come in.
    """
    ft = parse_file_type(file_type) if isinstance(file_type, str) else file_type
    default = ft.default_type
    qs = _State(n_ffn=hparams.n_layer)
    for t in tensors:
        cat = category(t.name)
        if cat in _ATTN_V:
            qs.n_attention_wv += 1
        if cat == Category.OUTPUT:
            qs.has_tied_embeddings = False

    plans: list[TensorPlan | None] = [None] * len(tensors)
    for idx in llama_tensor_order([t.name for t in tensors]):
        spec = tensors[idx]
        if not allows_quantization(spec, hparams.arch, options):
            plans[idx] = TensorPlan(spec, spec.type)
            continue
        cat = category(spec.name)
        if options.token_embedding_type is not None and cat == Category.TOKEN_EMBD:
            plans[idx] = TensorPlan(spec, options.token_embedding_type)
            continue
        if options.output_tensor_type is not None and cat == Category.OUTPUT:
            plans[idx] = TensorPlan(spec, options.output_tensor_type)
            continue
        new, fell_back = default, False
        if traits(default).is_quantized:
            if not options.pure:
                new = _mixture_type(qs, new, spec, ft, cat, hparams, options)
            new, fell_back = fallback_type(new, spec.ne[0])
        plans[idx] = TensorPlan(spec, new, fell_back)
    for p in plans:
        # overrides get no fallback in llama.cpp either: it fails while quantizing
        if p is not None and p.converts and spec_ne0(p) % traits(p.target).block_size:
            raise RecipeError(
                f"tensor {p.spec.name} has rows of {spec_ne0(p)} values, which {p.target.name} "
                f"(blocks of {traits(p.target).block_size}) cannot store; choose another type"
            )
    return [p for p in plans if p is not None]


def spec_ne0(p: TensorPlan) -> int:
    return p.spec.ne[0] if p.spec.ne else 1


def plan_tensor_types(
    tensors: Sequence[TensorSpec],
    file_type: FileType | str,
    hparams: ModelHParams,
    options: QuantOptions = QuantOptions(),
) -> list[GGMLType]:
    """Just the target types of `plan_tensors`, in the order of `tensors`."""
    return [p.target for p in plan_tensors(tensors, file_type, hparams, options)]
