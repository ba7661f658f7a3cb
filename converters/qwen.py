"""Qwen2 and Qwen3 -> GGUF architectures "qwen2" and "qwen3".

As llama.cpp's `Qwen2Model`/`Qwen3Model`: NEOX RoPE, so no Q/K permutation; q/k/v biases
(Qwen2) and per-head q/k RMS norms (Qwen3) map through the tensor-name table; keys are the
generic ones plus a sentence-transformers pooling type; the vocabulary is SentencePiece if
tokenizer.model exists, else BPE. Qwen3 rerankers (pooling RANK, a cls head cut from lm_head)
are not handled and are refused rather than converted as plain models.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gguf

from converters import vocab
from converters.base import Converter, decoder_shapes
from converters.errors import ConversionError, TokenizerError


class Qwen2Converter(Converter):
    hf_architectures = ("Qwen2ForCausalLM",)
    model_arch = gguf.MODEL_ARCH.QWEN2
    config_defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
        "num_hidden_layers": 32, "num_attention_heads": 32, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
    }
    qk_norm = False

    def derive_hparams(self, h: dict[str, Any]) -> None:
        if h.get("num_key_value_heads") is None:
            h["num_key_value_heads"] = h["num_attention_heads"]

    def check_inputs(self) -> None:
        if not vocab.has_tokenizer(self.dir):
            raise TokenizerError(f"{self.dir}: no tokenizer.model or tokenizer.json found")

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes, self._optional = decoder_shapes(
            self, n_vocab=int(self.hparams["vocab_size"]), qkv_bias=not self.qk_norm,
            qk_norm=self.qk_norm,
        )
        return shapes

    def optional_tensors(self) -> set[str]:
        return getattr(self, "_optional", set())

    def set_gguf_parameters(self, w: gguf.GGUFWriter, ftype: gguf.LlamaFileType) -> None:
        super().set_gguf_parameters(w, ftype)
        self.pooling_type(w)

    def set_vocab(self, w: gguf.GGUFWriter) -> None:
        if (self.dir / "tokenizer.model").is_file():
            vocab.set_vocab_sentencepiece(w, self.dir, self.hparams.get("vocab_size"))
        else:
            vocab.set_vocab_gpt2(w, self.dir, self.hparams.get("vocab_size"))


class Qwen3Converter(Qwen2Converter):
    hf_architectures = ("Qwen3ForCausalLM",)
    model_arch = gguf.MODEL_ARCH.QWEN3
    config_defaults: ClassVar[dict[str, Any]] = {
        **Qwen2Converter.config_defaults, "head_dim": 128, "attention_bias": False,
    }
    qk_norm = True

    def derive_hparams(self, h: dict[str, Any]) -> None:
        super().derive_hparams(h)
        if h.get("head_dim") is None:
            h["head_dim"] = h["hidden_size"] // h["num_attention_heads"]

    def check_inputs(self) -> None:
        super().check_inputs()
        readme = self.dir / "README.md"
        text = readme.read_text(encoding="utf-8", errors="replace").lower() if readme.is_file() else ""
        hints = [self.dir.name, str(self.config.get("_name_or_path", "")), str(self.config.get("model_type", ""))]
        if "# qwen3-reranker" in text or any("qwen3-reranker" in h.lower() for h in hints):
            raise ConversionError(f"{self.dir}: Qwen3 reranker models are not supported yet")

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes, self._optional = decoder_shapes(
            self, n_vocab=int(self.hparams["vocab_size"]),
            qkv_bias=bool(self.hparams.get("attention_bias")), qk_norm=True,
        )
        return shapes


CONVERTERS = {c: cls for cls in (Qwen2Converter, Qwen3Converter) for c in cls.hf_architectures}
