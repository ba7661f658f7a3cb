"""Fixtures of the quant tests (helpers live in quant_testlib.py)."""

from __future__ import annotations

import pytest

from fixtures.components import require_component
from tests.quant.quant_testlib import GGML, ggml_base_path


@pytest.fixture(scope="session")
def ggml() -> GGML:
    path = ggml_base_path()
    require_component("llama-cpp-python's libggml-base.so", path is not None)
    assert path is not None
    return GGML(path)
