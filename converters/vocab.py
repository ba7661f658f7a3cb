"""Tokenizers -> the `tokenizer.ggml.*` keys llama.cpp reads.

Three vocabulary kinds, as llama.cpp's converter builds them:
- SentencePiece (`tokenizer.model`) -> model "llama": pieces, scores and token types, with
  added tokens from added_tokens.json and tokenizer_config.json's added_tokens_decoder.
- BPE (`tokenizer.json`) -> model "gpt2": tokens and types (no scores), the pre-tokenizer name,
  merges.
- WordPiece (`tokenizer.json`) -> model "bert": tokens in "phantom space" form.
Each ends with the special tokens, flags and chat template (`special_vocab.SpecialVocab`).
The `tokenizers` library stands in for transformers' AutoTokenizer, which llama.cpp uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf

from converters import pretokenizer
from converters.errors import ModelFolderError, TokenizerError
from converters.special_vocab import SpecialVocab, read_json

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = (int(t) for t in (
    gguf.TokenType.NORMAL, gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL,
    gguf.TokenType.USER_DEFINED, gguf.TokenType.UNUSED, gguf.TokenType.BYTE,
))
SPM_SPACE = "\u2581"


def looks_special(token: str) -> bool:
    """Added tokens llama.cpp treats as CONTROL even when not marked special."""
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )


def has_tokenizer(model_dir: Path) -> bool:
    return (model_dir / "tokenizer.model").is_file() or (model_dir / "tokenizer.json").is_file()


def _tokenizer_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "tokenizer_config.json"
    cfg = read_json(path) if path.is_file() else {}
    return cfg if isinstance(cfg, dict) else {}


# -- SentencePiece ---------------------------------------------------------------------------
def load_spm(model_dir: Path) -> Any:
    from sentencepiece import SentencePieceProcessor

    path = model_dir / "tokenizer.model"
    if not path.is_file():
        raise ModelFolderError(f"{model_dir}: no tokenizer.model (SentencePiece) found")
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(path))
    except (OSError, RuntimeError) as e:
        raise TokenizerError(f"{path}: not a valid SentencePiece model ({e})") from None
    return sp


def spm_base(sp: Any, vocab_size: int) -> tuple[list[str], list[float], list[int]]:
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [UNUSED] * vocab_size
    for i in range(min(sp.vocab_size(), vocab_size)):
        t = NORMAL
        if sp.IsUnknown(i):
            t = UNKNOWN
        elif sp.IsControl(i):
            t = CONTROL
        elif sp.IsUnused(i):
            t = UNUSED
        elif sp.IsByte(i):
            t = BYTE
        tokens[i], scores[i], types[i] = sp.IdToPiece(i), sp.GetScore(i), t
    return tokens, scores, types


def spm_vocab(model_dir: Path, vocab_size: int | None) -> tuple[list[str], list[float], list[int]]:
    """llama.cpp's `_create_vocab_sentencepiece`: tokens, scores, token types."""
    sp = load_spm(model_dir)
    n = vocab_size or sp.vocab_size()
    tokens, scores, types = spm_base(sp, n)
    added_path = model_dir / "added_tokens.json"
    if added_path.is_file():
        added = read_json(added_path)
        for text, tid in (added.items() if isinstance(added, dict) else []):
            if isinstance(tid, int) and 0 <= tid < n:
                tokens[tid], scores[tid], types[tid] = text, -1000.0, USER_DEFINED
    decoder = _tokenizer_config(model_dir).get("added_tokens_decoder") or {}
    for key, data in decoder.items() if isinstance(decoder, dict) else []:
        try:
            tid = int(key)
        except ValueError:
            continue
        token = data.get("content") if isinstance(data, dict) else None
        if not isinstance(token, str) or not 0 <= tid < n:
            continue
        if data.get("special") or looks_special(token):
            types[tid] = CONTROL
        else:
            token = token.replace(SPM_SPACE, " ")  # user-defined spaces are pre-normalized
            types[tid] = USER_DEFINED
        scores[tid], tokens[tid] = -1000.0, token
    return tokens, scores, types


def add_spm_vocab(w: gguf.GGUFWriter, tokens: list[str], scores: list[float], types: list[int]) -> None:
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)


def set_vocab_sentencepiece(w: gguf.GGUFWriter, model_dir: Path, vocab_size: int | None) -> None:
    tokens, scores, types = spm_vocab(model_dir, vocab_size)
    add_spm_vocab(w, tokens, scores, types)
    SpecialVocab(model_dir, n_vocab=len(tokens)).add_to_gguf(w)


