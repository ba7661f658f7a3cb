"""llama-cpp-python called directly, in a child process: the reference the server is compared
with. Run as `python direct_llama.py '<json args>'`; prints one JSON result line.

If the child dies with SIGILL (machines that advertise AMX but fault on it, the case the
runner also recovers from), it is rerun with llama.cpp's extra buffer types disabled — the same
fallback the ggtool runner applies — so both sides compute with the same kernels.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any


def _child(args: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp.llama_cpp as C

    if not args.get("extra_bufts", True):
        orig = C.llama_model_default_params

        def no_extra() -> Any:
            p = orig()
            p.use_extra_bufts = False
            return p

        C.llama_model_default_params = no_extra
    from llama_cpp import Llama

    llm = Llama(args["model"], n_ctx=args["n_ctx"], n_batch=512, n_threads=args.get("threads", 1),
                n_threads_batch=args.get("threads", 1), seed=args.get("seed", 0), verbose=False)
    if "messages" in args:
        r = llm.create_chat_completion(messages=args["messages"], temperature=0.0, max_tokens=args["max_tokens"],
                                       seed=args.get("seed"), top_k=40, top_p=0.9, min_p=0.0, repeat_penalty=1.0)
        return {"text": r["choices"][0]["message"]["content"], "usage": r["usage"],
                "finish_reason": r["choices"][0]["finish_reason"]}
    r = llm.create_completion(args["prompt"], temperature=0.0, max_tokens=args["max_tokens"], seed=args.get("seed"),
                              top_k=40, top_p=0.9, min_p=0.0, repeat_penalty=1.0)
    return {"text": r["choices"][0]["text"], "usage": r["usage"], "finish_reason": r["choices"][0]["finish_reason"]}


def run_direct(args: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """The direct llama-cpp-python result for `args` (see _child)."""
    for extra in (True, False):
        p = subprocess.run([sys.executable, __file__, json.dumps({**args, "extra_bufts": extra})],
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode == 0:
            return json.loads(p.stdout.strip().splitlines()[-1])
        if p.returncode != -signal.SIGILL:
            raise RuntimeError(f"direct llama-cpp-python failed ({p.returncode}): {p.stderr[-2000:]}")
    raise RuntimeError("direct llama-cpp-python died with SIGILL even without extra buffer types")


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
