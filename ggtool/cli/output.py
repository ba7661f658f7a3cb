"""The one place that prints.

Modes: human (default), `--json` (one JSON object for short commands, NDJSON events ending in
a result or an `{"error": ...}` object for long-running ones), and `--quiet` (no progress).
Results go to stdout; progress, logs and errors to stderr. Progress bars only on a terminal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ggtool.events import ProgressEvent


def _color_enabled(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return _isatty(stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class OutputSettings:
    json: bool = False
    quiet: bool = False
    debug: bool = False


@dataclass
class Output:
    settings: OutputSettings = field(default_factory=OutputSettings)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    _bars: dict[str, Any] = field(default_factory=dict)
    _last_status: str | None = None
    _last_plain: float = 0.0
    _streamed: bool = False

    @property
    def json_mode(self) -> bool:
        return self.settings.json

    @property
    def color(self) -> bool:
        return _color_enabled(self.stderr)

    # -- progress (long-running commands) ----------------------------------------------
    def progress(self, event: ProgressEvent) -> None:
        """Report one event: NDJSON on stdout with --json, a bar or a line on stderr otherwise."""
        if self.settings.json:
            self._emit_json(event.to_dict())
            self._streamed = True
            return
        if self.settings.quiet:
            return
        if _isatty(self.stderr):
            self._progress_bar(event)
        else:
            self._progress_plain(event)

    def _progress_bar(self, event: ProgressEvent) -> None:
        from tqdm import tqdm

        if event.total is None:
            self._close_bars()
            if event.status != self._last_status:
                self.stderr.write(event.status + "\n")
                self._last_status = event.status
            return
        key = event.digest or event.status
        bar = self._bars.get(key)
        if bar is None:
            bar = tqdm(
                total=event.total,
                desc=event.status,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.stderr,
                leave=True,
                dynamic_ncols=True,
                colour=None if self.color else None,
            )
            self._bars[key] = bar
        completed = event.completed or 0
        if completed > bar.n:
            bar.update(completed - bar.n)
        if completed >= event.total:
            bar.close()
            del self._bars[key]

    def _progress_plain(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        done = event.total is not None and (event.completed or 0) >= event.total
        if event.status != self._last_status or done or now - self._last_plain >= 5.0:
            line = event.status
            if event.total:
                pct = 100.0 * (event.completed or 0) / event.total
                line += f" {pct:5.1f}% ({_human_size(event.completed or 0)}/{_human_size(event.total)})"
            self.stderr.write(line + "\n")
            self.stderr.flush()
            self._last_status = event.status
            self._last_plain = now

    def _close_bars(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    # -- logs ---------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """An informational line on stderr (silenced by --quiet and --json)."""
        if self.settings.quiet or self.settings.json:
            return
        self.stderr.write(message + "\n")
        self.stderr.flush()

    def warn(self, message: str) -> None:
        """A warning on stderr (shown unless --quiet)."""
        if self.settings.quiet:
            return
        prefix = "\x1b[33mwarning:\x1b[0m " if self.color else "warning: "
        self.stderr.write(prefix + message + "\n")
        self.stderr.flush()

    # -- results ------------------------------------------------------------------------
    def result(self, data: dict[str, Any], human: str | None = None) -> None:
        """The command's result: a JSON object with --json, else the human text."""
        self._close_bars()
        if self.settings.json:
            self._emit_json(data)
            return
        text = human if human is not None else _render_human(data)
        if text:
            self.stdout.write(text if text.endswith("\n") else text + "\n")
            self.stdout.flush()

    def error(self, message: str) -> None:
        """One line on stderr; with --json also the `{"error": ...}` object on stdout."""
        self._close_bars()
        if self.settings.json:
            self._emit_json({"error": message})
        prefix = "\x1b[31mError:\x1b[0m " if _color_enabled(self.stderr) else "Error: "
        self.stderr.write(prefix + message + "\n")
        self.stderr.flush()

    def _emit_json(self, obj: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
        self.stdout.flush()


def _render_human(data: dict[str, Any]) -> str:
    width = max((len(k) for k in data), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in data.items())


def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


human_size = _human_size

# The Output of the running command, so the error handler formats errors in the same mode.
_current: Output | None = None
_global_settings = OutputSettings()


def global_settings() -> OutputSettings:
    return _global_settings


def get_output(json_flag: bool = False, quiet: bool = False) -> Output:
    """The Output for a command: per-command flags add to the global ones."""
    global _current
    s = _global_settings
    _current = Output(OutputSettings(json=s.json or json_flag, quiet=s.quiet or quiet, debug=s.debug))
    return _current


def current_output() -> Output:
    return _current or Output(OutputSettings(json=_global_settings.json, quiet=_global_settings.quiet))


def reset() -> None:
    """Forget per-run state (the CLI may be called several times in one process)."""
    global _current, _global_settings
    _current = None
    _global_settings = OutputSettings()
