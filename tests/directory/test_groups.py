"""directory/groups and the Users page's groups: names a Remote-Groups header can carry,
idempotent audited changes, and on the page a fresh step-up, CSRF and an
administrator for every change (the CLI's commands are in ops/test_cli.py)."""

from __future__ import annotations

import threading

import pytest
from support.app import PASSWORD, make_app
from support.db import audit_events, audit_rows
from support.pages import admin_messages
from support.steps import signed_in_admin, step_up

from standalone_mfa.core.db import db
from standalone_mfa.core.models import User, UserGroup
from standalone_mfa.directory import groups

GOOD_NAMES = ["staff", "a", "Wiki-Editors", "team_2.ops", "x" * 64, "0", "..", "-"]
BAD_NAMES = [
    "",
    "   ",
    "x" * 65,
    "staff,admins",  # Remote-Groups is comma-separated
    "wiki editors",
    "staff\tadmins",
    "staff\nRemote-User: root",  # a header injection
    "équipe",
    "group:staff",
    "a/b",
    "<b>",
    "staff;",
    "ｓｔａｆｆ",  # full-width letters
    None,
]


def memberships(app) -> list[tuple[str, str]]:
    with app.app_context():
        query = UserGroup.select(User.username, UserGroup.name).join(User).tuples()
        return sorted(query)


def the_user(name: str) -> User:
    return User.get(User.username == name)


# --- the service


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_a_group_name_is_letters_digits_dot_underscore_dash_up_to_64(name):
    assert groups.group_name(name) == name
    assert groups.group_name(f"  {name} ") == name  # surrounding spaces are not part of it


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_group_name_is_refused_with_a_clear_message_and_changes_nothing(app, name):
    with app.app_context():
        alice = the_user("alice")
        for change in (groups.add, groups.remove):
            with pytest.raises(groups.GroupError, match="A group name is 1-64 characters"):
                change(alice, name, actor="root")
    assert memberships(app) == []
    assert audit_rows(app, "group_add") == audit_rows(app, "group_remove") == []


def test_add_and_remove_are_idempotent_and_every_change_is_audited(app):
    with app.app_context():
        alice = the_user("alice")
        first = groups.add(alice, "staff", actor="root")
        again = groups.add(alice, " staff ", actor="cli")
        assert (first.changed, first.message) == (True, "alice is now in the group staff.")
        assert (again.changed, again.message) == (
            False,
            "alice is already in the group staff; nothing changed.",
        )
        gone = groups.remove(alice, "staff", actor="root")
        not_there = groups.remove(alice, "staff", actor="root")
        assert (gone.changed, gone.message) == (True, "alice is no longer in the group staff.")
        assert (not_there.changed, not_there.message) == (
            False,
            "alice is not in the group staff; nothing changed.",
        )
    assert memberships(app) == []
    assert audit_rows(app, "group_add") == [
        ("group_add", "ok", "alice", "root", "staff"),
        ("group_add", "unchanged", "alice", "cli", "staff"),
    ]
    assert audit_rows(app, "group_remove") == [
        ("group_remove", "ok", "alice", "root", "staff"),
        ("group_remove", "unchanged", "alice", "root", "staff"),
    ]


def test_groups_of_is_sorted_by_code_point_and_per_user(app):
    with app.app_context():
        alice, bob = the_user("alice"), the_user("bob")
        for name in ("wiki", "Staff", "admins", "_ops", "2fa"):
            groups.add(alice, name, actor="test")
        groups.add(bob, "wiki", actor="test")
        # Case matters: "staff" is another group than "Staff".
        groups.add(bob, "staff", actor="test")
        assert groups.groups_of(alice) == ("2fa", "Staff", "_ops", "admins", "wiki")
        assert groups.groups_of(bob) == ("staff", "wiki")
        assert groups.groups_of(the_user("root")) == ()
        assert groups.groups_of_users([alice.id, bob.id]) == {
            alice.id: ("2fa", "Staff", "_ops", "admins", "wiki"),
            bob.id: ("staff", "wiki"),
        }


def test_a_user_is_in_at_most_max_groups_and_one_more_changes_nothing(app):
    with app.app_context():
        alice = the_user("alice")
        for number in range(groups.MAX_GROUPS_PER_USER):
            groups.add(alice, f"g{number:02d}", actor="test")
        with pytest.raises(groups.GroupError, match=r"alice is already in 50 groups"):
            groups.add(alice, "one-more", actor="test")
        # Adding one they already have is still the no-op it always is.
        assert not groups.add(alice, "g00", actor="test").changed
        assert len(groups.groups_of(alice)) == groups.MAX_GROUPS_PER_USER
    assert ("group_add", "ok", "alice", "test", "one-more") not in audit_rows(app, "group_add")


