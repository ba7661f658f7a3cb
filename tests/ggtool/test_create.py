"""create: Ollama's own create tests replayed (same blob digests), real GGUFs, HF folders, quantize."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

from ggtool.create import create_model, file_type_name, human_number
from ggtool.errors import InvalidFileError, NotFoundError, UsageError
from ggtool.events import ProgressEvent
from ggtool.gguf_io import GGUFStreamWriter, KVEntry, TensorSpec
from ggtool.manifest import MEDIA_TYPE_MODEL, ModelConfig, sha256_digest
from ggtool.modelfile import CreateRequest, parse_modelfile
from ggtool.show import show_model
from ggtool.store import Store

# The GGUF Ollama's server tests create (createBinFile(t, nil, nil)) and the digests they expect.
OLLAMA_TEST_GGUF_DIGEST = "sha256:89a2116c3a82d6a97f59f748d86ed4417214353fd178ee54df418fde32495fad"
OLLAMA_TEST_CONFIG_BLOB = "sha256-99759ad5b91e723db0393d698ffbb448b1b7df5ff6377a108c49254583b1bc8c"
GGUF_BLOB = "sha256-" + OLLAMA_TEST_GGUF_DIGEST[7:]


def ollama_test_gguf() -> bytes:
    def s(x: str) -> bytes:
        return struct.pack("<Q", len(x)) + x.encode()

    return b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("general.architecture") + struct.pack("<I", 8) + s("test")


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "models")
    assert s.put_bytes(ollama_test_gguf()).digest == OLLAMA_TEST_GGUF_DIGEST  # like POST /api/blobs
    return s


def blobs(store: Store) -> set[str]:
    return {p.name for p in store.blobs_dir.iterdir()}


def create(store: Store, body: dict, events: list | None = None) -> None:
    create_model(CreateRequest.from_api(body), store=store, progress=(events.append if events is not None else lambda e: None))


def test_create_from_bin(store: Store) -> None:
    events: list[ProgressEvent] = []
    create(store, {"name": "test", "files": {"test.gguf": OLLAMA_TEST_GGUF_DIGEST}}, events)
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB}
    m = store.get("test")
    assert m.path == store.root / "manifests/registry.ollama.ai/library/test/latest"
    cfg = (store.blobs_dir / OLLAMA_TEST_CONFIG_BLOB).read_bytes()
    assert m.manifest.raw == (
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        f'"config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{OLLAMA_TEST_CONFIG_BLOB[7:]}","size":{len(cfg)}}},'
        f'"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"{OLLAMA_TEST_GGUF_DIGEST}","size":68,"from":"test.gguf"}}]}}\n'
    ).encode()
    assert [e.status for e in events] == [
        "parsing GGUF", f"using existing layer {OLLAMA_TEST_GGUF_DIGEST}", "writing manifest", "success"]


def test_create_from_model(store: Store) -> None:
    create(store, {"name": "test", "files": {"test.gguf": OLLAMA_TEST_GGUF_DIGEST}})
    create(store, {"name": "test2", "from": "test"})
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB}
    layer = store.get("test2").manifest.model_layer
    assert layer is not None and layer.from_ == "test:latest"


def test_create_from_model_inherits_renderer_parser(store: Store) -> None:
    create(store, {"name": "base", "files": {"base.gguf": OLLAMA_TEST_GGUF_DIGEST}, "renderer": "r1", "parser": "p1"})
    create(store, {"name": "child", "from": "base"})
    cfg = ModelConfig.from_bytes(store.read_blob(store.get("child").manifest.config.digest))
    assert (cfg.renderer, cfg.parser) == ("r1", "p1")


def test_create_removes_replaced_layers(store: Store) -> None:
    create(store, {"name": "test", "files": {"test.gguf": OLLAMA_TEST_GGUF_DIGEST}, "template": "{{ .Prompt }}"})
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB,
                            "sha256-b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315"}
    create(store, {"name": "test", "files": {"test.gguf": OLLAMA_TEST_GGUF_DIGEST}, "template": "{{ .System }} {{ .Prompt }}"})
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB,
                            "sha256-fe7ac77b725cda2ccad03f88a880ecdfd7a33192d6cae08fce2c0ee1455991ed"}


def test_create_unsets_system(store: Store) -> None:
    create(store, {"name": "test", "files": {"test.gguf": OLLAMA_TEST_GGUF_DIGEST}, "system": "Say hi!"})
    assert "sha256-f29e82a8284dbdf5910b1555580ff60b04238b8da9d5e51159ada67a4d0d5851" in blobs(store)
    create(store, {"name": "test", "files": {"test.gguf": OLLAMA_TEST_GGUF_DIGEST}, "system": ""})
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB}


def test_create_merge_parameters(store: Store) -> None:
    create(store, {"name": "test", "files": {"test.gguf": OLLAMA_TEST_GGUF_DIGEST},
                   "parameters": {"temperature": 1, "top_k": 10, "stop": ["USER:", "ASSISTANT:"]}})
    first = "sha256-1d0ad71299d48c2fb7ae2b98e683643e771f8a5b72be34942af90d97a91c1e37"
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB, first}
    create(store, {"name": "test2", "from": "test", "parameters": {"temperature": 0.6, "top_p": 0.7}})
    merged = "sha256-e29a7b3c47287a2489c895d21fe413c20f859a85d20e749492f52a838e36e1ba"
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB, first, merged}
    assert json.loads((store.blobs_dir / merged).read_bytes()) == {"temperature": 0.6, "top_k": 10, "top_p": 0.7, "stop": ["USER:", "ASSISTANT:"]}
    # slices are replaced, and test2's old params blob goes away
    create(store, {"name": "test2", "from": "test", "parameters": {"temperature": 0.6, "top_p": 0.7, "stop": ["<|endoftext|>"]}})
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB, first,
                            "sha256-12f58bb75cb3042d69a7e013ab87fb3c3c7088f50ddc62f0c77bd332f0d44d35"}


def test_create_replaces_messages(store: Store) -> None:
    create(store, {"name": "test", "files": {"test.gguf": OLLAMA_TEST_GGUF_DIGEST}, "messages": [
        {"role": "assistant", "content": "What is my purpose?"}, {"role": "user", "content": "You run tests."},
        {"role": "assistant", "content": "Oh, my god."}]})
    first = "sha256-298baeaf6928a60cf666d88d64a1ba606feb43a2865687c39e40652e407bffc4"
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB, first}
    create(store, {"name": "test2", "from": "test", "messages": [
        {"role": "assistant", "content": "You're a test, Harry."}, {"role": "user", "content": "I-I'm a what?"},
        {"role": "assistant", "content": "A test. And a thumping good one at that, I'd wager."}]})
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB, first,
                            "sha256-a60ecc9da299ec7ede453f99236e5577fd125e143689b646d9f0ddc9971bf4db"}


def test_create_template_system(store: Store) -> None:
    create(store, {"name": "test", "files": {"test.gguf": OLLAMA_TEST_GGUF_DIGEST},
                   "template": "{{ .System }} {{ .Prompt }}", "system": "Say bye!"})
    assert blobs(store) == {OLLAMA_TEST_CONFIG_BLOB, GGUF_BLOB,
                            "sha256-4c5f51faac758fecaff8db42f0b7382891a4d0c0bb885f7b86be88c814a7cc86",
                            "sha256-fe7ac77b725cda2ccad03f88a880ecdfd7a33192d6cae08fce2c0ee1455991ed"}


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ({"name": "x"}, UsageError, "neither 'from' or 'files' was specified"),
        ({"name": "x", "from": "nothere"}, NotFoundError, "model 'nothere:latest' not found"),
        ({"name": "bad name!", "from": "x"}, Exception, "invalid model name"),
        ({"name": "x", "files": {"a.gguf": "sha256:" + "0" * 64}}, NotFoundError, "not found in the store"),
        ({"name": "x", "files": {"t.gguf": OLLAMA_TEST_GGUF_DIGEST}, "template": "{{ .Prompt"}, UsageError, "template error"),
        ({"name": "x", "files": {"t.gguf": OLLAMA_TEST_GGUF_DIGEST}, "adapters": {"a.gguf": OLLAMA_TEST_GGUF_DIGEST, "b.gguf": OLLAMA_TEST_GGUF_DIGEST}},
         UsageError, "only one adapter is currently supported"),
        ({"name": "x", "files": {"t.gguf": OLLAMA_TEST_GGUF_DIGEST}, "quantize": "q4_K_M"}, UsageError,
         "quantization is only supported for F16, BF16 and F32 models"),
    ],
)
def test_create_errors(store: Store, body: dict, error: type, message: str) -> None:
    before = blobs(store)
    with pytest.raises(error, match=message):
        create(store, body)
    assert store.list_models() == [] and blobs(store) <= before | {OLLAMA_TEST_CONFIG_BLOB}
    assert list(store.leases_dir.iterdir()) == []


def test_not_gguf_is_refused(store: Store, tmp_path: Path) -> None:
    junk = tmp_path / "weights.bin"
    junk.write_bytes(b"not a gguf at all")
    req = CreateRequest(model="x", local_files={"weights.bin": junk})
    with pytest.raises(InvalidFileError, match="supplied file was not in GGUF format"):
        create_model(req, store=store)


def test_interrupted_create_leaves_no_manifest_or_temp(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "big.gguf"
    write_f16_gguf(src)

    def boom(ev: ProgressEvent) -> None:
        if ev.status.startswith("copying file") and ev.completed:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_model(CreateRequest(model="x", local_files={"big.gguf": src}), store=store, progress=boom)
    assert store.list_models() == []
    assert all(".ggtool-tmp-" not in n for n in blobs(store))
    assert not any(p.name.startswith(".ggtool-create-") for p in store.root.iterdir())


# -- real GGUFs -------------------------------------------------------------------------------
def write_f16_gguf(path: Path, rows: int = 64, cols: int = 256) -> Path:
    kv = [KVEntry("general.architecture", V.STRING, "llama"), KVEntry("general.file_type", V.UINT32, 1),
          KVEntry("general.name", V.STRING, "tiny"), KVEntry("tokenizer.chat_template", V.STRING, "{{ messages }}"),
          KVEntry("llama.block_count", V.UINT32, 1)]
    with GGUFStreamWriter(path, kv, [TensorSpec("token_embd.weight", (cols, rows), T.F16)]) as w:
        w.write_tensor("token_embd.weight", np.arange(rows * cols, dtype=np.float16).reshape(rows, cols))
    return path


@pytest.fixture(scope="module")
def smol_gguf() -> Path:
    from fixtures.smollm2 import smollm2_gguf

    return smollm2_gguf()


def test_create_from_smollm2_gguf_file(tmp_path: Path, smol_gguf: Path) -> None:
    store = Store(tmp_path / "models")
    mf = parse_modelfile(f"FROM {smol_gguf}\nPARAMETER temperature 0.2\nPARAMETER stop <|im_end|>\nSYSTEM Be brief.\nLICENSE Apache-2.0\n")
    req = mf.to_create_request(tmp_path)
    req.model = "smollm2:135m"
    events: list[ProgressEvent] = []
    result = create_model(req, store=store, progress=events.append)
    m = result.model
    digest = sha256_digest(smol_gguf.read_bytes())
    assert m.manifest.model_layer is not None and m.manifest.model_layer.digest == digest
    assert store.blob_path(digest).read_bytes() == smol_gguf.read_bytes()
    cfg = ModelConfig.from_bytes(store.read_blob(m.manifest.config.digest))
    assert (cfg.model_format, cfg.model_family, cfg.model_families, cfg.model_type, cfg.file_type) == (
        "gguf", "llama", ["llama"], "134.52M", "Q4_1")
    assert [d.media_type.rsplit(".", 1)[1] for d in m.manifest.layers] == ["model", "system", "license", "params"]
    assert any(e.status.startswith("copying file") and e.total == smol_gguf.stat().st_size for e in events)
    assert events[-2:] == [ProgressEvent("writing manifest"), ProgressEvent("success")]

    info = show_model(store, "SmolLM2:135M")
    assert info["details"]["quantization_level"] == "Q4_1" and info["details"]["parent_model"] == smol_gguf.name
    assert info["template"].startswith("{% for message in messages %}")  # the GGUF's own chat template
    assert "tokenizer.chat_template" not in info["model_info"] and "general.name" not in info["model_info"]
    assert info["model_info"]["tokenizer.ggml.tokens"] == []  # long arrays emptied unless verbose
    assert info["model_info"]["general.parameter_count"] == 134515008
    assert info["capabilities"] == ["completion"]

    # show --modelfile parses back to the same model: same layers and config (only `from` differs)
    again = parse_modelfile(info["modelfile"]).to_create_request(tmp_path)
    again.model = "copy"
    m2 = create_model(again, store=store).model
    assert [(d.media_type, d.digest) for d in m2.manifest.layers] == [(d.media_type, d.digest) for d in m.manifest.layers]
    assert m2.manifest.config.digest == m.manifest.config.digest

    # quantizing a Q4_1 model is refused before any work
    with pytest.raises(UsageError, match="only supported for F16, BF16 and F32"):
        create_model(CreateRequest(model="q", from_="smollm2:135m", quantize="q8_0"), store=store)


def test_create_quantize_on_the_way_in(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    src = write_f16_gguf(tmp_path / "f16.gguf")
    events: list[ProgressEvent] = []
    m = create_model(CreateRequest(model="q", local_files={"f16.gguf": src}, quantize="q8_0"), store=store,
                     progress=events.append).model
    cfg = ModelConfig.from_bytes(store.read_blob(m.manifest.config.digest))
    assert cfg.file_type == "Q8_0"
    layer = m.manifest.model_layer
    assert layer is not None and layer.from_ == "" and layer.size < src.stat().st_size
    q = [e for e in events if e.status == "quantizing F16 model to Q8_0"]
    assert q and q[-1].digest == "0000000000000000000" and q[-1].completed == q[-1].total
    assert "verifying conversion" in [e.status for e in events]
    # the unquantized source never became a blob (Ollama leaves it behind, #18416)
    assert not store.has_blob(sha256_digest(src.read_bytes()))
    assert "success" not in [e.status for e in events[:-1]]
    # the chat template of the GGUF is kept
    from ggtool.gguf_io import read_gguf

    with read_gguf(store.blob_path(layer.digest)) as g:
        assert g.get("tokenizer.chat_template") == "{{ messages }}"


@pytest.mark.slow
def test_create_from_hf_folder(tmp_path: Path) -> None:
    from fixtures.tiny_models import tiny_model

    folder = tiny_model("llama-bpe")
    store = Store(tmp_path / "models")
    (tmp_path / "Modelfile").write_text(f"FROM {folder}\nTEMPLATE {{{{ .Prompt }}}}\n")
    req = parse_modelfile((tmp_path / "Modelfile").read_text()).to_create_request(tmp_path)
    assert "model.safetensors" in req.local_files
    req.model, req.quantize = "tiny", "Q8_0"
    events: list[ProgressEvent] = []
    m = create_model(req, store=store, progress=events.append).model
    statuses = [e.status for e in events]
    # converted and quantized in one pass (convert --quantize): no F16/BF16 intermediate file
    assert "converting model" in statuses and "quantizing to Q8_0" in statuses
    cfg = ModelConfig.from_bytes(store.read_blob(m.manifest.config.digest))
    assert (cfg.model_family, cfg.file_type) == ("llama", "Q8_0")
    assert [d.media_type.rsplit(".", 1)[1] for d in m.manifest.layers] == ["model", "template"]
    # only the final GGUF is in the store: no converted intermediate, no copy of the weights
    sizes = sorted(p.stat().st_size for p in store.blobs_dir.iterdir())
    assert len(sizes) == 3 and sizes[-1] == m.manifest.model_layer.size  # type: ignore[union-attr]
    assert not any(p.name.startswith(".ggtool-create-") for p in store.root.iterdir())


@pytest.mark.parametrize(("n", "s"), [(134515008, "134.52M"), (8_000_000_000, "8B"), (3_210_000_000, "3.2B"),
                                      (2_000_000, "2M"), (1500, "2K"), (999, "999"), (0, "0")])
def test_human_number(n: int, s: str) -> None:
    assert human_number(n) == s


@pytest.mark.parametrize(("v", "s"), [(1, "F16"), (15, "Q4_K_M"), (32, "BF16"), (0, "unknown"), (None, "unknown"),
                                      (5, "unknown"), (40, "Q1_0")])
def test_file_type_name(v: object, s: str) -> None:
    assert file_type_name(v) == s


def test_model_id_is_manifest_sha256(store: Store) -> None:
    create(store, {"name": "test", "files": {"test.gguf": OLLAMA_TEST_GGUF_DIGEST}})
    m = store.get("test")
    assert m.model_id == hashlib.sha256(m.path.read_bytes()).hexdigest()
    assert m.manifest.layers[0].media_type == MEDIA_TYPE_MODEL