# -- tokenizer.json (BPE, WordPiece) ---------------------------------------------------------
def read_tokenizer_json(model_dir: Path) -> tuple[str, dict[str, Any]]:
    """The text and the parsed JSON of model_dir/tokenizer.json (read once, shared)."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelFolderError(f"{model_dir}: no tokenizer.json found")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text)
    except (UnicodeDecodeError, ValueError) as e:
        raise TokenizerError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise TokenizerError(f"{path}: not a JSON object")
    return text, raw


def load_tokenizer_json(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The `tokenizers.Tokenizer` and the raw JSON of model_dir/tokenizer.json."""
    from tokenizers import Tokenizer

    text, raw = read_tokenizer_json(model_dir)
    try:
        tok = Tokenizer.from_str(text)
    except Exception as e:  # noqa: BLE001 - the Rust side raises plain Exceptions
        raise TokenizerError(
            f"{model_dir / 'tokenizer.json'}: cannot be loaded by the tokenizers library ({e})"
        ) from None
    return tok, raw


def vocab_base(model_dir: Path, vocab_size: int | None, expect: str,
               loaded: tuple[Any, dict[str, Any]] | None = None) -> tuple[list[str], list[int], str]:
    """llama.cpp's `get_vocab_base`: tokens, token types and the pre-tokenizer name."""
    tok, raw = loaded or load_tokenizer_json(model_dir)
    kind = (raw.get("model") or {}).get("type") if isinstance(raw.get("model"), dict) else None
    if kind != expect:
        raise TokenizerError(
            f"{model_dir / 'tokenizer.json'}: a {kind or 'unknown'} tokenizer where {expect} was expected"
        )
    vocab: dict[str, int] = tok.get_vocab(with_added_tokens=True)
    n = vocab_size or len(vocab)
    if vocab and max(vocab.values()) >= n:
        raise TokenizerError(
            f"{model_dir / 'tokenizer.json'}: token id {max(vocab.values())} does not fit the "
            f"config's vocab_size {n}"
        )
    cfg = _tokenizer_config(model_dir)
    clean = cfg.get("clean_up_tokenization_spaces")
    if expect == "WordPiece":
        # llama.cpp's loader reads no pre-tokenizer for WordPiece ("only BPE models have
        # pre-tokenizers"): keep its hash name where it has one, else "default"
        pre = pretokenizer.hash_name(tok)[1] or "default"
    else:
        pre = pretokenizer.resolve(tok, raw, clean if isinstance(clean, bool) else None)
    reverse = {i: t for t, i in vocab.items()}
    decoder = tok.get_added_tokens_decoder()
    added = {t.content: i for i, t in sorted(decoder.items())}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n):
        token = reverse.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
            continue
        if token in added and i in decoder:
            # llama.cpp expects CONTROL/USER_DEFINED tokens pre-normalized
            if not decoder[i].normalized:
                token = tok.decode(tok.encode(token, add_special_tokens=False).ids,
                                   skip_special_tokens=False)
            if decoder[i].special or looks_special(token):
                types.append(CONTROL)
            else:
                token = token.replace(SPM_SPACE, " ")
                types.append(USER_DEFINED)
        else:
            types.append(NORMAL)
        tokens.append(token)
    return tokens, types, pre


def set_vocab_gpt2(w: gguf.GGUFWriter, model_dir: Path, vocab_size: int | None) -> None:
    tok, raw = load_tokenizer_json(model_dir)
    tokens, types, pre = vocab_base(model_dir, vocab_size, "BPE", (tok, raw))
    del tok
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    SpecialVocab(model_dir, load_merges=True, tokenizer_json=raw).add_to_gguf(w)


def set_vocab_wordpiece(w: gguf.GGUFWriter, model_dir: Path, vocab_size: int | None,
                        type_vocab_size: int) -> int:
    """BERT's vocabulary in llama.cpp's "phantom space" form; returns the token count."""
    tok, raw = load_tokenizer_json(model_dir)
    tokens, types, pre = vocab_base(model_dir, vocab_size, "WordPiece", (tok, raw))
    del tok
    w.add_token_type_count(type_vocab_size)

    def phantom(tok: str, typ: int) -> str:
        if typ == CONTROL:
            return tok
        return tok[2:] if tok.startswith("##") else SPM_SPACE + tok

    tokens = [phantom(t, ty) for t, ty in zip(tokens, types, strict=True)]
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    SpecialVocab(model_dir, n_vocab=len(tokens), tokenizer_json=raw).add_to_gguf(w)
    return len(tokens)
