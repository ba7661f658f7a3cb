"""`ggtool create / list / show / cp / rm / prune` through the real CLI entry point."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

from ggtool.cli.app import main
from ggtool.gguf_io import GGUFStreamWriter, KVEntry, TensorSpec
from ggtool.manifest import sha256_digest
from ggtool.store import Store


@pytest.fixture()
def gguf_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny-F16.gguf"
    kv = [KVEntry("general.architecture", V.STRING, "llama"), KVEntry("general.file_type", V.UINT32, 1),
          KVEntry("llama.context_length", V.UINT32, 2048), KVEntry("llama.block_count", V.UINT32, 1),
          KVEntry("tokenizer.ggml.tokens", V.ARRAY, [f"t{i}" for i in range(10)], V.STRING),
          KVEntry("tokenizer.chat_template", V.STRING, "{% for m in messages %}{{ m.content }}{% endfor %}")]
    with GGUFStreamWriter(p, kv, [TensorSpec("token_embd.weight", (32, 8), T.F16)]) as w:
        w.write_tensor("token_embd.weight", np.ones((8, 32), np.float16))
    return p


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def valid(store: Path) -> None:
    s = Store(store)
    for m in s.list_models(on_error=lambda p, e: pytest.fail(f"{p}: {e}")):
        for d in m.manifest.blobs():
            assert sha256_digest(s.blob_path(d.digest).read_bytes()) == d.digest


def test_create_list_show_cp_rm(tmp_path: Path, gguf_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "models"
    mf = tmp_path / "Modelfile"
    mf.write_text(f'FROM ./{gguf_file.name}\nPARAMETER num_ctx 1024\nSYSTEM """Be\nbrief."""\n')

    rc, out, err = run(capsys, "create", "Tiny:1", "-f", str(mf), "--store", str(store), "--json")
    assert rc == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    statuses = [x.get("status") for x in lines]
    assert statuses[0] == "gathering model components" and "writing manifest" in statuses
    assert lines[-2] == {"status": "success"}
    result = lines[-1]
    model_id = hashlib.sha256((store / "manifests/registry.ollama.ai/library/Tiny/1").read_bytes()).hexdigest()
    assert result["digest"] == model_id and result["model"] == "Tiny:1"

    rc, out, _ = run(capsys, "--json", "list", "--store", str(store))
    assert rc == 0
    (row,) = json.loads(out)["models"]
    assert row["name"] == "Tiny:1" and row["digest"] == model_id
    assert row["details"] == {"parent_model": gguf_file.name, "format": "gguf", "family": "llama",
                              "families": ["llama"], "parameter_size": "256", "quantization_level": "F16"}
    rc, out, _ = run(capsys, "ls", "--store", str(store))
    assert out.splitlines()[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"] and model_id[:12] in out

    rc, out, _ = run(capsys, "show", "tiny:1", "--store", str(store), "--json")
    info = json.loads(out)
    assert info["system"] == "Be\nbrief." and info["model_info"]["llama.context_length"] == 2048
    assert info["model_info"]["tokenizer.ggml.tokens"] == [] and info["template"].startswith("{% for m")
    rc, out, _ = run(capsys, "show", "tiny:1", "--parameters", "--store", str(store))
    assert out.strip() == f"{'num_ctx':<30} 1024"
    rc, out, _ = run(capsys, "show", "tiny:1", "--system", "--store", str(store))
    assert out == "Be\nbrief.\n"
    rc, out, _ = run(capsys, "show", "tiny:1", "--modelfile", "--store", str(store))
    assert 'SYSTEM "Be\nbrief."' in out and "# FROM Tiny:1" in out
    rc, out, _ = run(capsys, "show", "tiny:1", "--store", str(store))
    assert "architecture        llama" in out and "completion" in out

    # the rendered Modelfile rebuilds the same layers
    (tmp_path / "Modelfile2").write_text(out_mf := run(capsys, "show", "tiny:1", "--modelfile", "--store", str(store))[1])
    assert out_mf
    rc, _, err = run(capsys, "create", "again", "-f", str(tmp_path / "Modelfile2"), "--store", str(store), "--quiet")
    assert rc == 0, err
    s = Store(store)
    assert [d.digest for d in s.get("again").manifest.layers] == [d.digest for d in s.get("tiny:1").manifest.layers]

    rc, out, _ = run(capsys, "cp", "tiny:1", "other:2", "--store", str(store), "--json")
    assert rc == 0 and json.loads(out)["digest"] == model_id
    rc, out, _ = run(capsys, "rm", "TINY:1", "again", "--store", str(store), "--json")
    assert rc == 0 and [d["name"] for d in json.loads(out)["deleted"]] == ["Tiny:1", "again:latest"]
    assert [m.display for m in s.list_models()] == ["other:2"]
    valid(store)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "nothere"], 3, "model 'nothere:latest' not found"),
        (["rm", "nothere"], 3, "not found"),
        (["cp", "nothere", "x"], 3, "not found"),
        (["show", "bad name!"], 2, "invalid model name"),
        (["create", "bad name!", "-f", "x"], 2, "invalid model name"),
        (["create", "m", "-f", "/nonexistent/Modelfile"], 3, "no such Modelfile"),
        (["show", "x", "--system", "--license"], 2, "only one of"),
    ],
)
def test_errors_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str) -> None:
    rc, out, err = run(capsys, *args, "--store", str(tmp_path))
    assert rc == code and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("modelfile", "message"),
    [
        ("FROM x\nBOGUS y\n", '(line 2): command must be one of "from"'),
        ("SYSTEM hi\n", "no FROM line"),
        ("FROM x\nMESSAGE robot hi\n", "message role must be one of"),
        ("FROM x\nPARAMETER num_ctx big\n", "invalid int value [big]"),
        ("FROM x\nPARAMETER nope 1\n", "unknown parameter 'nope'"),
        ("FROM ./missing.gguf\n", "missing.gguf: no such file or directory"),
    ],
)
def test_create_modelfile_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], modelfile: str, message: str) -> None:
    (tmp_path / "Modelfile").write_text(modelfile)
    rc, out, err = run(capsys, "create", "m", "-f", str(tmp_path / "Modelfile"), "--store", str(tmp_path / "s"), "--json")
    assert rc in (1, 2, 3) and message in err
    assert json.loads(out.splitlines()[-1]) == {"error": err.strip().removeprefix("Error: ")}
    assert not (tmp_path / "s" / "manifests").exists() or not any((tmp_path / "s" / "manifests").rglob("*/*/*/*"))


def test_foreign_artifact_listed_shown_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = Store(tmp_path)
    cfg = s.put_bytes(b"{}")
    data = s.put_bytes(b"payload")
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "artifactType": "application/vnd.example",
                      "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.digest, "size": 2},
                      "layers": [{"mediaType": "application/vnd.example.data", "digest": data.digest, "size": 7}]}).encode()
    s.write_manifest("localhost:5000/ns/art:1", raw)
    rc, out, _ = run(capsys, "ls", "--store", str(tmp_path))
    assert "localhost:5000/ns/art:1" in out
    rc, out, _ = run(capsys, "show", "localhost:5000/ns/art:1", "--store", str(tmp_path), "--json")
    info = json.loads(out)
    assert rc == 0 and info["artifact"]["layers"][0]["mediaType"] == "application/vnd.example.data"
    (tmp_path / "Modelfile").write_text("FROM localhost:5000/ns/art:1\n")
    rc, _, err = run(capsys, "create", "m", "-f", str(tmp_path / "Modelfile"), "--store", str(tmp_path), "-q", "q8_0")
    assert rc == 1 and "not a GGUF model" in err


def test_prune_dry_run_then_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = Store(tmp_path)
    orphan = s.put_bytes(b"orphan")
    old = time.time() - 7200
    os.utime(s.blob_path(orphan.digest), (old, old))
    young = s.put_bytes(b"young")
    rc, out, _ = run(capsys, "prune", "--dry-run", "--store", str(tmp_path), "--json")
    data = json.loads(out)
    assert rc == 0 and data["dry_run"] and [i["kind"] for i in data["items"]] == ["blob"] and data["total_size"] == 6
    assert data["kept_recent"] == 1 and s.has_blob(orphan.digest)
    rc, out, _ = run(capsys, "prune", "--store", str(tmp_path))
    assert rc == 0 and "removed 1 files" in out
    assert not s.has_blob(orphan.digest) and s.has_blob(young.digest)