def test_the_same_group_added_twice_at_once_is_one_membership(tmp_path, clock):
    """Two administrators add alice to staff at the same moment: one adds, the other
    is told she already is (on PostgreSQL, the unique index decides)."""
    app = make_app(tmp_path, clock)
    with app.app_context():
        db.close()
    for attempt in range(5):
        name = f"staff{attempt}"
        barrier = threading.Barrier(2)
        outcomes = []

        def add(actor, name=name, barrier=barrier, outcomes=outcomes):
            with app.app_context():
                alice = the_user("alice")
                barrier.wait()
                outcomes.append(groups.add(alice, name, actor=actor).outcome)
                db.close()

        threads = [threading.Thread(target=add, args=(actor,)) for actor in ("root", "cli")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(outcomes) == [groups.CHANGED, groups.UNCHANGED]
    assert memberships(app) == [("alice", f"staff{n}") for n in range(5)]


def test_a_deleted_user_takes_their_memberships_along(app):
    with app.app_context():
        groups.add(the_user("bob"), "staff", actor="test")
        the_user("bob").delete_instance()
    assert memberships(app) == []


# --- the Users page: Administration » Users » a user's groups


def groups_page(admin, username="alice") -> str:
    return admin.page(f"/admin/users/{username}/groups")


def test_the_groups_page_lists_groups_with_a_remove_button_each(app, clock):
    with app.app_context():
        for name in ("wiki", "staff"):
            groups.add(the_user("alice"), name, actor="test")
    admin = signed_in_admin(app, clock)
    page = groups_page(admin)
    assert "<h1>Groups: alice</h1>" in page
    assert page.index('<th scope="row">staff</th>') < page.index('<th scope="row">wiki</th>')
    assert page.count('action="/admin/users/alice/groups/remove"') == 2
    assert 'aria-label="Remove alice from staff"' in page
    assert 'name="group" value="wiki"' in page
    # Each remove button, the add form and the header's sign-out button.
    assert page.count('name="csrf_token"') == 4
    assert 'id="step-up-note"' in page  # not stepped up yet: a change will ask first
    assert "is in no group" in groups_page(admin, "bob")
    # The Users list links to it.
    assert 'href="/admin/users/alice/groups"' in admin.page("/admin/users")
    step_up(admin)
    assert 'id="step-up-note"' not in groups_page(admin)


def test_an_administrator_adds_and_removes_a_group_after_stepping_up(totp_app, clock):
    admin = signed_in_admin(totp_app, clock)
    secret = admin.secret
    step_up(admin, secret)
    groups_page(admin)
    response = admin.post("/admin/users/alice/groups", {"group": "staff"})
    assert response.headers["Location"] == "/admin/users/alice/groups"
    assert admin_messages(admin) == ["alice is now in the group staff."]
    assert memberships(totp_app) == [("alice", "staff")]
    groups_page(admin)
    admin.post("/admin/users/alice/groups", {"group": "staff"})
    assert admin_messages(admin) == ["alice is already in the group staff; nothing changed."]
    assert memberships(totp_app) == [("alice", "staff")]

    page = groups_page(admin)
    assert '<th scope="row">staff</th>' in page
    response = admin.post("/admin/users/alice/groups/remove", {"group": "staff"})
    assert response.headers["Location"] == "/admin/users/alice/groups"
    assert admin_messages(admin) == ["alice is no longer in the group staff."]
    groups_page(admin)
    admin.post("/admin/users/alice/groups/remove", {"group": "staff"})
    assert admin_messages(admin) == ["alice is not in the group staff; nothing changed."]
    assert memberships(totp_app) == []
    rows = [e for e in audit_events(totp_app) if e.event in ("group_add", "group_remove")]
    assert [(e.event, e.outcome, e.username, e.actor, e.detail, e.ip) for e in rows] == [
        ("group_add", "ok", "alice", "root", "staff", "127.0.0.1"),
        ("group_add", "unchanged", "alice", "root", "staff", "127.0.0.1"),
        ("group_remove", "ok", "alice", "root", "staff", "127.0.0.1"),
        ("group_remove", "unchanged", "alice", "root", "staff", "127.0.0.1"),
    ]


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n is not None])
def test_a_bad_group_name_on_the_page_says_so_and_changes_nothing(app, clock, name):
    with app.app_context():
        groups.add(the_user("alice"), "staff", actor="test")
    admin = signed_in_admin(app, clock)
    step_up(admin)
    groups_page(admin)
    response = admin.post("/admin/users/alice/groups", {"group": name})
    assert response.status_code == 200  # the page again, with what was typed
    assert "A group name is 1-64 characters" in response.get_data(as_text=True)
    groups_page(admin)
    response = admin.post("/admin/users/alice/groups/remove", {"group": name})
    assert response.headers["Location"] == "/admin/users/alice/groups"
    assert any("A group name is 1-64 characters" in m for m in admin_messages(admin))
    assert memberships(app) == [("alice", "staff")]
    assert [
        e for e in audit_events(app) if e.actor == "root" and e.event.startswith("group")
    ] == []


