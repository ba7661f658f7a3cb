"""Continuous batching over llama.cpp's low-level API (runs inside the runner process).

llama-cpp-python's `Llama` object drives one sequence. Here one llama_context holds
`num_parallel` sequences (slots); every step puts the next token of each generating slot and
as much pending prompt as fits `num_batch` into one `llama_batch` with per-token sequence ids,
decodes once, and samples each slot from its own row of logits with its own sampler chain
(the same chain order as `Llama._init_sampler`, so one active sequence reproduces
llama-cpp-python's output). Each slot keeps the tokens in its KV sequence, so a new request
reuses the longest cached prefix (`llama_memory_seq_rm` drops the rest); long generations
shift the context (`llama_memory_seq_add`) as Ollama does when `shift` is on.
"""

from __future__ import annotations

import codecs
import ctypes
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import llama_cpp.llama_cpp as C
import numpy as np

# llama.cpp logs through a callback that llama-cpp-python installs on import
from llama_cpp import _logger as _llama_logger

DEFAULT_SEED = C.LLAMA_DEFAULT_SEED


class EngineError(Exception):
    """A request the engine cannot serve (reported to the client, the process lives on)."""


class ContextOverflow(EngineError):
    pass


def set_verbose(verbose: bool) -> None:
    _llama_logger.set_verbose(verbose)


@dataclass
class _Slot:
    seq: int
    cache: list[int] = field(default_factory=list)  # tokens whose KV this sequence holds
    # leading cache positions whose KV came from aligned, single-sequence prompt chunks: exactly
    # what a fresh evaluation computes, so reusing them cannot change the output
    clean: int = 0
    req_id: int | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens not decoded yet
    sampler: Any = None
    i_batch: int = -1
    last_token: int = -1
    n_prompt: int = 0
    n_cached: int = 0  # prompt tokens reused from the cache
    n_generated: int = 0
    num_predict: int = -1
    num_keep: int = 4
    shift: bool = True
    stop: list[str] = field(default_factory=list)
    held: str = ""  # text held back because it may start a stop string
    decoder: Any = None
    logprobs: bool = False
    top_logprobs: int = 0
    t_start: float = 0.0
    t_first: float = 0.0

    @property
    def active(self) -> bool:
        return self.req_id is not None


