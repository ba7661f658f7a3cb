"""No partial files: the temporary file disappears on every failure path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggtool.atomic import TEMP_MARK, atomic_output, write_bytes_atomic


def test_success_renames(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with atomic_output(target) as f:
        f.write(b"data")
        assert not target.exists()
        assert any(TEMP_MARK in p.name for p in tmp_path.iterdir())
    assert target.read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("exc", [ValueError("boom"), KeyboardInterrupt()])
def test_failure_removes_temp_and_keeps_old(tmp_path: Path, exc: BaseException) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(exc)), atomic_output(target) as f:
        f.write(b"new")
        raise exc
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_no_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError), atomic_output(target, overwrite=False) as f:
        f.write(b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_write_bytes_atomic(tmp_path: Path) -> None:
    write_bytes_atomic(tmp_path / "x", b"123")
    assert (tmp_path / "x").read_bytes() == b"123"
