"""File-type names and per-tensor type recipes, against llama.cpp's own decisions."""

from __future__ import annotations

import contextlib
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quant import GGMLType as T
from quant import QuantError
from quant.errors import FileTypeNotSupportedError, RecipeError, UnknownFileTypeError
from quant.recipes import (
    FILE_TYPES,
    ModelHParams,
    QuantOptions,
    TensorSpec,
    allows_quantization,
    category,
    fallback_type,
    llama_tensor_order,
    parse_file_type,
    plan_tensor_types,
    plan_tensors,
    use_more_bits,
)
from tests.quant.quant_testlib import (
    OPTION_CASES,
    OPTION_FILE_TYPES,
    OPTION_MODELS,
    RECIPE_FILE_TYPES,
    TINY_MODELS,
    llama_reference,
    read_specs,
    reference_job_id,
)

# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "canonical", "ftype"),
    [
        ("Q4_K_M", "Q4_K_M", 15),
        ("q4_k_m", "Q4_K_M", 15),
        ("Q4_K", "Q4_K_M", 15),
        ("q3_k", "Q3_K_M", 12),
        ("Q5_K", "Q5_K_M", 17),
        (" q8_0 ", "Q8_0", 7),
        ("f32", "F32", 0),
        ("BF16", "BF16", 32),
        ("18", "Q6_K", 18),
        (10, "Q2_K", 10),
    ],
)
def test_parse_file_type(name, canonical, ftype):
    ft = parse_file_type(name)
    assert (ft.name, int(ft.ftype)) == (canonical, ftype)


def test_all_seventeen_file_types():
    assert sorted(FILE_TYPES) == sorted(RECIPE_FILE_TYPES)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("IQ2_XXS", "importance matrix"),
        ("iq1_s", "importance matrix"),
        ("Q2_K_S", "importance matrix"),
        ("21", "importance matrix"),
        ("IQ4_XS", "not implemented"),
        ("TQ1_0", "not implemented"),
        ("tq2_0", "not implemented"),
        ("MXFP4_MOE", "not implemented"),
        ("COPY", "not implemented"),
    ],
)
def test_known_but_unsupported_file_types(name, message):
    with pytest.raises(FileTypeNotSupportedError, match=message):
        parse_file_type(name)


@pytest.mark.parametrize("name", ["Q4_K_X", "", "q9", "1000", "Q4_2"])
def test_unknown_file_types_list_the_valid_names(name):
    with pytest.raises(UnknownFileTypeError, match="valid: Q4_0, Q4_1.*Q4_K_M.*F32"):
        parse_file_type(name)


@given(st.text(max_size=12))
def test_parse_file_type_only_raises_quant_errors(text):
    with contextlib.suppress(QuantError):
        parse_file_type(text)


# ---------------------------------------------------------------- building blocks


@pytest.mark.parametrize(
    ("n", "layers"),
    [
        (16, [0, 1, 4, 7, 10, 13, 14, 15]),
        (32, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]),
    ],
)
def test_use_more_bits(n, layers):
    assert [i for i in range(n) if use_more_bits(i, n)] == layers


@pytest.mark.parametrize(
    ("target", "ne0", "expected"),
    [
        (T.Q4_K, 4096, (T.Q4_K, False)),
        (T.Q4_K, 320, (T.Q5_0, True)),
        (T.Q5_K, 320, (T.Q5_1, True)),
        (T.Q6_K, 576, (T.Q8_0, True)),
        (T.Q2_K, 320, (T.Q4_0, True)),
        (T.Q3_K, 320, (T.Q4_0, True)),
        (T.Q4_K, 328, (T.F16, True)),
        (T.Q8_0, 328, (T.F16, True)),
        (T.F16, 7, (T.F16, False)),
    ],
)
def test_fallback(target, ne0, expected):
    assert fallback_type(target, ne0) == expected


