"""tokenizer.ggml.pre: llama.cpp's hash table, and the declared-pre-tokenizer mapping."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from converters import pretokenizer
from converters.errors import TokenizerError
from converters.pre_hashes import CHKTXT, PRE_TOKENIZER_HASHES
from converters.pretokenizer import LLAMA3_REGEX, QWEN2_REGEX, from_declared


def _extract(base_py: str) -> tuple[str, dict[str, str]]:
    body = base_py[base_py.index("Marker: Start get_vocab_base_pre"):base_py.index("Marker: End get_vocab_base_pre")]
    chk = ast.literal_eval(re.search(r"chktxt = ('.*')\n", body).group(1))
    table: dict[str, str] = {}
    for h, name in re.findall(r'if chkhsh == "([0-9a-f]{64})":\s*\n(?:\s*#[^\n]*\n)*\s*res = "([^"]+)"', body):
        table[h] = name  # sequential ifs: the last match wins
    assert len(re.findall(r"chkhsh ==", body)) == len(re.findall(r'res = "', body))
    return chk, table


@pytest.mark.slow
def test_table_equals_llama_cpp_source(llama_cpp_src) -> None:
    chk, table = _extract((llama_cpp_src.llama_cpp / "conversion" / "base.py").read_text(encoding="utf-8"))
    assert chk == CHKTXT
    assert table == PRE_TOKENIZER_HASHES


@pytest.mark.slow
def test_every_name_is_known_to_the_loader(llama_cpp_src) -> None:
    """Each BPE name we can write is one llama-vocab.cpp accepts (else loading throws).

    The hash table also names WordPiece vocabularies (BERT-style), whose pre-tokenizer name the
    loader never reads; those are the only ones it may not list.
    """
    src = (llama_cpp_src.llama_cpp / "src" / "llama-vocab.cpp").read_text(encoding="utf-8")
    names = set(re.findall(r'tokenizer_pre == "([^"]+)"', src))
    assert {k.name for k in pretokenizer.KNOWN} <= names
    assert set(PRE_TOKENIZER_HASHES.values()) - names <= {"bert-bge", "bert-bge-large", "jina-v2-en"}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "regex"), [
    ("llama-bpe", LLAMA3_REGEX), ("qwen2", QWEN2_REGEX), ("qwen35", pretokenizer.QWEN35_REGEX),
    ("tekken", pretokenizer.TEKKEN_REGEX), ("gpt-4o", pretokenizer.GPT4O_REGEX),
])
def test_regexes_are_llama_cpps_originals(llama_cpp_src, name: str, regex: str) -> None:
    """llama-vocab.cpp keeps each tokenizer.json regex in a comment ("original regex")."""
    src = (llama_cpp_src.llama_cpp / "src" / "llama-vocab.cpp").read_text(encoding="utf-8")
    c_literal = regex.replace("\\", "\\\\")
    assert f'"{c_literal}"' in src


def _json(steps: list[dict], ignore_merges: bool = False) -> dict:
    return {"pre_tokenizer": {"type": "Sequence", "pretokenizers": steps},
            "model": {"type": "BPE", "ignore_merges": ignore_merges}}


def _split(regex: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


BYTELEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
GPT2_BYTELEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}

DECLARED = [
    ("llama3", _json([_split(LLAMA3_REGEX), BYTELEVEL], ignore_merges=True), None, "llama-bpe"),
    ("llama3 regex, merges on", _json([_split(LLAMA3_REGEX), BYTELEVEL]), None, "dbrx"),
    ("qwen2", _json([_split(QWEN2_REGEX), BYTELEVEL]), None, "qwen2"),
    ("gpt-2", {"pre_tokenizer": GPT2_BYTELEVEL, "model": {"type": "BPE"}}, None, "gpt-2"),
    ("smollm", _json([{"type": "Digits", "individual_digits": True}, GPT2_BYTELEVEL]), False, "smollm"),
    ("starcoder", _json([{"type": "Digits", "individual_digits": True}, GPT2_BYTELEVEL]), True, "starcoder"),
]


@pytest.mark.parametrize(("label", "tj", "clean", "want"), DECLARED, ids=[d[0] for d in DECLARED])
def test_declared_mapping(label: str, tj: dict, clean: bool | None, want: str) -> None:
    assert from_declared(tj, clean) == want


UNKNOWN = [
    ("other regex", _json([_split(r"\p{L}+|\s+"), BYTELEVEL]), r"Split\(regex '\\\\p\{L\}\+"),
    ("prefix space", {"pre_tokenizer": {**GPT2_BYTELEVEL, "add_prefix_space": True}, "model": {}},
     "add_prefix_space=True"),
    ("metaspace", {"pre_tokenizer": {"type": "Metaspace"}, "model": {}}, "unknown\\(Metaspace\\)"),
]


@pytest.mark.parametrize(("label", "tj", "message"), UNKNOWN, ids=[u[0] for u in UNKNOWN])
def test_unknown_pattern_is_a_clear_error(label: str, tj: dict, message: str) -> None:
    with pytest.raises(TokenizerError, match=message):
        from_declared(tj)


def test_chkhsh_is_llama_cpps_formula() -> None:
    # sha256 of str(list of ids), e.g. "[1, 2, 3]"
    assert pretokenizer.chkhsh([1, 2, 3]) == "a36b1f2c3f84522dd1005145646617d7054c0851e97c72a039c0bdfac9fa07f3"


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "name"), [("llama-bpe", "llama-bpe"), ("qwen2", "qwen2"),
                                            ("qwen3", "qwen2"), ("smollm2", "smollm")])
def test_hash_of_real_vocabularies(kind: str, name: str, tiny_model_dir, smollm2_dir) -> None:
    from converters.vocab import load_tokenizer_json

    folder: Path = smollm2_dir if kind == "smollm2" else tiny_model_dir(kind)
    tok, _ = load_tokenizer_json(folder)
    assert pretokenizer.hash_name(tok)[1] == name
