"""The runner wire format."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ggtool.runner import protocol

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), JSON, max_size=5))
def test_roundtrip_over_a_socketpair(msg: dict) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(protocol.encode(msg))
        assert protocol.recv_blocking(b) == msg


def test_eof_and_bad_frames() -> None:
    a, b = socket.socketpair()
    with b:
        a.close()
        assert protocol.recv_blocking(b) is None
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_body(b"[1, 2]")
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_body(b"\xff")
    with pytest.raises(protocol.ProtocolError):
        protocol.header_length((protocol.MAX_FRAME + 1).to_bytes(4, "big"))
