"""CLI conventions every command shares: exit codes, --json, --version, errors, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

from ggtool.cli.app import main
from ggtool.gguf_io import GGUFStreamWriter, KVEntry, TensorSpec


@pytest.fixture()
def tiny_gguf(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.gguf"
    kv = [
        KVEntry("general.architecture", V.STRING, "llama"),
        KVEntry("general.file_type", V.UINT32, 1),
        KVEntry("tokenizer.ggml.tokens", V.ARRAY, [f"t{i}" for i in range(100)], V.STRING),
    ]
    w = np.ones((4, 32), np.float16)
    with GGUFStreamWriter(p, kv, [TensorSpec("token_embd.weight", (32, 4), T.F16)]) as out:
        out.write_tensor("token_embd.weight", w)
    return p


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_version_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(["--version", "--json"], capsys)
    info = json.loads(out)
    assert rc == 0
    assert info["llama_cpp_commit"] == "0c1e57098" and info["gguf"] == "0.19.0"


def test_version_human(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(["--version"], capsys)
    assert rc == 0 and out.startswith("ggtool ") and "llama.cpp 0c1e57098" in out


def test_inspect_json(tiny_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(["inspect", str(tiny_gguf), "--json"], capsys)
    assert rc == 0, err
    info = json.loads(out)  # exactly one JSON object on stdout
    assert info["architecture"] == "llama" and info["file_type"] == "F16"
    assert info["parameters"] == 128 and info["tensor_count"] == 1
    assert info["tensors"][0] == {
        "name": "token_embd.weight", "type": "F16", "shape": [32, 4], "offset": 0, "bytes": 256
    }
    tokens = info["metadata"]["tokenizer.ggml.tokens"]
    assert tokens["length"] == 100 and len(tokens["head"]) == 8  # long arrays elided


def test_inspect_all_and_global_json(tiny_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(["--json", "inspect", "--all", str(tiny_gguf)], capsys)
    assert rc == 0
    assert len(json.loads(out)["metadata"]["tokenizer.ggml.tokens"]) == 100


def test_inspect_human(tiny_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(["inspect", str(tiny_gguf)], capsys)
    assert rc == 0 and err == ""
    assert "architecture  llama" in out and "token_embd.weight" in out and "(100 STRING)" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["inspect"], 2, "Missing argument"),
        (["inspect", "--nope", "x"], 2, "No such option"),
        (["no-such-command"], 2, "No such command"),
        (["inspect", "/nonexistent.gguf"], 3, "no such file"),
    ],
)
def test_exit_codes(args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(args, capsys)
    assert rc == code
    assert message in err


def test_invalid_file_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    rc, out, err = _run(["inspect", str(bad), "--json"], capsys)
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("Error: ")
    assert "Traceback" not in err
    assert "error" in json.loads(out)


def test_debug_shows_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nope")
    rc, _, err = _run(["--debug", "inspect", str(bad)], capsys)
    assert rc == 1 and "Traceback" in err


def test_no_color(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    rc, _, err = _run(["inspect", str(tmp_path / "missing.gguf")], capsys)
    assert rc == 3 and "\x1b[" not in err


def test_console_script_and_ctrl_c_exit_130(tmp_path: Path) -> None:
    """SIGINT while a command is blocked (opening a FIFO) exits 130 with one line."""
    fifo = tmp_path / "blocked.gguf"
    os.mkfifo(fifo)
    ggtool = Path(sys.executable).with_name("ggtool")
    proc = subprocess.Popen(
        [str(ggtool), "inspect", str(fifo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1.5)  # interpreter start + imports, then it blocks in open()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
