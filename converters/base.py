"""The conversion flow every architecture shares, in llama.cpp's converter order.

A family module subclasses `Converter` and overrides the hooks it needs (hparam defaults,
tensor name filter, per-tensor transforms, architecture keys, vocabulary). `plan()` then does
what `convert_hf_to_gguf.py` does, without reading tensor data:

1. tensors: generated ones first (rope_freqs, ...), then the checkpoint's in its order, each
   renamed with gguf's TensorNameMap, transformed lazily, and given its output type;
2. metadata: `general.architecture`, `general.type`, gguf-py's `Metadata` (name, basename,
   size label, license, model-card fields, sampling defaults), the architecture's keys ending in
   `general.file_type`, `general.quantization_version`, then the vocabulary.

Keys are added through a `gguf.GGUFWriter` that never opens a file: its semantic `add_*`
helpers give the keys and value types llama.cpp's converter writes (and re-adding a key keeps
its first position, as there), and nothing here retypes a key name.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import LlamaFileType as FT

from converters.errors import ConversionError, ModelFolderError, TensorMismatchError
from converters.lazy import LazyTensor
from converters.plan import ConversionPlan, MetadataEntry, TensorPlan
from converters.source import ModelSource, SourceTensor
from converters.special_vocab import read_json

OUTTYPES: dict[str, FT] = {
    "f32": FT.ALL_F32,
    "f16": FT.MOSTLY_F16,
    "bf16": FT.MOSTLY_BF16,
    "q8_0": FT.MOSTLY_Q8_0,
    "auto": FT.GUESSED,
}
_FTYPE_TO_QTYPE = {FT.ALL_F32: QT.F32, FT.MOSTLY_F16: QT.F16, FT.MOSTLY_BF16: QT.BF16,
                   FT.MOSTLY_Q8_0: QT.Q8_0}

# tensors llama.cpp's converter always keeps in F32 (its list; the 2-D ones matter here)
_ALWAYS_F32 = (
    "FFN_GATE_INP", "FFN_GATE_INP_SHEXP", "POS_EMBD", "TOKEN_TYPES", "SSM_CONV1D",
    "SHORTCONV_CONV", "TIME_MIX_FIRST", "TIME_MIX_W1", "TIME_MIX_W2", "TIME_MIX_DECAY_W1",
    "TIME_MIX_DECAY_W2", "TIME_MIX_LERP_FUSED", "POSNET_NORM1", "POSNET_NORM2",
    "V_ENC_EMBD_POS", "A_ENC_EMBD_POS", "ALTUP_CORRECT_COEF", "ALTUP_PREDICT_COEF",
    "SSM_CONV1D_Q", "SSM_CONV1D_K", "SSM_CONV1D_V", "INDEXER_PROJ",
)
_SKIP_SUFFIXES = (".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")
# multimodal parts a text conversion drops (TextModel.filter_tensors)
_MM_PREFIXES = ("mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler.",
                "sound_encoder.", "sound_projection.", "speech_embeddings.")
_MM_PARTS = ("visual.", "vision.", "audio.", "talker.", "vision_", "audio_", "token2wav.",
             "code2wav.", "projector.", "pre_mm_projector_norm", "image_newline",
             "view_seperator", "patch_embed", "patch_embedding", "patch_merger.",
             "patch_merge_mlp.", "model.connector.")


@contextlib.contextmanager
def _quiet_gguf() -> Iterator[None]:
    """gguf-py warns when a key is re-added (as llama.cpp's converter does on purpose)."""
    logger = logging.getLogger("gguf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise ModelFolderError(f"{model_dir}: not a folder")
    if not path.is_file():
        raise ModelFolderError(f"{model_dir}: no config.json (is this a Hugging Face model folder?)")
    config = read_json(path)
    if not isinstance(config, dict):
        raise ModelFolderError(f"{path}: not a JSON object")
    return config


def block_id(name: str) -> int | None:
    """The first all-digits part of a tensor name (llama.cpp's bid)."""
    return next((int(p) for p in name.split(".") if p.isdecimal()), None)


def source_lazy(t: SourceTensor) -> LazyTensor:
    dtype = t.float_dtype()
    return LazyTensor(t.shape, dtype, t.read_rows, t.dtype)


class Converter:
    """One architecture family. Subclasses set the class attributes and override hooks."""

    hf_architectures: ClassVar[tuple[str, ...]] = ()
    model_arch: ClassVar[gguf.MODEL_ARCH]
    # what transformers' config class fills in for keys config.json leaves out (llama.cpp's
    # converter reads hparams through AutoConfig, so these decide which keys it writes)
    config_defaults: ClassVar[dict[str, Any]] = {}
    default_rope_theta: ClassVar[float | None] = 10000.0

    def __init__(self, model_dir: Path, config: dict[str, Any], hf_arch: str) -> None:
        self.dir = model_dir
        self.hf_arch = hf_arch
        self.config = config
        hp = self.normalize_hparams(dict(config))
        if isinstance(hp.get("text_config"), dict):
            hp = {**hp, **hp["text_config"]}
        self.hparams = hp
        self.block_count = int(self.find_hparam(["n_layers", "num_hidden_layers", "n_layer", "num_layers"]))
        if self.block_count <= 0:
            raise ConversionError(f"{model_dir / 'config.json'}: num_hidden_layers must be positive")
        self.tensor_map = gguf.get_tensor_name_map(self.model_arch, self.block_count)
        self.rope_parameters = self._rope_parameters()

    # -- hparams ------------------------------------------------------------------------
    def normalize_hparams(self, h: dict[str, Any]) -> dict[str, Any]:
        """Emulate AutoConfig(...).to_dict(): class defaults, derived values, rope_parameters."""
        for k, v in self.config_defaults.items():
            h.setdefault(k, v)
        self.derive_hparams(h)
        if not isinstance(h.get("rope_parameters"), dict) and self.default_rope_theta is not None:
            rs = h.get("rope_scaling")
            rp: dict[str, Any] = dict(rs) if isinstance(rs, dict) else {}
            rp.setdefault("rope_theta", h.get("rope_theta", self.default_rope_theta))
            if "rope_type" not in rp:
                rp["rope_type"] = rp.get("type", "default")
            h["rope_parameters"] = rp
        return h

    def derive_hparams(self, h: dict[str, Any]) -> None:
        """Values a config class computes from others (head_dim, kv heads). Hook."""

    def find_hparam(self, keys: Iterable[str], optional: bool = False) -> Any:
        keys = list(keys)
        for k in keys:
            if k in self.hparams:
                return self.hparams[k]
        if optional:
            return None
        raise ConversionError(f"{self.dir / 'config.json'}: missing {' / '.join(keys)}")

    def _rope_parameters(self) -> dict[str, Any]:
        rp = self.hparams.get("rope_parameters", self.hparams.get("rope_scaling")) or {}
        rp = dict(rp) if isinstance(rp, dict) else {}
        theta = self.find_hparam(["global_rope_theta", "rope_global_theta", "rope_theta_global",
                                  "rope_theta", "rotary_emb_base"], optional=True)
        local = self.find_hparam(["local_rope_theta", "rope_local_theta", "rope_theta_local",
                                  "swa_rope_theta", "rope_local_base_freq"], optional=True)
        partial = self.find_hparam(["partial_rotary_factor", "rope_pct", "rope_percent"], optional=True)
        orig = self.find_hparam(["original_max_position_embeddings"], optional=True)
        if "full_attention" not in rp and "sliding_attention" not in rp:
            if local is not None:
                rp["sliding_attention"] = {"rope_theta": local}
            if "rope_theta" not in rp and theta is not None:
                rp["rope_theta"] = theta
            if "rope_type" not in rp and (rt := rp.get("type")) is not None:
                rp["rope_type"] = rt
            if "partial_rotary_factor" not in rp and partial is not None:
                rp["partial_rotary_factor"] = partial
            if "original_max_position_embeddings" not in rp and orig is not None:
                rp["original_max_position_embeddings"] = orig
        return rp

    # -- tensors ------------------------------------------------------------------------
    def filter_tensor_name(self, name: str) -> str | None:
        """The name a checkpoint tensor goes by, or None to drop it (TextModel.filter_tensors)."""
        if name.startswith(_MM_PREFIXES) or any(p in name for p in _MM_PARTS):
            return None
        if name.endswith("e_score_correction_bias"):
            name = name.replace("e_score_correction_bias", "e_score_correction.bias")
        return name.replace("language_model.", "")

    def extra_tensors(self, w: gguf.GGUFWriter) -> Iterable[tuple[str, LazyTensor]]:
        """Generated tensors, placed before the checkpoint's (rope_freqs, rope factors)."""
        return ()

    def modify(self, name: str, t: LazyTensor, bid: int | None) -> Iterable[tuple[str, LazyTensor]]:
        """Checkpoint tensor -> output tensors (default: renamed with the tensor-name map)."""
        return [(self.map_name(name), t)]

    def map_name(self, name: str) -> str:
        new = self.tensor_map.get_name(key=name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise TensorMismatchError(
                f"{self.dir}: unexpected tensor {name!r}: not part of a {self.hf_arch} checkpoint"
            )
        return new

    def format_name(self, key: gguf.MODEL_TENSOR, bid: int | None = None, suffix: str = ".weight") -> str:
        if key not in gguf.MODEL_TENSORS[self.model_arch]:
            raise ConversionError(f"{key!r} is not a tensor of {self.model_arch.name}")
        name = gguf.TENSOR_NAMES[key]
        return (name.format(bid=bid) if "{bid}" in name else name) + suffix

    def is_tensor(self, name: str, key: gguf.MODEL_TENSOR, bid: int | None, suffix: str = ".weight") -> bool:
        if key not in gguf.MODEL_TENSORS[self.model_arch]:
            return False
        base = gguf.TENSOR_NAMES[key]
        if "{bid}" in base:
            if bid is None:
                return False
            base = base.format(bid=bid)
        elif bid is not None:
            return False
        return name == base + suffix

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """GGUF name -> numpy shape every converted tensor must have (hook; {} = unchecked)."""
        return {}

    def optional_tensors(self) -> set[str]:
        """Expected names that may be absent (e.g. output.weight of a tied model)."""
        return set()

    def _tensor_type(self, name: str, n_dims: int, bid: int | None, ftype: FT, row_len: int) -> QT:
        if n_dims <= 1 or name.endswith("_norm.weight"):
            return QT.F32
        keys = (gguf.MODEL_TENSOR[k] for k in _ALWAYS_F32 if k in gguf.MODEL_TENSOR.__members__)
        if any(self.is_tensor(name, k, bid) for k in keys) or name[-7:] not in (".weight", ".lora_a", ".lora_b"):
            return QT.F32
        q = _FTYPE_TO_QTYPE[ftype]
        block, _ = gguf.GGML_QUANT_SIZES[q]
        if row_len % block:
            return QT.F16  # llama.cpp falls back to F16 where a row does not fill whole blocks
        return q

    def guess_ftype(self, tensors: list[tuple[str, SourceTensor]]) -> FT:
        """--outtype auto: the first 2-D+ bf16 or f16 tensor decides; else F16."""
        for _, t in tensors:
            if len(t.shape) < 2:
                continue
            if t.dtype == "BF16":
                return FT.MOSTLY_BF16
            if t.dtype == "F16":
                return FT.MOSTLY_F16
        return FT.MOSTLY_F16

    def build_tensors(self, w: gguf.GGUFWriter, source: ModelSource, ftype: FT) -> list[TensorPlan]:
        items = [(n, t) for t in source if (n := self.filter_tensor_name(t.name)) is not None]
        out: list[TensorPlan] = []
        seen: set[str] = set()
        stream: Iterator[tuple[str, LazyTensor]] = chain(
            self.extra_tensors(w), ((n, source_lazy(t)) for n, t in items)
        )
        for name, lazy in stream:
            if name.endswith(_SKIP_SUFFIXES):
                continue
            bid = block_id(name)
            for new_name, t in self.modify(name, lazy, bid):
                if new_name in seen:
                    raise TensorMismatchError(f"{self.dir}: two checkpoint tensors map to {new_name!r}")
                seen.add(new_name)
                qtype = self._tensor_type(new_name, len(t.shape), bid, ftype, t.row_len)
                out.append(TensorPlan(new_name, tuple(reversed(t.shape)), qtype, t))
        self.check_tensors(out)
        return out

    def check_tensors(self, tensors: list[TensorPlan]) -> None:
        expected = self.expected_shapes()
        if not expected:
            return
        have = {t.name: tuple(t.data.shape) for t in tensors}
        missing = [n for n in expected if n not in have and n not in self.optional_tensors()]
        if missing:
            raise TensorMismatchError(
                f"{self.dir}: {len(missing)} tensor(s) missing from the checkpoint "
                f"(first: {missing[0]!r}); incomplete download or a different architecture?"
            )
        for name, shape in have.items():
            want = expected.get(name)
            if want is None:
                raise TensorMismatchError(f"{self.dir}: unexpected tensor {name!r} for {self.hf_arch}")
            if tuple(want) != shape:
                raise TensorMismatchError(
                    f"{self.dir}: tensor {name!r} has shape {list(shape)}, but config.json implies "
                    f"{list(want)}"
                )

    # -- metadata -----------------------------------------------------------------------
    def set_gguf_parameters(self, w: gguf.GGUFWriter, ftype: FT) -> None:
        """TextModel.set_gguf_parameters: the generic architecture keys, in its order."""
        w.add_block_count(self.block_count)
        fh = self.find_hparam
        if (n_ctx := fh(["max_position_embeddings", "n_ctx", "n_positions", "max_length",
                         "max_sequence_length", "model_max_length"], optional=True)) is not None:
            w.add_context_length(n_ctx)
        if (n_embd := fh(["hidden_size", "n_embd", "dim"], optional=True)) is not None:
            w.add_embedding_length(n_embd)
        if (n_ff := fh(["prefix_dense_intermediate_size", "dense_intermediate_size",
                        "intermediate_size", "n_inner", "hidden_dim"], optional=True)) is not None:
            w.add_feed_forward_length(n_ff)
        if (n_head := fh(["num_attention_heads", "n_head", "n_heads"], optional=True)) is not None:
            w.add_head_count(n_head)
        if (n_kv := fh(["num_key_value_heads", "n_kv_heads"], optional=True)) is not None:
            w.add_head_count_kv(n_kv)
        if self.hparams.get("is_causal") is False:
            w.add_causal_attention(False)
        rope = self.rope_parameters.get("full_attention", self.rope_parameters)
        if (rope_type := rope.get("rope_type")) is not None:
            factor = rope.get("factor")
            if rope_type == "linear" and factor is not None:
                w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
                w.add_rope_scaling_factor(factor)
            elif rope_type == "yarn" and factor is not None:
                w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
                w.add_rope_scaling_factor(factor)
                w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
                if (v := rope.get("extrapolation_factor")) is not None:
                    w.add_rope_scaling_yarn_ext_factor(v)
                if (v := rope.get("attention_factor", rope.get("attn_factor"))) is not None:
                    w.add_rope_scaling_yarn_attn_factor(v)
                if (v := rope.get("beta_fast")) is not None:
                    w.add_rope_scaling_yarn_beta_fast(v)
                if (v := rope.get("beta_slow")) is not None:
                    w.add_rope_scaling_yarn_beta_slow(v)
            elif rope_type in ("su", "longrope"):
                w.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        if (theta := rope.get("rope_theta")) is not None:
            w.add_rope_freq_base(theta)
        sliding = self.rope_parameters.get("sliding_attention")
        if isinstance(sliding, dict) and (local := sliding.get("rope_theta")) is not None:
            w.add_rope_freq_base_swa(local)
        if (eps := fh(["rms_norm_eps", "norm_eps"], optional=True)) is not None:
            w.add_layer_norm_rms_eps(eps)
        if (eps := fh(["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"], optional=True)) is not None:
            w.add_layer_norm_eps(eps)
        if (head_dim := self.hparams.get("head_dim")) is not None:
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        w.add_file_type(int(ftype))

    def set_vocab(self, w: gguf.GGUFWriter) -> None:
        raise NotImplementedError

    def check_inputs(self) -> None:
        """Fail fast (before any tensor is read) on input the conversion cannot use. Hook."""

    def pooling_type(self, w: gguf.GGUFWriter) -> None:
        """`pooling_type` from a sentence-transformers modules.json (_try_set_pooling_type)."""
        modules_path = self.dir / "modules.json"
        if not modules_path.is_file():
            return
        modules = read_json(modules_path)
        pooling_path = next(
            (m.get("path") for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling")),
            None,
        ) if isinstance(modules, list) else None
        if pooling_path is None:
            return
        cfg_path = self.dir / str(pooling_path) / "config.json"
        if not cfg_path.resolve().is_relative_to(self.dir.resolve()) or not cfg_path.is_file():
            raise ConversionError(f"{modules_path}: pooling module config {cfg_path} not found")
        pooling = read_json(cfg_path)
        modes = {"mean": gguf.PoolingType.MEAN, "cls": gguf.PoolingType.CLS, "lasttoken": gguf.PoolingType.LAST}
        if pooling.get("pooling_mode_mean_tokens"):
            kind = gguf.PoolingType.MEAN
        elif pooling.get("pooling_mode_cls_token"):
            kind = gguf.PoolingType.CLS
        elif pooling.get("pooling_mode_lasttoken"):
            kind = gguf.PoolingType.LAST
        elif pooling.get("pooling_mode") in modes:
            kind = modes[pooling["pooling_mode"]]
        else:
            raise ConversionError(f"{cfg_path}: only MEAN, CLS and LAST pooling are supported")
        w.add_pooling_type(kind)

    def _metadata(self, w: gguf.GGUFWriter, tensors: list[TensorPlan], ftype: FT,
                  model_name: str | None, override: Path | None) -> Any:
        total = sum(math.prod(t.data.shape) for t in tensors)
        try:
            meta = gguf.Metadata.load(override, self.dir, model_name, total)
        except ConversionError:
            raise
        except Exception as e:  # noqa: BLE001 - YAML/JSON errors in README.md or the override
            raise ConversionError(f"{self.dir}: cannot read the model card metadata ({e})") from None
        self._repetition_penalty(meta, override)
        if meta.name is None:
            meta.name = self.dir.name
        if meta.size_label is None and total > 0:
            meta.size_label = gguf.size_label(total, total, 0, 0)
        w.add_type(gguf.GGUFType.MODEL)
        meta.set_gguf_meta_model(w)
        return meta

    def _repetition_penalty(self, meta: Any, override: Path | None) -> None:
        # the vendored gguf-py also takes generation_config's `repetition_penalty`
        if meta.sampling_penalty_repeat is not None:
            return
        gen_path = self.dir / "generation_config.json"
        gen = read_json(gen_path) if gen_path.is_file() else None
        if isinstance(gen, dict) and gen.get("repetition_penalty") is not None:
            if override is not None and gguf.Keys.General.SAMPLING_PENALTY_REPEAT in (read_json(override) or {}):
                return
            meta.sampling_penalty_repeat = gen["repetition_penalty"]

    # -- the whole plan -----------------------------------------------------------------
    def plan(self, outtype: str = "auto", model_name: str | None = None,
             metadata_override: Path | None = None) -> ConversionPlan:
        with _quiet_gguf():
            return self._plan(outtype, model_name, metadata_override)

    def _plan(self, outtype: str, model_name: str | None, metadata_override: Path | None) -> ConversionPlan:
        if outtype not in OUTTYPES:
            raise ConversionError(f"unknown outtype {outtype!r} (use one of {', '.join(OUTTYPES)})")
        self.check_inputs()
        source = ModelSource(self.dir)
        try:
            ftype = OUTTYPES[outtype]
            if ftype == FT.GUESSED:
                items = [(n, t) for t in source if (n := self.filter_tensor_name(t.name)) is not None]
                ftype = self.guess_ftype(items)
            w = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[self.model_arch])
            tensors = self.build_tensors(w, source, ftype)
            meta = self._metadata(w, tensors, ftype, model_name, metadata_override)
            self.set_gguf_parameters(w, ftype)
            w.add_quantization_version(gguf.GGML_QUANT_VERSION)
            self.set_vocab(w)
            entries = [_entry(k, v) for k, v in w.kv_data[0].items()]
            out_type = "F32" if ftype == FT.ALL_F32 else ftype.name.partition("_")[2]
            stem = gguf.naming_convention(meta.name, meta.basename, meta.finetune, meta.version,
                                          meta.size_label, out_type)
            return ConversionPlan(
                architecture=gguf.MODEL_ARCH_NAMES[self.model_arch],
                hf_architecture=self.hf_arch,
                file_type=ftype,
                metadata=entries,
                tensors=tensors,
                default_stem=stem,
                source_bytes=source.total_bytes,
                _close=source.close,
            )
        except BaseException:
            source.close()
            raise


def _entry(key: str, v: Any) -> MetadataEntry:
    """A gguf-py GGUFValue -> MetadataEntry with python/numpy values the writer can encode."""
    vtype = gguf.GGUFValueType(v.type)
    value = v.value
    if vtype == gguf.GGUFValueType.ARRAY:
        items = list(value)
        sub = v.sub_type or gguf.GGUFValueType.get_type(items[0])
        if sub == gguf.GGUFValueType.STRING:
            value = [s.decode("utf-8") if isinstance(s, bytes | bytearray) else str(s) for s in items]
        else:
            from gguf.constants import GGUFValueType as VT

            np_types = {VT.INT32: np.int32, VT.FLOAT32: np.float32, VT.BOOL: np.bool_,
                        VT.UINT32: np.uint32, VT.INT64: np.int64, VT.UINT8: np.uint8,
                        VT.INT8: np.int8, VT.UINT16: np.uint16, VT.INT16: np.int16,
                        VT.UINT64: np.uint64, VT.FLOAT64: np.float64}
            value = np.asarray(items, dtype=np_types[sub])
        return MetadataEntry(key, vtype, value, gguf.GGUFValueType(sub))
    if vtype == gguf.GGUFValueType.STRING and isinstance(value, bytes | bytearray):
        value = value.decode("utf-8")
    elif isinstance(value, bool | int) and vtype != gguf.GGUFValueType.BOOL:
        value = int(value)
    return MetadataEntry(key, vtype, value)


def decoder_shapes(conv: Converter, *, n_vocab: int, qkv_bias: bool = False, o_bias: bool = False,
                   mlp_bias: bool = False, qk_norm: bool = False, gemma_norms: bool = False,
                   fused: bool = False) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Expected shapes of a dense decoder (Llama/Qwen/Gemma/Phi3 layouts) and its optional names."""
    h = conv.hparams
    n_embd = int(h["hidden_size"])
    n_head = int(h["num_attention_heads"])
    n_kv = int(h.get("num_key_value_heads") or n_head)
    hd = int(h.get("head_dim") or n_embd // n_head)
    n_ff = int(h["intermediate_size"])
    f = conv.format_name
    M = gguf.MODEL_TENSOR
    shapes: dict[str, tuple[int, ...]] = {
        f(M.TOKEN_EMBD): (n_vocab, n_embd),
        f(M.OUTPUT_NORM): (n_embd,),
    }
    optional: set[str] = set()
    if M.OUTPUT in gguf.MODEL_TENSORS[conv.model_arch]:  # absent when tied
        shapes[f(M.OUTPUT)] = (n_vocab, n_embd)
        optional.add(f(M.OUTPUT))
    for i in range(conv.block_count):
        layer = {
            f(M.ATTN_NORM, i): (n_embd,),
            f(M.ATTN_OUT, i): (n_embd, n_head * hd),
            f(M.FFN_DOWN, i): (n_embd, n_ff),
        }
        if fused:
            layer[f(M.ATTN_QKV, i)] = ((n_head + 2 * n_kv) * hd, n_embd)
            layer[f(M.FFN_UP, i)] = (2 * n_ff, n_embd)
        else:
            layer[f(M.ATTN_Q, i)] = (n_head * hd, n_embd)
            layer[f(M.ATTN_K, i)] = (n_kv * hd, n_embd)
            layer[f(M.ATTN_V, i)] = (n_kv * hd, n_embd)
            layer[f(M.FFN_GATE, i)] = (n_ff, n_embd)
            layer[f(M.FFN_UP, i)] = (n_ff, n_embd)
        if gemma_norms:
            layer[f(M.ATTN_POST_NORM, i)] = (n_embd,)
            layer[f(M.FFN_PRE_NORM, i)] = (n_embd,)
            layer[f(M.FFN_POST_NORM, i)] = (n_embd,)
        else:
            layer[f(M.FFN_NORM, i)] = (n_embd,)
        if qk_norm:
            layer[f(M.ATTN_Q_NORM, i)] = (hd,)
            layer[f(M.ATTN_K_NORM, i)] = (hd,)
        biases: dict[str, tuple[int, ...]] = {}
        if not fused:
            biases[f(M.ATTN_Q, i, ".bias")] = (n_head * hd,)
            biases[f(M.ATTN_K, i, ".bias")] = (n_kv * hd,)
            biases[f(M.ATTN_V, i, ".bias")] = (n_kv * hd,)
        biases[f(M.ATTN_OUT, i, ".bias")] = (n_embd,)
        if not fused:
            biases[f(M.FFN_GATE, i, ".bias")] = (n_ff,)
            biases[f(M.FFN_UP, i, ".bias")] = (n_ff,)
        biases[f(M.FFN_DOWN, i, ".bias")] = (n_embd,)
        wanted = {f(M.ATTN_Q, i, ".bias"), f(M.ATTN_K, i, ".bias"), f(M.ATTN_V, i, ".bias")} if qkv_bias else set()
        if o_bias:
            wanted.add(f(M.ATTN_OUT, i, ".bias"))
        if mlp_bias:
            wanted |= {n for n in biases if "ffn_" in n}
        for name, shape in biases.items():
            layer[name] = shape
            if name not in wanted:
                optional.add(name)
        shapes.update(layer)
    return shapes, optional
