"""The CLI: `ggtool pull/push/login/logout` against real registries."""

from __future__ import annotations

import io
import json
import stat

import pytest

from ggtool.cli.app import main
from ggtool.registry.credentials import credentials_file
from tests.ggtool.registry.registry_helpers import USERS, make_model, repo_name

pytestmark = pytest.mark.slow


def test_push_then_pull_json_events(open_registry, store, other_store, capsys):
    name = repo_name(open_registry.host)
    model = make_model(store, name)
    assert main(["push", name, "--plain-http", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert f"success: sha256:{model.model_id}" in out
    assert main(["pull", name, "--insecure", "--store", str(other_store.root), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    statuses = [x["status"] for x in lines]
    assert "writing manifest" in statuses and "verifying sha256 digest" in statuses
    big = model.manifest.model_layer
    layer_events = [x for x in lines if x.get("digest") == big.digest]
    assert layer_events[0]["status"] == f"pulling {big.hex[:12]}"
    assert layer_events[-1]["completed"] == layer_events[-1]["total"] == big.size
    assert other_store.get(name).model_id == model.model_id


def test_pull_missing_model_exit_3(open_registry, store, capsys):
    code = main(
        ["pull", f"{open_registry.host}/no/such:thing", "--plain-http", "--store", str(store.root)]
    )
    assert code == 3
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "does not exist" in errors[0] and "MANIFEST_UNKNOWN" in errors[0]


def test_login_push_logout(basic_registry, store, capsys, monkeypatch):
    name = repo_name(basic_registry.host)
    make_model(store, name)
    password = USERS["alice"]
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    assert (
        main(
            [
                "login",
                basic_registry.host,
                "--username",
                "alice",
                "--password-stdin",
                "--plain-http",
            ]
        )
        == 0
    )
    path = credentials_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["push", name, "--plain-http", "--store", str(store.root)]) == 0
    assert main(["logout", basic_registry.host]) == 0
    assert main(["logout", basic_registry.host]) == 3
    captured = capsys.readouterr()
    assert password not in captured.out + captured.err
    assert main(["push", name, "--plain-http", "--store", str(store.root)]) == 4


def test_login_with_a_wrong_password_stores_nothing(basic_registry, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong-password\n"))
    code = main(["login", basic_registry.host, "-u", "alice", "--password-stdin", "--plain-http"])
    assert code == 4
    assert not credentials_file().exists()
    captured = capsys.readouterr()
    assert "wrong-password" not in captured.out + captured.err


def test_login_without_password_source_is_a_usage_error(basic_registry, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["login", basic_registry.host, "-u", "alice"]) == 2
