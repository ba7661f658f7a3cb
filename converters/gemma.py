"""Gemma 2 and Gemma 3 (text) -> GGUF architectures "gemma2" and "gemma3".

As llama.cpp's `Gemma2Model`/`Gemma3Model`:
- every `*norm.weight` gets `+ 1` (Gemma's RMSNorm scales by 1 + w), computed in the tensor's
  dtype: f32 for bf16/f32 checkpoints, rounded in f16 for f16 ones;
- a stray `lm_head.weight` is dropped (the embedding is tied);
- Gemma 3 cuts `embed_tokens` to the real vocabulary size;
- Gemma 2 writes its own key list (no generic keys); Gemma 3 writes the generic keys, then its
  defaults on top (re-added keys keep their first position, as in gguf-py);
- SentencePiece vocabulary with `add_space_prefix = false` (Gemma 3 without tokenizer.model: BPE).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import gguf
import numpy as np

from converters import vocab
from converters.base import Converter, decoder_shapes
from converters.errors import ConversionError, TokenizerError
from converters.lazy import LazyTensor


def _plus_one(x: np.ndarray) -> np.ndarray:
    return x + x.dtype.type(1)


class _GemmaBase(Converter):
    def filter_tensor_name(self, name: str) -> str | None:
        if name == "lm_head.weight":
            return None
        return super().filter_tensor_name(name)

    def check_inputs(self) -> None:
        if not vocab.has_tokenizer(self.dir):
            raise TokenizerError(f"{self.dir}: no tokenizer.model or tokenizer.json found")

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes, self._optional = decoder_shapes(
            self, n_vocab=self.n_vocab(), gemma_norms=True,
            qk_norm=self.model_arch == gguf.MODEL_ARCH.GEMMA3,
        )
        return shapes

    def n_vocab(self) -> int:
        return int(self.hparams["vocab_size"])

    def optional_tensors(self) -> set[str]:
        return getattr(self, "_optional", set())


class Gemma2Converter(_GemmaBase):
    hf_architectures = ("Gemma2ForCausalLM",)
    model_arch = gguf.MODEL_ARCH.GEMMA2
    config_defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216,
        "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
        "head_dim": 256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
        "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "sliding_window": 4096,
    }

    def modify(self, name: str, t: LazyTensor, bid: int | None) -> Iterable[tuple[str, LazyTensor]]:
        if name.endswith("norm.weight"):
            t = t.map(_plus_one)
        return super().modify(name, t, bid)

    def set_gguf_parameters(self, w: gguf.GGUFWriter, ftype: gguf.LlamaFileType) -> None:
        h = self.hparams
        w.add_context_length(h["max_position_embeddings"])
        w.add_embedding_length(h["hidden_size"])
        w.add_block_count(self.block_count)
        w.add_feed_forward_length(h["intermediate_size"])
        w.add_head_count(h["num_attention_heads"])
        w.add_head_count_kv(h["num_key_value_heads"] if "num_key_value_heads" in h else h["num_attention_heads"])
        w.add_layer_norm_rms_eps(h["rms_norm_eps"])
        w.add_key_length(h["head_dim"])
        w.add_value_length(h["head_dim"])
        w.add_file_type(int(ftype))
        w.add_attn_logit_softcapping(h["attn_logit_softcapping"])
        w.add_final_logit_softcapping(h["final_logit_softcapping"])
        w.add_sliding_window(h["sliding_window"])

    def set_vocab(self, w: gguf.GGUFWriter) -> None:
        vocab.set_vocab_sentencepiece(w, self.dir, self.hparams.get("vocab_size"))
        w.add_add_space_prefix(False)


class Gemma3Converter(_GemmaBase):
    hf_architectures = ("Gemma3ForCausalLM",)
    model_arch = gguf.MODEL_ARCH.GEMMA3
    config_defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
        "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
        "head_dim": 256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-6,
        "sliding_window": 4096, "final_logit_softcapping": None, "attn_logit_softcapping": None,
    }
    default_rope_theta = None  # Gemma3TextConfig keeps per-layer-type rope parameters

    def normalize_hparams(self, h: dict[str, Any]) -> dict[str, Any]:
        h = super().normalize_hparams(h)
        rp = h.get("rope_parameters")
        if not (isinstance(rp, dict) and ("full_attention" in rp or "sliding_attention" in rp)):
            rs = h.get("rope_scaling")
            full = dict(rs) if isinstance(rs, dict) else {"rope_type": "default"}
            full.setdefault("rope_type", full.get("type", "default"))
            flat = rp if isinstance(rp, dict) else {}
            full["rope_theta"] = flat.get("rope_theta", h.get("rope_theta", 1_000_000.0))
            local = h.get("rope_local_base_freq", 10_000.0)
            h["rope_parameters"] = {
                "sliding_attention": {"rope_type": "default", "rope_theta": local},
                "full_attention": full,
            }
        return h

    def _real_vocab(self) -> int:
        if (self.dir / "tokenizer.model").is_file():
            return len(vocab.spm_vocab(self.dir, self.hparams.get("vocab_size"))[0])
        _, raw = vocab.read_tokenizer_json(self.dir)
        model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
        return len(model.get("vocab") or {}) + len(raw.get("added_tokens") or [])

    def n_vocab(self) -> int:
        return min(int(self.hparams["vocab_size"]), self._vocab_rows())

    def _vocab_rows(self) -> int:
        if not hasattr(self, "_n_real"):
            self._n_real = self._real_vocab()
        return self._n_real

    def modify(self, name: str, t: LazyTensor, bid: int | None) -> Iterable[tuple[str, LazyTensor]]:
        if "embed_tokens.weight" in name:
            t = t.head_rows(self._vocab_rows())  # drop rows past the real vocabulary
        if name.endswith("norm.weight"):
            t = t.map(_plus_one)
        return super().modify(name, t, bid)

    def set_gguf_parameters(self, w: gguf.GGUFWriter, ftype: gguf.LlamaFileType) -> None:
        super().set_gguf_parameters(w, ftype)
        h = self.hparams
        w.add_context_length(h.get("max_position_embeddings", 131072))
        w.add_head_count(h.get("num_attention_heads", 8))
        w.add_layer_norm_rms_eps(h.get("rms_norm_eps", 1e-6))
        w.add_key_length(h.get("head_dim", 256))
        w.add_value_length(h.get("head_dim", 256))
        full = self.rope_parameters.get("full_attention", self.rope_parameters)
        w.add_rope_freq_base(full.get("rope_theta", 1_000_000.0))
        if h.get("attn_logit_softcapping") is not None:
            raise ConversionError(f"{self.dir}: Gemma 3 has no attn_logit_softcapping")
        if softcap := h.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(softcap)
        if h.get("sliding_window_pattern") != 1:
            w.add_sliding_window(h["sliding_window"])
        w.add_head_count_kv(h.get("num_key_value_heads", 4))

    def set_vocab(self, w: gguf.GGUFWriter) -> None:
        if (self.dir / "tokenizer.model").is_file():
            vocab.set_vocab_sentencepiece(w, self.dir, self.hparams.get("vocab_size"))
            w.add_add_space_prefix(False)
        else:
            vocab.set_vocab_gpt2(w, self.dir, self.hparams.get("vocab_size"))


CONVERTERS = {c: cls for cls in (Gemma2Converter, Gemma3Converter) for c in cls.hf_architectures}
