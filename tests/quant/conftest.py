"""Fixtures of the quant tests (helpers live in quant_testlib.py)."""

from __future__ import annotations

import pytest

from tests.quant.quant_testlib import GGML, ggml_base_path


@pytest.fixture(scope="session")
def ggml() -> GGML:
    path = ggml_base_path()
    if path is None:
        pytest.skip("llama-cpp-python (libggml-base.so) is not installed")
    return GGML(path)
