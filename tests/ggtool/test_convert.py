"""`ggtool convert`: CLI behaviour, outtypes, output naming, atomicity and bad input.

Fast tests use tiny synthetic Llama folders (tests/converters/synth.py). The comparisons with
llama.cpp (byte parity, logits, tokenization) are in tests/converters/test_llama_cpp_parity.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT

from ggtool.cli.app import main
from ggtool.convert import check_free_space, convert
from ggtool.errors import GgtoolError
from ggtool.gguf_io import read_gguf
from tests.converters.synth import make_llama, save_safetensors


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_llama(tmp_path / "tiny-llama")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


# -- the happy path --------------------------------------------------------------------------
def test_convert_default_name_in_current_folder(model: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rc, out, err = run(["convert", str(model), "--quiet"], capsys)
    assert rc == 0, err
    files = sorted(p.name for p in work.iterdir())
    assert files == ["Tiny-Llama-38K-BF16.gguf"]  # llama.cpp's naming: name, size label, type
    assert "sha256" in out


def test_json_events_and_result(model: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "m.gguf"
    rc, out, err = run(["convert", str(model), "-o", str(target), "--outtype", "f16", "--json"], capsys)
    assert rc == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    events, result = lines[:-1], lines[-1]
    assert all("status" in e for e in events) and events[-1]["status"] == "success"
    progress = [e for e in events if "total" in e]
    assert progress and progress[-1]["completed"] == progress[-1]["total"]
    import hashlib

    assert result["path"] == str(target.resolve())
    assert result["size"] == target.stat().st_size
    assert result["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert result["file_type"] == "F16" and result["architecture"] == "llama"


OUTTYPE_CASES = [
    ("f32", {QT.F32}, 0),
    ("f16", {QT.F16, QT.F32}, 1),
    ("bf16", {QT.BF16, QT.F32}, 32),
    ("q8_0", {QT.Q8_0, QT.F32}, 7),
    ("auto", {QT.BF16, QT.F32}, 32),  # a bf16 checkpoint stays bf16
]


@pytest.mark.parametrize(("outtype", "types", "file_type"), OUTTYPE_CASES, ids=[c[0] for c in OUTTYPE_CASES])
def test_outtypes(model: Path, tmp_path: Path, outtype: str, types: set, file_type: int) -> None:
    target = tmp_path / "m.gguf"
    convert(model, target, outtype=outtype)
    with read_gguf(target) as g:
        assert {QT(t.ggml_type) for t in g.tensors} == types
        assert g.get("general.file_type") == file_type
        for t in g.tensors:  # 1-D tensors and norms always F32
            if len(t.ne) == 1 or t.name.endswith("_norm.weight"):
                assert t.ggml_type == QT.F32


def test_auto_keeps_f16_for_f16_checkpoints(tmp_path: Path) -> None:
    src = make_llama(tmp_path / "m16", dtype="f16")
    r = convert(src, tmp_path / "o.gguf")
    assert r.file_type == "F16"


def test_f32_values_are_exact(tmp_path: Path) -> None:
    src = make_llama(tmp_path / "m32", dtype="f32")
    target = tmp_path / "o.gguf"
    convert(src, target, outtype="f32")
    from safetensors.numpy import load_file

    want = load_file(str(src / "model.safetensors"))["model.layers.0.mlp.down_proj.weight"]
    with read_gguf(target) as g:
        got = g.tensor_array(g.tensor("blk.0.ffn_down.weight"))
        np.testing.assert_array_equal(got, want)


def test_deterministic(model: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    ra, rb = convert(model, a, outtype="q8_0"), convert(model, b, outtype="q8_0", threads=1)
    assert ra.sha256 == rb.sha256 and a.read_bytes() == b.read_bytes()


def test_existing_output_needs_force(model: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "m.gguf"
    target.write_bytes(b"keep me")
    rc, _, err = run(["convert", str(model), "-o", str(target)], capsys)
    assert rc == 1 and "already exists" in err and "--force" in err
    assert target.read_bytes() == b"keep me"
    rc, _, err = run(["convert", str(model), "-o", str(target), "--force", "-q"], capsys)
    assert rc == 0, err
    assert target.read_bytes()[:4] == b"GGUF"


def test_model_name_and_metadata_override(model: Path, tmp_path: Path, monkeypatch) -> None:
    override = tmp_path / "meta.json"
    override.write_text(json.dumps({"general.description": "A test", "general.author": "Someone"}))
    monkeypatch.chdir(tmp_path)
    r = convert(model, outtype="f16", model_name="Mini", metadata=override)
    with read_gguf(r.path) as g:
        assert g.get("general.name") == "Mini"
        assert g.get("general.description") == "A test" and g.get("general.author") == "Someone"


def test_interrupted_convert_leaves_nothing(model: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def stop(event) -> None:
        if event.total and event.completed:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(model, out_dir / "m.gguf", progress=stop)
    assert list(out_dir.iterdir()) == []


def test_free_space_is_checked(tmp_path: Path) -> None:
    with pytest.raises(GgtoolError, match="not enough disk space"):
        check_free_space(tmp_path / "x.gguf", 10**18)


# -- bad input: one clear line, exit 1, no output file ----------------------------------------
def _header_file(path: Path, header: object, data: bytes = b"", raw: bytes | None = None) -> None:
    head = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + data)


def _config(m: Path, **changes) -> None:
    cfg = json.loads((m / "config.json").read_text())
    cfg.update(changes)
    (m / "config.json").write_text(json.dumps(cfg))


def _missing_config(m: Path) -> None:
    (m / "config.json").unlink()


def _unknown_arch(m: Path) -> None:
    _config(m, architectures=["FooForCausalLM"])


def _missing_tensor(m: Path) -> None:
    make_llama(m, drop=("model.layers.1.mlp.up_proj.weight",))


def _extra_tensor(m: Path) -> None:
    make_llama(m, extra={"model.layers.0.mystery.weight": np.zeros((2, 2), np.float32)})


def _bad_shape(m: Path) -> None:
    _config(m, intermediate_size=48)


def _truncated(m: Path) -> None:
    p = m / "model.safetensors"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _header_past_eof(m: Path) -> None:
    (m / "model.safetensors").write_bytes((10**7).to_bytes(8, "little") + b"{}")


def _invalid_json(m: Path) -> None:
    _header_file(m / "model.safetensors", None, raw=b'{"a": ')


def _overlapping(m: Path) -> None:
    _header_file(m / "model.safetensors", {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                           "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24))


def _out_of_range(m: Path) -> None:
    _header_file(m / "model.safetensors", {"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}, bytes(16))


def _unknown_dtype(m: Path) -> None:
    _header_file(m / "model.safetensors", {"a": {"dtype": "Q4", "shape": [8], "data_offsets": [0, 4]}}, bytes(4))


def _no_tokenizer(m: Path) -> None:
    (m / "tokenizer.json").unlink()


def _pickle_only(m: Path) -> None:
    (m / "model.safetensors").unlink()
    (m / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")


def _bad_tokenizer(m: Path) -> None:
    (m / "tokenizer.json").write_text("{ nope")


def _int_weights(m: Path) -> None:
    from tests.converters.synth import llama_config, llama_tensors

    cfg = json.loads((m / "config.json").read_text())
    t = llama_tensors(llama_config(cfg["vocab_size"]))
    t["model.norm.weight"] = np.zeros(32, np.int64)
    save_safetensors(m / "model.safetensors", t)


BAD_INPUTS = [
    ("missing config.json", _missing_config, "no config.json"),
    ("unknown architecture", _unknown_arch, "'FooForCausalLM' is not supported; supported: BertModel"),
    ("missing tensor", _missing_tensor, "missing from the checkpoint (first: 'blk.1.ffn_up.weight')"),
    ("extra tensor", _extra_tensor, "unexpected tensor 'model.layers.0.mystery.weight'"),
    ("shape disagrees with config", _bad_shape, "has shape [32, 64], but config.json implies [32, 48]"),
    ("truncated safetensors", _truncated, "past the end of the file"),
    ("header length past EOF", _header_past_eof, "runs past the end of the file"),
    ("invalid header JSON", _invalid_json, "header is not valid JSON"),
    ("overlapping offsets", _overlapping, "overlap"),
    ("out-of-range offsets", _out_of_range, "data ends past the end of the file"),
    ("unknown dtype", _unknown_dtype, "unknown dtype 'Q4'"),
    ("missing tokenizer", _no_tokenizer, "no tokenizer.model or tokenizer.json"),
    ("corrupt tokenizer", _bad_tokenizer, "tokenizer.json: not valid JSON"),
    ("pickle only", _pickle_only, "reads SafeTensors only"),
    ("integer weights", _int_weights, "dtype I64"),
]


@pytest.mark.parametrize(("label", "damage", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input(tmp_path: Path, capsys, label: str, damage, message: str) -> None:
    m = make_llama(tmp_path / "m")
    damage(m)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, out, err = run(["convert", str(m), "-o", str(out_dir / "m.gguf")], capsys)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert message in lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in err
    assert list(out_dir.iterdir()) == []  # no output, no temporary file


def test_unknown_outtype_is_a_usage_error(model: Path, tmp_path: Path, capsys) -> None:
    rc, _, err = run(["convert", str(model), "--outtype", "q4_k_m", "-o", str(tmp_path / "x.gguf")], capsys)
    assert rc == 2 and not (tmp_path / "x.gguf").exists()
