"""The runner process: `python -m ggtool.runner.worker --fd N`.

It owns one `Engine` (one model). A reader thread turns frames from the server into a queue
(and answers pings at once, so a long prompt decode never looks like a hang); the main thread
alternates between handling queued requests and decoding one batch. When the server's end of
the socket closes, the process exits, so an orphaned runner never outlives its server.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import sys
import threading
from typing import Any

from ggtool.runner import protocol


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, msg: dict[str, Any]) -> None:
        data = protocol.encode(msg)
        with self.lock:
            self.sock.sendall(data)


def _reader(conn: _Conn, q: queue.Queue[dict[str, Any] | None]) -> None:
    try:
        while True:
            msg = protocol.recv_blocking(conn.sock)
            if msg is None:
                break
            if msg.get("op") == "ping":
                conn.send({"type": "result", "id": msg.get("id"), "pong": True})
                continue
            q.put(msg)
    except (OSError, protocol.ProtocolError):
        pass
    q.put(None)


def serve(sock: socket.socket) -> int:
    conn = _Conn(sock)
    q: queue.Queue[dict[str, Any] | None] = queue.Queue()
    first = protocol.recv_blocking(sock)
    if first is None or first.get("op") != "load":
        return 2
    options = first.get("options") or {}
    from ggtool.runner import engine as eng

    eng.set_verbose(bool(options.get("verbose")))
    try:
        engine = eng.Engine(first["model"], options)
    except eng.EngineError as e:
        conn.send({"type": "error", "id": None, "message": str(e)})
        return 1
    conn.send({"type": "ready", "facts": engine.facts(), "pid": os.getpid()})
    threading.Thread(target=_reader, args=(conn, q), daemon=True).start()

    def handle(msg: dict[str, Any]) -> bool:
        op = msg.get("op")
        rid = msg.get("id")
        try:
            if op == "completion":
                engine.submit(rid, msg["request"])
            elif op == "cancel":
                engine.cancel(rid)
            elif op == "tokenize":
                toks = engine.tokenize(msg["text"], add_special=bool(msg.get("add_special", True)))
                conn.send({"type": "result", "id": rid, "tokens": toks})
            elif op == "detokenize":
                conn.send({"type": "result", "id": rid, "text": engine.detokenize(list(msg["tokens"]))})
            elif op == "embed":
                vecs, n = engine.embed(list(msg["inputs"]), truncate=bool(msg.get("truncate", True)))
                conn.send({"type": "result", "id": rid, "embeddings": vecs, "prompt_eval_count": n})
            elif op == "shutdown":
                return False
            else:
                conn.send({"type": "error", "id": rid, "message": f"unknown op {op!r}"})
        except eng.EngineError as e:
            conn.send({"type": "error", "id": rid, "message": str(e), "kind": type(e).__name__})
        except (KeyError, TypeError, ValueError) as e:
            conn.send({"type": "error", "id": rid, "message": f"bad request: {e}"})
        return True

    running = True
    try:
        while running:
            block = not engine.busy()
            try:
                msg = q.get(block=block)
            except queue.Empty:
                msg = "none"
            while msg != "none":
                if msg is None:  # server went away
                    running = False
                    break
                if not handle(msg):
                    running = False
                    break
                try:
                    msg = q.get_nowait()
                except queue.Empty:
                    msg = "none"
            if running and engine.busy():
                for ev in engine.step():
                    conn.send(ev)
    except OSError:
        pass
    finally:
        engine.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ggtool.runner.worker")
    ap.add_argument("--fd", type=int, required=True)
    args = ap.parse_args(argv)
    # the server handles Ctrl-C; the runner ends when its socket closes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    try:
        return serve(sock)
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
