"""`convert --quantize TYPE`: one streaming pass that equals `convert --outtype f32` followed
by `quantize TYPE` (and so llama.cpp's llama_model_quantize of that f32 file), byte for byte."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ggtool.cli.app import main


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


CASES = [
    ("llama-bpe", "Q4_K_M"),
    ("llama-spm", "Q6_K"),
    ("qwen2", "Q4_K_S"),
    ("qwen3", "Q5_K_M"),
    ("gemma3", "Q3_K_M"),
    ("phi3", "Q4_K_M"),  # fused attn_qkv follows the attn_v rules
    ("mistral", "Q2_K"),
    ("gemma2", "Q8_0"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "file_type"), CASES)
def test_one_pass_equals_two_steps_and_llama_cpp(
    kind: str, file_type: str, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    import llama_cpp

    src = tiny_model_dir(kind)
    direct, f32, two = tmp_path / "direct.gguf", tmp_path / "f32.gguf", tmp_path / "two.gguf"
    assert main(["-q", "convert", str(src), "--quantize", file_type, "-o", str(direct)]) == 0
    assert main(["-q", "convert", str(src), "--outtype", "f32", "-o", str(f32)]) == 0
    assert main(["-q", "quantize", str(f32), file_type, "-o", str(two)]) == 0
    ref = tmp_path / "ref.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{file_type}")
    assert llama_cpp.llama_model_quantize(str(f32).encode(), str(ref).encode(), params) == 0
    assert _sha(direct) == _sha(two) == _sha(ref)


def test_fast_tier_case_and_result(tiny_model_dir: Callable[[str], Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    src = tiny_model_dir("llama-bpe")
    monkeypatch.chdir(tmp_path)  # the default name lands in the current folder
    assert main(["convert", str(src), "--quantize", "q4_k_m", "--json"]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    result = events[-1]
    out = Path(result["path"])
    assert out.parent == tmp_path.resolve() and out.name.endswith("-Q4_K_M.gguf")
    assert result["file_type"] == "Q4_K_M" and result["sha256"] == _sha(out)
    assert any(e.get("status", "").startswith("quantizing") for e in events[:-1])
    f32 = tmp_path / "f32.gguf"
    assert main(["-q", "convert", str(src), "--outtype", "f32", "-o", str(f32)]) == 0
    two = tmp_path / "two.gguf"
    assert main(["-q", "quantize", str(f32), "q4_k_m", "-o", str(two)]) == 0
    assert _sha(two) == _sha(out)


def test_outtype_and_quantize_is_a_usage_error(tiny_model_dir: Callable[[str], Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = tiny_model_dir("llama-bpe")
    rc = main(["convert", str(src), "--outtype", "f16", "--quantize", "q4_k_m", "-o", str(tmp_path / "x.gguf")])
    assert rc == 2 and "either --outtype or --quantize" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_quantize_type_writes_nothing(tiny_model_dir: Callable[[str], Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = tiny_model_dir("llama-bpe")
    assert main(["convert", str(src), "--quantize", "iq2_xxs", "-o", str(tmp_path / "x.gguf")]) == 1
    assert "importance matrix" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
