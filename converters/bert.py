"""BERT sentence-embedding models -> GGUF architecture "bert".

As llama.cpp's `BertModel` converter: `bert.` prefixes stripped, `.gamma/.beta` renamed, the
pooler, MLM and NSP heads and `position_ids` dropped; keys are the generic ones plus
`attention.causal = false` and the sentence-transformers pooling type; the WordPiece vocabulary
is written in llama.cpp's "phantom space" form with `token_type_count`. `token_types` and
`position_embd` stay F32 (the base flow's always-F32 list).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gguf

from converters import vocab
from converters.base import Converter
from converters.errors import ModelFolderError


class BertConverter(Converter):
    hf_architectures = ("BertModel",)
    model_arch = gguf.MODEL_ARCH.BERT
    config_defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12,
    }
    default_rope_theta = None  # absolute position embeddings, no RoPE

    def filter_tensor_name(self, name: str) -> str | None:
        name = name.removeprefix("bert.")
        if name.endswith(".gamma"):
            name = name[:-6] + ".weight"
        if name.endswith(".beta"):
            name = name[:-5] + ".bias"
        if name in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"):
            return None
        if name.startswith(("cls.predictions", "cls.seq_relationship")):
            return None
        return super().filter_tensor_name(name)

    def check_inputs(self) -> None:
        if not (self.dir / "tokenizer.json").is_file():
            raise ModelFolderError(f"{self.dir}: no tokenizer.json (WordPiece) found")

    def labels(self) -> list[str] | None:
        id2label = self.hparams.get("id2label")
        if not isinstance(id2label, dict) or not id2label:
            return None
        if len(id2label) == 2 and id2label.get("0", id2label.get(0)) == "LABEL_0":
            return None  # the dummy labels transformers' config classes add
        return [str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))]

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        h = self.hparams
        n_embd, n_ff = int(h["hidden_size"]), int(h["intermediate_size"])
        f, M = self.format_name, gguf.MODEL_TENSOR
        shapes: dict[str, tuple[int, ...]] = {
            f(M.TOKEN_EMBD): (int(h["vocab_size"]), n_embd),
            f(M.TOKEN_TYPES): (int(h["type_vocab_size"]), n_embd),
            f(M.POS_EMBD): (int(h["max_position_embeddings"]), n_embd),
            f(M.TOKEN_EMBD_NORM): (n_embd,),
            f(M.TOKEN_EMBD_NORM, suffix=".bias"): (n_embd,),
        }
        for i in range(self.block_count):
            for key in (M.ATTN_Q, M.ATTN_K, M.ATTN_V, M.ATTN_OUT):
                shapes[f(key, i)] = (n_embd, n_embd)
                shapes[f(key, i, ".bias")] = (n_embd,)
            for key in (M.ATTN_OUT_NORM, M.LAYER_OUT_NORM):
                shapes[f(key, i)] = (n_embd,)
                shapes[f(key, i, ".bias")] = (n_embd,)
            shapes[f(M.FFN_UP, i)] = (n_ff, n_embd)
            shapes[f(M.FFN_UP, i, ".bias")] = (n_ff,)
            shapes[f(M.FFN_DOWN, i)] = (n_embd, n_ff)
            shapes[f(M.FFN_DOWN, i, ".bias")] = (n_embd,)
        return shapes

    def set_gguf_parameters(self, w: gguf.GGUFWriter, ftype: gguf.LlamaFileType) -> None:
        super().set_gguf_parameters(w, ftype)
        w.add_causal_attention(False)
        self.pooling_type(w)
        if labels := self.labels():
            w.add_classifier_output_labels(labels)

    def set_vocab(self, w: gguf.GGUFWriter) -> None:
        vocab.set_vocab_wordpiece(w, self.dir, self.hparams.get("vocab_size"),
                                  int(self.hparams.get("type_vocab_size", 1)))


CONVERTERS = {c: cls for cls in (BertConverter,) for c in cls.hf_architectures}
