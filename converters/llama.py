"""Llama and Mistral (Hugging Face format) -> GGUF architecture "llama".

What llama.cpp's `LlamaModel` converter does for these:
- Q and K projections (weights and biases) get their rows permuted for llama.cpp's
  interleaved-pair RoPE ("normal" rope type); the data only moves.
- Llama 3 style rope scaling (`rope_type: llama3`) adds a generated `rope_freqs.weight`.
- Keys: the generic ones, then `llama.vocab_size` and `llama.rope.dimension_count`.
- Vocabulary: SentencePiece when tokenizer.model is there, else BPE from tokenizer.json;
  tokenizer_config's `add_prefix_space` first; CodeLlama's FIM ids (vocab 32016); add_bos off
  for vocab 49152 (SmolLM/Granite small).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import gguf
import numpy as np

from converters import vocab
from converters.base import Converter, decoder_shapes
from converters.errors import TokenizerError
from converters.lazy import LazyTensor, from_array, permute_qk_index
from converters.special_vocab import SpecialVocab, read_json


class LlamaConverter(Converter):
    hf_architectures = ("LlamaForCausalLM",)
    model_arch = gguf.MODEL_ARCH.LLAMA
    # transformers' LlamaConfig defaults for keys a config.json may leave out
    config_defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
    }

    def derive_hparams(self, h: dict[str, Any]) -> None:
        if h.get("num_key_value_heads") is None:
            h["num_key_value_heads"] = h["num_attention_heads"]
        if h.get("head_dim") is None:
            h["head_dim"] = h["hidden_size"] // h["num_attention_heads"]

    @property
    def head_dim(self) -> int:
        hd = self.hparams.get("head_dim")
        return int(hd) if hd is not None else self.hparams["hidden_size"] // self.hparams["num_attention_heads"]

    def filter_tensor_name(self, name: str) -> str | None:
        return super().filter_tensor_name(name.replace("text_model.", ""))

    def modify(self, name: str, t: LazyTensor, bid: int | None) -> Iterable[tuple[str, LazyTensor]]:
        n_head = int(self.find_hparam(["n_heads", "num_attention_heads"]))
        n_kv = int(self.find_hparam(["n_kv_heads", "num_key_value_heads"]))
        if name.endswith(("q_proj.weight", "q_proj.bias")):
            t = t.take_rows(permute_qk_index(t.shape[0], n_head))
        elif name.endswith(("k_proj.weight", "k_proj.bias")):
            t = t.take_rows(permute_qk_index(t.shape[0], n_kv))
        return super().modify(name, t, bid)

    def extra_tensors(self, w: gguf.GGUFWriter) -> Iterable[tuple[str, LazyTensor]]:
        rope = self.rope_parameters.get("full_attention", self.rope_parameters)
        if not rope or str(rope.get("rope_type", "")).lower() != "llama3":
            return []
        factors = llama3_rope_factors(
            rope.get("rope_theta", 10000.0), self.head_dim, rope.get("factor", 8.0),
            rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0),
            rope.get("original_max_position_embeddings", 8192),
        )
        return [(self.format_name(gguf.MODEL_TENSOR.ROPE_FREQS), from_array(factors))]

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes, self._optional = decoder_shapes(
            self, n_vocab=int(self.hparams["vocab_size"]),
            qkv_bias=bool(self.hparams.get("attention_bias")),
            mlp_bias=bool(self.hparams.get("mlp_bias")),
        )
        rope_freqs = self.format_name(gguf.MODEL_TENSOR.ROPE_FREQS)
        shapes[rope_freqs] = (self.head_dim // 2,)
        self._optional.add(rope_freqs)
        return shapes

    def optional_tensors(self) -> set[str]:
        return getattr(self, "_optional", set())

    def set_gguf_parameters(self, w: gguf.GGUFWriter, ftype: gguf.LlamaFileType) -> None:
        super().set_gguf_parameters(w, ftype)
        w.add_vocab_size(self.hparams["vocab_size"])
        w.add_rope_dimension_count(self.head_dim)

    def check_inputs(self) -> None:
        if not vocab.has_tokenizer(self.dir):
            raise TokenizerError(f"{self.dir}: no tokenizer.model or tokenizer.json found")

    def set_vocab(self, w: gguf.GGUFWriter) -> None:
        cfg_path = self.dir / "tokenizer_config.json"
        cfg = read_json(cfg_path) if cfg_path.is_file() else {}
        if isinstance(cfg, dict) and isinstance(cfg.get("add_prefix_space"), bool):
            w.add_add_space_prefix(cfg["add_prefix_space"])
        n_vocab = self.hparams.get("vocab_size")
        if (self.dir / "tokenizer.model").is_file():
            vocab.set_vocab_sentencepiece(w, self.dir, n_vocab)
        else:
            _, raw = vocab.read_tokenizer_json(self.dir)
            model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
            llama3 = model.get("ignore_merges", False) and not model.get("byte_fallback", True)
            if not llama3 and model.get("type") == "BPE" and model.get("byte_fallback", False):
                raise TokenizerError(
                    f"{self.dir}: a SentencePiece-style tokenizer.json without tokenizer.model; "
                    "add the tokenizer.model file to convert it"
                )
            vocab.set_vocab_gpt2(w, self.dir, n_vocab)
        if n_vocab == 32016:  # CodeLlama's fill-in-the-middle tokens
            sv = SpecialVocab(self.dir, special_token_types=("prefix", "suffix", "middle", "eot"))
            for typ, tid in (("prefix", 32007), ("suffix", 32008), ("middle", 32009), ("eot", 32010)):
                sv.set_special_token(typ, tid)
            sv.add_to_gguf(w)
        if n_vocab == 49152:  # as llama.cpp: SmolLM / Granite small vocabularies add no BOS
            w.add_add_bos_token(False)


class MistralConverter(LlamaConverter):
    """Hugging Face-format Mistral goes through llama.cpp's Llama converter unchanged."""

    hf_architectures = ("MistralForCausalLM",)
    config_defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "max_position_embeddings": 4096 * 32, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
    }


def llama3_rope_factors(base: float, dim: int, factor: float, low_freq_factor: float,
                        high_freq_factor: float, old_context_len: float) -> np.ndarray:
    """The `rope_freqs` tensor of Llama 3 rope scaling, computed in float32 as llama.cpp does."""
    f32 = np.float32
    freqs = f32(1.0) / (f32(base) ** (np.arange(0, dim, 2, dtype=f32) / f32(dim)))
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    out: list[Any] = []
    for freq in freqs:
        wavelen = f32(2 * math.pi) / freq
        if wavelen < f32(high_freq_wavelen):
            out.append(1)
        elif wavelen > f32(low_freq_wavelen):
            out.append(factor)
        else:
            smooth = (f32(old_context_len) / wavelen - f32(low_freq_factor)) / f32(high_freq_factor - low_freq_factor)
            out.append(f32(1) / ((f32(1) - smooth) / f32(factor) + smooth))
    return np.array(out, dtype=f32)


CONVERTERS = {c: cls for cls in (LlamaConverter, MistralConverter) for c in cls.hf_architectures}
