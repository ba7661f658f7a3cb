"""Dispatch by config.json's architecture, lazy module import, lazy tensors and transforms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import converters
from converters import ARCHITECTURES, converter_class, converter_for
from converters.errors import ModelFolderError, UnsupportedArchitectureError
from converters.lazy import from_array, permute_qk_index
from converters.llama import llama3_rope_factors


@pytest.mark.parametrize("hf_arch", sorted(ARCHITECTURES))
def test_every_architecture_has_a_converter(hf_arch: str) -> None:
    cls = converter_class(hf_arch)
    assert hf_arch in cls.hf_architectures


def test_unknown_architecture_lists_supported(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FalconForCausalLM"]}))
    with pytest.raises(UnsupportedArchitectureError) as e:
        converter_for(tmp_path)
    assert "'FalconForCausalLM' is not supported" in str(e.value)
    assert all(a in str(e.value) for a in ARCHITECTURES)


@pytest.mark.parametrize(("files", "message"), [
    ({}, "no config.json"),
    ({"config.json": "{oops"}, "not valid JSON"),
    ({"config.json": "[]"}, "not a JSON object"),
    ({"config.json": "{}"}, "no 'architectures'"),
])
def test_bad_config(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(converters.ConversionError, match=message):
        converter_for(tmp_path)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="not a folder"):
        converter_for(tmp_path / "nope")


def test_family_modules_are_imported_lazily() -> None:
    code = ("import sys, converters; assert 'converters.gemma' not in sys.modules; "
            "converters.converter_class('Gemma2ForCausalLM'); assert 'converters.gemma' in sys.modules; "
            "assert 'converters.bert' not in sys.modules; "
            "[converters.converter_class(a) for a in converters.ARCHITECTURES]; "
            "import converters.vocab, converters.source, converters.special_vocab; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('ggtool', 'torch', 'transformers')]")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("n_head", "head_dim"), [(4, 8), (2, 16), (1, 4)])
def test_permute_index_is_llama_cpps_permute(n_head: int, head_dim: int) -> None:
    rows = n_head * head_dim
    w = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    want = w.reshape(n_head, 2, rows // n_head // 2, 3).swapaxes(1, 2).reshape(w.shape)
    lazy = from_array(w).take_rows(permute_qk_index(rows, n_head))
    np.testing.assert_array_equal(lazy.materialize(), want)
    # any chunking gives the same rows
    got = np.concatenate([lazy.rows(a, min(a + 3, rows)) for a in range(0, rows, 3)])
    np.testing.assert_array_equal(got, want)


def test_chunks_cover_every_row() -> None:
    w = np.random.default_rng(0).standard_normal((1000, 17)).astype(np.float32)
    lazy = from_array(w)
    got = np.concatenate(list(lazy.chunks(max_bytes=17 * 4 * 64)))
    np.testing.assert_array_equal(got, w)


def test_llama3_rope_factors_shape_and_bounds() -> None:
    f = llama3_rope_factors(500000.0, 64, 32.0, 1.0, 4.0, 8192)
    assert f.dtype == np.float32 and f.shape == (32,)
    assert f[0] == 1 and f[-1] == 32.0 and np.all((f >= 1) & (f <= 32))


def test_llama3_rope_factors_equal_torch() -> None:
    """The same float32 arithmetic as llama.cpp's converter (which uses torch)."""
    import math

    import torch

    base, dim, factor, lo, hi, old = 500000.0, 64, 32.0, 1.0, 4.0, 8192
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / hi:
            out.append(1)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    want = torch.tensor(out, dtype=torch.float32).numpy()
    np.testing.assert_array_equal(llama3_rope_factors(base, dim, factor, lo, hi, old).view(np.uint32),
                                  want.view(np.uint32))
