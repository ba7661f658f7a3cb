"""Special tokens, add_bos/add_eos flags, merges, chat template and normalizer flags.

This is what llama.cpp's converter reads with gguf-py's `SpecialVocab` (the copy vendored in
llama.cpp 0c1e57098, which is newer than the PyPI gguf 0.19.0 one: it knows the ByteLevel
post-processor and the normalizer flags). The behaviour below is the same, including the order
the keys are written in: merges, `{type}_token_id`s, `add_{type}_token`s, chat template,
normalizer flags.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from string import ascii_letters, digits
from typing import Any

import gguf

from converters.errors import TokenizerError

log = logging.getLogger(__name__)

DEFAULT_TYPES = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")
# keys of the vendored gguf-py that PyPI gguf 0.19.0 does not define yet
NORMALIZER_LOWERCASE = "tokenizer.ggml.normalizer.lowercase"
NORMALIZER_STRIP_ACCENTS = "tokenizer.ggml.normalizer.strip_accents"


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, ValueError) as e:
        raise TokenizerError(f"{path}: not valid JSON ({e})") from None


def add_chat_template(w: gguf.GGUFWriter, value: Any) -> None:
    """gguf-py's add_chat_template, except that named templates are listed in sorted order.

    gguf-py builds `tokenizer.chat_templates` from a set, so its order depends on
    PYTHONHASHSEED; sorting keeps the output byte-identical from run to run.
    """
    if isinstance(value, str):
        w.add_chat_template(value)
        return
    default = None
    names: list[str] = []
    for choice in value:
        if not isinstance(choice, dict):
            continue
        name = "".join(c if c in ascii_letters + digits else "_" for c in str(choice.get("name", "")))
        template = choice.get("template")
        if name and template is not None:
            if name == "default":
                default = template
            elif name not in names:
                names.append(name)
                w.add_string(gguf.Keys.Tokenizer.CHAT_TEMPLATE_N.format(name=name), template)
    if names:
        w.add_array(gguf.Keys.Tokenizer.CHAT_TEMPLATES, sorted(names))
    if default is not None:
        w.add_chat_template(default)


def _special_id(entry: Any) -> str | None:
    if isinstance(entry, dict):
        v = entry.get("SpecialToken", {})
        return v.get("id") if isinstance(v, dict) else None
    return None


class SpecialVocab:
    def __init__(
        self,
        path: Path,
        load_merges: bool = False,
        special_token_types: Iterable[str] | None = None,
        n_vocab: int | None = None,
        tokenizer_json: dict[str, Any] | None = None,
    ) -> None:
        self.special_token_ids: dict[str, int] = {}
        self.add_special_token: dict[str, bool] = {}
        self.n_vocab = n_vocab
        self.load_merges = load_merges
        self.merges: list[str] = []
        self.chat_template: Any = None
        self.normalizer_lowercase: bool | None = None
        self.normalizer_strip_accents: bool | None = None
        self.special_token_types: tuple[str, ...] = tuple(special_token_types or DEFAULT_TYPES)
        self._from_tokenizer_json(path, tokenizer_json)
        self._from_config_json(path)
        if self.load_merges and not self.merges:
            self._merges_txt(path)

    # -- output -------------------------------------------------------------------------
    def add_to_gguf(self, w: gguf.GGUFWriter) -> None:
        if self.merges:
            w.add_token_merges(self.merges)
        for typ, tokid in self.special_token_ids.items():
            handler = getattr(w, f"add_{typ}_token_id", None)
            if handler is not None:
                handler(tokid)
        for typ, value in self.add_special_token.items():
            handler = getattr(w, f"add_add_{typ}_token", None)
            if handler is not None:
                handler(value)
        if self.chat_template is not None:
            add_chat_template(w, self.chat_template)
        if self.normalizer_lowercase is not None:
            w.add_bool(NORMALIZER_LOWERCASE, self.normalizer_lowercase)
        if self.normalizer_strip_accents is not None:
            w.add_bool(NORMALIZER_STRIP_ACCENTS, self.normalizer_strip_accents)

    def set_special_token(self, typ: str, tid: Any) -> None:
        """First value wins; ids outside the vocabulary are skipped, as llama.cpp does."""
        if not isinstance(tid, int) or isinstance(tid, bool):
            return
        if tid < 0:
            raise TokenizerError(f"invalid id {tid} for special token type {typ}")
        if self.n_vocab is None or tid < self.n_vocab:
            self.special_token_ids.setdefault(typ, tid)
        else:
            log.warning("special token %s id %d is outside the vocabulary; skipped", typ, tid)

    # -- sources ------------------------------------------------------------------------
    def _merges_txt(self, path: Path) -> None:
        merges_file = path / "merges.txt"
        if not merges_file.is_file():
            return
        lines = merges_file.read_text(encoding="utf-8").splitlines()
        if lines and lines[0].strip().startswith("#"):
            lines = lines[1:]
        merges = []
        for line in lines:
            parts = line.strip().split(None, 3)
            if len(parts) == 2:
                merges.append(f"{parts[0]} {parts[1]}")
        self.merges = merges

    def _parse_normalizer(self, normalizer: Any) -> None:
        if not isinstance(normalizer, dict):
            return
        kind = normalizer.get("type")
        if kind == "Lowercase":
            self.normalizer_lowercase = True
        elif kind == "StripAccents":
            self.normalizer_strip_accents = True
        elif kind == "BertNormalizer":
            if "lowercase" in normalizer:
                self.normalizer_lowercase = normalizer["lowercase"]
            if "strip_accents" in normalizer:
                self.normalizer_strip_accents = normalizer["strip_accents"]
        elif kind == "Sequence":
            for n in normalizer.get("normalizers", []) or []:
                self._parse_normalizer(n)

    def _load_merges(self, tokenizer: dict[str, Any]) -> None:
        model = tokenizer.get("model")
        merges = model.get("merges") if isinstance(model, dict) else None
        if not isinstance(merges, list) or not merges:
            return
        if isinstance(merges[0], str):
            self.merges = [str(m) for m in merges]
            return
        if not (isinstance(merges[0], list) and len(merges[0]) == 2 and isinstance(merges[0][0], str)):
            raise TokenizerError("tokenizer.json: unknown format of model.merges")
        # transformers >= 4.45 writes pairs (so parts may hold spaces); GGUF keeps the old
        # "a b" form with a space inside a part written as U+0120 (llama.cpp issue #9692)
        try:
            self.merges = [
                f"{a} {b}" if " " not in a and " " not in b else
                " ".join(p.replace(" ", "\u0120") for p in (a, b))
                for a, b in merges
            ]
        except (TypeError, ValueError):
            raise TokenizerError("tokenizer.json: unknown format of model.merges") from None

    def _from_tokenizer_json(self, path: Path, preloaded: dict[str, Any] | None) -> None:
        tokenizer: dict[str, Any] | None = None
        added_tokens: list[Any] = []
        if preloaded is not None or (path / "tokenizer.json").is_file():
            tokenizer = preloaded if preloaded is not None else read_json(path / "tokenizer.json")
            if not isinstance(tokenizer, dict):
                raise TokenizerError(f"{path / 'tokenizer.json'}: not a JSON object")
            if self.load_merges:
                self._load_merges(tokenizer)
            if normalizer := tokenizer.get("normalizer"):
                self._parse_normalizer(normalizer)
            added_tokens = tokenizer.get("added_tokens") or []
        cfg: dict[str, Any] | None = None
        if (path / "tokenizer_config.json").is_file():
            cfg = read_json(path / "tokenizer_config.json")
            if not isinstance(cfg, dict):
                cfg = None
        if tokenizer:
            self._from_post_processor(tokenizer, cfg)
        if not cfg:
            return
        self._chat_template(path, cfg)
        for typ in self.special_token_types:
            add_entry = cfg.get(f"add_{typ}_token")
            if isinstance(add_entry, bool) and typ not in self.add_special_token:
                # the post-processor (read above) wins over tokenizer_config when both say
                self.add_special_token[typ] = add_entry
            entry = cfg.get(f"{typ}_token")
            if isinstance(entry, dict):
                entry = entry.get("content")
            if not isinstance(entry, str):
                continue
            tid = next(
                (t.get("id") for t in added_tokens if isinstance(t, dict) and t.get("content") == entry),
                None,
            )
            self.set_special_token(typ, tid)

    def _chat_template(self, path: Path, cfg: dict[str, Any]) -> None:
        alt: Any = None
        jinja = path / "chat_template.jinja"
        if jinja.is_file():
            alt = jinja.read_text(encoding="utf-8")
            extra = sorted((path / "additional_chat_templates").glob("*.jinja"))
            if extra:
                alt = [{"name": "default", "template": alt}]
                alt += [{"name": p.stem, "template": p.read_text(encoding="utf-8")} for p in extra]
        elif (path / "chat_template.json").is_file():
            data = read_json(path / "chat_template.json")
            alt = data.get("chat_template") if isinstance(data, dict) else None
        template = cfg.get("chat_template", alt)
        if template is None or isinstance(template, str | list):
            self.chat_template = template

    def _from_post_processor(self, tokenizer: dict[str, Any], cfg: dict[str, Any] | None) -> None:
        """Which special tokens the tokenizer adds around a sequence (and which ones they are)."""
        post = tokenizer.get("post_processor")
        if not isinstance(post, dict):
            return
        c = cfg if cfg is not None else {}
        bos, cls_, eos, sep = (c.get(k) for k in ("bos_token", "cls_token", "eos_token", "sep_token"))
        if not bos and cls_ and cfg:
            cfg["bos_token"] = bos = cls_
        if not eos and sep and cfg:
            cfg["eos_token"] = eos = sep
        processors = post.get("processors", [post])
        for proc in processors if isinstance(processors, list) else []:
            if not isinstance(proc, dict):
                continue
            kind = proc.get("type")
            if kind == "ByteLevel":
                self.add_special_token.setdefault("bos", False)
                self.add_special_token.setdefault("eos", False)
            elif kind == "RobertaProcessing":
                self.add_special_token.update(bos=True, eos=True, sep=True)
                if not cls_ and cfg:
                    cls_ = (proc.get("cls") or [bos])[0]
                    cfg["cls_token"] = cls_
                if not sep and cfg:
                    sep = (proc.get("sep") or [eos])[0]
                    cfg["sep_token"] = sep
            elif kind == "TemplateProcessing":
                bos, cls_, eos, sep = self._template(proc, cfg, bos, cls_, eos, sep)

    def _template(
        self, proc: dict[str, Any], cfg: dict[str, Any] | None, bos: Any, cls_: Any, eos: Any, sep: Any
    ) -> tuple[Any, Any, Any, Any]:
        """The crude TemplateProcessing reading llama.cpp does (simple templates only)."""
        single = proc.get("single") or []
        pair = proc.get("pair") or []
        first = last = None
        if len(single) > 1:
            if first := _special_id(single[0]):
                if not cfg:
                    bos = first
                elif first not in (bos, cls_):
                    if not bos:
                        cfg["bos_token"] = bos = first
                    if not cls_:
                        cfg["cls_token"] = cls_ = first
                self.add_special_token["bos"] = first in (bos, cls_)
            if last := _special_id(single[-1]):
                if not cfg:
                    eos = last
                elif last != eos:
                    if "eot" not in self.special_token_types:
                        self.special_token_types += ("eot",)
                        cfg["eot_token"] = eos
                    elif "eom" not in self.special_token_types:
                        self.special_token_types += ("eom",)
                        cfg["eom_token"] = eos
                    cfg["eos_token"] = eos = last
                self.add_special_token["eos"] = last == eos
        if pair:
            start = 1 if first and _special_id(pair[0]) == first else 0
            stop = -1 if last and _special_id(pair[-1]) == last else None
            mid = pair[slice(start, stop)]
            if mid:
                a = mid[0].get("Sequence", {}).get("id") if isinstance(mid[0], dict) else None
                b = mid[-1].get("Sequence", {}).get("id") if isinstance(mid[-1], dict) else None
                if a == "A" and b == "B" and (mid := mid[1:-1]):
                    add_sep = False
                    if (entry := _special_id(mid[0])) and entry in (sep, eos) and not last:
                        add_sep = True
                    if len(mid) == 2 and (entry := _special_id(mid[1])) and entry in (sep, eos):
                        add_sep = True
                    self.add_special_token["sep"] = add_sep
                    if add_sep and not sep and cfg:
                        cfg["sep_token"] = eos
        return bos, cls_, eos, sep

    def _from_config_json(self, path: Path) -> None:
        if not (path / "config.json").is_file():
            return
        config = read_json(path / "config.json")
        if not isinstance(config, dict):
            return
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
        for typ in self.special_token_types:
            tid = config.get(f"{typ}_token_id")
            if tid is None:
                tid = text.get(f"{typ}_token_id")
            self.set_special_token(typ, tid)
