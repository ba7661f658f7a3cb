"""Serving speed: ggtool serve vs llama-cpp-python direct, `python -m llama_cpp.server` and
llama.cpp's C++ `llama-server`, one run, same GGUF, same thread count, clients in their own
processes.

    python bench/serve.py [--threads 1] [--tokens 128] [--rounds 3] [--ttft-rounds 24] [--json]

Model: SmolLM2-135M-Instruct converted (F16) and quantized (Q4_K_M) by ggtool (built once into
the fixtures cache). Prompts: ~50-token raw completion prompts, a different one per request (no
prefix-cache hits), greedy, `--tokens` new tokens. Figures:

1. one client: time to first token and decode tokens/s (first to last token), ggtool serve
   (/api/generate, streaming) vs `Llama.create_completion(stream=True)` in a process of its own
   — targets ≥ 95% of direct throughput and ≤ 20 ms added to the first token. Decode comes from
   --rounds runs of --tokens tokens; the first-token figure from --ttft-rounds pairs of 4-token
   requests, direct and ggtool back to back, reported as the median of the paired differences
   (on a shared machine a single best-of figure moves by ±40 ms between runs);
2. aggregate tokens/s of 4 concurrent streaming clients (total new tokens / wall time) on ggtool
   serve (OLLAMA_NUM_PARALLEL=4) vs its own 1-client figure (target ≥ 1.3×), vs
   `python -m llama_cpp.server` (target ≥ 1.5×; it serialises requests) and vs
   `llama-server -np 4` built from the pinned sdist (target ≥ 90%).

On machines that advertise AMX but fault on it (some VMs), natively built llama.cpp dies with
SIGILL in its repacked (AMX) kernels; where the CPU advertises AMX the bench disables repacking
for every contender alike (ggtool's runner falls back by itself after a SIGILL).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# No two neighbouring requests share an opening token: llama-cpp-python reuses any prefix of the
# prompt before (it keeps one sequence), ggtool's exact prompt cache only whole 512-token chunks and
# llama-server runs with cache_prompt off, so a shared opening would hand llama-cpp-python a cache
# hit the others do not get. Each topic starts with its own token (checked at start-up), and
# requests that can meet in a cache are never 24 apart. The figures are for prompts evaluated in full.
TOPICS = ["Sea", "Mountain village", "Old clock", "Robot gardener", "Winter night", "Lost key",
          "First train", "Harbour keeper", "Market at dawn", "Quiet library", "Desert road",
          "Small boat", "Busy kitchen", "Last letter", "Forest path", "City bridge", "Glass tower",
          "Yellow kite", "Paper crane", "Northern island", "Violin maker", "Kind stranger", "Empty stadium",
          "Jungle river"]


def prompt(i: int) -> str:
    t = TOPICS[i % len(TOPICS)]
    return (f"{t}: here is a long, detailed story about it. It has many characters, places and events, and "
            f"it is told slowly, one careful sentence after another, from the very beginning. Chapter {i + 1}.\n\n")


def shared_prefix_tokens(tokenize: Any, indices: Any) -> int:
    """The longest token prefix any two of these prompts share (0 is what the figures assume)."""
    toks = [tokenize(prompt(i)) for i in indices]
    best = 0
    for a in range(len(toks)):
        for b in range(a + 1, len(toks)):
            n = 0
            while n < min(len(toks[a]), len(toks[b])) and toks[a][n] == toks[b][n]:
                n += 1
            best = max(best, n)
    return best


# -- clients (run in their own processes) -------------------------------------------------------
def _client(kind: str, url: str, i: int, tokens: int, threads: int) -> dict[str, Any]:
    import httpx

    # the client object (SSL context, pools) is set up before the clock starts: a real client
    # pays that once, not per request
    client = httpx.Client(timeout=600)
    first = last = None
    n = 0
    runner_ms = None  # ggtool: the runner's own prompt time (request assigned → first token sampled)
    t0 = time.perf_counter()
    if kind == "ggtool":
        body = {"model": "smol", "prompt": prompt(i), "raw": True,
                "options": {"temperature": 0, "num_predict": tokens, "num_ctx": 2048, "num_thread": threads}}
        with client.stream("POST", url + "/api/generate", json=body) as r:
            for line in r.iter_lines():
                if not line:
                    continue
                obj = json.loads(line)
                now = time.perf_counter()
                if obj.get("done"):
                    n = obj.get("eval_count", n)
                    runner_ms = obj.get("prompt_eval_duration", 0) / 1e6
                    break
                if obj.get("response"):
                    first = first or now
                    last = now
    else:  # OpenAI-style SSE completions (llama_cpp.server, llama-server)
        body = {"model": "smol", "prompt": prompt(i), "max_tokens": tokens, "temperature": 0, "stream": True}
        if kind == "llama-server":
            body["cache_prompt"] = False
        with client.stream("POST", url + "/v1/completions", json=body) as r:
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data.strip() == "[DONE]":
                    break
                obj = json.loads(data)
                text = obj["choices"][0].get("text", "") if obj.get("choices") else ""
                now = time.perf_counter()
                if text:
                    first = first or now
                    last = now
                    n += 1
    end = time.perf_counter()
    client.close()
    return {"start": t0, "first": first, "last": last, "end": end, "tokens": n, "runner_ms": runner_ms}


def _direct(model: str, tokens: int, threads: int, no_repack: bool) -> None:
    """A persistent process: loads the model, then answers one prompt index per stdin line."""
    import llama_cpp.llama_cpp as C

    if no_repack:
        orig = C.llama_model_default_params

        def patched() -> Any:
            p = orig()
            p.use_extra_bufts = False
            return p

        C.llama_model_default_params = patched
    from llama_cpp import Llama

    llm = Llama(model, n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    llm.create_completion("warm up", max_tokens=2, temperature=0)
    print("ready", flush=True)
    for line in sys.stdin:
        i, tokens = (int(x) for x in line.split())
        t0 = time.perf_counter()
        first = last = None
        n = 0
        for chunk in llm.create_completion(prompt(i), max_tokens=tokens, temperature=0, stream=True):
            now = time.perf_counter()
            if chunk["choices"][0]["text"]:
                first = first or now
                last = now
            n += 1
        print(json.dumps({"start": t0, "first": first, "last": last, "end": time.perf_counter(), "tokens": n}),
              flush=True)


class Direct:
    def __init__(self, model: str, tokens: int, threads: int, no_repack: bool) -> None:
        self.tokens = tokens
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--direct", model, str(tokens), str(threads), "norepack" if no_repack else "repack"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def run(self, i: int, tokens: int | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{i} {tokens or self.tokens}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(30)


def FOUR(r: int) -> list[int]:  # noqa: N802 - the four prompts of round r
    return [10 + 4 * r + k for k in range(4)]


def spawn_clients(kind: str, url: str, indices: list[int], tokens: int, threads: int) -> list[dict[str, Any]]:
    """One process per client, started together; returns their timings."""
    procs = [subprocess.Popen([sys.executable, __file__, "--client", kind, url, str(i), str(tokens), str(threads)],
                              stdout=subprocess.PIPE, text=True) for i in indices]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"client failed ({p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


# -- servers ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], path: str, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def server(cmd: list[str], env: dict[str, str], health: str, log: Path, port: int | None = None):
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    full = [c.replace("{port}", str(port)) for c in cmd]
    with open(log, "ab") as f:
        proc = subprocess.Popen(full, env={**os.environ, **env}, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_http(url, proc, health)
        yield url, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# -- figures ----------------------------------------------------------------------------------
# The machine is shared: other jobs only ever slow a run down, so each figure is the best of
# --rounds runs (the median is reported beside it).
def single(runs: list[dict[str, Any]]) -> dict[str, float]:
    ttfts = [(r["first"] - r["start"]) * 1000 for r in runs]
    rates = [(r["tokens"] - 1) / (r["last"] - r["first"]) for r in runs if r["tokens"] > 1]
    walls = [r["tokens"] / (r["end"] - r["start"]) for r in runs]
    return {"ttft_ms": round(min(ttfts), 1), "ttft_ms_median": round(statistics.median(ttfts), 1),
            "decode_tok_s": round(max(rates), 2), "decode_tok_s_median": round(statistics.median(rates), 2),
            "aggregate_tok_s": round(max(walls), 2), "tokens": statistics.median(r["tokens"] for r in runs)}


def aggregate(rounds: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Per round: all clients' new tokens / (last end - first start); best and median over rounds."""
    rates = []
    overlap = True
    for runs in rounds:
        wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
        rates.append(sum(r["tokens"] for r in runs) / wall)
        overlap &= all(r["first"] < min(x["end"] for x in runs) for r in runs)
    return {"aggregate_tok_s": round(max(rates), 2), "aggregate_tok_s_median": round(statistics.median(rates), 2),
            "all_streams_concurrent": overlap}


