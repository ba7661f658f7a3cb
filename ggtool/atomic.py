"""Write-to-temporary-then-rename, so no reader ever sees a partial file."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_MARK = ".ggtool-tmp-"


def temp_path_for(target: Path) -> Path:
    """A unique temporary name in the target's folder (same filesystem, so rename is atomic)."""
    return target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_output(target: Path, *, overwrite: bool = True, fsync: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes `target` only if the block completes.

    Any exception, KeyboardInterrupt included, removes the temporary file and leaves an
    existing `target` untouched.
    """
    target = Path(target)
    tmp = temp_path_for(target)
    f = open(tmp, "xb")  # noqa: SIM115 - closed below on every path
    try:
        yield f
        f.flush()
        if fsync:
            os.fsync(f.fileno())
        f.close()
        if not overwrite and target.exists():
            raise FileExistsError(str(target))
        os.replace(tmp, target)
    except BaseException:
        f.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(target: Path, data: bytes) -> None:
    with atomic_output(target) as f:
        f.write(data)
