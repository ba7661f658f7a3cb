"""Session fixtures for the end-to-end server tests (slow tier)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ggtool.server.serve_helpers import Server, create_store, served_ggufs


@pytest.fixture(scope="session")
def ggufs() -> dict[str, Path]:
    return served_ggufs()


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory, ggufs: dict[str, Path]) -> Path:
    return create_store(tmp_path_factory.mktemp("serve") / "models")


@pytest.fixture(scope="session")
def server(model_store: Path) -> Iterator[Server]:
    """One shared `ggtool serve` (OLLAMA_NUM_PARALLEL=2) for tests that do not change lifecycle."""
    s = Server(model_store, env={"OLLAMA_NUM_PARALLEL": "2"}).start()
    yield s
    s.stop()