@pytest.mark.parametrize(
    ("name", "ne", "allowed"),
    [
        ("blk.0.attn_q.weight", (256, 256), True),
        ("blk.0.attn_norm.weight", (256,), False),
        ("blk.0.attn_q.weight", (256, 1), False),  # ggml_n_dims trims trailing 1s
        ("blk.0.attn_q.bias", (256, 256), False),
        ("blk.0.attn_q_norm.weight", (64, 64), False),
        ("blk.0.ffn_gate_inp.weight", (256, 8), False),
        ("position_embd.weight", (256, 256), False),
        ("token_types.weight", (256, 2), False),
        ("blk.0.ssm_conv1d.weight", (4, 256), False),
        ("blk.0.time_mix_w1.weight", (256, 256), False),
        ("v.patch_embd.weight", (256, 256), False),
        ("blk.0.ffn_gate_exps.weight", (256, 512, 8), True),
        ("abcde", (256, 256), True),  # C's rfind("weight") == size-6 quirk for 5-char names
    ],
)
def test_allows_quantization(name, ne, allowed):
    assert allows_quantization(TensorSpec(name, ne, T.F16), "llama") is allowed


def test_leave_output_tensor():
    spec = TensorSpec("output.weight", (256, 300), T.F16)
    assert not allows_quantization(spec, "llama", QuantOptions(quantize_output_tensor=False))


@pytest.mark.parametrize(
    ("name", "cat"),
    [
        ("output.weight", "output"),
        ("token_embd.weight", "token_embd"),
        ("blk.1.attn_qkv.weight", "attn_qkv"),
        ("blk.1.attn_v.weight", "attn_v"),
        ("blk.1.ffn_down_exps.weight", "ffn_down"),
        ("blk.1.ffn_gate_shexp.weight", "ffn_gate"),
        ("output_norm.weight", "other"),
    ],
)
def test_category(name, cat):
    assert category(name).value == cat


def test_llama_tensor_order():
    names = [
        "blk.10.attn_q.weight",
        "token_embd.weight",
        "blk.2.ffn_up.weight",
        "output.weight",
        "blk.2.attn_k.weight",
        "output_norm.weight",
    ]
    assert [names[i] for i in llama_tensor_order(names)] == [
        "output.weight",
        "output_norm.weight",
        "token_embd.weight",
        "blk.2.attn_k.weight",
        "blk.2.ffn_up.weight",
        "blk.10.attn_q.weight",
    ]


# ---------------------------------------------------------------- plans (pure Python)


def dense(n_layer=16, n_embd=256, n_ff=512, tied=False, n_kv=None):
    n_kv = n_kv or n_embd
    ts = [
        TensorSpec("token_embd.weight", (n_embd, 1000), T.F16),
        TensorSpec("output_norm.weight", (n_embd,), T.F32),
    ]
    if not tied:
        ts.append(TensorSpec("output.weight", (n_embd, 1000), T.F16))
    for i in range(n_layer):
        for nm, ne in [
            ("attn_q", (n_embd, n_embd)),
            ("attn_k", (n_embd, n_kv)),
            ("attn_v", (n_embd, n_kv)),
            ("attn_output", (n_embd, n_embd)),
            ("ffn_gate", (n_embd, n_ff)),
            ("ffn_up", (n_embd, n_ff)),
            ("ffn_down", (n_ff, n_embd)),
            ("attn_norm", (n_embd,)),
        ]:
            ts.append(TensorSpec(f"blk.{i}.{nm}.weight", ne, T.F16 if len(ne) > 1 else T.F32))
    return ts


def per_layer(ts, types, part):
    return " ".join(
        t.name.split("_")[0][1:]
        for s, t in zip(ts, types, strict=True)
        if f".{part}.weight" in s.name
    )


# reference §5.8 (16 layers; K suffix omitted)
@pytest.mark.parametrize(
    ("ftype", "attn_v", "ffn_down"),
    [
        ("Q4_K_M", "6 6 4 4 6 4 4 6 4 4 6 4 4 6 6 6", "6 6 4 4 6 4 4 6 4 4 6 4 4 6 6 6"),
        ("Q4_K_S", "5 5 5 5 4 4 4 4 4 4 4 4 4 4 4 4", "5 5 4 4 4 4 4 4 4 4 4 4 4 4 4 4"),
        ("Q3_K_M", "5 5 4 4 4 4 4 4 4 4 4 4 4 4 4 4", "5 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4"),
        ("Q5_K_M", "6 6 5 5 6 5 5 6 5 5 6 5 5 6 6 6", "6 6 5 5 6 5 5 6 5 5 6 5 5 6 6 6"),
        ("Q2_K", "3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3", "3 3 3 3 3 3 3 3 3 3 3 3 3 3 3 3"),
    ],
)
def test_dense_layer_patterns(ftype, attn_v, ffn_down):
    ts = dense()
    types = plan_tensor_types(ts, ftype, ModelHParams("llama", 16, 8, 8))
    assert per_layer(ts, types, "attn_v") == attn_v
    assert per_layer(ts, types, "ffn_down") == ffn_down
    assert types[2] == T.Q6_K  # output


