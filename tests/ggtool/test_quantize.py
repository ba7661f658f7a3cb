"""`ggtool quantize`: whole files byte-identical to llama.cpp's llama_model_quantize, and the
command's behaviour on good and bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from gguf import GGMLQuantizationType as T

from fixtures.synthetic_gguf import TinyLlama
from ggtool.cli.app import main
from ggtool.gguf_io import read_gguf
from ggtool.names import parse_model_name

FILE_TYPES = [
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
    "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "F16", "BF16", "F32",
]


MODELS = [
    TinyLlama("dense"),
    TinyLlama("tied", tied=True),
    TinyLlama("gqa-shuffled", n_head=8, n_head_kv=2, shuffled=True),
    TinyLlama("fallback", n_ff=320, n_head_kv=2),  # ffn_down rows of 320: Q4_K->Q5_0, Q6_K->Q8_0
    TinyLlama("bf16", dtype=T.BF16, n_layer=4),
]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _llama_quantize(src: Path, dst: Path, file_type: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    name = "LLAMA_FTYPE_ALL_F32" if file_type == "F32" else f"LLAMA_FTYPE_MOSTLY_{file_type}"
    params.ftype = getattr(llama_cpp, name)
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) == 0


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {m.name: m.write(d / f"{m.name}.gguf") for m in MODELS}


@pytest.mark.slow
@pytest.mark.parametrize("model", [m.name for m in MODELS])
def test_whole_file_identical_to_llama_cpp(model: str, model_files: dict[str, Path], tmp_path: Path) -> None:
    src = model_files[model]
    mismatches = []
    for ft in FILE_TYPES:
        ref, ours = tmp_path / f"ref-{ft}.gguf", tmp_path / f"ours-{ft}.gguf"
        _llama_quantize(src, ref, ft)
        assert main(["-q", "quantize", str(src), ft, "-o", str(ours), "--threads", "2"]) == 0
        if _sha(ref) != _sha(ours):
            mismatches.append(ft)
        ref.unlink()
        ours.unlink()
    assert mismatches == []


def test_q4_k_m_fast_tier(model_files: dict[str, Path], tmp_path: Path) -> None:
    """One file type on the fallback model, in the fast tier (the oracle runs in-process)."""
    src = model_files["fallback"]
    ref, ours = tmp_path / "ref.gguf", tmp_path / "ours.gguf"
    _llama_quantize(src, ref, "Q4_K_M")
    assert main(["-q", "quantize", str(src), "q4_k_m", "-o", str(ours)]) == 0
    assert _sha(ref) == _sha(ours)


def test_default_output_name_json_events_and_result(
    model_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "m-F16.gguf"
    src.write_bytes(model_files["dense"].read_bytes())
    assert main(["quantize", str(src), "Q8_0", "--json"]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    result = events[-1]
    out = tmp_path / "m-Q8_0.gguf"
    assert result["path"] == str(out) and result["status"] == "success"
    assert result["sha256"] == _sha(out) and result["size"] == out.stat().st_size
    assert all("status" in e for e in events)
    with read_gguf(out) as g:
        keys = list(g.kv)
        assert keys[-2:] == ["general.quantization_version", "general.file_type"]
        assert g.get("general.file_type") == 7 and g.get("general.quantization_version") == 2
        assert g.alignment == 32


def test_no_overwrite_without_force(model_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.gguf"
    out.write_bytes(b"keep me")
    assert main(["quantize", str(model_files["dense"]), "q4_0", "-o", str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main(["-q", "quantize", str(model_files["dense"]), "q4_0", "-o", str(out), "--force"]) == 0
    assert out.read_bytes()[:4] == b"GGUF"


def test_dry_run_plan(model_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", str(model_files["fallback"]), "q4_k_m", "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    types = {t["name"]: t["type"] for t in plan["plan"]}
    assert types["output.weight"] == "Q6_K"
    assert types["blk.0.ffn_down.weight"] == "Q8_0"  # Q6_K falls back for 320-long rows
    assert types["blk.2.ffn_down.weight"] == "Q5_0"  # Q4_K falls back
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert plan["size"] > 0
    assert not any(p.suffix == ".gguf" for p in tmp_path.iterdir())


def test_overrides_and_pure(model_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["quantize", str(model_files["dense"]), "q4_k_m", "--dry-run", "--json",
            "--output-tensor-type", "q8_0", "--token-embedding-type", "f16", "--pure"]
    assert main(args) == 0
    types = {t["name"]: t["type"] for t in json.loads(capsys.readouterr().out)["plan"]}
    assert types["output.weight"] == "Q8_0" and types["token_embd.weight"] == "F16"
    assert {types[f"blk.{i}.attn_v.weight"] for i in range(8)} == {"Q4_K"}  # pure: no mixture


@pytest.mark.parametrize(
    ("file_type", "message"),
    [
        ("q9_z", "unknown file type 'q9_z'; valid: Q4_0"),
        ("IQ2_XXS", "needs an importance matrix"),
        ("Q2_K_S", "needs an importance matrix"),
        ("TQ1_0", "not implemented"),
    ],
)
def test_bad_type(file_type: str, message: str, model_files: dict[str, Path], tmp_path: Path,
                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.gguf"
    assert main(["quantize", str(model_files["dense"]), file_type, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notgguf = tmp_path / "x.gguf"
    notgguf.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    assert main(["quantize", str(notgguf), "q4_0"]) == 1
    assert "not a valid GGUF file" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "missing.gguf"), "q4_0"]) == 3
    truncated = tmp_path / "t.gguf"
    full = TinyLlama("t", n_layer=1).write(tmp_path / "full.gguf").read_bytes()
    truncated.write_bytes(full[: len(full) // 2])
    assert main(["quantize", str(truncated), "q4_0", "-o", str(tmp_path / "o.gguf")]) == 1
    assert "truncated" in capsys.readouterr().err
    assert not (tmp_path / "o.gguf").exists()


def test_nan_refused_with_tensor_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = TinyLlama("nan", n_layer=2).write(tmp_path / "nan.gguf", poison="blk.1.ffn_up.weight")
    out = tmp_path / "o.gguf"
    assert main(["quantize", str(src), "q4_k_m", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "blk.1.ffn_up.weight" in err and "NaN" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.gguf"]


def test_requantize_needs_flag(model_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = tmp_path / "q.gguf"
    assert main(["-q", "quantize", str(model_files["dense"]), "q8_0", "-o", str(q)]) == 0
    assert main(["quantize", str(q), "q4_0", "-o", str(tmp_path / "r.gguf")]) == 2
    assert "--allow-requantize" in capsys.readouterr().err
    assert main(["-q", "quantize", str(q), "q4_0", "-o", str(tmp_path / "r.gguf"), "--allow-requantize"]) == 0


def test_quantize_store_model(model_files: dict[str, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """`quantize NAME TYPE` on a store model makes NAME:tag-type, reusing the other layers."""
    from ggtool.store import Store

    store = tmp_path / "store"
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {model_files['dense']}\nSYSTEM be brief\n")
    assert main(["-q", "create", "tiny:f16", "-f", str(modelfile), "--store", str(store)]) == 0
    capsys.readouterr()
    assert main(["quantize", "tiny:f16", "q8_0", "--store", str(store), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["model"] == "tiny:f16-q8_0" and result["file_type"] == "Q8_0"
    s = Store(store)
    new = s.get(s.resolve(parse_model_name("tiny:f16-q8_0")))
    assert new.model_id == result["digest"]
    old = s.get(parse_model_name("tiny:f16"))
    shared = {d.digest for d in old.manifest.layers} & {d.digest for d in new.manifest.layers}
    assert len(shared) == 1  # the system layer is reused, the weights are new
    with read_gguf(s.require_model_layer(new)) as g:
        assert g.get("general.file_type") == 7
    # a file path that exists wins over a model name; a missing model is exit 3
    assert main(["quantize", "nosuch:model", "q8_0", "--store", str(store)]) == 3


@pytest.mark.slow
def test_smollm2_converted_by_ggtool_all_file_types(smollm2_dir: Path, tmp_path: Path) -> None:
    """The real SmolLM2-135M-Instruct (n_embd 576: most tensors take the fallbacks)."""
    f16 = tmp_path / "smollm2-F16.gguf"
    assert main(["-q", "convert", str(smollm2_dir), "--outtype", "f16", "-o", str(f16)]) == 0
    mismatches = []
    for ft in FILE_TYPES:
        ref, ours = tmp_path / "ref.gguf", tmp_path / "ours.gguf"
        _llama_quantize(f16, ref, ft)
        assert main(["-q", "quantize", str(f16), ft, "-o", str(ours), "--force"]) == 0
        if _sha(ref) != _sha(ours):
            mismatches.append(ft)
        ref.unlink()
        ours.unlink()
    assert mismatches == []
