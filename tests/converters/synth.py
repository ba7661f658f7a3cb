"""Tiny synthetic Llama checkpoints for fast tests (no transformers, milliseconds to build).

`make_llama(dest)` writes config.json, model.safetensors (random bf16/f16/f32 weights with the
shapes the config implies) and a small byte-level BPE tokenizer with Llama 3's pre-tokenizer,
trained on a fixed text. Because the vocabulary is new, llama.cpp's hash check does not know
it: the converter names its pre-tokenizer from the declared regexes ("llama-bpe").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from converters.pretokenizer import LLAMA3_REGEX

TRAIN_TEXT = [
    "The quick brown fox jumps over the lazy dog. " * 4,
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "Numbers 3 33 333 3333, unicode café naïve Zürich, 我想在apple工作 🚀🦙",
    "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]


def make_tokenizer(dest: Path, vocab_size: int = 300, *, ignore_merges: bool = True,
                   regex: str = LLAMA3_REGEX) -> int:
    """A byte-level BPE tokenizer.json + tokenizer_config.json; returns the vocabulary size."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT, trainer)
    bos = tok.token_to_id(SPECIALS[0])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIALS[0]} $A", pair=f"{SPECIALS[0]} $A {SPECIALS[0]} $B",
        special_tokens=[(SPECIALS[0], bos)],
    )
    tok.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": SPECIALS[0], "eos_token": SPECIALS[1],
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    }))
    return tok.get_vocab_size()


def llama_config(n_vocab: int, **over: Any) -> dict[str, Any]:
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
        "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "vocab_size": n_vocab,
        "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1,
    }
    cfg.update(over)
    return cfg


def llama_tensors(cfg: dict[str, Any], dtype: str = "bf16", seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    e, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, e), "model.norm.weight": (e,),
                                          "lm_head.weight": (v, e)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (e,), p + "post_attention_layernorm.weight": (e,),
            p + "self_attn.q_proj.weight": (q, e), p + "self_attn.k_proj.weight": (kv, e),
            p + "self_attn.v_proj.weight": (kv, e), p + "self_attn.o_proj.weight": (e, q),
            p + "mlp.gate_proj.weight": (f, e), p + "mlp.up_proj.weight": (f, e),
            p + "mlp.down_proj.weight": (e, f),
        }
    out = {}
    for name, shape in shapes.items():
        x = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if name.endswith("norm.weight"):
            x += 1
        if dtype == "bf16":
            # numpy has no bfloat16: store the top half of the f32 bits (round to nearest even)
            bits = x.view(np.uint32)
            x = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        elif dtype == "f16":
            x = x.astype(np.float16)
        out[name] = x
    return out


_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.uint16): "BF16",
           np.dtype(np.int64): "I64"}


def save_safetensors(path: Path, tensors: dict[str, np.ndarray], header_extra: dict | None = None) -> None:
    """Write a .safetensors file (uint16 arrays are written as BF16: numpy has no bfloat16)."""
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        raw = arr.tobytes()
        header[name] = {"dtype": _DTYPES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header.update(header_extra or {})
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def make_llama(dest: Path, *, dtype: str = "bf16", config: dict[str, Any] | None = None,
               drop: tuple[str, ...] = (), extra: dict[str, np.ndarray] | None = None) -> Path:
    """A complete tiny Llama folder in `dest` (created)."""
    dest.mkdir(parents=True, exist_ok=True)
    n_vocab = make_tokenizer(dest)
    cfg = llama_config(n_vocab, **(config or {}))
    (dest / "config.json").write_text(json.dumps(cfg, indent=1))
    tensors = llama_tensors(cfg, dtype)
    for name in drop:
        tensors.pop(name)
    tensors.update(extra or {})
    save_safetensors(dest / "model.safetensors", tensors)
    return dest