def test_q2_k_gqa_bumps_attn_v():
    ts = dense(n_kv=64)
    types = plan_tensor_types(ts, "Q2_K", ModelHParams("llama", 16, 8, 2))
    assert per_layer(ts, types, "attn_v") == " ".join(["4"] * 16)


@pytest.mark.parametrize(("n_embd", "emb"), [(256, T.Q6_K), (288, T.Q8_0)])
def test_tied_embeddings_take_the_output_rule(n_embd, emb):
    ts = dense(n_layer=2, n_embd=n_embd, tied=True)
    assert plan_tensor_types(ts, "Q4_K_M", ModelHParams("llama", 2, 8, 8))[0] == emb


def test_input_order_does_not_matter():
    ts = dense()
    hp = ModelHParams("llama", 16, 8, 8)
    shuffled = ts[:]
    random.Random(0).shuffle(shuffled)
    by_name = dict(zip((t.name for t in ts), plan_tensor_types(ts, "Q4_K_M", hp), strict=True))
    assert (
        dict(
            zip((t.name for t in shuffled), plan_tensor_types(shuffled, "Q4_K_M", hp), strict=True)
        )
        == by_name
    )


def test_expert_tensors_need_a_layer_number():
    ts = [TensorSpec("ffn_down_exps.weight", (256, 256, 4), T.F16)]
    with pytest.raises(RecipeError, match="layer"):
        plan_tensors(ts, "Q4_K_M", ModelHParams("llama", 2, 8, 8, n_expert=4))


def test_override_that_does_not_fit_is_an_error():
    ts = dense(n_layer=1, n_embd=288)
    with pytest.raises(RecipeError, match="token_embd.weight has rows of 288"):
        plan_tensors(
            ts, "Q8_0", ModelHParams("llama", 1, 8, 8), QuantOptions(token_embedding_type=T.Q4_K)
        )


def test_plan_marks_fallbacks_and_copies():
    ts = dense(n_layer=1, n_ff=320)
    plans = {p.spec.name: p for p in plan_tensors(ts, "Q4_K_M", ModelHParams("llama", 1, 8, 8))}
    assert (
        plans["blk.0.ffn_down.weight"].fallback and plans["blk.0.ffn_down.weight"].target == T.Q8_0
    )
    assert not plans["blk.0.attn_norm.weight"].converts


# ---------------------------------------------------------------- against llama_model_quantize


@pytest.fixture(scope="module")
def reference():
    folder = llama_reference()
    return folder, json.loads((folder / "llama_results.json").read_text())


def _options(opt: str | None) -> QuantOptions:
    if opt is None:
        return QuantOptions()
    p = OPTION_CASES[opt]
    return QuantOptions(
        output_tensor_type=T(p["output_tensor_type"]) if "output_tensor_type" in p else None,
        token_embedding_type=T(p["token_embedding_type"]) if "token_embedding_type" in p else None,
        pure=p.get("pure", False),
        quantize_output_tensor=p.get("quantize_output_tensor", True),
    )


CASES = [(m.name, ft, None) for m in TINY_MODELS for ft in RECIPE_FILE_TYPES] + [
    (m, ft, opt) for m in OPTION_MODELS for ft in OPTION_FILE_TYPES for opt in OPTION_CASES
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "ftype", "option"), CASES, ids=["-".join(filter(None, c)) for c in CASES]
)
def test_plan_equals_llama_model_quantize(reference, model, ftype, option):
    folder, results = reference
    specs, hp = read_specs(folder / f"{model}.gguf")
    expected = results[reference_job_id(model, ftype, option)]
    if expected["rc"] != 0:  # llama.cpp failed (an override that does not fit): so must we
        with pytest.raises(RecipeError):
            plan_tensors(specs, ftype, hp, _options(option))
        return
    got = plan_tensor_types(specs, ftype, hp, _options(option))
    assert {s.name: t.name for s, t in zip(specs, got, strict=True)} == expected["types"]
