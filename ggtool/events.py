"""The progress event of long-running operations.

The same objects Ollama's API streams (`{"status", "digest"?, "total"?, "completed"?}`): the
CLI prints them as NDJSON with `--json`, and the server's streaming endpoints send them as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.digest is not None:
            out["digest"] = self.digest
        if self.total is not None:
            out["total"] = self.total
        if self.completed is not None:
            out["completed"] = self.completed
        return out


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(_event: ProgressEvent) -> None:
    """A progress callback that drops everything (library default)."""
