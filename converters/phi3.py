"""Phi-3 -> GGUF architecture "phi3".

As llama.cpp's `Phi3MiniModel`: the fused `qkv_proj` and `gate_up_proj` stay fused
(`attn_qkv`, `ffn_up` with 2*n_ff rows); LongRoPE checkpoints get generated
`rope_factors_long/short` tensors and `rope.scaling.attn_factor` (added while the tensors are
gathered, so that key comes right after `general.architecture`, as in llama.cpp's files); its
own key list and its own SentencePiece vocabulary reading (every added token is USER_DEFINED,
or CONTROL when special); Phi-4 style GPT2Tokenizer folders use the BPE vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import gguf
import numpy as np

from converters import vocab
from converters.base import Converter, decoder_shapes
from converters.errors import ConversionError, ModelFolderError
from converters.lazy import LazyTensor, from_array
from converters.special_vocab import SpecialVocab, read_json


class Phi3Converter(Converter):
    hf_architectures = ("Phi3ForCausalLM",)
    model_arch = gguf.MODEL_ARCH.PHI3
    config_defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192,
        "num_hidden_layers": 32, "num_attention_heads": 32, "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "sliding_window": None,
    }

    def derive_hparams(self, h: dict[str, Any]) -> None:
        if h.get("num_key_value_heads") is None:
            h["num_key_value_heads"] = h["num_attention_heads"]

    def normalize_hparams(self, h: dict[str, Any]) -> dict[str, Any]:
        h = super().normalize_hparams(h)
        rp = h["rope_parameters"]
        rp.setdefault("partial_rotary_factor", h.get("partial_rotary_factor", 1.0))
        if rp.get("rope_type") not in (None, "default"):
            rp.setdefault("original_max_position_embeddings", h.get("original_max_position_embeddings"))
        return h

    def _tokenizer_class(self) -> str | None:
        path = self.dir / "tokenizer_config.json"
        cfg = read_json(path) if path.is_file() else {}
        return cfg.get("tokenizer_class") if isinstance(cfg, dict) else None

    def check_inputs(self) -> None:
        if self._tokenizer_class() == "GPT2Tokenizer":
            if not (self.dir / "tokenizer.json").is_file():
                raise ModelFolderError(f"{self.dir}: no tokenizer.json found")
        elif not (self.dir / "tokenizer.model").is_file():
            raise ModelFolderError(f"{self.dir}: no tokenizer.model (SentencePiece) found")

    def _rope_dims(self) -> int:
        n_embd = int(self.find_hparam(["hidden_size", "n_embd"]))
        n_head = int(self.find_hparam(["num_attention_heads", "n_head"]))
        return int(self.rope_parameters.get("partial_rotary_factor", 1.0) * n_embd) // n_head

    def extra_tensors(self, w: gguf.GGUFWriter) -> Iterable[tuple[str, LazyTensor]]:
        rp = self.rope_parameters
        long_f, short_f = rp.get("long_factor"), rp.get("short_factor")
        if not long_f:
            return []
        max_pos = self.find_hparam(["n_positions", "max_position_embeddings"])
        orig = rp["original_max_position_embeddings"]
        scale = max_pos / orig
        kind = str(rp.get("rope_type", "")).lower()
        if kind in ("su", "longrope"):
            attn = math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1.0 else 1.0
        elif kind == "yarn":
            attn = 0.1 * math.log(scale) + 1.0 if scale > 1.0 else 1.0
        else:
            raise ConversionError(f"{self.dir}: rope scaling type {kind!r} is not supported for Phi-3")
        w.add_rope_scaling_attn_factors(attn)
        dims = self._rope_dims()
        if short_f is None or len(long_f) != len(short_f) or len(long_f) != dims / 2:
            raise ConversionError(
                f"{self.dir / 'config.json'}: rope long/short factors must both have {dims // 2} values"
            )
        return [
            (self.format_name(gguf.MODEL_TENSOR.ROPE_FACTORS_LONG), from_array(np.array(long_f, dtype=np.float32))),
            (self.format_name(gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT), from_array(np.array(short_f, dtype=np.float32))),
        ]

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes, self._optional = decoder_shapes(self, n_vocab=int(self.hparams["vocab_size"]), fused=True)
        half = self._rope_dims() // 2
        for key in (gguf.MODEL_TENSOR.ROPE_FACTORS_LONG, gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT):
            shapes[self.format_name(key)] = (half,)
            self._optional.add(self.format_name(key))
        return shapes

    def optional_tensors(self) -> set[str]:
        return getattr(self, "_optional", set())

    def set_gguf_parameters(self, w: gguf.GGUFWriter, ftype: gguf.LlamaFileType) -> None:
        rp = self.rope_parameters
        w.add_context_length(self.find_hparam(["n_positions", "max_position_embeddings"]))
        w.add_rope_scaling_orig_ctx_len(rp["original_max_position_embeddings"])
        w.add_embedding_length(self.find_hparam(["hidden_size", "n_embd"]))
        w.add_feed_forward_length(self.find_hparam(["intermediate_size"]))
        w.add_block_count(self.block_count)
        w.add_head_count(self.find_hparam(["num_attention_heads", "n_head"]))
        w.add_head_count_kv(self.find_hparam(["num_key_value_heads", "n_head_kv"]))
        w.add_layer_norm_rms_eps(self.find_hparam(["rms_norm_eps"]))
        w.add_rope_dimension_count(self._rope_dims())
        w.add_rope_freq_base(rp.get("full_attention", rp)["rope_theta"])
        w.add_file_type(int(ftype))
        sliding = self.hparams.get("sliding_window")
        w.add_sliding_window(0 if sliding is None else sliding)  # 0 tells Phi-3 from Phi-4

    def set_vocab(self, w: gguf.GGUFWriter) -> None:
        if self._tokenizer_class() == "GPT2Tokenizer":
            vocab.set_vocab_gpt2(w, self.dir, self.hparams.get("vocab_size"))
            return
        sp = vocab.load_spm(self.dir)
        n = int(self.hparams.get("vocab_size") or sp.vocab_size())
        if sp.vocab_size() > n:
            raise ConversionError(f"{self.dir}: tokenizer.model has more pieces than vocab_size {n}")
        tokens, scores, types = vocab.spm_base(sp, n)
        added_path = self.dir / "added_tokens.json"
        if added_path.is_file():
            added = read_json(added_path)
            for text, tid in added.items() if isinstance(added, dict) else []:
                if isinstance(tid, int) and 0 <= tid < n:
                    tokens[tid], scores[tid], types[tid] = text, -1000.0, vocab.USER_DEFINED

        def put(tid: Any, data: Any) -> None:
            content = data.get("content") if isinstance(data, dict) else None
            if not isinstance(content, str) or not isinstance(tid, int) or not 0 <= tid < n:
                return
            tokens[tid], scores[tid] = content, -1000.0
            types[tid] = vocab.CONTROL if data.get("special") else vocab.USER_DEFINED

        cfg_path = self.dir / "tokenizer_config.json"
        cfg = read_json(cfg_path) if cfg_path.is_file() else {}
        decoder = cfg.get("added_tokens_decoder") if isinstance(cfg, dict) else None
        for key, data in (decoder or {}).items():
            put(int(key) if str(key).isdecimal() else None, data)
        if (self.dir / "tokenizer.json").is_file():
            _, raw = vocab.read_tokenizer_json(self.dir)
            for data in raw.get("added_tokens") or []:
                put(data.get("id") if isinstance(data, dict) else None, data)
        vocab.add_spm_vocab(w, tokens, scores, types)
        SpecialVocab(self.dir, n_vocab=len(tokens)).add_to_gguf(w)


CONVERTERS = {c: cls for cls in (Phi3Converter,) for c in cls.hf_architectures}
