"""`tokenizer.ggml.pre`: which of llama.cpp's BPE pre-tokenizers a vocabulary needs.

First llama.cpp's own check: tokenize its check text, hash `str(ids)` with SHA-256 and look the
hash up in the table its converter carries (`pre_hashes.py`). A vocabulary llama.cpp does not
know yet (a retrained or extended tokenizer) gets an unknown hash even when its pre-tokenizer is
one llama.cpp implements; for those, the pre-tokenizer that tokenizer.json declares (its Split
regexes, ByteLevel and Digits steps, and the BPE model's `ignore_merges`) is matched against the
ones llama.cpp's `llama-vocab.cpp` implements, with the same regexes and flags. A declared
pattern llama.cpp has no pre-tokenizer for is an error that names it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from converters.errors import TokenizerError
from converters.pre_hashes import CHKTXT, PRE_TOKENIZER_HASHES

# The regexes as Hugging Face tokenizer.json files spell them (llama.cpp's llama-vocab.cpp keeps
# each original in a comment beside its own adapted copy).
_CONTRACTIONS = "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
LLAMA3_REGEX = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN35_REGEX = (
    _CONTRACTIONS
    + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEKKEN_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
    r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GPT4O_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+" + "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    + r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    + "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    + r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

Step = tuple[Any, ...]


def _split(regex: str) -> Step:
    return ("split", regex, "Isolated", False)


_BYTELEVEL_NO_REGEX: Step = ("bytelevel", False, False)  # add_prefix_space, use_regex
_BYTELEVEL_GPT2: Step = ("bytelevel", False, True)


@dataclass(frozen=True)
class KnownPreTokenizer:
    name: str  # the llama.cpp name written to tokenizer.ggml.pre
    steps: tuple[Step, ...]
    ignore_merges: bool  # what llama.cpp's loader sets for this name
    clean_up_spaces: bool | None = None  # tells apart names with the same regexes


# Declared form -> llama.cpp name. Order matters only where two entries have the same steps.
KNOWN: tuple[KnownPreTokenizer, ...] = (
    KnownPreTokenizer("llama-bpe", (_split(LLAMA3_REGEX), _BYTELEVEL_NO_REGEX), ignore_merges=True),
    KnownPreTokenizer("dbrx", (_split(LLAMA3_REGEX), _BYTELEVEL_NO_REGEX), ignore_merges=False),
    KnownPreTokenizer("qwen2", (_split(QWEN2_REGEX), _BYTELEVEL_NO_REGEX), ignore_merges=False),
    KnownPreTokenizer("qwen35", (_split(QWEN35_REGEX), _BYTELEVEL_NO_REGEX), ignore_merges=False),
    KnownPreTokenizer("tekken", (_split(TEKKEN_REGEX), _BYTELEVEL_NO_REGEX), ignore_merges=True),
    KnownPreTokenizer("gpt-4o", (_split(GPT4O_REGEX), _BYTELEVEL_NO_REGEX), ignore_merges=False),
    KnownPreTokenizer("gpt-2", (_BYTELEVEL_GPT2,), ignore_merges=False),
    KnownPreTokenizer(
        "smollm", (("digits", True), _BYTELEVEL_GPT2), ignore_merges=False, clean_up_spaces=False
    ),
    KnownPreTokenizer(
        "starcoder", (("digits", True), _BYTELEVEL_GPT2), ignore_merges=False, clean_up_spaces=True
    ),
)


def chkhsh(ids: list[int]) -> str:
    """llama.cpp's hash of the check text's token ids."""
    return hashlib.sha256(str(list(ids)).encode()).hexdigest()


def hash_name(tokenizer: Any) -> tuple[str, str | None]:
    """(hash, llama.cpp name or None) for a `tokenizers.Tokenizer`."""
    h = chkhsh(tokenizer.encode(CHKTXT).ids)
    return h, PRE_TOKENIZER_HASHES.get(h)


def _step(node: Any) -> list[Step]:
    if not isinstance(node, dict):
        return [("unknown", repr(node)[:40])]
    kind = node.get("type")
    if kind == "Sequence":
        out: list[Step] = []
        for child in node.get("pretokenizers") or []:
            out += _step(child)
        return out
    if kind == "Split":
        pattern = node.get("pattern") or {}
        regex = pattern.get("Regex") if isinstance(pattern, dict) else None
        if regex is None and isinstance(pattern, dict) and "String" in pattern:
            return [("split-string", pattern["String"], node.get("behavior"), bool(node.get("invert")))]
        return [("split", regex, node.get("behavior"), bool(node.get("invert")))]
    if kind == "ByteLevel":
        return [("bytelevel", bool(node.get("add_prefix_space", True)), bool(node.get("use_regex", True)))]
    if kind == "Digits":
        return [("digits", bool(node.get("individual_digits", False)))]
    return [("unknown", str(kind))]


def declared_steps(tokenizer_json: dict[str, Any]) -> tuple[Step, ...]:
    pre = tokenizer_json.get("pre_tokenizer")
    if pre is None:
        return ()
    return tuple(_step(pre))


def describe(steps: tuple[Step, ...]) -> str:
    parts = []
    for s in steps:
        if s[0] == "split":
            parts.append(f"Split(regex {s[1]!r}, {s[2]}{', inverted' if s[3] else ''})")
        elif s[0] == "bytelevel":
            parts.append(f"ByteLevel(add_prefix_space={s[1]}, use_regex={s[2]})")
        elif s[0] == "digits":
            parts.append(f"Digits(individual_digits={s[1]})")
        else:
            parts.append(f"{s[0]}({', '.join(map(str, s[1:]))})")
    return " + ".join(parts) or "none"


def from_declared(tokenizer_json: dict[str, Any], clean_up_spaces: bool | None = None) -> str:
    """The llama.cpp name whose regexes and flags equal the declared pre-tokenizer."""
    steps = declared_steps(tokenizer_json)
    model = tokenizer_json.get("model") if isinstance(tokenizer_json.get("model"), dict) else {}
    ignore_merges = bool(model.get("ignore_merges", False))
    matches = [k for k in KNOWN if k.steps == steps and k.ignore_merges == ignore_merges]
    if len(matches) > 1 and clean_up_spaces is not None:
        matches = [k for k in matches if k.clean_up_spaces in (None, clean_up_spaces)] or matches
    if not matches:
        raise TokenizerError(
            f"tokenizer.json declares the BPE pre-tokenizer {describe(steps)}"
            f"{' with ignore_merges' if ignore_merges else ''}, which llama.cpp has no "
            "pre-tokenizer for (and its check-text hash is not one llama.cpp knows)"
        )
    return matches[0].name


def resolve(tokenizer: Any, tokenizer_json: dict[str, Any], clean_up_spaces: bool | None = None) -> str:
    """llama.cpp's name by hash if it has one, else by the declared pre-tokenizer."""
    _, name = hash_name(tokenizer)
    if name is not None:
        return name
    return from_declared(tokenizer_json, clean_up_spaces)
