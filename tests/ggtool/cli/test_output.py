"""The output layer: JSON/NDJSON, quiet, plain progress off a terminal."""

from __future__ import annotations

import io
import json

from ggtool.cli.output import Output, OutputSettings
from ggtool.events import ProgressEvent


def _out(**kw: bool) -> tuple[Output, io.StringIO, io.StringIO]:
    so, se = io.StringIO(), io.StringIO()
    return Output(OutputSettings(**kw), stdout=so, stderr=se), so, se


def test_json_events_are_ndjson_ending_in_result() -> None:
    out, so, se = _out(json=True)
    out.progress(ProgressEvent("pulling manifest"))
    out.progress(ProgressEvent("pulling abc", digest="sha256:abc", total=10, completed=5))
    out.result({"status": "success", "sha256": "x", "size": 10})
    lines = [json.loads(x) for x in so.getvalue().splitlines()]
    assert lines == [
        {"status": "pulling manifest"},
        {"status": "pulling abc", "digest": "sha256:abc", "total": 10, "completed": 5},
        {"status": "success", "sha256": "x", "size": 10},
    ]
    assert se.getvalue() == ""


def test_json_error_object() -> None:
    out, so, se = _out(json=True)
    out.error("it broke")
    assert json.loads(so.getvalue()) == {"error": "it broke"}
    assert se.getvalue() == "Error: it broke\n"


def test_quiet_silences_progress_and_logs_not_results() -> None:
    out, so, se = _out(quiet=True)
    out.progress(ProgressEvent("working", total=4, completed=1))
    out.log("hello")
    out.result({"path": "a.gguf"}, "wrote a.gguf")
    assert se.getvalue() == "" and so.getvalue() == "wrote a.gguf\n"


def test_plain_progress_off_a_terminal() -> None:
    out, so, se = _out()
    out.progress(ProgressEvent("converting", total=100, completed=0))
    out.progress(ProgressEvent("converting", total=100, completed=50))  # throttled
    out.progress(ProgressEvent("converting", total=100, completed=100))  # completion shown
    out.progress(ProgressEvent("writing manifest"))
    lines = se.getvalue().splitlines()
    assert lines[0].startswith("converting   0.0%")
    assert lines[1].startswith("converting 100.0%")
    assert lines[2] == "writing manifest"
    assert so.getvalue() == ""
    assert "\x1b[" not in se.getvalue()
