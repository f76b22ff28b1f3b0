"""web/admin_applications: Administration » Applications, the OpenID clients. Only
administrators read it; adding one, a new secret and removing one need a fresh
step-up and the CSRF token (SC-25); the secret is shown once, in the POST's answer
only, with Cache-Control: no-store, and kept as a hash (SC-60); removing an
application revokes its tokens; errors sit beside their fields."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from support.db import audit_events, table_dump, user
from support.pages import messages
from support.steps import signed_in_admin, step_up

from standalone_mfa.core.clock import now
from standalone_mfa.core.models import AuditEvent, OidcClient, OidcToken
from standalone_mfa.oidc import clients

GRAFANA = "https://grafana.example.test/login/generic_oauth"
SECRET_RE = re.compile(r'id="client-secret">([^<]+)<')
CLIENT_ID_RE = re.compile(r'id="client-id">([^<]+)<')


def new_client(**fields):
    return {
        "name": "Grafana",
        "redirect_uris": GRAFANA,
        "policy": "two_factor",
        **fields,
    }


def admin_stepped_up(app, clock):
    admin = signed_in_admin(app, clock)
    step_up(admin)
    return admin


def add_page(admin, data):
    admin.get("/admin/applications/new")
    return admin.post("/admin/applications/new", data)


def field_errors(response) -> dict[str, str]:
    """{field id: its error}, as the page ties them (aria-describedby names the error)."""
    page = response.get_data(as_text=True)
    return {
        key: html.unescape(text)
        for key, text in re.findall(
            r'<p class="field-error" id="([a-z_]+)-error">([^<]*)</p>', page
        )
    }


# --- who may open it


@pytest.mark.parametrize(
    "path", ["/admin/applications", "/admin/applications/new", "/admin/applications/x/remove"]
)
def test_applications_pages_are_for_administrators_only(app, clock, browser, path):
    assert browser.client.get(path).status_code == 302  # not signed in: to the sign-in page
    browser.login("alice")
    assert browser.get(path).status_code == 403


def test_the_list_needs_no_step_up_but_a_change_does(app, clock):
    with app.app_context():
        clients.add("Grafana", [GRAFANA], actor="test")
    admin = signed_in_admin(app, clock)
    page = admin.get("/admin/applications")
    assert page.status_code == 200
    assert "Grafana" in page.text and GRAFANA in page.text
    for path in ("/admin/applications/new",):
        response = admin.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/admin/step-up?next=")
    response = admin.post("/admin/applications/new", new_client(name="Other"))
    assert response.status_code == 302 and "/admin/step-up" in response.headers["Location"]
    with app.app_context():
        assert [row.name for row in clients.all_clients()] == ["Grafana"]


def test_applications_are_linked_from_the_administration_pages(app, clock):
    admin = signed_in_admin(app, clock)
    for path in ("/admin/", "/admin/users"):
        assert 'href="/admin/applications"' in admin.get(path).text, path


# --- adding one, its secret shown once


def test_sc60_adding_an_application_shows_its_secret_once_and_keeps_a_hash(app, clock):
    admin = admin_stepped_up(app, clock)
    response = add_page(
        admin,
        new_client(
            redirect_uris=f"{GRAFANA}\r\n\r\n  https://grafana.example.test/other  \r\n",
            subjects="group:staff, user:alice",
            offline="y",
            launch_url="https://grafana.example.test/d/home",
        ),
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    secret = SECRET_RE.search(response.text).group(1)
    client_id = CLIENT_ID_RE.search(response.text).group(1)
    with app.app_context():
        row = clients.by_client_id(client_id)
        assert row.name == "Grafana" and row.offline and row.policy == "two_factor"
        assert clients.redirect_uris(row) == [GRAFANA, "https://grafana.example.test/other"]
        assert row.subjects == "group:staff user:alice"
        assert clients.check_secret(row, secret)
    assert secret not in table_dump(app, OidcClient)
    assert secret not in table_dump(app, AuditEvent)
    (event,) = audit_events(app, "oidc_client_added")
    assert (event.actor, event.outcome, event.detail) == ("root", "ok", "Grafana")
    # Never again: not on the list, nor in a URL, nor flashed.
    listing = admin.get("/admin/applications")
    assert secret not in listing.text and client_id in listing.text
    assert "Location" not in response.headers


def test_a_public_application_has_no_secret(app, clock):
    admin = admin_stepped_up(app, clock)
    response = add_page(admin, new_client(name="Notebook", public="y", policy="one_factor"))
    assert response.status_code == 200
    assert SECRET_RE.search(response.text) is None
    with app.app_context():
        assert clients.is_public(clients.by_name("Notebook"))
    assert "New secret" not in admin.get("/admin/applications").text


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"redirect_uris": "https://app.example.test/cb#x"}, "redirect_uris", "fragment"),
        ({"redirect_uris": "http://app.example.test/cb"}, "redirect_uris", "https://"),
        ({"redirect_uris": "https://app.example.test/a b"}, "redirect_uris", "spaces"),
        ({"redirect_uris": ""}, "redirect_uris", "at least one"),
        ({"name": ""}, "name", "1-64"),
        ({"name": "x" * 65}, "name", "1-64"),
        ({"policy": "bypass"}, "policy", "Choose"),
        ({"subjects": "team:staff"}, "subjects", "team:staff"),
        ({"subjects": "group:ok user:"}, "subjects", "user:"),
        (
            {"post_logout_redirect_uris": "http://evil.example.test/"},
            "post_logout_redirect_uris",
            "",
        ),
        ({"launch_url": "javascript:alert(1)"}, "launch_url", "javascript"),
    ],
)
def test_a_bad_field_is_refused_beside_it_and_nothing_is_added(app, clock, fields, field, words):
    admin = admin_stepped_up(app, clock)
    response = add_page(admin, new_client(**fields))
    assert response.status_code == 400
    errors = field_errors(response)
    assert list(errors) == [field] and words in errors[field]
    described = re.search(rf'<[^>]*\bid="{field}"[^>]*>', response.text).group(0)
    assert 'aria-invalid="true"' in described and f"{field}-error" in described
    with app.app_context():
        assert OidcClient.select().count() == 0
    assert audit_events(app, "oidc_client_added") == []


def test_a_name_taken_is_refused(app, clock):
    with app.app_context():
        clients.add("Grafana", [GRAFANA], actor="test")
    admin = admin_stepped_up(app, clock)
    response = add_page(admin, new_client(redirect_uris="https://other.example.test/cb"))
    assert response.status_code == 400
    assert "exists already" in field_errors(response)["name"]
    with app.app_context():
        assert clients.redirect_uris(clients.by_name("Grafana")) == [GRAFANA]


def test_sc25_adding_needs_the_csrf_token(app, clock, new_browser):
    admin = admin_stepped_up(app, clock)
    admin.get("/admin/applications/new")
    assert admin.post("/admin/applications/new", new_client(), csrf=False).status_code == 400
    attacker = new_browser()
    attacker.get("/login")
    data = new_client(csrf_token=attacker.token)
    assert admin.post("/admin/applications/new", data).status_code == 400
    with app.app_context():
        assert OidcClient.select().count() == 0


def test_the_form_is_labelled_and_in_french_for_a_french_administrator(app, clock):
    admin = admin_stepped_up(app, clock)
    page = admin.get("/admin/applications/new", headers={"Accept-Language": "fr"}).text
    for field in ("name", "redirect_uris", "public", "policy", "subjects", "offline"):
        assert re.search(rf'<label for="{field}">', page), field
    assert "Ajouter une application" in page
    options = re.findall(r'<option (?:selected )?value="([a-z_]+)"', page)
    assert options == ["two_factor", "phishing_resistant", "one_factor"]
    response = admin.post(
        "/admin/applications/new",
        new_client(redirect_uris="http://app.example.test/"),
        headers={"Accept-Language": "fr"},
    )
    assert "https://" in field_errors(response)["redirect_uris"]
    assert "ne peut pas" in field_errors(response)["redirect_uris"]


# --- a new secret


def test_sc60_a_new_secret_replaces_the_old_one_and_is_shown_once(app, clock):
    with app.app_context():
        row, old = clients.add("Grafana", [GRAFANA], actor="test")
    admin = admin_stepped_up(app, clock)
    path = f"/admin/applications/{row.client_id}/secret"
    page = admin.get(path)
    assert page.status_code == 200 and 'method="post"' in page.text
    assert SECRET_RE.search(page.text) is None  # the confirmation page changes nothing
    response = admin.post(path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = SECRET_RE.search(response.text).group(1)
    with app.app_context():
        fresh = clients.by_name("Grafana")
        assert clients.check_secret(fresh, new) and not clients.check_secret(fresh, old)
    (event,) = audit_events(app, "oidc_client_secret")
    assert (event.actor, event.detail) == ("root", "Grafana")


def test_a_public_client_or_an_unknown_one_has_no_secret_page(app, clock):
    with app.app_context():
        row, _ = clients.add("Hub", ["https://hub.example.test/cb"], public=True, actor="t")
    admin = admin_stepped_up(app, clock)
    assert admin.get(f"/admin/applications/{row.client_id}/secret").status_code == 404
    assert admin.get("/admin/applications/nosuchclient0000/secret").status_code == 404
    assert admin.get("/admin/applications/nosuchclient0000/remove").status_code == 404


def test_sc25_a_new_secret_needs_a_step_up_and_the_csrf_token(app, clock):
    with app.app_context():
        row, old = clients.add("Grafana", [GRAFANA], actor="test")
    admin = signed_in_admin(app, clock)
    path = f"/admin/applications/{row.client_id}/secret"
    admin.get("/admin/applications")
    response = admin.post(path)
    assert response.status_code == 302 and "/admin/step-up" in response.headers["Location"]
    step_up(admin)
    assert admin.post(path, csrf=False).status_code == 400
    with app.app_context():
        assert clients.check_secret(clients.by_name("Grafana"), old)
    assert audit_events(app, "oidc_client_secret") == []


# --- removing one


def test_removing_an_application_revokes_its_tokens(app, clock):
    with app.app_context():
        row, _ = clients.add("Grafana", [GRAFANA], actor="test")
        at = now()
        OidcToken.create(
            access_token_hash="a" * 64,
            client=row,
            user=user(app, "alice"),
            scope="openid",
            auth_time=at,
            family="f" * 32,
            issued_at=at,
            access_expires_at=at + timedelta(hours=1),
        )
    admin = admin_stepped_up(app, clock)
    path = f"/admin/applications/{row.client_id}/remove"
    assert admin.get(path).status_code == 200
    with app.app_context():
        assert OidcToken.select().count() == 1  # the confirmation page changes nothing
    response = admin.post(path)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/applications"
    page = admin.get("/admin/applications")
    assert "Grafana was removed" in " ".join(messages(page))
    with app.app_context():
        assert OidcClient.select().count() == 0
        assert OidcToken.select().count() == 0
    (event,) = audit_events(app, "oidc_client_removed")
    assert (event.actor, event.detail) == ("root", "Grafana")


def test_sc25_removing_needs_a_step_up_and_the_csrf_token(app, clock):
    with app.app_context():
        row, _ = clients.add("Grafana", [GRAFANA], actor="test")
    admin = signed_in_admin(app, clock)
    path = f"/admin/applications/{row.client_id}/remove"
    admin.get("/admin/applications")
    assert "/admin/step-up" in admin.post(path).headers["Location"]
    step_up(admin)
    assert admin.post(path, csrf=False).status_code == 400
    with app.app_context():
        assert clients.by_name("Grafana") is not None
    assert audit_events(app, "oidc_client_removed") == []