def test_a_change_without_a_fresh_step_up_goes_to_the_step_up_first(app, clock):
    admin = signed_in_admin(app, clock)
    groups_page(admin)
    for path in ("/admin/users/alice/groups", "/admin/users/alice/groups/remove"):
        response = admin.post(path, {"group": "staff"})
        # Back to the groups page afterwards (the remove URL takes no GET).
        assert response.headers["Location"] == ("/admin/step-up?next=/admin/users/alice/groups"), (
            path
        )
    assert memberships(app) == []
    assert not [e for e in audit_events(app) if e.event.startswith("group")]
    page = admin.page("/admin/step-up?next=/admin/users/alice/groups")
    assert "Confirm it is you, then confirm the change again." in page
    response = admin.post("/admin/step-up?next=/admin/users/alice/groups", {"password": PASSWORD})
    assert response.headers["Location"] == "/admin/users/alice/groups"
    # The step-up lasts ADMIN_STEP_UP_SECONDS; then a change asks again.
    groups_page(admin)
    clock.advance(app.config["ADMIN_STEP_UP_SECONDS"] + 1)
    response = admin.post("/admin/users/alice/groups", {"group": "staff"})
    assert response.headers["Location"].startswith("/admin/step-up")
    assert memberships(app) == []


def test_sc25_group_changes_need_post_with_this_sessions_csrf_token(app, clock, new_browser):
    with app.app_context():
        groups.add(the_user("alice"), "wiki", actor="test")
    admin = signed_in_admin(app, clock)
    step_up(admin)
    attacker = new_browser()
    attacker.get("/login")
    for path in ("/admin/users/alice/groups", "/admin/users/alice/groups/remove"):
        for group in ("staff", "wiki"):
            assert admin.post(path, {"group": group}, csrf=False).status_code == 400
            response = admin.post(path, {"group": group, "csrf_token": attacker.token})
            assert response.status_code == 400
        for method in ("put", "patch", "delete"):
            assert getattr(admin.client, method)(path, data={"group": "x"}).status_code == 405
    # A GET changes nothing, whatever its query string says.
    assert admin.page("/admin/users/alice/groups?group=staff").count('<th scope="row">') == 1
    assert admin.get("/admin/users/alice/groups/remove?group=wiki").status_code == 405
    assert memberships(app) == [("alice", "wiki")]
    assert not [e for e in audit_events(app) if e.actor == "root" and e.event.startswith("group")]


def test_sc24_only_a_signed_in_administrator_sees_or_changes_groups(app, clock, new_browser):
    alice = new_browser()
    alice.login()
    anonymous = new_browser()
    anonymous.get("/login")  # a valid CSRF token: only the authorisation may refuse
    for path in ("/admin/users/bob/groups", "/admin/users/bob/groups/remove"):
        response = anonymous.post(path, {"group": "staff"})
        assert response.headers["Location"].startswith("/login")
        # A normal user, on someone else's account and on their own.
        for target in ("bob", "alice"):
            target_path = path.replace("/bob/", f"/{target}/")
            assert alice.post(target_path, {"group": "staff"}).status_code == 403
    assert alice.get("/admin/users/alice/groups").status_code == 403
    assert anonymous.get("/admin/users/bob/groups").headers["Location"].startswith("/login")
    assert memberships(app) == []


def test_groups_of_an_unknown_user_is_404_and_changes_nothing(app, clock):
    admin = signed_in_admin(app, clock)
    step_up(admin)
    assert admin.get("/admin/users/nobody/groups").status_code == 404
    admin.get("/admin/")
    for path in ("/admin/users/nobody/groups", "/admin/users/nobody/groups/remove"):
        assert admin.post(path, {"group": "staff"}).status_code == 404
    assert memberships(app) == []


def test_a_step_up_by_password_without_an_authenticator_also_opens_changes(app, clock):
    """MFA disabled and root without an authenticator: the step-up is the password."""
    admin = signed_in_admin(app, clock)
    admin.get("/admin/step-up")
    admin.post("/admin/step-up", {"password": PASSWORD})
    groups_page(admin, "bob")
    admin.post("/admin/users/bob/groups", {"group": "wiki-editors"})
    assert memberships(app) == [("bob", "wiki-editors")]
