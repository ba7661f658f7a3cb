"""Special tokens, add_* flags, merges and chat templates, as gguf-py's SpecialVocab reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import pytest

from converters.special_vocab import SpecialVocab

ADDED = [{"id": 0, "content": "<s>"}, {"id": 1, "content": "</s>"}, {"id": 2, "content": "[SEP]"},
         {"id": 3, "content": "[CLS]"}]
TEMPLATE_BOS = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {}}
BERT_TEMPLATE = {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": "[CLS]"}}, {"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "[SEP]"}}],
                 "pair": [{"SpecialToken": {"id": "[CLS]"}}, {"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "[SEP]"}},
                          {"Sequence": {"id": "B"}}, {"SpecialToken": {"id": "[SEP]"}}]}

CASES = [
    ("template bos", TEMPLATE_BOS, {"bos_token": "<s>", "eos_token": "</s>"},
     {"bos": 0, "eos": 1}, {"bos": True, "sep": False}),
    ("bytelevel", {"type": "ByteLevel"}, {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True},
     {"bos": 0, "eos": 1}, {"bos": False, "eos": False}),
    ("roberta", {"type": "RobertaProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 3]},
     {"bos_token": "<s>", "eos_token": "</s>"}, {"bos": 0, "eos": 1, "sep": 2, "cls": 3},
     {"bos": True, "eos": True, "sep": True}),
    ("bert template", BERT_TEMPLATE, {"cls_token": "[CLS]", "sep_token": "[SEP]"},
     {"bos": 3, "eos": 2, "sep": 2, "cls": 3}, {"bos": True, "eos": True, "sep": False}),
    ("config flags only", None, {"bos_token": "<s>", "add_bos_token": True, "add_eos_token": False},
     {"bos": 0}, {"bos": True, "eos": False}),
]


@pytest.mark.parametrize(("label", "post", "cfg", "ids", "flags"), CASES, ids=[c[0] for c in CASES])
def test_post_processor_and_config(tmp_path: Path, label: str, post, cfg: dict, ids: dict, flags: dict) -> None:
    tj = {"model": {"type": "BPE", "vocab": {}, "merges": []}, "added_tokens": ADDED}
    if post is not None:
        tj["post_processor"] = post
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    sv = SpecialVocab(tmp_path)
    assert sv.special_token_ids == ids
    assert sv.add_special_token == flags


def _folder(tmp_path: Path, post, cfg: dict) -> Path:
    tj = {"model": {"type": "BPE", "vocab": {}, "merges": []}, "added_tokens": ADDED}
    if post is not None:
        tj["post_processor"] = post
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize(("label", "post", "cfg", "ids", "flags"), CASES, ids=[c[0] for c in CASES])
def test_same_as_vendored_gguf_py(tmp_path: Path, llama_cpp_src, label: str, post, cfg: dict,
                                  ids: dict, flags: dict) -> None:
    """The oracle: llama.cpp's own (vendored) gguf-py SpecialVocab on the same folder."""
    folder = _folder(tmp_path, post, cfg)
    code = ("import json, sys, gguf; sv = gguf.SpecialVocab(sys.argv[1]); "
            "print(json.dumps([sv.special_token_ids, sv.add_special_token]))")
    env = {**os.environ, "PYTHONPATH": str(llama_cpp_src.gguf_py)}
    out = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, capture_output=True,
                         text=True, check=True).stdout
    want_ids, want_flags = json.loads(out.strip().splitlines()[-1])
    sv = SpecialVocab(folder)
    assert (sv.special_token_ids, sv.add_special_token) == (want_ids, want_flags)


def test_config_json_ids_fill_gaps_and_range_is_checked(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"bos_token_id": 5, "eos_token_id": 99, "pad_token_id": 7}))
    sv = SpecialVocab(tmp_path, n_vocab=10)
    assert sv.special_token_ids == {"bos": 5, "pad": 7}


def test_pair_merges_with_spaces(tmp_path: Path) -> None:
    tj = {"model": {"type": "BPE", "merges": [["a", "b"], ["c d", "e"]]}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    assert SpecialVocab(tmp_path, load_merges=True).merges == ["a b", "c\u0120d e"]


def test_chat_templates(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    (tmp_path / "chat_template.jinja").write_text("{{ x }}")
    extra = tmp_path / "additional_chat_templates"
    extra.mkdir()
    (extra / "tool_use.jinja").write_text("T")
    (extra / "rag.jinja").write_text("R")
    w = gguf.GGUFWriter(None, "llama")
    SpecialVocab(tmp_path).add_to_gguf(w)
    kv = {k: v.value for k, v in w.kv_data[0].items()}
    assert kv["tokenizer.chat_template"] == "{{ x }}"
    assert kv["tokenizer.chat_templates"] == ["rag", "tool_use"]  # sorted: reproducible
    assert kv["tokenizer.chat_template.rag"] == "R"


def test_tokenizer_config_template_wins(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "A"}))
    (tmp_path / "chat_template.jinja").write_text("B")
    assert SpecialVocab(tmp_path).chat_template == "A"


def test_normalizer_flags(tmp_path: Path) -> None:
    tj = {"model": {"type": "WordPiece"}, "normalizer": {"type": "BertNormalizer", "lowercase": True,
                                                         "strip_accents": None}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    sv = SpecialVocab(tmp_path)
    assert sv.normalizer_lowercase is True and sv.normalizer_strip_accents is None
