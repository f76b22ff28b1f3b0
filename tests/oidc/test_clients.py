"""oidc/clients: registering an application. Redirect URIs are exact https (http only
on a loopback address), without a fragment, credentials or spaces (SC-57); a name is
taken once; policy and subjects are the gateway's words; the secret is returned once
and only its hash is kept (SC-60); removing a client deletes its tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.db import table_dump, user

from standalone_mfa.core.clock import now
from standalone_mfa.core.models import OidcAuthorizationCode, OidcClient, OidcToken
from standalone_mfa.oidc import clients

URI = "https://app.example.test/cb"


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.test/cb#fragment",
        "https://app.example.test/cb#",
        "http://app.example.test/cb",
        "http://10.0.0.1/cb",
        "https://app.example.test/a b",
        " https://app.example.test/cb",
        "https://app.example.test/cb\n",
        "https://user:pw@app.example.test/cb",
        "https:///cb",
        "/cb",
        "app.example.test/cb",
        "javascript:alert(1)",
        "https://app.example.test:99999/cb",
        "https://app.example.test/" + "x" * 2100,
        "",
    ],
)
def test_sc57_a_redirect_uri_that_could_leak_a_code_is_refused(app, uri):
    with app.app_context(), pytest.raises(clients.ClientError):
        clients.add("App", [uri], actor="test")
    with app.app_context():
        assert OidcClient.select().count() == 0


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.test/cb",
        "https://app.example.test:8443/cb?x=1",
        "http://localhost:8080/cb",
        "http://127.0.0.1:9000/cb",
        "http://[::1]:9000/cb",
    ],
)
def test_sc57_https_and_loopback_http_are_kept_as_written(app, uri):
    with app.app_context():
        row, _secret = clients.add("App", [uri], actor="test")
        assert clients.redirect_uris(row) == [uri]
        assert clients.has_redirect_uri(row, uri)
        assert not clients.has_redirect_uri(row, uri + "/")
        assert not clients.has_redirect_uri(row, uri.upper())


def test_a_name_is_taken_once(app):
    with app.app_context():
        clients.add("Grafana", [URI], actor="test")
        with pytest.raises(clients.ClientError, match="exists already"):
            clients.add(" Grafana ", ["https://other.example.test/cb"], actor="test")
        assert [row.name for row in clients.all_clients()] == ["Grafana"]


@pytest.mark.parametrize(
    ("policy", "subjects"),
    [
        ("bypass", ()),
        ("deny", ()),
        ("", ()),
        ("two_factor", ("team:staff",)),
        ("two_factor", ("group:",)),
        ("two_factor", ("user:Al ice",)),
    ],
)
def test_a_bad_policy_or_subject_is_refused(app, policy, subjects):
    with app.app_context():
        with pytest.raises(clients.ClientError):
            clients.add("App", [URI], policy=policy, subjects=subjects, actor="test")
        assert OidcClient.select().count() == 0


def test_sc60_the_secret_is_returned_once_and_kept_as_a_hash(app):
    with app.app_context():
        row, secret = clients.add("App", [URI], actor="test")
        assert len(secret) >= 43
        assert clients.check_secret(row, secret)
        assert not clients.check_secret(row, secret[:-1])
        assert not clients.check_secret(row, None)
        public, none = clients.add("Hub", [URI], public=True, actor="test")
        assert none is None and not clients.check_secret(public, "")
    assert secret not in table_dump(app, OidcClient)


def test_a_new_secret_ends_the_old_one(app):
    with app.app_context():
        row, old = clients.add("App", [URI], actor="test")
        new = clients.regenerate_secret("App", actor="test")
        row = clients.by_name("App")
        assert clients.check_secret(row, new) and not clients.check_secret(row, old)
        clients.add("Hub", [URI], public=True, actor="test")
        with pytest.raises(clients.ClientError, match="public"):
            clients.regenerate_secret("Hub", actor="test")


def test_removing_a_client_deletes_its_codes_and_tokens(app):
    with app.app_context():
        row, _ = clients.add("App", [URI], actor="test")
        other, _ = clients.add("Other", ["https://other.example.test/cb"], actor="test")
        alice, at = user(app, "alice"), now()
        for number, owner in enumerate((row, row, other)):
            OidcToken.create(
                access_token_hash=f"{number}" * 64,
                client=owner,
                user=alice,
                scope="openid",
                auth_time=at,
                family=f"family-{number}",
                issued_at=at,
                access_expires_at=at + timedelta(hours=1),
            )
        OidcAuthorizationCode.create(
            code_hash="c" * 64,
            client=row,
            user=alice,
            redirect_uri=URI,
            scope="openid",
            code_challenge="x" * 43,
            code_challenge_method="S256",
            auth_time=at,
            family="family-code",
            created_at=at,
            expires_at=at + timedelta(minutes=1),
        )
        assert clients.remove("App", actor="test")
        assert [t.client.name for t in OidcToken.select()] == ["Other"]
        assert OidcAuthorizationCode.select().count() == 0
        assert not clients.remove("App", actor="test")


def test_who_may_use_a_client_is_its_subjects(app):
    with app.app_context():
        anyone, _ = clients.add("Anyone", [URI], actor="test")
        staff, _ = clients.add("Staff", [URI], subjects=["group:staff", "user:bob"], actor="t")
    assert clients.may_use(anyone, "alice", [])
    assert clients.may_use(staff, "alice", ["staff"])
    assert clients.may_use(staff, "bob", [])
    assert not clients.may_use(staff, "alice", ["other"])
    assert not clients.may_use(staff, "staff", [])  # a user named like the group is not in it
