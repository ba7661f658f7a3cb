"""The wire format between the server and a runner process: length-prefixed JSON frames.

Each frame is a 4-byte big-endian length and a UTF-8 JSON object. Frames travel over a
socketpair the server creates and passes to the child (so llama.cpp's own logging on
stdout/stderr can never corrupt the protocol).

server → runner: {"op": "load", "model": path, "options": {...}}, {"op": "completion", "id",
  "request": {...}}, {"op": "cancel", "id"}, {"op": "tokenize"|"detokenize"|"embed"|"ping", "id",
  ...}, {"op": "shutdown"}
runner → server: {"type": "ready", "facts": {...}} | {"type": "chunk"|"done"|"result"|"error",
  "id", ...}
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

MAX_FRAME = 256 * 1024 * 1024  # an embedding batch of many long vectors can be large
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    pass


def encode(msg: dict[str, Any]) -> bytes:
    body = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise ProtocolError("frame too large")
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"bad frame: {e}") from e
    if not isinstance(msg, dict):
        raise ProtocolError("frame is not an object")
    return msg


def header_length(header: bytes) -> int:
    (n,) = _HEADER.unpack(header)
    if n > MAX_FRAME:
        raise ProtocolError("frame too large")
    return n


HEADER_SIZE = _HEADER.size


# -- blocking side (runner process) ------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks = []
    while n:
        b = sock.recv(min(n, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def recv_blocking(sock: socket.socket) -> dict[str, Any] | None:
    """Next frame, or None when the peer closed the connection."""
    header = _recv_exact(sock, HEADER_SIZE)
    if header is None:
        return None
    body = _recv_exact(sock, header_length(header))
    if body is None:
        return None
    return decode_body(body)
