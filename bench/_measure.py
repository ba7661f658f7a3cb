"""Shared measuring for the benches: wall time and peak RSS of one child process."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

TIME = Path("/usr/bin/time")


def run_measured(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one child process, as /usr/bin/time -v reports them.

    /usr/bin/time is a small process that forks the tool, so the tool's peak is its own (a child
    forked straight from this process would inherit this process's high-water mark).
    """
    if not TIME.is_file():
        raise RuntimeError("/usr/bin/time is needed (apt-get install time)")
    start = time.perf_counter()
    proc = subprocess.run(
        [str(TIME), "-v", *cmd],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    fields = dict(line.strip().rsplit(": ", 1) for line in proc.stderr.splitlines() if ": " in line)
    peak_kb = int(fields["Maximum resident set size (kbytes)"])
    parts = fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
    elapsed = sum(float(p) * 60**i for i, p in enumerate(reversed(parts)))
    return min(wall, elapsed), peak_kb * 1024