def cpu_has_amx() -> bool:
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def needs_no_repack(model: str) -> bool:
    """True if llama.cpp's repacked kernels may crash here. Where the CPU advertises AMX the
    answer is yes without probing: the contenders are built differently (a portable wheel, a
    native llama-server), a probe of one says nothing about the others, and all must run the
    same kernels."""
    if cpu_has_amx():
        return True
    # a prompt-sized batch: the repacked (AMX) kernels only run on multi-row batches
    code = ("from llama_cpp import Llama;"
            f"Llama({model!r}, n_ctx=512, n_threads=1, verbose=False).create_completion({prompt(0) * 3!r}, max_tokens=2)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    return p.returncode == -signal.SIGILL


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ttft-rounds", type=int, default=24)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--client", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--direct", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        kind, url, i, tokens, threads = args.client
        print(json.dumps(_client(kind, url, int(i), int(tokens), int(threads))))
        return 0
    if args.direct:
        model, tokens, threads, flags = args.direct
        _direct(model, int(tokens), int(threads), flags == "norepack")
        return 0

    from fixtures.llama_tools import llama_tool
    from fixtures.serve_models import ggtool, served_ggufs

    model = str(served_ggufs()["smollm2"])
    work = Path(tempfile.mkdtemp(prefix="ggtool-bench-serve-"))
    store = work / "models"
    (work / "smol.Modelfile").write_text(f"FROM {model}\n")
    ggtool("create", "smol", "-f", str(work / "smol.Modelfile"), "--quiet", "--store", str(store))
    log = work / "servers.log"
    T, N, R = args.threads, args.tokens, args.rounds
    no_repack = needs_no_repack(model)
    res: dict[str, Any] = {"threads": T, "tokens": N, "rounds": R, "model": Path(model).name, "no_repack": no_repack}
    from llama_cpp import Llama

    vocab = Llama(model, vocab_only=True, verbose=False)

    def tokenize(text: str) -> list[int]:
        return vocab.tokenize(text.encode(), add_bos=True)

    res["shared_prefix_tokens"] = shared_prefix_tokens(tokenize, range(len(TOPICS)))

    # 1 and 2. ggtool serve (1 client, then 4) and, interleaved round by round with its 1-client
    # runs so both see the same machine load, llama-cpp-python direct
    env = {"OLLAMA_HOST": "127.0.0.1:{port}", "OLLAMA_MODELS": str(store), "GGTOOL_MODELS": str(store),
           "OLLAMA_NUM_PARALLEL": "4", "GGTOOL_NUM_THREAD": str(T), "OLLAMA_CONTEXT_LENGTH": "2048",
           "GGTOOL_EXTRA_BUFTS": "0" if no_repack else "1"}
    port = free_port()
    env = {k: v.replace("{port}", str(port)) for k, v in env.items()}
    with server([sys.executable, "-m", "ggtool.cli.app", "serve", "--host", f"127.0.0.1:{port}"], env,
                "/api/version", log, port) as (url, _):
        spawn_clients("ggtool", url, [99], 2, T)  # load the model
        direct = Direct(model, N, T, no_repack)
        d_runs, g_runs = [], []
        for r in range(R):
            d_runs.append(direct.run(r))
            g_runs.append(spawn_clients("ggtool", url, [r], N, T)[0])
        # first token: short requests, the pair back to back, on prompts 40, 41, ...
        diffs, d_first, g_first, serving = [], [], [], []
        for k in range(args.ttft_rounds):
            d = direct.run(40 + k, 4)
            g = spawn_clients("ggtool", url, [40 + k], 4, T)[0]
            d_first.append((d["first"] - d["start"]) * 1000)
            g_first.append((g["first"] - g["start"]) * 1000)
            diffs.append(g_first[-1] - d_first[-1])
            serving.append(g_first[-1] - g["runner_ms"])
        direct.close()
        res["direct"] = single(d_runs)
        res["ggtool_1"] = single(g_runs)
        res["ttft"] = {"direct_ms_median": round(statistics.median(d_first), 1),
                       "ggtool_ms_median": round(statistics.median(g_first), 1),
                       "added_ms_median": round(statistics.median(diffs), 1),
                       "added_ms_quartiles": [round(q, 1) for q in statistics.quantiles(diffs, n=4)],
                       "pairs": len(diffs),
                       # what HTTP, the scheduler and the runner protocol add: client first token
                       # minus the runner's prompt time (immune to the compute noise of the pairs)
                       "serving_ms_median": round(statistics.median(serving), 1),
                       "serving_ms_max": round(max(serving), 1)}
        res["ggtool_4"] = aggregate([spawn_clients("ggtool", url, FOUR(r), N, T) for r in range(R)])

    # 3. python -m llama_cpp.server (serialises; interrupt_requests off so no stream is cut)
    lcp = [sys.executable, "-c",
           "import sys, llama_cpp.llama_cpp as C\n"
           f"if {no_repack!r}:\n"
           "    o = C.llama_model_default_params\n"
           "    def p():\n        x = o(); x.use_extra_bufts = False; return x\n"
           "    C.llama_model_default_params = p\n"
           "from llama_cpp.server.__main__ import main\nsys.argv[0] = 'llama_cpp.server'\nmain()\n",
           "--model", model, "--model_alias", "smol", "--n_ctx", "2048", "--n_threads", str(T),
           "--n_threads_batch", str(T), "--port", "{port}", "--host", "127.0.0.1", "--interrupt_requests", "False"]
    try:
        with server(lcp, {}, "/v1/models", log) as (url, _):
            spawn_clients("openai", url, [98], 2, T)
            res["llama_cpp_server_4"] = aggregate([spawn_clients("openai", url, FOUR(r), N, T) for r in range(R)])
    except RuntimeError as e:
        res["llama_cpp_server_4"] = {"error": str(e), "aggregate_tok_s": float("nan")}

    # 4. llama.cpp's llama-server -np 4
    ls = [str(llama_tool("llama-server")), "-m", model, "-np", "4", "-c", str(2048 * 4), "-t", str(T), "-tb", str(T),
          "--port", "{port}", "--host", "127.0.0.1", "-a", "smol"] + (["--no-repack"] if no_repack else [])
    try:
        with server(ls, {}, "/health", log) as (url, _):
            spawn_clients("llama-server", url, [97], 2, T)
            res["llama_server_4"] = aggregate([spawn_clients("llama-server", url, FOUR(r), N, T) for r in range(R)])
    except RuntimeError as e:
        res["llama_server_4"] = {"error": str(e), "aggregate_tok_s": float("nan")}

    d, g1, g4 = res["direct"], res["ggtool_1"], res["ggtool_4"]
    res["ratios"] = {
        "decode_vs_direct": round(g1["decode_tok_s"] / d["decode_tok_s"], 3),
        "ttft_added_ms": res["ttft"]["added_ms_median"],
        "4_vs_1": round(g4["aggregate_tok_s"] / g1["aggregate_tok_s"], 3),
        "vs_llama_cpp_server": round(g4["aggregate_tok_s"] / res["llama_cpp_server_4"]["aggregate_tok_s"], 3),
        "vs_llama_server": round(g4["aggregate_tok_s"] / res["llama_server_4"]["aggregate_tok_s"], 3),
    }
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        r = res["ratios"]
        print(f"model {res['model']}, {T} thread(s), {N} tokens, {R} rounds, repack {'off' if no_repack else 'on'}")
        print(f"best of rounds (median in --json) unless noted; topics share {res['shared_prefix_tokens']} leading tokens")
        t = res["ttft"]
        print(f"1 client   direct llama-cpp-python: TTFT {t['direct_ms_median']} ms, {d['decode_tok_s']} tok/s")
        print(f"           ggtool serve           : TTFT {t['ggtool_ms_median']} ms, {g1['decode_tok_s']} tok/s "
              f"({r['decode_vs_direct']:.1%} of direct)")
        q1, _, q3 = t["added_ms_quartiles"]
        print(f"           first token added      : {r['ttft_added_ms']:+} ms median of {t['pairs']} pairs "
              f"(quartiles {q1:+}, {q3:+}); serving layer {t['serving_ms_median']} ms "
              f"(max {t['serving_ms_max']})")
        print(f"4 clients  ggtool serve -np 4     : {g4['aggregate_tok_s']} tok/s aggregate "
              f"({r['4_vs_1']:.2f}x its 1-client {g1['aggregate_tok_s']} tok/s)")
        print(f"           llama_cpp.server       : {res['llama_cpp_server_4']['aggregate_tok_s']} tok/s "
              f"(ggtool {r['vs_llama_cpp_server']:.2f}x)")
        print(f"           llama-server -np 4     : {res['llama_server_4']['aggregate_tok_s']} tok/s "
              f"(ggtool {r['vs_llama_server']:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
