"""cli: `oidc client add | list | remove | secret`, the applications that sign people in
through the portal: the secret printed once as the last line and stored hashed
(SC-60), a clear one-line error that changes nothing, every change audited as "cli"."""

from __future__ import annotations

import pytest
from support.client import cli
from support.db import audit_events, table_dump

from standalone_mfa.core.models import OidcClient
from standalone_mfa.oidc import clients

GRAFANA = "https://grafana.example.test/login/generic_oauth"


def add(app, *args):
    return cli(app, "oidc", "client", "add", *args)


def last_lines(result, count):
    return result.output.rstrip("\n").split("\n")[-count:]


def test_sc60_add_prints_client_id_and_secret_last_once_and_stores_a_hash(app):
    result = add(app, "Grafana", "--redirect-uri", GRAFANA, "--subject", "group:staff")
    assert result.exit_code == 0, result.output
    id_line, secret_line = last_lines(result, 2)
    assert id_line.startswith("client_id: ") and secret_line.startswith("client_secret: ")
    client_id, secret = id_line.split(": ")[1], secret_line.split(": ")[1]
    assert len(secret) >= 43 and result.output.count(secret) == 1
    with app.app_context():
        row = clients.by_name("Grafana")
        assert row.client_id == client_id
        assert row.policy == "two_factor" and row.subjects == "group:staff"
        assert clients.redirect_uris(row) == [GRAFANA]
        assert clients.check_secret(row, secret)
    assert secret not in table_dump(app, OidcClient)
    (event,) = audit_events(app, "oidc_client_added")
    assert (event.actor, event.outcome, event.detail) == ("cli", "ok", "Grafana")
    assert secret not in str(event.detail)


def test_add_a_public_client_prints_no_secret(app):
    result = add(
        app,
        "Notebook",
        "--redirect-uri",
        "http://127.0.0.1:8000/cb",
        "--redirect-uri",
        "https://nb.example.test/cb",
        "--public",
        "--policy",
        "phishing_resistant",
        "--subject",
        "user:alice",
        "--subject",
        "group:data",
        "--offline",
        "--post-logout-redirect-uri",
        "https://nb.example.test/",
        "--launch-url",
        "https://nb.example.test/hub",
    )
    assert result.exit_code == 0, result.output
    assert last_lines(result, 1)[0].startswith("client_id: ")
    assert "client_secret" not in result.output and "secret" not in result.output.lower()
    with app.app_context():
        row = clients.by_name("Notebook")
        assert clients.is_public(row) and row.offline
        assert row.policy == "phishing_resistant"
        assert [str(s) for s in clients.subjects(row)] == ["user:alice", "group:data"]
        assert clients.post_logout_redirect_uris(row) == ["https://nb.example.test/"]
        assert clients.launch_url(row) == "https://nb.example.test/hub"


@pytest.mark.parametrize(
    "args",
    [
        ["--redirect-uri", "https://app.example.test/cb#frag"],
        ["--redirect-uri", "http://app.example.test/cb"],  # http, not loopback
        ["--redirect-uri", " https://app.example.test/cb"],
        ["--redirect-uri", "https://app.example.test/a b"],
        ["--redirect-uri", "https://user:pw@app.example.test/cb"],
        ["--redirect-uri", "/relative/cb"],
        [],  # no redirect URI at all
        ["--redirect-uri", GRAFANA, "--policy", "bypass"],
        ["--redirect-uri", GRAFANA, "--policy", "three_factor"],
        ["--redirect-uri", GRAFANA, "--subject", "team:staff"],
        ["--redirect-uri", GRAFANA, "--subject", "group:has space"],
        ["--redirect-uri", GRAFANA, "--launch-url", "javascript:alert(1)"],
    ],
)
def test_add_refuses_a_bad_client_in_one_line_and_changes_nothing(app, args):
    result = add(app, "App", *args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    with app.app_context():
        assert OidcClient.select().count() == 0
    assert audit_events(app, "oidc_client_added") == []


def test_add_refuses_a_name_taken_and_a_bad_name(app):
    assert add(app, "Grafana", "--redirect-uri", GRAFANA).exit_code == 0
    again = add(app, "Grafana", "--redirect-uri", "https://other.example.test/cb")
    assert again.exit_code == 1 and "exists already" in again.output
    for name in ("", "x" * 65, "bell\x07here"):
        result = add(app, name, "--redirect-uri", GRAFANA)
        assert result.exit_code == 1 and result.output.startswith("Error: "), name
    with app.app_context():
        assert [row.name for row in clients.all_clients()] == ["Grafana"]


def test_list_shows_each_client_and_never_a_secret(app):
    assert cli(app, "oidc", "client", "list").output.startswith("No OpenID clients yet")
    secret = last_lines(add(app, "Grafana", "--redirect-uri", GRAFANA), 1)[0].split(": ")[1]
    add(app, "Hub", "--redirect-uri", "https://hub.example.test/cb", "--public", "--offline")
    result = cli(app, "oidc", "client", "list")
    assert result.exit_code == 0, result.output
    grafana, hub = result.output.rstrip("\n").split("\n")
    with app.app_context():
        grafana_id = clients.by_name("Grafana").client_id
    assert grafana.split("\t")[:6] == [
        "Grafana",
        grafana_id,
        "confidential",
        "two_factor",
        "anyone",
        GRAFANA,
    ]
    assert hub.split("\t")[2] == "public+offline"
    assert secret not in result.output


def test_secret_replaces_the_old_one_and_prints_the_new_one_last(app):
    old = last_lines(add(app, "Grafana", "--redirect-uri", GRAFANA), 1)[0].split(": ")[1]
    result = cli(app, "oidc", "client", "secret", "Grafana")
    assert result.exit_code == 0, result.output
    new = last_lines(result, 1)[0].removeprefix("client_secret: ")
    assert new != old and result.output.count(new) == 1
    with app.app_context():
        row = clients.by_name("Grafana")
        assert clients.check_secret(row, new) and not clients.check_secret(row, old)
    (event,) = audit_events(app, "oidc_client_secret")
    assert (event.actor, event.detail) == ("cli", "Grafana")


def test_secret_of_a_public_or_unknown_client_is_a_clear_error(app):
    add(app, "Hub", "--redirect-uri", "https://hub.example.test/cb", "--public")
    for name in ("Hub", "Nobody"):
        result = cli(app, "oidc", "client", "secret", name)
        assert result.exit_code == 1 and result.output.startswith("Error: "), result.output
    with app.app_context():
        assert clients.is_public(clients.by_name("Hub"))
    assert audit_events(app, "oidc_client_secret") == []


def test_remove_deletes_the_client_and_says_so_once(app):
    add(app, "Grafana", "--redirect-uri", GRAFANA)
    result = cli(app, "oidc", "client", "remove", "Grafana")
    assert result.exit_code == 0 and "Removed" in result.output
    with app.app_context():
        assert clients.by_name("Grafana") is None
    (event,) = audit_events(app, "oidc_client_removed")
    assert (event.actor, event.detail) == ("cli", "Grafana")
    again = cli(app, "oidc", "client", "remove", "Grafana")
    assert again.exit_code == 1 and again.output.startswith("Error: ")