class Engine:
    """One model, one context, `n_parallel` slots."""

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        self.options = options
        self.n_parallel = max(1, int(options.get("num_parallel", 1)))
        self.embedding_only = bool(options.get("embedding_only", False))
        n_threads = int(options.get("num_thread") or 0) or max(1, (os.cpu_count() or 2) // 2)
        self.n_threads = n_threads

        C.llama_backend_init()
        mp = C.llama_model_default_params()
        num_gpu = int(options.get("num_gpu", -1))
        mp.n_gpu_layers = 0x7FFFFFFF if num_gpu < 0 else num_gpu
        mp.main_gpu = int(options.get("main_gpu", 0))
        mp.load_mode = C.LLAMA_LOAD_MODE_MMAP if options.get("use_mmap", True) else C.LLAMA_LOAD_MODE_NONE
        mp.use_extra_bufts = bool(options.get("extra_bufts", True))
        self.model = C.llama_model_load_from_file(model_path.encode("utf-8"), mp)
        if not self.model:
            raise EngineError(f"llama.cpp could not load {model_path}")
        self.vocab = C.llama_model_get_vocab(self.model)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        self.n_embd = C.llama_model_n_embd(self.model)
        self.n_ctx_train = C.llama_model_n_ctx_train(self.model)

        num_ctx = int(options.get("num_ctx", 4096)) or self.n_ctx_train
        if self.n_ctx_train > 0:
            num_ctx = min(num_ctx, self.n_ctx_train)
        num_ctx = max(num_ctx, 4)
        self.num_ctx = num_ctx
        num_batch = max(1, int(options.get("num_batch", 512)))
        if self.embedding_only:
            # encoder models need a whole input in one micro-batch
            num_batch = max(num_batch, num_ctx)
            self.n_parallel = 1
        self.n_batch = num_batch
        self.prefix_reuse = str(options.get("prompt_cache", "exact")) == "prefix"

        cp = C.llama_context_default_params()
        cp.n_ctx = num_ctx * self.n_parallel
        cp.n_batch = num_batch
        cp.n_ubatch = num_batch
        cp.n_seq_max = self.n_parallel
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        cp.kv_unified = False
        cp.flash_attn_type = (
            C.LLAMA_FLASH_ATTN_TYPE_ENABLED if options.get("flash_attn") else C.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        kv_type = _KV_TYPES.get(str(options.get("kv_cache_type", "f16")).lower())
        if kv_type is not None:
            cp.type_k = kv_type
            cp.type_v = kv_type
        cp.embeddings = self.embedding_only
        if self.embedding_only:
            cp.n_seq_max = min(self.n_batch, C.llama_max_parallel_sequences())
            cp.kv_unified = True
            cp.n_ctx = num_ctx
        self.ctx = C.llama_init_from_model(self.model, cp)
        if not self.ctx:
            C.llama_model_free(self.model)
            raise EngineError("llama.cpp could not create a context (out of memory?)")
        self.mem = C.llama_get_memory(self.ctx)
        self.n_ctx_seq = C.llama_n_ctx_seq(self.ctx) if self.n_parallel > 1 else C.llama_n_ctx(self.ctx)
        self.n_seq_max = cp.n_seq_max
        self.batch = C.llama_batch_init(self.n_batch, 0, max(1, self.n_seq_max))
        self.can_shift = bool(self.mem) and bool(C.llama_memory_can_shift(self.mem))
        self.pooling = C.llama_pooling_type(self.ctx)
        self._emb_ctx: Any = None

        self.slots = [_Slot(seq=i) for i in range(self.n_parallel)] if not self.embedding_only else []
        self.waiting: deque[tuple[int, dict[str, Any]]] = deque()
        self.events: list[dict[str, Any]] = []
        self._piece_buf = ctypes.create_string_buffer(256)
        self._warmup()

    # -- facts -------------------------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        bos = C.llama_vocab_bos(self.vocab)
        eos = C.llama_vocab_eos(self.vocab)
        tmpl = C.llama_model_chat_template(self.model, None)
        return {
            "n_ctx_train": self.n_ctx_train,
            "n_ctx": self.num_ctx,
            "n_embd": self.n_embd,
            "n_vocab": self.n_vocab,
            "add_bos": bool(C.llama_vocab_get_add_bos(self.vocab)),
            "bos_token": self._text(bos) if bos >= 0 else "",
            "eos_token": self._text(eos) if eos >= 0 else "",
            "chat_template": tmpl.decode("utf-8", "replace") if tmpl else None,
            "pooling": self.pooling not in (C.LLAMA_POOLING_TYPE_NONE, C.LLAMA_POOLING_TYPE_UNSPECIFIED),
            "extra": {"n_threads": self.n_threads, "n_parallel": self.n_parallel, "n_batch": self.n_batch},
        }

    def _text(self, tok: int) -> str:
        t = C.llama_vocab_get_text(self.vocab, tok)
        return t.decode("utf-8", "replace") if t else ""

    def _warmup(self) -> None:
        # llama.cpp warms up too; a prompt-sized batch also surfaces CPU kernels this machine
        # cannot run (e.g. AMX advertised but unusable) at load time, not mid-request
        if self.embedding_only:
            return
        bos = C.llama_vocab_bos(self.vocab)
        tok = bos if bos >= 0 else 0
        n = min(self.n_batch, 32, self.n_ctx_seq)
        self._batch_clear()
        for i in range(n):
            self._batch_add(tok, i, 0, i == n - 1)
        C.llama_decode(self.ctx, self.batch)
        C.llama_memory_clear(self.mem, True)
        C.llama_synchronize(self.ctx)

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (C.llama_token * n_max)()
        n = C.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
        if n < 0:
            buf = (C.llama_token * (-n))()
            n = C.llama_tokenize(self.vocab, data, len(data), buf, -n, add_special, parse_special)
        toks = list(buf[:n])
        # a template that writes the BOS itself plus add_special would double it
        bos = C.llama_vocab_bos(self.vocab)
        if len(toks) >= 2 and toks[0] == bos and toks[1] == bos and add_special:
            toks = toks[1:]
        return toks

    def piece(self, tok: int, special: bool = False) -> bytes:
        n = C.llama_token_to_piece(self.vocab, tok, self._piece_buf, len(self._piece_buf), 0, special)
        if n < 0:
            self._piece_buf = ctypes.create_string_buffer(-n)
            n = C.llama_token_to_piece(self.vocab, tok, self._piece_buf, len(self._piece_buf), 0, special)
        return self._piece_buf.raw[:n]

    def detokenize(self, toks: list[int]) -> str:
        # llama.cpp aborts the process on an out-of-range id: check first
        bad = [t for t in toks if not 0 <= t < self.n_vocab]
        if bad:
            raise EngineError(f"invalid token id {bad[0]} (vocabulary has {self.n_vocab} tokens)")
        return b"".join(self.piece(t, special=True) for t in toks).decode("utf-8", "replace")

    # -- batch helpers -----------------------------------------------------------------------
    def _batch_clear(self) -> None:
        self.batch.n_tokens = 0

    def _batch_add(self, tok: int, pos: int, seq: int, logits: bool) -> int:
        i = self.batch.n_tokens
        self.batch.token[i] = tok
        self.batch.pos[i] = pos
        self.batch.n_seq_id[i] = 1
        self.batch.seq_id[i][0] = seq
        self.batch.logits[i] = logits
        self.batch.n_tokens = i + 1
        return i

    # -- requests ----------------------------------------------------------------------------
    def busy(self) -> bool:
        return bool(self.waiting) or any(s.active for s in self.slots)

    def submit(self, req_id: int, req: dict[str, Any]) -> None:
        if self.embedding_only:
            raise EngineError("this model only computes embeddings")
        self.waiting.append((req_id, req))

    def cancel(self, req_id: int) -> None:
        for i, (rid, _) in enumerate(self.waiting):
            if rid == req_id:
                del self.waiting[i]
                return
        for s in self.slots:
            if s.req_id == req_id:
                self._release(s, keep_cache=True)

    def _assign_waiting(self) -> None:
        while self.waiting:
            free = [s for s in self.slots if not s.active]
            if not free:
                return
            req_id, req = self.waiting.popleft()
            try:
                tokens = self._prompt_tokens(req)
            except EngineError as e:
                self.events.append({"type": "error", "id": req_id, "message": str(e), "kind": type(e).__name__})
                continue
            # the free slot whose cache shares the longest (reusable) prefix with this prompt
            best = max(free, key=lambda s: self._reusable(s, tokens))
            try:
                self._start(best, req_id, req, tokens)
            except EngineError as e:
                self._release(best, keep_cache=False)
                self.events.append({"type": "error", "id": req_id, "message": str(e), "kind": type(e).__name__})

    def _prompt_tokens(self, req: dict[str, Any]) -> list[int]:
        tokens = self.tokenize(req["prompt"], add_special=bool(req.get("add_special", True)))
        if not tokens:
            bos = C.llama_vocab_bos(self.vocab)
            tokens = [bos if bos >= 0 else 0]
        opts = req.get("options", {})
        limit = self.n_ctx_seq - 1
        if len(tokens) > limit:
            if not req.get("truncate", True):
                raise ContextOverflow("the input length exceeds the context length")
            keep = min(max(0, int(opts.get("num_keep", 4))), limit // 2)
            tokens = tokens[:keep] + tokens[len(tokens) - (limit - keep):]
        return tokens

    def _reusable(self, s: _Slot, tokens: list[int]) -> int:
        """How many leading prompt tokens this slot's cache can supply (one is always evaluated).

        Exact mode reuses only up to an n_batch boundary within the clean part. llama.cpp's
        results depend on how tokens were batched (measured here: a final chunk of 1-5 tokens
        moves SmolLM2's logits by up to 0.6), so KV from a different batching (a 1-token
        re-decode, generated tokens, other sequences in the batch) could change a greedy output;
        prompts are always evaluated in chunks aligned to n_batch, so the reused part and the
        re-evaluated rest are bit for bit what a fresh evaluation computes. Prefix mode reuses
        the whole common prefix, generated tokens included.
        """
        common = min(_common_prefix(s.cache, tokens), len(tokens) - 1)
        if self.prefix_reuse:
            return common
        n_keep = min(common, s.clean)
        return n_keep - n_keep % self.n_batch

    def _start(self, s: _Slot, req_id: int, req: dict[str, Any], tokens: list[int]) -> None:
        opts = req.get("options", {})
        n_keep = self._reusable(s, tokens)
        if n_keep < len(s.cache) and not C.llama_memory_seq_rm(self.mem, s.seq, n_keep, -1):
            C.llama_memory_seq_rm(self.mem, s.seq, -1, -1)  # partial removal unsupported
            n_keep = 0
        s.cache = tokens[:n_keep]
        s.clean = min(s.clean, n_keep)
        s.n_cached = n_keep
        s.pending = tokens[n_keep:]
        s.req_id = req_id
        s.n_prompt = len(tokens)
        s.n_generated = 0
        s.num_predict = int(opts.get("num_predict", -1))
        s.num_keep = max(0, int(opts.get("num_keep", 4)))
        s.shift = bool(req.get("shift", True)) and self.can_shift
        s.stop = [x for x in opts.get("stop") or [] if x]
        s.held = ""
        s.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        s.logprobs = bool(req.get("logprobs"))
        s.top_logprobs = int(req.get("top_logprobs") or 0)
        s.t_start = time.perf_counter()
        s.t_first = 0.0
        s.i_batch = -1
        s.sampler = self._make_sampler(opts, req.get("grammar"))

    def _make_sampler(self, o: dict[str, Any], grammar: str | None) -> Any:
        params = C.llama_sampler_chain_default_params()
        chain = C.llama_sampler_chain_init(params)

        def add(smpl: Any) -> None:
            if not smpl:
                C.llama_sampler_free(chain)
                raise EngineError("could not create sampler")
            C.llama_sampler_chain_add(chain, smpl)

        # order as llama-cpp-python's Llama._init_sampler
        add(C.llama_sampler_init_penalties(
            self.n_vocab, int(o.get("repeat_last_n", 64)), float(o.get("repeat_penalty", 1.0)),
            float(o.get("frequency_penalty", 0.0)), float(o.get("presence_penalty", 0.0))))
        if grammar:
            g = C.llama_sampler_init_grammar(self.vocab, grammar.encode("utf-8"), b"root")
            if not g:
                C.llama_sampler_free(chain)
                raise EngineError("invalid grammar for format")
            C.llama_sampler_chain_add(chain, g)
        temp = float(o.get("temperature", 0.8))
        seed = int(o.get("seed", -1))
        seed = DEFAULT_SEED if seed < 0 else seed & 0xFFFFFFFF
        if temp <= 0.0:
            add(C.llama_sampler_init_greedy())
        else:
            top_k = int(o.get("top_k", 40))
            add(C.llama_sampler_init_top_k(top_k if top_k > 0 else self.n_vocab))
            add(C.llama_sampler_init_typical(float(o.get("typical_p", 1.0)), 1))
            add(C.llama_sampler_init_top_p(float(o.get("top_p", 0.9)), 1))
            add(C.llama_sampler_init_min_p(float(o.get("min_p", 0.0)), 1))
            add(C.llama_sampler_init_temp(temp))
            add(C.llama_sampler_init_dist(seed))
        return chain

    def _release(self, s: _Slot, *, keep_cache: bool) -> None:
        if s.sampler is not None:
            C.llama_sampler_free(s.sampler)
            s.sampler = None
        if not keep_cache:
            C.llama_memory_seq_rm(self.mem, s.seq, -1, -1)
            s.cache = []
            s.clean = 0
        s.req_id = None
        s.pending = []
        s.i_batch = -1

    # -- the decode loop ---------------------------------------------------------------------
    def step(self) -> list[dict[str, Any]]:
        """Decode one batch for all active slots; return the events it produced."""
        self._assign_waiting()
        active = [s for s in self.slots if s.active]
        if not active:
            return self._take_events()
        self._batch_clear()
        for s in active:
            s.i_batch = -1
            if s.pending:
                continue
            if len(s.cache) >= self.n_ctx_seq and (not s.shift or not self._shift(s)):
                self._finish(s, "length")
                continue
            s.i_batch = self._batch_add(s.last_token, len(s.cache), s.seq, True)
            s.cache.append(s.last_token)
        budget = self.n_batch - self.batch.n_tokens
        chunks: list[tuple[_Slot, int, int]] = []  # (slot, start, end) of prompt chunks in this batch
        for s in active:
            if not s.active or not s.pending or budget <= 0:
                continue
            # never cross an n_batch boundary: chunks start and end where a fresh evaluation's do
            take = min(budget, len(s.pending), self.n_batch - len(s.cache) % self.n_batch)
            chunks.append((s, len(s.cache), len(s.cache) + take))
            for j in range(take):
                tok = s.pending[j]
                last = j == take - 1 and take == len(s.pending)
                idx = self._batch_add(tok, len(s.cache), s.seq, last)
                s.cache.append(tok)
                if last:
                    s.i_batch = idx
            s.pending = s.pending[take:]
            budget -= take
        if self.batch.n_tokens == 0:
            return self._take_events()
        rc = C.llama_decode(self.ctx, self.batch)
        if rc == 0 and len(chunks) == 1 and self.batch.n_tokens == chunks[0][2] - chunks[0][1]:
            s0, start, end = chunks[0]  # this sequence's prompt alone in the batch
            if s0.clean == start:
                s0.clean = end
        if rc != 0:
            # KV full (rc 1) or a native failure: fail these requests, keep the process
            for s in active:
                if s.active and (s.i_batch >= 0 or s.pending):
                    rid = s.req_id
                    self._release(s, keep_cache=False)
                    self.events.append({"type": "error", "id": rid, "message": f"llama_decode failed ({rc})"})
            return self._take_events()
        for s in active:
            if s.active and s.i_batch >= 0:
                self._sample(s)
        return self._take_events()

    def _shift(self, s: _Slot) -> bool:
        n_past = len(s.cache)
        n_keep = min(s.num_keep, n_past - 2)
        n_discard = (n_past - n_keep) // 2
        if n_discard <= 0:
            return False
        C.llama_memory_seq_rm(self.mem, s.seq, n_keep, n_keep + n_discard)
        C.llama_memory_seq_add(self.mem, s.seq, n_keep + n_discard, n_past, -n_discard)
        del s.cache[n_keep : n_keep + n_discard]
        s.clean = min(s.clean, n_keep)  # shifted positions are not what a fresh evaluation computes
        return True

    def _sample(self, s: _Slot) -> None:
        now = time.perf_counter()
        if not s.t_first:
            s.t_first = now
        try:
            tok = C.llama_sampler_sample(s.sampler, self.ctx, s.i_batch)
        except Exception as e:  # noqa: BLE001 - a sampler failure ends this request only
            rid = s.req_id
            self._release(s, keep_cache=False)
            self.events.append({"type": "error", "id": rid, "message": f"sampling failed: {e}"})
            return
        lp = self._logprobs(s, tok) if s.logprobs else None
        if C.llama_vocab_is_eog(self.vocab, tok):
            self._finish(s, "stop")
            return
        s.n_generated += 1
        s.last_token = tok
        piece = self.piece(tok)
        text = s.held + s.decoder.decode(piece)
        s.held = ""
        stop_at = _find_stop(text, s.stop)
        if stop_at is not None:
            self._emit(s, text[:stop_at], lp)
            s.decoder = None  # the stop string and anything after it is not output
            self._finish(s, "stop")
            return
        keep = _partial_stop(text, s.stop)
        if keep:
            s.held = text[-keep:]
            text = text[:-keep]
        self._emit(s, text, lp)
        if s.num_predict >= 0 and s.n_generated >= s.num_predict:
            self._finish(s, "length")

    def _emit(self, s: _Slot, text: str, lp: dict[str, Any] | None) -> None:
        if not text and lp is None:
            return
        ev: dict[str, Any] = {"type": "chunk", "id": s.req_id, "text": text}
        if lp is not None:
            ev["logprobs"] = [lp]
        self.events.append(ev)

    def _logprobs(self, s: _Slot, tok: int) -> dict[str, Any]:
        ptr = C.llama_get_logits_ith(self.ctx, s.i_batch)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
        m = logits.max()
        lse = m + math.log(float(np.exp(logits - m).sum()))
        out: dict[str, Any] = {"token": self.piece(tok).decode("utf-8", "replace"),
                               "logprob": float(logits[tok] - lse),
                               "bytes": list(self.piece(tok))}
        if s.top_logprobs > 0:
            k = min(s.top_logprobs, self.n_vocab)
            top = np.argpartition(-logits, k - 1)[:k]
            top = top[np.argsort(-logits[top])]
            out["top_logprobs"] = [
                {"token": self.piece(int(t)).decode("utf-8", "replace"),
                 "logprob": float(logits[t] - lse), "bytes": list(self.piece(int(t)))}
                for t in top
            ]
        return out

    def _finish(self, s: _Slot, reason: str) -> None:
        tail = s.held + (s.decoder.decode(b"", final=True) if s.decoder else "")
        s.held = ""
        if tail:
            self._emit(s, tail, None)
        now = time.perf_counter()
        t_first = s.t_first or now
        self.events.append({
            "type": "done",
            "id": s.req_id,
            "done_reason": reason,
            "prompt_eval_count": s.n_prompt,
            "prompt_cached": s.n_cached,
            "prompt_eval_duration": int((t_first - s.t_start) * 1e9),
            "eval_count": s.n_generated,
            "eval_duration": int((now - t_first) * 1e9),
        })
        self._release(s, keep_cache=True)

    def _take_events(self) -> list[dict[str, Any]]:
        ev, self.events = self.events, []
        return ev

    # -- embeddings --------------------------------------------------------------------------
    def embed(self, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], int]:
        ctx = self.ctx if self.embedding_only else self._embedding_context()
        n_ctx = C.llama_n_ctx(ctx)
        mem = C.llama_get_memory(ctx)
        pooled = C.llama_pooling_type(ctx) not in (C.LLAMA_POOLING_TYPE_NONE, C.LLAMA_POOLING_TYPE_UNSPECIFIED)
        seqs = []
        for text in inputs:
            toks = self.tokenize(text, add_special=True)
            if len(toks) > n_ctx:
                if not truncate:
                    raise ContextOverflow("the input length exceeds the context length")
                toks = toks[:n_ctx]
            if not toks:
                toks = [max(0, C.llama_vocab_bos(self.vocab))]
            seqs.append(toks)
        out: list[list[float]] = []
        total = sum(len(t) for t in seqs)
        n_batch = C.llama_n_batch(ctx)
        n_seq_max = max(1, C.llama_n_seq_max(ctx))
        batch = C.llama_batch_init(n_batch, 0, n_seq_max)
        try:
            i = 0
            while i < len(seqs):
                group: list[list[int]] = []
                used = 0
                while i < len(seqs) and len(group) < n_seq_max and used + len(seqs[i]) <= n_batch:
                    group.append(seqs[i])
                    used += len(seqs[i])
                    i += 1
                if not group:  # one input larger than the batch (can't happen after truncation)
                    group = [seqs[i][:n_batch]]
                    i += 1
                if mem:
                    C.llama_memory_clear(mem, True)
                batch.n_tokens = 0
                for sid, toks in enumerate(group):
                    for pos, tok in enumerate(toks):
                        j = batch.n_tokens
                        batch.token[j] = tok
                        batch.pos[j] = pos
                        batch.n_seq_id[j] = 1
                        batch.seq_id[j][0] = sid
                        batch.logits[j] = True
                        batch.n_tokens = j + 1
                rc = C.llama_decode(ctx, batch)
                if rc != 0:
                    raise EngineError(f"llama_decode failed ({rc}) computing embeddings")
                n_embd = C.llama_model_n_embd_out(self.model) or self.n_embd
                offset = 0
                for sid, toks in enumerate(group):
                    if pooled:
                        ptr = C.llama_get_embeddings_seq(ctx, sid)
                        vec = np.ctypeslib.as_array(ptr, shape=(n_embd,)).astype(np.float64)
                    else:  # mean over the sequence's tokens
                        rows = [np.ctypeslib.as_array(C.llama_get_embeddings_ith(ctx, offset + k), shape=(n_embd,))
                                for k in range(len(toks))]
                        vec = np.mean(np.stack(rows).astype(np.float64), axis=0)
                    offset += len(toks)
                    out.append(vec.tolist())
        finally:
            C.llama_batch_free(batch)
        return out, total

    def _embedding_context(self) -> Any:
        # generative models answer /api/embed too: a second context in embedding mode
        if self._emb_ctx is None:
            cp = C.llama_context_default_params()
            cp.n_ctx = self.num_ctx
            cp.n_batch = self.num_ctx
            cp.n_ubatch = self.num_ctx
            cp.n_seq_max = 1
            cp.n_threads = self.n_threads
            cp.n_threads_batch = self.n_threads
            cp.embeddings = True
            cp.pooling_type = C.LLAMA_POOLING_TYPE_MEAN
            self._emb_ctx = C.llama_init_from_model(self.model, cp)
            if not self._emb_ctx:
                raise EngineError("could not create an embedding context")
        return self._emb_ctx

    def close(self) -> None:
        for s in self.slots:
            if s.sampler is not None:
                C.llama_sampler_free(s.sampler)
                s.sampler = None
        if self.batch is not None:
            C.llama_batch_free(self.batch)
            self.batch = None
        if self._emb_ctx:
            C.llama_free(self._emb_ctx)
            self._emb_ctx = None
        if self.ctx:
            C.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            C.llama_model_free(self.model)
            self.model = None


_KV_TYPES = {"f16": 1, "f32": 0, "q8_0": 8, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "bf16": 30}


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _find_stop(text: str, stops: list[str]) -> int | None:
    best = None
    for st in stops:
        i = text.find(st)
        if i >= 0 and (best is None or i < best):
            best = i
    return best


def _partial_stop(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    keep = 0
    for st in stops:
        for k in range(min(len(st) - 1, len(text)), keep, -1):
            if text.endswith(st[:k]):
                keep = k
                break
    return keep
